//! `local-disk`: allocations as Nomad-layout directories under one `alloc_dir`
//! (`<alloc_dir>/<alloc_id>/{alloc/{data,logs,tmp},<task>/{local,secrets,tmp,private}}`), so
//! allocd can serve the same allocations as a Nomad client running beside it.
//!
//! Config: `alloc_dir` (default: the agent's alloc dir). Every user path is resolved beneath
//! the allocation's open directory by [`allocd_plugin_sdk::paths::AllocRoot`], the sandbox all
//! storage backends share, and answered from the descriptor it yields ([`files`]).

use std::path::PathBuf;

use allocd_plugin_sdk::files::{self, LocalFile};
use allocd_plugin_sdk::index;
use allocd_plugin_sdk::paths::{AllocRoot, is_alloc_id};
use allocd_plugin_sdk::remove::Trash;
use allocd_plugin_sdk::{AllocIndex, AllocInfo, FileIdentity, FileInfo, PluginError};
use allocd_plugin_sdk::{PluginConfig, StoragePlugin};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    alloc_dir: Option<PathBuf>,
}

/// The backend: one directory holding allocation directories.
pub struct LocalDisk {
    alloc_dir: PathBuf,
    /// `<alloc_dir>/.allocd-trash`: collected allocations on their way out.
    trash: Trash,
}

impl LocalDisk {
    pub fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let parsed: Config = config.parse()?;
        let alloc_dir = parsed.alloc_dir.unwrap_or_else(|| PathBuf::from(config.host.alloc_dir.as_str()));
        if !alloc_dir.is_dir() {
            return Err(PluginError::invalid(format!("alloc_dir {} is not a directory", alloc_dir.display())));
        }
        log::info!("serving allocations from {}", alloc_dir.display());
        let trash = Trash::start(&alloc_dir)
            .map_err(|e| PluginError::io("create", &alloc_dir.join(allocd_plugin_sdk::remove::TRASH_DIR), &e))?;
        Ok(Self { alloc_dir, trash })
    }

    /// The allocation's root; `not found` when this backend does not hold it.
    fn root(&self, alloc_id: &str) -> Result<AllocRoot, PluginError> {
        let dir = self.alloc_path(alloc_id)?;
        AllocRoot::new(&dir).map_err(|e| PluginError::io("open", &dir, &e))
    }

    fn alloc_path(&self, alloc_id: &str) -> Result<PathBuf, PluginError> {
        if !is_alloc_id(alloc_id) {
            return Err(PluginError::not_found(format!("Unknown allocation {alloc_id:?}")));
        }
        Ok(self.alloc_dir.join(alloc_id))
    }
}

impl StoragePlugin for LocalDisk {
    type File = LocalFile;

    fn alloc_info(&self, alloc_id: &str) -> Result<Option<AllocInfo>, PluginError> {
        let Ok(dir) = self.alloc_path(alloc_id) else { return Ok(None) };
        if !dir.is_dir() {
            return Ok(None);
        }
        // Every task directory gates the GC (each must have been seen by a provider), so an
        // entry that cannot be read is an error, never a task left out.
        let mut tasks = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| PluginError::io("open", &dir, &e))? {
            let entry = entry.map_err(|e| PluginError::io("readdirent", &dir, &e))?;
            let is_dir = match entry.file_type() {
                Ok(kind) => kind.is_dir(),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(PluginError::io("lstat", &entry.path(), &err)),
            };
            if is_dir && entry.file_name() != "alloc" {
                tasks.push(entry.file_name().to_string_lossy().into_owned().into());
            }
        }
        Ok(Some(AllocInfo { namespace: "default".into(), tasks: tasks.into() }))
    }

    fn list_allocs(&self) -> Result<Vec<String>, PluginError> {
        let entries = std::fs::read_dir(&self.alloc_dir).map_err(|e| PluginError::io("open", &self.alloc_dir, &e))?;
        Ok(entries
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| is_alloc_id(name) && self.alloc_dir.join(name).is_dir())
            .collect())
    }

    fn alloc_index(&self, known_generation: u64) -> Result<AllocIndex, PluginError> {
        index::dir_index(&self.alloc_dir, known_generation, || self.list_allocs(), |id| self.alloc_info(id))
    }

    fn list(&self, alloc_id: &str, path: &str) -> Result<Vec<FileInfo>, PluginError> {
        files::list(&self.root(alloc_id)?, path)
    }

    fn stat(&self, alloc_id: &str, path: &str) -> Result<FileInfo, PluginError> {
        files::stat(&self.root(alloc_id)?, path, alloc_id)
    }

    fn open(&self, alloc_id: &str, path: &str) -> Result<LocalFile, PluginError> {
        LocalFile::open(&self.root(alloc_id)?, path)
    }

    fn identify(&self, alloc_id: &str, path: &str) -> Result<FileIdentity, PluginError> {
        files::identify(&self.root(alloc_id)?, path)
    }

    fn watch_paths(&self, alloc_id: &str, path: &str) -> Result<Vec<String>, PluginError> {
        let root = self.root(alloc_id)?;
        let joined = root.resolve(path)?.joined;
        let mut paths = vec![joined.to_string_lossy().into_owned()];
        if let Some(parent) = joined.parent() {
            paths.push(parent.to_string_lossy().into_owned());
        }
        Ok(paths)
    }

    /// Out of sight at once (a rename into the trash); deleted in the background without
    /// following symlinks or crossing mounts ([`allocd_plugin_sdk::remove`]).
    fn gc(&self, alloc_id: &str) -> Result<(), PluginError> {
        let dir = self.alloc_path(alloc_id)?;
        self.trash.discard(&dir, alloc_id).map_err(|e| PluginError::io("remove", &dir, &e))
    }
}

allocd_plugin_sdk::export_plugin! {
    name: "local-disk",
    storage: LocalDisk::new,
}
