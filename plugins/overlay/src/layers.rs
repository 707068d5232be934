//! The merge: resolving a user path through an allocation's layers, whiteouts included, and
//! listing a merged directory.
//!
//! A [`Stack`] is a list of layer roots, topmost first; layer 0 is the allocation's writable
//! upper layer. Resolution walks the cleaned path one name at a time, keeping the set of layers
//! in which the current directory exists (as a real directory, never through a symlink), each
//! held by a descriptor opened `O_NOFOLLOW` from the one above it, so a task swapping a
//! directory for a symlink mid-lookup cannot lead the merge out of its layer:
//!
//! * In each of those layers, topmost first, the name is looked up (relative to the descriptor). The first layer
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
//! What the merge finds is then opened by resolving the user path again in the layer that
//! decided, with that layer's [`AllocRoot`] (the descriptor-based sandbox local-disk uses):
//! symlinks are followed inside the layer that holds them, relative to that layer's root, so a
//! symlink in a lower layer cannot reach outside its layer (not even into another layer). Once
//! a symlink is taken the merge stops: what lies behind it is read from that layer alone.
//! Not interpreted: overlayfs `redirect_dir` and `metacopy` xattrs and xattr-only whiteouts.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use allocd_plugin_sdk::paths::{AllocRoot, ESCAPE_MESSAGE, clean_components, kind};
use allocd_plugin_sdk::{FileInfo, PluginError, files};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, fgetxattr, openat, statat};
use rustix::io::Errno;

/// Prefix of an OCI whiteout entry: `.wh.<name>` hides `<name>` in lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// OCI opaque marker: a directory holding it hides the same directory in lower layers.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// overlayfs opaque-directory xattrs (value `y`), privileged and unprivileged flavours.
const OPAQUE_XATTRS: [&std::ffi::CStr; 2] = [c"trusted.overlay.opaque", c"user.overlay.opaque"];
/// A directory of a layer, opened for listing and xattrs; never through a symlink, never a FIFO.
const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::NONBLOCK).union(OFlags::CLOEXEC);

/// One allocation's layers, topmost first; index 0 is the writable upper layer.
#[derive(Debug)]
pub struct Stack {
    layers: Vec<AllocRoot>,
}

/// A directory of one layer that shows through in a merged directory.
#[derive(Debug)]
pub struct LayerDir {
    pub layer: usize,
    pub fd: OwnedFd,
    /// Its path (for watching and messages; never opened by name).
    pub path: PathBuf,
}

/// Where a user path leads in the merged view.
#[derive(Debug)]
pub enum Target {
    /// A directory: each layer holding it as a real directory that shows through, topmost
    /// first (never empty).
    Dir(Vec<LayerDir>),
    /// Anything else, or whatever lies behind a symlink: resolved inside one layer, whose path
    /// for it is `path`.
    Entry { layer: usize, path: PathBuf },
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
    /// The layer that serves the user path (the topmost that holds it), `None` when missing.
    pub fn layer(&self) -> Option<usize> {
        match &self.target {
            Target::Dir(dirs) => Some(dirs[0].layer),
            Target::Entry { layer, .. } => Some(*layer),
            Target::Missing => None,
        }
    }

