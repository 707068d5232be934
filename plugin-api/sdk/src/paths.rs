//! Path safety shared by every storage backend: a user path is resolved beneath an open
//! directory handle of the allocation root, never as a string, so a task that swaps files for
//! symlinks, directories for links or files for FIFOs cannot race allocd out of its allocation.
//!
//! Nomad's rules (`client/allocdir`, `helper/escapingfs`): a user path is joined onto the
//! allocation root; a leading `/` means nothing. A path escapes when, cleaned, it climbs above
//! the root (or its first component begins with `..`, Nomad's string-prefix quirk), or when
//! its symlinks lead outside the root; links that stay inside (relative, or absolute naming the
//! root's real path) work. Content reads below `<task>/secrets` and `<task>/private` are
//! refused, by the path as given and by where it was actually found.
//!
//! Resolution, in [`AllocRoot::resolve`]: `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//! from the root's descriptor, where the kernel has it and it answers; otherwise (no openat2,
//! refused by seccomp, a link that leaves and comes back, any error) a walk of our own, one
//! `O_PATH | O_NOFOLLOW` component at a time from directory descriptors, reading symlinks and
//! following them by hand (at most 40, as the kernel). Either way the result is an `O_PATH`
//! descriptor, whose `fstat` decides what it is: nothing is ever opened for reading before
//! that, so a FIFO or a device never blocks or wakes a driver. [`Found::open_read`] then opens
//! that very inode for reading, through `/proc/self/fd` (never by name again), and checks it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags, Stat, fstat, openat, openat2, readlinkat};
use rustix::io::Errno;

use crate::abi::PluginError;

/// Nomad's error text for an escaping path.
pub const ESCAPE_MESSAGE: &str = "Path escapes the alloc directory";

/// The most symlinks one resolution follows, as the kernel's `MAXSYMLINKS`.
pub const MAX_SYMLINKS: usize = 40;

/// Looking up, never reading: no open side effects, symlinks themselves are opened.
const LOOKUP: OFlags = OFlags::PATH.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);
/// Opening content: never blocks (FIFOs), never takes a controlling terminal. Only files and
/// directories found by a lookup are ever opened so.
const READ: OFlags = OFlags::RDONLY.union(OFlags::NONBLOCK).union(OFlags::NOCTTY).union(OFlags::CLOEXEC);
const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Set once openat2 is found missing (ENOSYS) or forbidden (EPERM, seccomp), so later
/// resolutions go straight to the walk.
static OPENAT2_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// The components of `user_path` after lexical cleaning, or `None` when it escapes.
pub fn clean_components(user_path: &str) -> Option<Vec<&str>> {
    let mut parts: Vec<&str> = Vec::new();
    for part in user_path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    if parts.first().is_some_and(|first| first.starts_with("..")) {
        return None;
    }
    Some(parts)
}

/// True when `user_path` escapes the allocation root without looking at the filesystem.
pub fn escapes_lexically(user_path: &str) -> bool {
    clean_components(user_path).is_none()
}

pub use crate::abi::os_error_text;

/// Refuses content reads below `<task>/secrets` and `<task>/private` (case-insensitively, and
/// any name starting so, as Nomad) for the path `components`.
pub fn check_readable(user_path: &str, components: &[String]) -> Result<(), PluginError> {
    let Some(dir) = components.get(1).map(|c| c.to_ascii_lowercase()) else { return Ok(()) };
    if dir.starts_with("secrets") {
        return Err(PluginError::denied(format!("Reading secret file prohibited: {user_path}")));
    }
    if dir.starts_with("private") {
        return Err(PluginError::denied(format!("Reading private file prohibited: {user_path}")));
    }
    Ok(())
}

/// How [`AllocRoot::resolve_with`] resolves: production uses [`Resolver::Openat2`]; tests
/// force [`Resolver::Walk`] to check both give the same answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolver {
    /// openat2 beneath the root, falling back to the walk whenever openat2 does not answer.
    Openat2,
    /// Only the component-by-component walk.
    Walk,
}

/// An allocation root on a local filesystem, held open.
#[derive(Clone, Debug)]
pub struct AllocRoot {
    /// The root's real path: for messages, watch paths and absolute symlinks.
    root: PathBuf,
    /// The normal components of `root`, the way back in for a link that climbs out.
    parts: Vec<OsString>,
    /// Opened read-only as a directory, so backends can also list it and read its xattrs.
    dir: Arc<OwnedFd>,
}

