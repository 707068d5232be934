//! Local-filesystem building blocks for storage backends: ls, stat, identify and open of a
//! user path inside an [`AllocRoot`], answered from the descriptor the sandbox resolved (never
//! by reopening a path string), with Nomad's fields, content types and Go's error texts.
//!
//! local-disk uses all of it; overlay uses it per layer (and [`read_entries`] for merged
//! listings), so both report files identically and both are race-free.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Stat, statat};
use rustix::io::Errno;

use crate::abi::{FileIdentity, FileInfo, PluginError};
use crate::author::FilePlugin;
use crate::paths::{AllocRoot, Found, kind, os_error_text};
use crate::sniff::{SNIFF_LEN, detect_content_type};

/// `FileInfo` for `name` from (l)stat data; `content_type` left empty.
pub fn file_info(name: &str, stat: &Stat) -> FileInfo {
    FileInfo {
        name: name.into(),
        is_dir: kind(stat) == FileType::Directory,
        size: stat.st_size,
        mode: stat.st_mode,
        mod_time_ns: stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec as i64,
        content_type: Default::default(),
    }
}

/// The entries of an open directory with their lstat, `.` and `..` left out, unsorted. An
/// entry removed while listing is skipped. Errors name `path`.
pub fn read_entries(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<(String, Stat)>, PluginError> {
    let mut entries = Vec::new();
    for entry in Dir::read_from(dir).map_err(|e| PluginError::io("open", path, &e.into()))? {
        let entry = entry.map_err(|e| PluginError::io("readdirent", path, &e.into()))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let name = OsStr::from_bytes(name.to_bytes());
        match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => entries.push((name.to_string_lossy().into_owned(), stat)),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(PluginError::io("lstat", &path.join(name), &e.into())),
        }
    }
    Ok(entries)
}

/// Lists the directory `user_path` leads to, sorted by name. Go's errors: a non-directory
/// gives `readdirent <path>: not a directory`, a missing one `open <path>: ...`.
pub fn list(root: &AllocRoot, user_path: &str) -> Result<Vec<FileInfo>, PluginError> {
    let resolved = root.resolve(user_path)?;
    let found = resolved.existing("open")?;
    if !found.is_dir() {
        return Err(PluginError::io("readdirent", &resolved.joined, &Errno::NOTDIR.into()));
    }
    let dir = found.open_read().map_err(|e| PluginError::io("open", &resolved.joined, &e))?;
    let mut entries: Vec<FileInfo> =
        read_entries(dir.as_fd(), &resolved.joined)?.iter().map(|(name, stat)| file_info(name, stat)).collect();
    entries.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(entries)
}

/// stat (following symlinks) of `user_path`, named by its last component (`root_name` for the
/// root), with Nomad's content type.
pub fn stat(root: &AllocRoot, user_path: &str, root_name: &str) -> Result<FileInfo, PluginError> {
    let resolved = root.resolve(user_path)?;
    let found = resolved.existing("stat")?;
    let name = resolved.components.last().map_or(root_name, String::as_str);
    let mut info = file_info(name, &found.stat);
    info.content_type = stat_content_type(&resolved.joined, found).into();
    Ok(info)
}

/// Nomad's stat content type: sniff up to 512 bytes of a readable non-empty regular file,
/// `application/octet-stream` otherwise, and `application/json` for any path ending `.json`.
fn stat_content_type(joined: &Path, found: &Found) -> &'static str {
    if joined.as_os_str().as_bytes().ends_with(b".json") {
        return "application/json";
    }
    let mut buf = [0u8; SNIFF_LEN];
    if found.is_file()
        && let Ok(n @ 1..) = found.open_read().and_then(|file| file.read_at(&mut buf, 0))
    {
        return detect_content_type(&buf[..n]);
    }
    "application/octet-stream"
}

/// Identity of whatever `user_path` leads to now.
pub fn identify(root: &AllocRoot, user_path: &str) -> Result<FileIdentity, PluginError> {
    let resolved = root.resolve(user_path)?;
    Ok(identity(&resolved.existing("stat")?.stat))
}

fn identity(stat: &Stat) -> FileIdentity {
    FileIdentity { device: stat.st_dev, inode: stat.st_ino, size: stat.st_size as u64 }
}

/// A file opened for reading through the sandbox.
pub struct LocalFile {
    file: File,
}

impl LocalFile {
    /// Opens `user_path` for reading: secrets refused (as given and where found), and FIFOs,
    /// sockets and devices refused without ever being opened for reading.
    pub fn open(root: &AllocRoot, user_path: &str) -> Result<Self, PluginError> {
        let resolved = root.resolve(user_path)?;
        resolved.check_readable(user_path)?;
        let found = resolved.existing("open")?;
        if !found.is_file() && !found.is_dir() {
            return Err(PluginError::invalid(format!("{}: not a regular file", resolved.joined.display())));
        }
        let file = found.open_read().map_err(|e| PluginError::io("open", &resolved.joined, &e))?;
        Ok(Self { file })
    }
}

impl FilePlugin for LocalFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, PluginError> {
        match self.file.read_at(buf, offset) {
            // An offset past the largest file size is past the end of this file.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(0),
            result => result.map_err(|e| PluginError::internal(format!("read: {}", os_error_text(&e)))),
        }
    }

    fn identity(&self) -> Result<FileIdentity, PluginError> {
        let stat = rustix::fs::fstat(&self.file)
            .map_err(|e| PluginError::internal(format!("fstat: {}", os_error_text(&e.into()))))?;
        Ok(identity(&stat))
    }
}