    /// The path of what the user path names in the layer that serves it.
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::Dir(dirs) => Some(&dirs[0].path),
            Target::Entry { path, .. } => Some(path.as_path()),
            Target::Missing => None,
        }
    }

    /// Go's `<op> <upper path>: no such file or directory`.
    pub fn not_found(&self, op: &str) -> PluginError {
        PluginError::io(op, &self.upper_path, &std::io::Error::from_raw_os_error(libc::ENOENT))
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

    /// The layer that serves `lookup`, or its not-found error for `op`.
    pub fn serving(&self, lookup: &Lookup, op: &str) -> Result<&AllocRoot, PluginError> {
        lookup.layer().map(|layer| &self.layers[layer]).ok_or_else(|| lookup.not_found(op))
    }

    /// Resolves `user_path` through the layers (see the module doc). Fails on a lexical
    /// escape; symlinks are judged when the serving layer resolves the path.
    pub fn lookup(&self, user_path: &str) -> Result<Lookup, PluginError> {
        let components = clean_components(user_path).ok_or_else(|| PluginError::invalid(ESCAPE_MESSAGE))?;
        let upper_path = components.iter().fold(self.upper().path().to_path_buf(), |path, part| path.join(part));
        let mut dirs = self.root_dirs()?;
        let mut target = None;
        for name in &components {
            match step(&dirs, name)? {
                Step::Dir(next) => dirs = next,
                Step::Entry(layer) => {
                    let path = components.iter().fold(self.layers[layer].path().to_path_buf(), |p, c| p.join(c));
                    target = Some(Target::Entry { layer, path });
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

    /// The root directory of every layer that shows through (down to the first opaque root).
    fn root_dirs(&self) -> Result<Vec<LayerDir>, PluginError> {
        let mut dirs = Vec::new();
        for (layer, root) in self.layers.iter().enumerate() {
            let fd = root.dir().try_clone_to_owned().map_err(|e| PluginError::io("open", root.path(), &e))?;
            let opaque = is_opaque(fd.as_fd());
            dirs.push(LayerDir { layer, fd, path: root.path().to_path_buf() });
            if opaque {
                break;
            }
        }
        Ok(dirs)
    }
}

enum Step {
    Dir(Vec<LayerDir>),
    Entry(usize),
    Missing,
}

/// What a name is in one layer's directory.
enum Child {
    Dir(OwnedFd),
    Whiteout,
    Other,
    Missing,
}

/// Looks `name` up in a merged directory.
fn step(dirs: &[LayerDir], name: &str) -> Result<Step, PluginError> {
    if name.starts_with(WHITEOUT_PREFIX) {
        return Ok(Step::Missing);
    }
    let mut merged = Vec::new();
    for dir in dirs {
        let path = dir.path.join(name);
        match child(dir.fd.as_fd(), name, &path)? {
            Child::Whiteout => break,
            Child::Dir(fd) => {
                let opaque = is_opaque(fd.as_fd());
                merged.push(LayerDir { layer: dir.layer, fd, path });
                if opaque {
                    break;
                }
            }
            Child::Other if merged.is_empty() => return Ok(Step::Entry(dir.layer)),
            Child::Other => break,
            Child::Missing => {}
        }
        if has_whiteout(dir.fd.as_fd(), name) {
            break;
        }
    }
    Ok(if merged.is_empty() { Step::Missing } else { Step::Dir(merged) })
}

/// Opens `name` in `dir` if it is a real directory, else tells what it is (lstat).
fn child(dir: BorrowedFd<'_>, name: &str, path: &Path) -> Result<Child, PluginError> {
    match openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => return Ok(Child::Dir(fd)),
        Err(Errno::NOENT) => return Ok(Child::Missing),
        Err(Errno::NOTDIR | Errno::LOOP) => {}
        Err(err) => return Err(PluginError::io("open", path, &err.into())),
    }
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if is_whiteout_device(&stat) => Ok(Child::Whiteout),
        Ok(_) => Ok(Child::Other),
        Err(Errno::NOENT) => Ok(Child::Missing),
        Err(err) => Err(PluginError::io("lstat", path, &err.into())),
    }
}

/// Lists a merged directory: sorted by name, each entry lstat'ed in the topmost layer that has
/// it, whiteouts applied and never shown. Errors read like [`files::list`]'s.
pub fn list_merged(dirs: &[LayerDir]) -> Result<Vec<FileInfo>, PluginError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut entries = Vec::new();
    for dir in dirs {
        let mut shown = Vec::new();
        let mut hidden = Vec::new();
        for (name, stat) in files::read_entries(dir.fd.as_fd(), &dir.path)? {
            if name == OPAQUE_MARKER || seen.contains(&name) {
                continue;
            }
            if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                hidden.push(target.to_owned());
            } else if is_whiteout_device(&stat) {
                hidden.push(name);
            } else {
                entries.push(files::file_info(&name, &stat));
                shown.push(name);
            }
        }
        seen.extend(shown);
        seen.extend(hidden);
    }
    entries.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(entries)
}

/// overlayfs's whiteout: a character device with device number 0/0.
pub fn is_whiteout_device(stat: &Stat) -> bool {
    kind(stat) == FileType::CharacterDevice && stat.st_rdev == 0
}

/// True when `dir` holds an OCI whiteout for `name`.
fn has_whiteout(dir: BorrowedFd<'_>, name: &str) -> bool {
    statat(dir, format!("{WHITEOUT_PREFIX}{name}"), AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// True when the directory `dir` hides the same directory in lower layers.
pub fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    statat(dir, OPAQUE_MARKER, AtFlags::SYMLINK_NOFOLLOW).is_ok() || has_opaque_xattr(dir)
}

fn has_opaque_xattr(dir: BorrowedFd<'_>) -> bool {
    OPAQUE_XATTRS.iter().any(|name| {
        let mut value = [0u8; 2];
        matches!(fgetxattr(dir, *name, &mut value[..]), Ok(1)) && value[0] == b'y'
    })
}
