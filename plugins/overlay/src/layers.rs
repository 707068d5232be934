//! The merge: resolving a user path through an allocation's layers, whiteouts included, and
//! listing a merged directory.
//!
//! A [`Stack`] is a list of layer roots, topmost first; layer 0 is the allocation's writable
//! upper layer. Resolution walks the cleaned path one name at a time, keeping the set of layers
//! in which the current directory exists (as a real directory, never through a symlink):
//!
//! * In each of those layers, topmost first, the name is looked up with lstat. The first layer
//!   that has it decides: a directory starts a merged directory, anything else (file, symlink,
//!   device...) is the answer and ends the merge.
//! * A merged directory continues downwards through the layers that also hold a directory of
//!   that name and stops at the first layer where the name is something else (a file in a lower
//!   layer does not show through an upper directory, and hides the directories below it).
//! * A whiteout in a layer hides the name in every layer below it: an OCI `.wh.<name>` entry
//!   (any file type) or an overlayfs whiteout, a character device 0/0 named `<name>` (what
//!   Docker's overlay2 leaves in an upper dir). A `.wh.<name>` only hides lower layers: a
//!   `<name>` in the same layer still shows, as in OCI image layers.
//! * An opaque directory hides everything below it in lower layers while keeping its own
//!   entries: OCI's `.wh..wh..opq` marker inside it, or overlayfs's `trusted.overlay.opaque`
//!   (or `user.overlay.opaque`) xattr set to `y`. The xattr is honoured only when it can be read:
//!   `trusted.*` needs CAP_SYS_ADMIN (allocd as root); without it such a directory merges.
//! * Names beginning with `.wh.` are whiteout bookkeeping: never listed, never found.
//!
//! Symlinks are followed inside the layer that holds them, with that layer's
//! [`AllocRoot::resolve`]: the same escape rules as local-disk, relative to that layer's root,
//! so a symlink in a lower layer cannot reach outside its layer (not even into another layer).
//! Once a symlink is taken the merge stops: what lies behind it is read from that layer alone.
//! Not interpreted: overlayfs `redirect_dir` and `metacopy` xattrs and xattr-only whiteouts.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use allocd_plugin_api::paths::{AllocRoot, ESCAPE_MESSAGE, ResolvedPath, clean_components};
use allocd_plugin_api::{FileInfo, PluginError, files};

/// Prefix of an OCI whiteout entry: `.wh.<name>` hides `<name>` in lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// OCI opaque marker: a directory holding it hides the same directory in lower layers.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// overlayfs opaque-directory xattrs (value `y`), privileged and unprivileged flavours.
const OPAQUE_XATTRS: [&std::ffi::CStr; 2] = [c"trusted.overlay.opaque", c"user.overlay.opaque"];

/// One allocation's layers, topmost first; index 0 is the writable upper layer.
#[derive(Debug)]
pub struct Stack {
    layers: Vec<AllocRoot>,
}

/// Where a user path leads in the merged view.
#[derive(Debug)]
pub enum Target {
    /// A directory: each layer holding it as a real directory that shows through, topmost
    /// first, with its real path (never empty).
    Dir(Vec<(usize, PathBuf)>),
    /// Anything else, or whatever lies behind a symlink: resolved inside one layer.
    Entry { layer: usize, resolved: ResolvedPath },
    /// In no layer, or whited out.
    Missing,
}

/// A resolved user path.
#[derive(Debug)]
pub struct Lookup {
    pub target: Target,
    /// The cleaned components of the user path.
    pub components: Vec<String>,
    /// The path joined onto the upper layer: where the task would write it, and the path
    /// named in not-found errors.
    pub upper_path: PathBuf,
}

