//! Deleting an allocation without ever leaving it, shared by every storage backend.
//!
//! A deletion first *renames* the allocation into a trash directory beside it (same
//! filesystem, so it is atomic): readers see it gone at once, and a deletion interrupted by a
//! crash leaves it in the trash, never half-deleted in place. A background thread then empties
//! the trash:
//! * what is mounted inside the allocation (Nomad bind-mounts `alloc/` into task dirs and
//!   mounts `secrets/` as tmpfs) is unmounted first, deepest first, as Nomad does before it
//!   deletes an allocation directory;
//! * the tree is then removed through directory descriptors (`openat` with `O_NOFOLLOW`,
//!   `unlinkat`): a symlink is removed, never followed, and a directory on another mount (one
//!   that could not be unmounted: its mount ID differs, or mountinfo lists it, for kernels
//!   without `STATX_MNT_ID` and bind mounts of the same filesystem) is left alone, never
//!   deleted through;
//! * an entry that cannot be removed is logged and kept, and the rest still goes; another pass
//!   takes what a process still writing created meanwhile.
//!
//! Whatever the trash holds when a backend starts is finished in the same way.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

/// The trash directory's name inside a backend's directory (not an allocation ID, so it is
/// never listed or served).
pub const TRASH_DIR: &str = ".allocd-trash";

/// Deepest directory nesting removed (each level holds a descriptor while below it).
const MAX_DEPTH: usize = 512;

/// A backend's trash and the thread that empties it.
#[derive(Debug)]
pub struct Trash {
    dir: PathBuf,
    queue: mpsc::Sender<PathBuf>,
}

impl Trash {
    /// The trash under `parent` (created if needed); starts the deleting thread, which first
    /// finishes deletions a previous run left behind.
    pub fn start(parent: &Path) -> std::io::Result<Self> {
        let dir = parent.join(TRASH_DIR);
        std::fs::create_dir_all(&dir)?;
        let (queue, work) = mpsc::channel::<PathBuf>();
        for left in std::fs::read_dir(&dir)? {
            let left = left?.path();
            log::info!("finishing the interrupted deletion of {}", left.display());
            let _ = queue.send(left);
        }
        std::thread::Builder::new().name("allocd-trash".into()).spawn(move || {
            for path in work {
                delete(&path);
            }
        })?;
        Ok(Self { dir, queue })
    }

    /// Moves `path` (a directory or a symlink) out of sight into the trash and queues its
    /// deletion. `NotFound` when it is already gone (a concurrent deletion won).
    pub fn discard(&self, path: &Path, name: &str) -> std::io::Result<()> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let target = self.dir.join(format!("{name}.{}", stamp.as_nanos()));
        std::fs::rename(path, &target)?;
        let _ = self.queue.send(target);
        Ok(())
    }

    /// The trash directory (tests watch it empty).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Unmounts what is mounted inside `path`, then removes it without leaving it; logs what
/// had to be left behind. A pass that kept fewer entries than the one before (a process still
/// writing created some meanwhile) is followed by another, up to [`PASSES`].
pub fn delete(path: &Path) {
    // Mount points in mountinfo are canonical: so is the path compared with them. (Only the
    // directory above is resolved: the entry itself may be a symlink, removed, never followed.)
    let path = match (path.parent().and_then(|dir| dir.canonicalize().ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    };
    unmount_inside(&path);
    // What could not be unmounted is never descended into, also where the kernel cannot
    // tell a directory's mount (no STATX_MNT_ID before Linux 5.8, and a bind mount of the
    // same filesystem has the same device).
    let mounted: Vec<PathBuf> = mounts_inside(&path).into_iter().filter(|mount| *mount != path).collect();
    let mut kept = usize::MAX;
    for _ in 0..PASSES {
        match remove_tree(&path, &mounted) {
            Ok(0) => {
                log::info!("deleted {}", path.display());
                return;
            }
            Ok(now) => {
                let fewer = now < kept;
                kept = now;
                if !fewer {
                    break;
                }
            }
            Err(err) => {
                log::warn!("cannot delete {}: {err}", path.display());
                return;
            }
        }
    }
    log::warn!(
        "deleted {} except {kept} entries on other mounts, too deep or that could not be removed; they stay in the trash",
        path.display()
    );
}

/// Removal passes one deletion makes at most.
const PASSES: usize = 3;

/// The mount points at or below `path`, deepest first.
fn mounts_inside(path: &Path) -> Vec<PathBuf> {
    let Ok(mountinfo) = std::fs::read("/proc/self/mountinfo") else { return Vec::new() };
    let mut mounts: Vec<PathBuf> = mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mount| mount.starts_with(path))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts
}

