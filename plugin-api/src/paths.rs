//! Path safety shared by every storage backend (and re-checked by the host).
//!
//! Nomad's rules (`client/allocdir`, `helper/escapingfs`): a user path is joined onto the
//! allocation root; a leading `/` means nothing. A path escapes when, cleaned, it climbs above
//! the root (or its first component begins with `..`, Nomad's string-prefix quirk), or when
//! resolving its symlinks lands outside the root. Content reads below `<task>/secrets` and
//! `<task>/private` are refused. Unlike Nomad, the secrets check also applies to the
//! symlink-resolved path, so a link cannot smuggle a secret out.

use std::path::{Path, PathBuf};

use crate::abi::PluginError;

/// Nomad's error text for an escaping path.
pub const ESCAPE_MESSAGE: &str = "Path escapes the alloc directory";

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

/// Go's wording for an OS error: strerror text with a lower-case first letter.
pub fn os_error_text(err: &std::io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let text = std::io::Error::from_raw_os_error(code).to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// An allocation root on a local filesystem.
#[derive(Clone, Debug)]
pub struct AllocRoot {
    root: PathBuf,
}

/// A user path resolved inside an [`AllocRoot`].
#[derive(Clone, Debug)]
pub struct ResolvedPath {
    /// The joined, cleaned path (symlinks not followed).
    pub joined: PathBuf,
    /// The cleaned components relative to the root.
    pub components: Vec<String>,
}

impl AllocRoot {
    /// `root` is canonicalized so symlinked data directories (e.g. under `/tmp`) work.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self { root: root.canonicalize()? })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Joins and checks `user_path`: lexical escape, then symlink escape.
    pub fn resolve(&self, user_path: &str) -> Result<ResolvedPath, PluginError> {
        let components = clean_components(user_path).ok_or_else(|| PluginError::invalid(ESCAPE_MESSAGE))?;
        let joined = components.iter().fold(self.root.clone(), |path, part| path.join(part));
        // A missing path is judged by its deepest existing ancestor, so a dangling name
        // below a symlink that leaves the root still escapes.
        let mut probe = joined.as_path();
        let outcome = loop {
            match probe.canonicalize() {
                // Stop at the root: a root deleted meanwhile (a GC) is not an escape.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => match probe.parent() {
                    Some(parent) if probe != self.root => probe = parent,
                    _ => break Ok(self.root.clone()),
                },
                other => break other,
            }
        };
        match outcome {
            Ok(real) if !real.starts_with(&self.root) => return Err(PluginError::invalid(ESCAPE_MESSAGE)),
            Ok(_) => {}
            Err(err) => {
                return Err(PluginError::invalid(format!(
                    "Failed to check if path escapes alloc directory: lstat {}: {}",
                    joined.display(),
                    os_error_text(&err)
                )));
            }
        }
        let components = components.into_iter().map(str::to_owned).collect();
        Ok(ResolvedPath { joined, components })
    }

    /// Refuses content reads below `<task>/secrets` and `<task>/private`, checking both the
    /// path as given and where its symlinks lead.
    pub fn check_readable(&self, user_path: &str, resolved: &ResolvedPath) -> Result<(), PluginError> {
        let real = resolved.joined.canonicalize().ok();
        let real_components: Option<Vec<String>> = real.as_ref().and_then(|real| {
            let rel = real.strip_prefix(&self.root).ok()?;
            Some(rel.iter().map(|c| c.to_string_lossy().into_owned()).collect())
        });
        for components in std::iter::once(&resolved.components).chain(real_components.as_ref()) {
            if let Some(dir) = components.get(1).map(|c| c.to_ascii_lowercase()) {
                if dir.starts_with("secrets") {
                    return Err(PluginError::denied(format!("Reading secret file prohibited: {user_path}")));
                }
                if dir.starts_with("private") {
                    return Err(PluginError::denied(format!("Reading private file prohibited: {user_path}")));
                }
            }
        }
        Ok(())
    }
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
mod tests {
    use super::*;

    #[test]
    fn lexical_escapes_follow_nomad() {
        for escaping in ["..", "../", "../foo", "a/../../b", "..foo", "./../x"] {
            assert!(escapes_lexically(escaping), "{escaping} should escape");
        }
        for inside in ["", "/", "/foo", "./", "alloc/logs", "a/../b", "/alloc/../alloc/logs", "a..b"] {
            assert!(!escapes_lexically(inside), "{inside} should not escape");
        }
    }

    #[test]
    fn symlink_escape_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("inner", dir.path().join("in")).unwrap();
        let root = AllocRoot::new(dir.path()).unwrap();
        assert_eq!(root.resolve("out").unwrap_err().message.as_str(), ESCAPE_MESSAGE);
        assert_eq!(root.resolve("out/x").unwrap_err().message.as_str(), ESCAPE_MESSAGE);
        assert!(root.resolve("in").is_ok());
        assert!(root.resolve("no-exist").is_ok());
    }

    #[test]
    fn a_root_deleted_meanwhile_is_not_an_escape() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = dir.path().join("alloc-id");
        std::fs::create_dir_all(alloc.join("alloc/logs")).unwrap();
        let root = AllocRoot::new(&alloc).unwrap();
        std::fs::remove_dir_all(&alloc).unwrap();
        assert!(root.resolve("alloc/logs/web.stdout.0").is_ok());
    }

    #[test]
    fn loops_and_file_components_are_check_failures() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let root = AllocRoot::new(dir.path()).unwrap();
        let err = root.resolve("loop").unwrap_err();
        assert!(err.message.starts_with("Failed to check if path escapes alloc directory"), "{err}");
        let err = root.resolve("file/x").unwrap_err();
        assert!(err.message.contains("not a directory"), "{err}");
    }

    #[test]
    fn secrets_and_private_are_refused_even_through_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("web/secrets")).unwrap();
        std::fs::write(dir.path().join("web/secrets/test_file"), b"s").unwrap();
        std::os::unix::fs::symlink("../web/secrets/test_file", dir.path().join("web/leak")).unwrap();
        let root = AllocRoot::new(dir.path()).unwrap();
        let check = |p: &str| root.check_readable(p, &root.resolve(p).unwrap());
        assert_eq!(
            check("web/secrets/test_file").unwrap_err().message.as_str(),
            "Reading secret file prohibited: web/secrets/test_file"
        );
        assert!(check("/web/SECRETS/test_file").is_err());
        assert!(check("web/leak").is_err());
        assert!(check("web/private/x").unwrap_err().message.contains("private file prohibited"));
        assert!(check("web/local/x").is_ok());
    }

    #[test]
    fn alloc_ids_are_full_uuids() {
        assert!(is_alloc_id("3a7b9c2e-1f4d-4e8a-9b6c-0d2e4f6a8b1c"));
        assert!(!is_alloc_id("3a7b9c2e"));
        assert!(!is_alloc_id("3a7b9c2e-1f4d-4e8a-9b6c-0d2e4f6a8b1g"));
        assert!(!is_alloc_id("3a7b9c2e-1f4d-4e8a-9b6c0-d2e4f6a8b1c"));
    }

    #[test]
    fn os_errors_read_like_go() {
        let err = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(os_error_text(&err), "no such file or directory");
    }
}