impl Lookup {
    /// The real path of what the user path names, `None` when it does not exist.
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::Dir(dirs) => Some(&dirs[0].1),
            Target::Entry { resolved, .. } => Some(&resolved.joined),
            Target::Missing => None,
        }
    }

    /// The real path, or [`Self::not_found`].
    pub fn existing(&self, op: &str) -> Result<&Path, PluginError> {
        self.path().ok_or_else(|| self.not_found(op))
    }

    /// Go's `<op> <upper path>: no such file or directory`.
    pub fn not_found(&self, op: &str) -> PluginError {
        PluginError::io(op, &self.upper_path, &std::io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// The base name `stat` reports: the last component, the alloc id for the root.
    pub fn name(&self, alloc_id: &str) -> String {
        self.components.last().cloned().unwrap_or_else(|| alloc_id.to_owned())
    }
}

impl Stack {
    pub fn new(layers: Vec<AllocRoot>) -> Self {
        assert!(!layers.is_empty(), "a stack has an upper layer");
        Self { layers }
    }

    pub fn upper(&self) -> &AllocRoot {
        &self.layers[0]
    }

    pub fn layers(&self) -> &[AllocRoot] {
        &self.layers
    }

    /// Resolves `user_path` through the layers (see the module doc). Fails on an escape,
    /// lexical or through a symlink of the layer that holds it.
    pub fn lookup(&self, user_path: &str) -> Result<Lookup, PluginError> {
        let components = clean_components(user_path).ok_or_else(|| PluginError::invalid(ESCAPE_MESSAGE))?;
        let upper_path = components.iter().fold(self.upper().path().to_path_buf(), |path, part| path.join(part));
        let mut dirs = self.root_dirs();
        let mut target = None;
        for name in &components {
            match step(&dirs, name)? {
                Step::Dir(next) => dirs = next,
                Step::Entry(layer) => {
                    let resolved = self.layers[layer].resolve(user_path)?;
                    target = Some(Target::Entry { layer, resolved });
                    break;
                }
                Step::Missing => {
                    target = Some(Target::Missing);
                    break;
                }
            }
        }
        let target = target.unwrap_or(Target::Dir(dirs));
        let components = components.into_iter().map(str::to_owned).collect();
        Ok(Lookup { target, components, upper_path })
    }

    /// Refuses content reads below `<task>/secrets` and `<task>/private`, by the path as given
    /// and by where the symlinks of the layer that serves it lead.
    pub fn check_readable(&self, user_path: &str, lookup: &Lookup) -> Result<(), PluginError> {
        let (layer, joined) = match &lookup.target {
            Target::Entry { layer, resolved } => return self.layers[*layer].check_readable(user_path, resolved),
            Target::Dir(dirs) => (dirs[0].0, dirs[0].1.clone()),
            Target::Missing => (0, lookup.upper_path.clone()),
        };
        let resolved = ResolvedPath { joined, components: lookup.components.clone() };
        self.layers[layer].check_readable(user_path, &resolved)
    }

    /// The root directory of every layer that shows through (down to the first opaque root).
    fn root_dirs(&self) -> Vec<(usize, PathBuf)> {
        let mut dirs = Vec::new();
        for (index, layer) in self.layers.iter().enumerate() {
            dirs.push((index, layer.path().to_path_buf()));
            if is_opaque(layer.path()) {
                break;
            }
        }
        dirs
    }
}

enum Step {
    Dir(Vec<(usize, PathBuf)>),
    Entry(usize),
    Missing,
}

/// Looks `name` up in a merged directory.
fn step(dirs: &[(usize, PathBuf)], name: &str) -> Result<Step, PluginError> {
    if name.starts_with(WHITEOUT_PREFIX) {
        return Ok(Step::Missing);
    }
    let mut merged = Vec::new();
    for (layer, dir) in dirs {
        let child = dir.join(name);
        match std::fs::symlink_metadata(&child) {
            Ok(meta) if is_whiteout_device(&meta) => break,
            Ok(meta) if meta.is_dir() => {
                let opaque = is_opaque(&child);
                merged.push((*layer, child));
                if opaque {
                    break;
                }
            }
            Ok(_) if merged.is_empty() => return Ok(Step::Entry(*layer)),
            Ok(_) => break,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(PluginError::io("lstat", &child, &err)),
        }
        if has_whiteout(dir, name) {
            break;
        }
    }
    Ok(if merged.is_empty() { Step::Missing } else { Step::Dir(merged) })
}

/// Lists a merged directory: sorted by name, each entry lstat'ed in the topmost layer that has
/// it, whiteouts applied and never shown. Errors read like [`files::list_dir`]'s.
pub fn list_merged(dirs: &[(usize, PathBuf)]) -> Result<Vec<FileInfo>, PluginError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut entries = Vec::new();
    for (_, dir) in dirs {
        let mut shown = Vec::new();
        let mut hidden = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| PluginError::io("open", dir, &e))? {
            let entry = entry.map_err(|e| PluginError::io("readdirent", dir, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == OPAQUE_MARKER {
                continue;
            }
            if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                hidden.push(target.to_owned());
                continue;
            }
            if seen.contains(&name) {
                continue;
            }
            let meta = entry.metadata().map_err(|e| PluginError::io("lstat", &entry.path(), &e))?;
            if is_whiteout_device(&meta) {
                hidden.push(name);
                continue;
            }
            entries.push(files::file_info(&name, &meta));
            shown.push(name);
        }
        seen.extend(shown);
        seen.extend(hidden);
    }
    entries.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(entries)
}

/// overlayfs's whiteout: a character device with device number 0/0.
pub fn is_whiteout_device(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// True when `dir` holds an OCI whiteout for `name`.
fn has_whiteout(dir: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(dir.join(format!("{WHITEOUT_PREFIX}{name}"))).is_ok()
}

/// True when the directory `dir` hides the same directory in lower layers.
pub fn is_opaque(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(OPAQUE_MARKER)).is_ok() || has_opaque_xattr(dir)
}

fn has_opaque_xattr(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    OPAQUE_XATTRS.iter().any(|name| {
        let mut value = [0u8; 2];
        // SAFETY: both names are NUL-terminated C strings and `value` is a writable buffer of
        // the length passed; lgetxattr writes at most that many bytes and does not follow links.
        let len = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        len == 1 && value[0] == b'y'
    })
}
