//! The backend's configuration and the layer stack it gives each allocation.
//!
//! ```hcl
//! plugin "overlay" {
//!   config {
//!     upper_dir  = "/var/lib/allocd/overlay"             # required
//!     lower_dirs = ["/srv/layers/app", "/srv/layers/base"] # optional, topmost first
//!   }
//! }
//! ```
//!
//! An allocation's stack, topmost first, is: its upper layer `<upper_dir>/<alloc_id>`, then the
//! extra lower layers named in `<upper_dir>/<alloc_id>.lower` (if that file exists), then the
//! shared `lower_dirs`. The `.lower` file is plain text, one absolute directory per line, topmost
//! first; surrounding whitespace is trimmed, blank lines and lines starting with `#` are ignored.
//! It sits beside the allocation's directory, not inside it, so nothing the allocation writes can
//! change its own stack. It is read on every call, so editing it takes effect at once.
//!
//! Every lower layer must be an existing directory outside `upper_dir` (both compared after
//! resolving symlinks): GC deletes below `upper_dir` only, so no layer can be deleted by it.
//! A shared layer that breaks these rules fails the plugin's construction; an extra layer that
//! breaks them fails every call on that allocation with an internal error naming the file and
//! line, rather than silently showing a different tree.

use std::path::{Path, PathBuf};

use allocd_plugin_sdk::PluginError;
use allocd_plugin_sdk::paths::{AllocRoot, is_alloc_id, os_error_text};
use serde::Deserialize;

use crate::layers::Stack;

/// The `config { ... }` block.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Read-only layers shared by every allocation, topmost first.
    #[serde(default)]
    pub lower_dirs: Vec<PathBuf>,
    /// Holds one writable layer per allocation: `<upper_dir>/<alloc_id>`.
    pub upper_dir: PathBuf,
}

/// Suffix of the per-allocation file that lists extra lower layers.
pub const LOWER_FILE_SUFFIX: &str = ".lower";

/// The validated configuration.
#[derive(Debug)]
pub struct Settings {
    upper_dir: PathBuf,
    /// `upper_dir` with symlinks resolved, for the "no layer inside upper_dir" rule.
    upper_real: PathBuf,
    shared: Vec<AllocRoot>,
}

impl Settings {
    /// Checks `upper_dir` and every shared lower layer.
    pub fn new(config: Config) -> Result<Self, PluginError> {
        let upper_dir = config.upper_dir;
        if !upper_dir.is_dir() {
            return Err(PluginError::invalid(format!("upper_dir {} is not a directory", upper_dir.display())));
        }
        let upper_real = upper_dir
            .canonicalize()
            .map_err(|e| PluginError::invalid(format!("upper_dir {}: {}", upper_dir.display(), os_error_text(&e))))?;
        let mut settings = Self { upper_dir, upper_real, shared: Vec::new() };
        for dir in &config.lower_dirs {
            let root = settings.layer(dir).map_err(|why| PluginError::invalid(format!("lower_dirs: {why}")))?;
            settings.shared.push(root);
        }
        Ok(settings)
    }

    pub fn upper_dir(&self) -> &Path {
        &self.upper_dir
    }

    pub fn shared_layers(&self) -> &[AllocRoot] {
        &self.shared
    }

    /// `<upper_dir>/<alloc_id>`, or `None` when `alloc_id` is not a full UUID (so no other
    /// name below `upper_dir`, such as a `.lower` file, is ever taken for an allocation).
    pub fn alloc_dir(&self, alloc_id: &str) -> Option<PathBuf> {
        is_alloc_id(alloc_id).then(|| self.upper_dir.join(alloc_id))
    }

    /// `<upper_dir>/<alloc_id>.lower`.
    pub fn lower_file(&self, alloc_id: &str) -> PathBuf {
        self.upper_dir.join(format!("{alloc_id}{LOWER_FILE_SUFFIX}"))
    }

    /// The allocation's layer stack; `Unknown allocation` when this backend does not hold it.
    pub fn stack(&self, alloc_id: &str) -> Result<Stack, PluginError> {
        let unknown = || PluginError::not_found(format!("Unknown allocation {alloc_id:?}"));
        let dir = self.alloc_dir(alloc_id).ok_or_else(unknown)?;
        if !dir.is_dir() {
            return Err(unknown());
        }
        let upper = AllocRoot::new(&dir).map_err(|e| PluginError::io("open", &dir, &e))?;
        let mut layers = vec![upper];
        let file = self.lower_file(alloc_id);
        for (line, dir) in self.extra_lowers(&file)? {
            let root = self
                .layer(&dir)
                .map_err(|why| PluginError::internal(format!("overlay: {} line {line}: {why}", file.display())))?;
            layers.push(root);
        }
        layers.extend(self.shared.iter().cloned());
        Ok(Stack::new(layers))
    }

    /// The entries of a `.lower` file with their line numbers; none when it does not exist.
    fn extra_lowers(&self, file: &Path) -> Result<Vec<(usize, PathBuf)>, PluginError> {
        match std::fs::read_to_string(file) {
            Ok(text) => parse_lower_file(&text)
                .map_err(|why| PluginError::internal(format!("overlay: {}: {why}", file.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => {
                Err(PluginError::internal(format!("overlay: read {}: {}", file.display(), os_error_text(&err))))
            }
        }
    }

    /// Opens one lower layer, enforcing the rules in the module doc.
    fn layer(&self, dir: &Path) -> Result<AllocRoot, String> {
        let root = AllocRoot::new(dir).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => format!("lower dir {} is not a directory", dir.display()),
            _ => format!("lower dir {}: {}", dir.display(), os_error_text(&e)),
        })?;
        if root.path().starts_with(&self.upper_real) {
            return Err(format!(
                "lower dir {} is inside upper_dir {}, where GC deletes",
                dir.display(),
                self.upper_dir.display()
            ));
        }
        Ok(root)
    }
}

/// Parses a `.lower` file: one absolute path per line, topmost first; blank lines and `#`
/// comments are skipped. Returns each path with its 1-based line number.
pub fn parse_lower_file(text: &str) -> Result<Vec<(usize, PathBuf)>, String> {
    let mut dirs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let path = PathBuf::from(line);
        if !path.is_absolute() {
            return Err(format!("line {}: lower dir {line:?} is not an absolute path", index + 1));
        }
        dirs.push((index + 1, path));
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_file_lines() {
        let text = "# layers of web\n/a/diff\n\n   /b/diff  \n#/c\n";
        let dirs = parse_lower_file(text).unwrap();
        assert_eq!(dirs, vec![(2, PathBuf::from("/a/diff")), (4, PathBuf::from("/b/diff"))]);
        assert_eq!(parse_lower_file("").unwrap(), Vec::new());
        let err = parse_lower_file("/a\nrelative/b\n").unwrap_err();
        assert_eq!(err, "line 2: lower dir \"relative/b\" is not an absolute path");
    }

    #[test]
    fn config_fields() {
        let config: Config = serde_json::from_str(r#"{"upper_dir": "/u", "lower_dirs": ["/l1", "/l2"]}"#).unwrap();
        assert_eq!(config.lower_dirs, vec![PathBuf::from("/l1"), PathBuf::from("/l2")]);
        let config: Config = serde_json::from_str(r#"{"upper_dir": "/u"}"#).unwrap();
        assert!(config.lower_dirs.is_empty());
        assert!(serde_json::from_str::<Config>(r#"{"lower_dirs": []}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"upper_dir": "/u", "lowerdir": "/x"}"#).is_err());
    }
}