/// A user path resolved inside an [`AllocRoot`].
#[derive(Debug)]
pub struct Resolved {
    /// The joined, cleaned path (symlinks not followed), named in error messages.
    pub joined: PathBuf,
    /// The cleaned components relative to the root.
    pub components: Vec<String>,
    /// What it leads to; `None` when that does not exist.
    pub found: Option<Found>,
}

/// The file or directory a user path leads to, held by an `O_PATH` descriptor.
#[derive(Debug)]
pub struct Found {
    fd: OwnedFd,
    /// `fstat` of the descriptor.
    pub stat: Stat,
    /// Where it actually is, as components below the root (symlinks resolved).
    pub location: Vec<String>,
    reopen: Reopen,
}

/// How to open a [`Found`] for reading.
#[derive(Debug)]
enum Reopen {
    /// A directory: `.` relative to its own descriptor.
    Itself,
    /// Anything else: the descriptor's own `/proc/self/fd` entry, the very inode whatever the
    /// path holds now. (Opening by name again would let a task swap a device node in under
    /// that name after the lookup, and its driver would be woken before any check.)
    Proc,
}

/// Why a walk stopped.
enum Refusal {
    Escape,
    Lookup(Errno),
}

impl AllocRoot {
    /// Opens `root`, canonicalized so symlinked data directories (e.g. under `/tmp`) work.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let root = root.canonicalize()?;
        let dir = openat(CWD, &root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let parts = root.components().filter(|c| matches!(c, Component::Normal(_))).map(|c| c.as_os_str().into());
        Ok(Self { parts: parts.collect(), root, dir: Arc::new(dir) })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The root's own descriptor (a directory opened read-only).
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Resolves `user_path` beneath the root: lexical escape, then symlink escape, without
    /// ever leaving the root's descriptor.
    pub fn resolve(&self, user_path: &str) -> Result<Resolved, PluginError> {
        self.resolve_with(Resolver::Openat2, user_path)
    }

    /// [`Self::resolve`] with a chosen [`Resolver`].
    pub fn resolve_with(&self, resolver: Resolver, user_path: &str) -> Result<Resolved, PluginError> {
        let cleaned = clean_components(user_path).ok_or_else(|| PluginError::invalid(ESCAPE_MESSAGE))?;
        let joined = cleaned.iter().fold(self.root.clone(), |path, part| path.join(part));
        let from_kernel = match resolver {
            Resolver::Openat2 => self.try_openat2(&cleaned.join("/")),
            Resolver::Walk => None,
        };
        let found = match from_kernel {
            Some(found) => Some(found),
            None => self.walk(&cleaned).map_err(|refusal| match refusal {
                Refusal::Escape => PluginError::invalid(ESCAPE_MESSAGE),
                Refusal::Lookup(errno) => PluginError::invalid(format!(
                    "Failed to check if path escapes alloc directory: lstat {}: {}",
                    joined.display(),
                    os_error_text(&errno.into())
                )),
            })?,
        };
        let components = cleaned.into_iter().map(str::to_owned).collect();
        Ok(Resolved { joined, components, found })
    }

    /// openat2 beneath the root; `None` whenever it cannot give the whole answer, including
    /// where the file actually is (read from `/proc/self/fd`).
    fn try_openat2(&self, relative: &str) -> Option<Found> {
        if OPENAT2_UNAVAILABLE.load(Ordering::Relaxed) {
            return None;
        }
        let path = if relative.is_empty() { "." } else { relative };
        let fd = match openat2(&*self.dir, path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), BENEATH) {
            Ok(fd) => fd,
            Err(Errno::NOSYS | Errno::PERM) => {
                OPENAT2_UNAVAILABLE.store(true, Ordering::Relaxed);
                return None;
            }
            Err(_) => return None,
        };
        let stat = fstat(&fd).ok()?;
        let real = std::fs::read_link(proc_fd_path(&fd)).ok()?;
        let location = real.strip_prefix(&self.root).ok()?.iter().map(lossy).collect();
        let reopen = match kind(&stat) {
            FileType::Directory => Reopen::Itself,
            _ => Reopen::Proc,
        };
        Some(Found { fd, stat, location, reopen })
    }