/// Detaches every mount at or below `path`, deepest first (needs root; failures are logged
/// and the walk then leaves those mounts alone).
fn unmount_inside(path: &Path) {
    for mount in mounts_inside(path) {
        let flags = rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW;
        match rustix::mount::unmount(&mount, flags) {
            Ok(()) => log::info!("unmounted {} before deleting it", mount.display()),
            Err(err) => log::warn!("cannot unmount {}: {err}; it is left in place", mount.display()),
        }
    }
}

/// A mount point field of mountinfo, which escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let is_octal = |d: &&[u8]| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b));
        match field.get(i + 1..i + 4).filter(is_octal) {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Removes `path` without following symlinks or crossing mounts, never entering the
/// directories `mounted` names (mount points, by path); returns how many entries had to be
/// kept (on another mount, nested deeper than [`MAX_DEPTH`], or failing to go).
pub fn remove_tree(path: &Path, mounted: &[PathBuf]) -> std::io::Result<usize> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let root = match rustix::fs::openat(CWD, path, flags, Mode::empty()) {
        Ok(fd) => fd,
        // A symlink (or a file) in place of the directory: remove the link itself.
        Err(Errno::LOOP | Errno::NOTDIR) => return std::fs::remove_file(path).map(|()| 0),
        Err(Errno::NOENT) => return Ok(0),
        Err(err) => return Err(err.into()),
    };
    let walk = Walk { mount: mount_of(&root)?, mounted };
    let kept = walk.remove_children(&root, path, 0);
    if kept > 0 {
        return Ok(kept);
    }
    match std::fs::remove_dir(path) {
        // Something was created in it meanwhile: the next pass takes it.
        Err(err) if err.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(1),
        done => done.map(|()| 0),
    }
}

/// Where a directory lives: its mount ID where the kernel tells it, and its device.
#[derive(Clone, Copy, PartialEq, Eq)]
struct MountOf {
    mount_id: Option<u64>,
    device: u64,
}

fn mount_of(dir: &OwnedFd) -> std::io::Result<MountOf> {
    let stat = rustix::fs::statx(dir, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)?;
    let mount_id = (stat.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(stat.stx_mnt_id);
    let device = (u64::from(stat.stx_dev_major) << 32) | u64::from(stat.stx_dev_minor);
    Ok(MountOf { mount_id, device })
}

/// One removal: the mount it stays on, and the mount points it never enters. An entry that
/// cannot be removed is logged and counted as kept; the rest of the tree still goes.
struct Walk<'a> {
    mount: MountOf,
    mounted: &'a [PathBuf],
}

impl Walk<'_> {
    /// Removes everything inside `dir` (at `path`); returns how many entries were kept.
    fn remove_children(&self, dir: &OwnedFd, path: &Path, depth: usize) -> usize {
        let mut entries = Vec::new();
        let listing = Dir::read_from(dir).and_then(|listing| {
            for entry in listing {
                let entry = entry?;
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." {
                    entries.push((OsStr::from_bytes(name).to_os_string(), entry.file_type()));
                }
            }
            Ok(())
        });
        let mut kept = 0;
        if let Err(err) = listing {
            log::warn!("cannot list {}: {err}", path.display());
            kept += 1;
        }
        for (name, file_type) in entries {
            let is_dir = match file_type {
                FileType::Unknown => rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
                other => other == FileType::Directory,
            };
            kept += if is_dir {
                self.remove_subdir(dir, path, &name, depth)
            } else {
                match rustix::fs::unlinkat(dir, &name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => 0,
                    Err(err) => kept_because(path, &name, err),
                }
            };
        }
        kept
    }

    fn remove_subdir(&self, parent: &OwnedFd, parent_path: &Path, name: &OsStr, depth: usize) -> usize {
        let path = parent_path.join(name);
        if self.mounted.contains(&path) {
            log::warn!("not deleting {}: it could not be unmounted", path.display());
            return 1;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let child = match rustix::fs::openat(parent.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return 0,
            // Replaced by a symlink meanwhile: remove the link.
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => 0,
                    Err(err) => kept_because(parent_path, name, err),
                };
            }
            Err(err) => return kept_because(parent_path, name, err),
        };
        match mount_of(&child) {
            Ok(mount) if mount == self.mount => {}
            Ok(_) => {
                log::warn!("not deleting {}: another filesystem is mounted there", path.display());
                return 1;
            }
            Err(err) => return kept_because(parent_path, name, err),
        }
        if depth >= MAX_DEPTH {
            return 1;
        }
        let kept = self.remove_children(&child, &path, depth + 1);
        drop(child);
        if kept > 0 {
            return kept;
        }
        match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => 0,
            // (ENOTEMPTY: something was created in it meanwhile; the next pass takes it)
            Err(err) => kept_because(parent_path, name, err),
        }
    }
}

