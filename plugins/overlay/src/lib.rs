//! `overlay`: each allocation is the merged view of read-only lower layers and its own writable
//! upper layer, resolved the way overlayfs and OCI image layers do, without mounting anything.
//!
//! # Layers
//!
//! Config (see [`config`]): `upper_dir` (required) and `lower_dirs` (optional, shared by every
//! allocation, topmost first). An allocation exists in this backend iff its id is a full UUID and
//! `<upper_dir>/<alloc_id>` is a directory (a symlink to one counts); that directory is its
//! writable layer. Its stack, topmost first:
//!
//! 1. `<upper_dir>/<alloc_id>` — the upper layer;
//! 2. the extra lower layers listed in `<upper_dir>/<alloc_id>.lower`, if that file exists: one
//!    absolute directory per line, topmost first, blank lines and `#` comments ignored. They sit
//!    *above* the shared layers, so one allocation can carry its own image on top of (or instead
//!    of, with an empty `lower_dirs`) the common base;
//! 3. the shared `lower_dirs`.
//!
//! Every layer has the shape of an allocation root: with Nomad's layout, `alloc/logs/...` and
//! `<task>/local/...`; with a container, its root filesystem. Merging, whiteouts (OCI `.wh.`
//! files and overlayfs 0/0 character devices), opaque directories and how symlinks are treated
//! are described in [`layers`]. Each layer is sandboxed on its own with
//! [`allocd_plugin_sdk::paths::AllocRoot`]: a `..` escape or a symlink leaving the layer it lives
//! in is refused with `Path escapes the alloc directory`, and reading below `<task>/secrets` or
//! `<task>/private` is refused as in local-disk. A path that is absent or whited out is not
//! found with Go's text, naming the path joined onto the upper layer
//! (`stat <upper_dir>/<alloc_id>/<path>: no such file or directory`).
//!
//! Answers: `list` merges entries (lstat of the topmost layer that has each name), `stat` and
//! `open` use the topmost layer that has the path, `identify` reports the file currently
//! resolved (so a copy-up into the upper layer looks like a replaced file to a follower),
//! `watch_paths` names the upper-layer path and its parent (where a task writes) plus the lower
//! path actually resolved, `alloc_info` lists the merged top-level directories other than
//! `alloc` as tasks (namespace `default`), and `gc` deletes `<upper_dir>/<alloc_id>` and its
//! `.lower` file, never a lower layer (a symlinked upper layer loses the link, not its target).
//!
//! # Real use: browsing a Docker container's overlay2 layers
//!
//! Docker's overlay2 driver keeps a container's filesystem as overlayfs layers. They can be
//! served as an allocation, even while the container is stopped and its merged mount is gone:
//!
//! ```sh
//! ctr=web
//! docker inspect -f '{{json .GraphDriver.Data}}' "$ctr"
//! # {"LowerDir":"/var/lib/docker/overlay2/<c>-init/diff:/var/lib/docker/overlay2/<l2>/diff:...",
//! #  "MergedDir":"/var/lib/docker/overlay2/<c>/merged",
//! #  "UpperDir":"/var/lib/docker/overlay2/<c>/diff","WorkDir":"/var/lib/docker/overlay2/<c>/work"}
//! id=$(cat /proc/sys/kernel/random/uuid)          # the allocation id to serve it as
//! up=/var/lib/allocd/overlay                       # this plugin's upper_dir
//! # UpperDir becomes the allocation's upper layer (a symlink, or `mount --bind` onto a dir):
//! ln -s "$(docker inspect -f '{{.GraphDriver.Data.UpperDir}}' "$ctr")" "$up/$id"
//! # LowerDir is colon-separated, topmost first, as overlayfs takes it: one line per layer.
//! docker inspect -f '{{.GraphDriver.Data.LowerDir}}' "$ctr" | tr ':' '\n' > "$up/$id.lower"
//! curl "localhost:4646/v1/client/fs/ls/$id?path=/etc"
//! ```
//!
//! with `plugin "overlay" { config { upper_dir = "/var/lib/allocd/overlay" } }` (no shared
//! `lower_dirs`: each container brings its own image layers). Things to know:
//!
//! * overlay2 records deletions as character devices 0/0 in the upper dir; image layers pulled
//!   from a registry use OCI `.wh.` files. Both are whiteouts here.
//! * overlayfs marks a directory that was deleted and re-created with the
//!   `trusted.overlay.opaque=y` xattr. It is honoured when readable, which for `trusted.*`
//!   means allocd runs with CAP_SYS_ADMIN (as root, which reading `/var/lib/docker` needs
//!   anyway); otherwise such a directory shows its old lower content too. `redirect_dir` and
//!   `metacopy` xattrs are not interpreted (Docker does not enable them by default).
//! * Symlinks stay inside the layer that holds them, and absolute ones point outside it, so
//!   `/var/run -> /run` is refused as an escape; `lib -> usr/lib` works but reads the layer of
//!   the link alone. Reads below `/<dir>/secrets` (such as Docker's `/run/secrets`) are refused.
//! * Every top-level directory of the root filesystem (`bin`, `etc`, ...) reports as a "task".
//! * GC of that allocation removes the symlink and the `.lower` file; Docker's data stays.
//!
//! Everything is read-only and stateless: each call rebuilds the stack (and re-reads the
//! `.lower` file), so layers can be added or swapped while the agent runs.

pub mod config;
pub mod layers;

