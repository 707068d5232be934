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
//!   that could not be unmounted) is left alone, never deleted through.
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
/// had to be left behind.
pub fn delete(path: &Path) {
    unmount_inside(path);
    match remove_tree(path) {
        Ok(0) => log::info!("deleted {}", path.display()),
        Ok(kept) => log::warn!(
            "deleted {} except {kept} entries on other mounts or too deep; they stay in the trash",
            path.display()
        ),
        Err(err) => log::warn!("cannot delete {}: {err}", path.display()),
    }
}

/// Detaches every mount at or below `path`, deepest first (needs root; failures are logged
/// and the walk then leaves those mounts alone).
fn unmount_inside(path: &Path) {
    let Ok(mountinfo) = std::fs::read("/proc/self/mountinfo") else { return };
    let mut mounts: Vec<PathBuf> = mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mount| mount.starts_with(path))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for mount in mounts {
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

/// Removes `path` without following symlinks or crossing mounts; returns how many entries
/// had to be kept (on another mount, or nested deeper than [`MAX_DEPTH`]).
pub fn remove_tree(path: &Path) -> std::io::Result<usize> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let root = match rustix::fs::openat(CWD, path, flags, Mode::empty()) {
        Ok(fd) => fd,
        // A symlink (or a file) in place of the directory: remove the link itself.
        Err(Errno::LOOP | Errno::NOTDIR) => return std::fs::remove_file(path).map(|()| 0),
        Err(err) => return Err(err.into()),
    };
    let mount = mount_of(&root)?;
    let kept = remove_children(&root, mount, 0)?;
    if kept == 0 {
        std::fs::remove_dir(path)?;
    }
    Ok(kept)
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

/// Removes everything inside `dir`; returns how many entries were kept.
fn remove_children(dir: &OwnedFd, mount: MountOf, depth: usize) -> std::io::Result<usize> {
    let mut entries = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            entries.push((OsStr::from_bytes(name).to_os_string(), entry.file_type()));
        }
    }
    let mut kept = 0;
    for (name, file_type) in entries {
        let is_dir = match file_type {
            FileType::Unknown => rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
            other => other == FileType::Directory,
        };
        if !is_dir {
            match rustix::fs::unlinkat(dir, &name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(err) => return Err(err.into()),
            }
            continue;
        }
        kept += remove_subdir(dir, &name, mount, depth)?;
    }
    Ok(kept)
}

fn remove_subdir(parent: &OwnedFd, name: &OsStr, mount: MountOf, depth: usize) -> std::io::Result<usize> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let child = match rustix::fs::openat(parent.as_fd(), name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(0),
        // Replaced by a symlink meanwhile: remove the link.
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty()).map(|()| 0)?);
        }
        Err(err) => return Err(err.into()),
    };
    if mount_of(&child)? != mount {
        log::warn!("not deleting {name:?}: another filesystem is mounted there");
        return Ok(1);
    }
    if depth >= MAX_DEPTH {
        return Ok(1);
    }
    let kept = remove_children(&child, mount, depth + 1)?;
    drop(child);
    if kept == 0 {
        rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    }
    Ok(kept)
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
        assert_eq!(remove_tree(&alloc).unwrap(), 0);
        assert!(!alloc.exists());
        assert_eq!(std::fs::read_to_string(outside.path().join("precious")).unwrap(), "keep me");
    }

    #[test]
    fn a_symlinked_root_loses_only_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "keep me").unwrap();
        symlink(outside.path(), dir.path().join("alloc")).unwrap();
        remove_tree(&dir.path().join("alloc")).unwrap();
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
    fn mountinfo_fields_are_unescaped() {
        assert_eq!(unescape_mountinfo(b"/a\\040b\\134c"), PathBuf::from("/a b\\c"));
        assert_eq!(unescape_mountinfo(b"/plain\\x"), PathBuf::from("/plain\\x"));
    }
}
