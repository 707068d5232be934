//! Local-filesystem building blocks for storage backends: `FileInfo` from metadata, Nomad's
//! stat content type, directory listings and an open file that reads with `pread`.
//!
//! local-disk uses all of it; overlay reuses it per layer, so both report files identically.

use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::abi::{FileIdentity, FileInfo, PluginError};
use crate::sdk::FilePlugin;
use crate::sniff::detect_content_type;

/// `FileInfo` for `name` from (l)stat metadata; `content_type` left empty.
pub fn file_info(name: &str, meta: &Metadata) -> FileInfo {
    FileInfo {
        name: name.into(),
        is_dir: meta.is_dir(),
        size: meta.size() as i64,
        mode: meta.mode(),
        mod_time_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        content_type: Default::default(),
    }
}

/// Nomad's stat content type: sniff up to 512 bytes of a readable non-empty regular file,
/// `application/octet-stream` otherwise, and `application/json` for any path ending `.json`.
pub fn stat_content_type(path: &Path, meta: &Metadata) -> String {
    let mut content_type = "application/octet-stream";
    if meta.is_file() {
        let mut buf = [0u8; 512];
        if let Ok(file) = File::open(path)
            && let Ok(n @ 1..) = file.read_at(&mut buf, 0)
        {
            content_type = detect_content_type(&buf[..n]);
        }
    }
    if path.to_string_lossy().ends_with(".json") {
        content_type = "application/json";
    }
    content_type.to_string()
}

/// Lists a directory sorted by name, entries from lstat. Go's errors: a non-directory gives
/// `readdirent <path>: not a directory`, a missing one `open <path>: ...`.
pub fn list_dir(path: &Path) -> Result<Vec<FileInfo>, PluginError> {
    let meta = std::fs::metadata(path).map_err(|e| PluginError::io("open", path, &e))?;
    if !meta.is_dir() {
        let err = std::io::Error::from_raw_os_error(libc::ENOTDIR);
        return Err(PluginError::io("readdirent", path, &err));
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| PluginError::io("open", path, &e))? {
        let entry = entry.map_err(|e| PluginError::io("readdirent", path, &e))?;
        let meta = entry.metadata().map_err(|e| PluginError::io("lstat", &entry.path(), &e))?;
        entries.push(file_info(&entry.file_name().to_string_lossy(), &meta));
    }
    entries.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(entries)
}

/// stat (following symlinks) of `path`, named `name`, with its content type.
pub fn stat_path(path: &Path, name: &str) -> Result<FileInfo, PluginError> {
    let meta = std::fs::metadata(path).map_err(|e| PluginError::io("stat", path, &e))?;
    let mut info = file_info(name, &meta);
    info.content_type = stat_content_type(path, &meta).into();
    Ok(info)
}

/// Identity of whatever is at `path` now.
pub fn identify_path(path: &Path) -> Result<FileIdentity, PluginError> {
    let meta = std::fs::metadata(path).map_err(|e| PluginError::io("stat", path, &e))?;
    Ok(identity(&meta))
}

fn identity(meta: &Metadata) -> FileIdentity {
    FileIdentity { device: meta.dev(), inode: meta.ino(), size: meta.size() }
}

/// An open local file.
pub struct LocalFile {
    file: File,
}

impl LocalFile {
    /// Opens a regular file for reading; FIFOs and devices are refused so a reader never hangs.
    pub fn open(path: &Path) -> Result<Self, PluginError> {
        let meta = std::fs::metadata(path).map_err(|e| PluginError::io("open", path, &e))?;
        if !meta.is_file() && !meta.is_dir() {
            return Err(PluginError::invalid(format!("{}: not a regular file", path.display())));
        }
        let file = File::open(path).map_err(|e| PluginError::io("open", path, &e))?;
        Ok(Self { file })
    }
}

impl FilePlugin for LocalFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, PluginError> {
        match self.file.read_at(buf, offset) {
            // An offset past the largest file size is past the end of this file.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(0),
            result => result.map_err(|e| PluginError::internal(format!("read: {}", crate::paths::os_error_text(&e)))),
        }
    }

    fn identity(&self) -> Result<FileIdentity, PluginError> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| PluginError::internal(format!("fstat: {}", crate::paths::os_error_text(&e))))?;
        Ok(identity(&meta))
    }
}