    /// The walk: each component opened `O_PATH | O_NOFOLLOW` relative to the directory above
    /// it, symlinks read and their targets walked the same way. A `..` pops a directory we hold
    /// (never `openat("..")`); one above the root, or an absolute target, leaves the root, and
    /// only a way back down the root's own real path comes in again. `Ok(None)`: not there.
    fn walk(&self, components: &[&str]) -> Result<Option<Found>, Refusal> {
        let mut pending: Vec<OsString> = components.iter().rev().map(OsString::from).collect();
        let mut dirs: Vec<(OsString, OwnedFd)> = Vec::new();
        let mut above = 0;
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name.is_empty() || name == "." {
                continue;
            }
            if name == ".." {
                if above > 0 || dirs.pop().is_none() {
                    above = (above + 1).min(self.parts.len());
                }
                continue;
            }
            if above > 0 {
                if self.parts[self.parts.len() - above] != name {
                    return Err(Refusal::Escape);
                }
                above -= 1;
                continue;
            }
            let parent = dirs.last().map_or(self.dir.as_fd(), |(_, fd)| fd.as_fd());
            let fd = match openat(parent, name.as_os_str(), LOOKUP, Mode::empty()) {
                Err(Errno::NOENT) => return Ok(None),
                opened => opened.map_err(Refusal::Lookup)?,
            };
            let stat = fstat(&fd).map_err(Refusal::Lookup)?;
            match kind(&stat) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Refusal::Lookup(Errno::LOOP));
                    }
                    let target = readlinkat(&fd, c"", Vec::new()).map_err(Refusal::Lookup)?;
                    if target.as_bytes().starts_with(b"/") {
                        dirs.clear();
                        above = self.parts.len();
                    }
                    let parts = target.as_bytes().split(|&b| b == b'/').rev();
                    pending.extend(parts.map(|part| OsString::from_vec(part.to_vec())));
                }
                FileType::Directory => dirs.push((name, fd)),
                _ if !pending.is_empty() => return Err(Refusal::Lookup(Errno::NOTDIR)),
                _ => {
                    let mut location = names(&dirs);
                    location.push(lossy(&name));
                    return Ok(Some(Found { fd, stat, location, reopen: Reopen::Proc }));
                }
            }
        }
        if above > 0 {
            return Err(Refusal::Escape);
        }
        let location = names(&dirs);
        let fd = match dirs.pop() {
            Some((_, fd)) => fd,
            None => openat(&*self.dir, c".", LOOKUP, Mode::empty()).map_err(Refusal::Lookup)?,
        };
        let stat = fstat(&fd).map_err(Refusal::Lookup)?;
        Ok(Some(Found { fd, stat, location, reopen: Reopen::Itself }))
    }
}

impl Resolved {
    /// What the path leads to, or Go's `<op> <joined>: no such file or directory`.
    pub fn existing(&self, op: &str) -> Result<&Found, PluginError> {
        let missing = || PluginError::io(op, &self.joined, &std::io::Error::from_raw_os_error(libc::ENOENT));
        self.found.as_ref().ok_or_else(missing)
    }

    /// [`check_readable`] for the path as given and for where it was found.
    pub fn check_readable(&self, user_path: &str) -> Result<(), PluginError> {
        check_readable(user_path, &self.components)?;
        match &self.found {
            Some(found) => check_readable(user_path, &found.location),
            None => Ok(()),
        }
    }
}

impl Found {
    pub fn is_dir(&self) -> bool {
        kind(&self.stat) == FileType::Directory
    }

    pub fn is_file(&self) -> bool {
        kind(&self.stat) == FileType::RegularFile
    }

    /// Opens the found file (or directory) for reading: non-blocking, no controlling terminal,
    /// and only if it is still the same inode. Callers refuse FIFOs, sockets and devices first.
    pub fn open_read(&self) -> std::io::Result<File> {
        let fd = match &self.reopen {
            Reopen::Itself => openat(&self.fd, c".", READ | OFlags::DIRECTORY, Mode::empty()),
            Reopen::Proc => openat(CWD, proc_fd_path(&self.fd), READ, Mode::empty()),
        }?;
        let now = fstat(&fd)?;
        if (now.st_dev, now.st_ino) != (self.stat.st_dev, self.stat.st_ino) {
            return Err(std::io::Error::other("replaced while being opened"));
        }
        Ok(File::from(fd))
    }
}

/// `/proc/self/fd/<fd>`: where the kernel says `fd` is, and a way to reopen it.
fn proc_fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// The file type in a `stat`'s mode.
pub fn kind(stat: &Stat) -> FileType {
    FileType::from_raw_mode(stat.st_mode)
}

fn lossy(name: impl AsRef<OsStr>) -> String {
    name.as_ref().to_string_lossy().into_owned()
}

fn names(dirs: &[(OsString, OwnedFd)]) -> Vec<String> {
    dirs.iter().map(|(name, _)| lossy(name)).collect()
}

/// True when `id` has the shape of a Nomad allocation ID (36-character UUID). Backends use it
/// so that nothing else under their directory is mistaken for an allocation.
pub fn is_alloc_id(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests;