/// Logs why `name` in `dir` stays; it counts as one kept entry.
fn kept_because(dir: &Path, name: &OsStr, err: impl std::fmt::Display) -> usize {
    log::warn!("cannot delete {}: {err}", dir.join(name).display());
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_removed_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "keep me").unwrap();
        let alloc = dir.path().join("alloc");
        std::fs::create_dir_all(alloc.join("a/b/c")).unwrap();
        std::fs::write(alloc.join("a/b/c/f"), "x").unwrap();
        symlink(outside.path(), alloc.join("a/out-dir")).unwrap();
        symlink(outside.path().join("precious"), alloc.join("a/b/out-file")).unwrap();
        assert_eq!(remove_tree(&alloc, &[]).unwrap(), 0);
        assert!(!alloc.exists());
        assert_eq!(std::fs::read_to_string(outside.path().join("precious")).unwrap(), "keep me");
    }

    #[test]
    fn a_symlinked_root_loses_only_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "keep me").unwrap();
        symlink(outside.path(), dir.path().join("alloc")).unwrap();
        remove_tree(&dir.path().join("alloc"), &[]).unwrap();
        assert!(outside.path().join("precious").exists());
        assert!(std::fs::symlink_metadata(dir.path().join("alloc")).is_err());
    }

    #[test]
    fn the_trash_takes_at_once_and_empties_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = dir.path().join("5fb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f60");
        std::fs::create_dir_all(alloc.join("alloc/logs")).unwrap();
        // A deletion a crash interrupted: finished at start.
        std::fs::create_dir_all(dir.path().join(TRASH_DIR).join("left.1/x")).unwrap();
        let trash = Trash::start(dir.path()).unwrap();
        trash.discard(&alloc, "5fb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f60").unwrap();
        assert!(!alloc.exists(), "out of sight at once");
        let err = trash.discard(&alloc, "5fb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f60").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "a second deletion finds nothing");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(trash.dir()).unwrap().next().is_some() {
            assert!(std::time::Instant::now() < deadline, "the trash was not emptied");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn what_could_not_be_unmounted_is_never_entered() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = dir.path().canonicalize().unwrap().join("alloc");
        std::fs::create_dir_all(alloc.join("web/local")).unwrap();
        std::fs::create_dir_all(alloc.join("alloc/data")).unwrap();
        std::fs::write(alloc.join("web/local/mounted-file"), "not ours").unwrap();
        std::fs::write(alloc.join("alloc/data/f"), "x").unwrap();
        // As if web/local were a bind mount of the same filesystem that stayed mounted.
        let kept = remove_tree(&alloc, &[alloc.join("web/local")]).unwrap();
        assert_eq!(kept, 1);
        assert!(alloc.join("web/local/mounted-file").exists());
        assert!(!alloc.join("alloc").exists(), "the rest went");
    }

    #[test]
    fn mountinfo_fields_are_unescaped() {
        assert_eq!(unescape_mountinfo(b"/a\\040b\\134c"), PathBuf::from("/a b\\c"));
        assert_eq!(unescape_mountinfo(b"/plain\\x"), PathBuf::from("/plain\\x"));
    }
}