use allocd_plugin_sdk::files::{self, LocalFile};
use allocd_plugin_sdk::index;
use allocd_plugin_sdk::paths::{check_readable, is_alloc_id};
use allocd_plugin_sdk::remove::Trash;
use allocd_plugin_sdk::{AllocIndex, AllocInfo, FileIdentity, FileInfo, PluginError};
use allocd_plugin_sdk::{PluginConfig, StoragePlugin};

use crate::config::{Config, Settings};
use crate::layers::{Target, list_merged};

/// The backend: shared lower layers plus one directory of per-allocation upper layers.
#[derive(Debug)]
pub struct Overlay {
    settings: Settings,
    /// `<upper_dir>/.allocd-trash`: collected upper layers on their way out.
    trash: Trash,
}

impl Overlay {
    pub fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let parsed: Config = config.parse()?;
        let settings = Settings::new(parsed)?;
        log::info!(
            "serving allocations from upper layers in {} over {} shared lower layer(s)",
            settings.upper_dir().display(),
            settings.shared_layers().len()
        );
        let upper = settings.upper_dir();
        let trash = Trash::start(upper)
            .map_err(|e| PluginError::io("create", &upper.join(allocd_plugin_sdk::remove::TRASH_DIR), &e))?;
        Ok(Self { settings, trash })
    }
}

impl StoragePlugin for Overlay {
    type File = LocalFile;

    fn alloc_info(&self, alloc_id: &str) -> Result<Option<AllocInfo>, PluginError> {
        if !self.settings.alloc_dir(alloc_id).is_some_and(|dir| dir.is_dir()) {
            return Ok(None);
        }
        let stack = self.settings.stack(alloc_id)?;
        let Target::Dir(dirs) = stack.lookup("/")?.target else {
            return Err(PluginError::internal(format!(
                "overlay: the root of allocation {alloc_id} is not a directory"
            )));
        };
        let tasks = list_merged(&dirs)?
            .into_iter()
            .filter(|entry| entry.is_dir && entry.name.as_str() != "alloc")
            .map(|entry| entry.name)
            .collect();
        Ok(Some(AllocInfo { namespace: "default".into(), tasks }))
    }

    fn list_allocs(&self) -> Result<Vec<String>, PluginError> {
        let upper_dir = self.settings.upper_dir();
        let entries = std::fs::read_dir(upper_dir).map_err(|e| PluginError::io("open", upper_dir, &e))?;
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| is_alloc_id(name) && upper_dir.join(name).is_dir())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn alloc_index(&self, known_generation: u64) -> Result<AllocIndex, PluginError> {
        index::dir_index(self.settings.upper_dir(), known_generation, || self.list_allocs(), |id| self.alloc_info(id))
    }

    fn list(&self, alloc_id: &str, path: &str) -> Result<Vec<FileInfo>, PluginError> {
        let stack = self.settings.stack(alloc_id)?;
        let lookup = stack.lookup(path)?;
        match &lookup.target {
            Target::Dir(dirs) => list_merged(dirs),
            _ => files::list(stack.serving(&lookup, "open")?, path),
        }
    }

    fn stat(&self, alloc_id: &str, path: &str) -> Result<FileInfo, PluginError> {
        let stack = self.settings.stack(alloc_id)?;
        let lookup = stack.lookup(path)?;
        files::stat(stack.serving(&lookup, "stat")?, path, alloc_id)
    }

    fn open(&self, alloc_id: &str, path: &str) -> Result<LocalFile, PluginError> {
        let stack = self.settings.stack(alloc_id)?;
        let lookup = stack.lookup(path)?;
        // Refused by the path as given even where it is missing; LocalFile::open also checks
        // where the serving layer's symlinks lead.
        check_readable(path, &lookup.components)?;
        LocalFile::open(stack.serving(&lookup, "open")?, path)
    }

    fn identify(&self, alloc_id: &str, path: &str) -> Result<FileIdentity, PluginError> {
        let stack = self.settings.stack(alloc_id)?;
        let lookup = stack.lookup(path)?;
        files::identify(stack.serving(&lookup, "stat")?, path)
    }

    fn watch_paths(&self, alloc_id: &str, path: &str) -> Result<Vec<String>, PluginError> {
        let stack = self.settings.stack(alloc_id)?;
        let lookup = stack.lookup(path)?;
        let mut paths = vec![lookup.upper_path.to_string_lossy().into_owned()];
        if let Some(parent) = lookup.upper_path.parent() {
            paths.push(parent.to_string_lossy().into_owned());
        }
        if let Some(resolved) = lookup.path().filter(|resolved| *resolved != lookup.upper_path) {
            paths.push(resolved.to_string_lossy().into_owned());
        }
        Ok(paths)
    }

    fn gc(&self, alloc_id: &str) -> Result<(), PluginError> {
        let dir = self
            .settings
            .alloc_dir(alloc_id)
            .ok_or_else(|| PluginError::not_found(format!("Unknown allocation {alloc_id:?}")))?;
        // Out of sight at once; deleted in the background without following symlinks (a
        // symlinked upper layer loses only the link) or crossing mounts.
        self.trash.discard(&dir, alloc_id).map_err(|e| PluginError::io("remove", &dir, &e))?;
        let lower_file = self.settings.lower_file(alloc_id);
        match std::fs::remove_file(&lower_file) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(PluginError::io("remove", &lower_file, &err));
            }
            _ => {}
        }
        log::info!("deleted the upper layer of allocation {alloc_id}");
        Ok(())
    }
}

allocd_plugin_sdk::export_plugin! {
    name: "overlay",
    storage: Overlay::new,
}
