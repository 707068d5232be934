//! `pinned-abi-1-0`: a plugin built against plugin ABI 1.0 (the vendored `allocd-plugin-abi`
//! 1.0.0 in `abi/`), as a vendor's binary built for an older allocd would be. It implements the
//! ABI traits directly (the SDK of that release is not vendored) and provides both kinds:
//!
//! * a metric provider reporting each task's RSS from a status file,
//!   `{"allocs": {"<alloc id>": {"<task>": {"rss_bytes": N}}}}`, read on every sample;
//! * a storage backend serving `<alloc_dir>/<alloc id>/` with plain `std::fs` (a test plugin:
//!   it refuses `..` but has none of the SDK's sandbox).
//!
//! Its vtables lack every method ABI 1.1 added, so the current allocd must treat those as
//! "not supported" and serve everything else from it.
//!
//! ```hcl
//! plugin "pinned-abi-1-0" {
//!   path = ".../liballocd_plugin_pinned_abi_1_0.so"
//!   config {
//!     alloc_dir   = "/var/lib/allocd/alloc"
//!     status_file = "/run/driver/status.json"
//!   }
//! }
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use abi_stable::export_root_module;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RNone, ROption, RResult, RSliceMut, RSome, RStr, RString, RVec};
use allocd_plugin_abi::*;
use serde::Deserialize;

/// The plugin's `config { ... }` block.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    alloc_dir: PathBuf,
    status_file: PathBuf,
}

fn parse(config: RStr<'_>) -> Result<Config, PluginError> {
    serde_json::from_str(config.as_str()).map_err(|e| PluginError::invalid(format!("invalid config: {e}")))
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

/// The status file: allocation → task → figures.
#[derive(Deserialize)]
struct Status {
    allocs: BTreeMap<String, BTreeMap<String, TaskStatus>>,
}

#[derive(Deserialize)]
struct TaskStatus {
    rss_bytes: u64,
}

struct Metrics(Config);

impl MetricsProvider for Metrics {
    fn host_stats(&self) -> PluginResult<ROption<HostStats>> {
        RResult::ROk(RNone)
    }

    fn sample_tasks(&self) -> PluginResult<TaskReport> {
        let read = std::fs::read_to_string(&self.0.status_file)
            .map_err(|e| PluginError::unavailable(format!("status file: {e}")))
            .and_then(|text| {
                serde_json::from_str::<Status>(&text).map_err(|e| PluginError::unavailable(e.to_string()))
            });
        let status = match read {
            Ok(status) => status,
            Err(error) => return RResult::RErr(error),
        };
        let timestamp = now_ns();
        let mut tasks = RVec::new();
        for (alloc_id, by_task) in status.allocs {
            for (task, figures) in by_task {
                let memory = MemoryStats {
                    rss: figures.rss_bytes,
                    measured: vec![RString::from("RSS")].into(),
                    ..Default::default()
                };
                let usage = ResourceUsage { memory, cpu: CpuStats::default() };
                let (alloc_id, task) = (alloc_id.clone().into(), task.into());
                tasks.push(TaskSample {
                    alloc_id,
                    task,
                    state: TaskState::RUNNING,
                    timestamp,
                    usage,
                    ..Default::default()
                });
            }
        }
        RResult::ROk(TaskReport { tasks, complete: true })
    }
}

struct Storage(Config);

impl Storage {
    /// `<alloc_dir>/<alloc id>/<path>`, refusing `..`.
    fn resolve(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> Result<PathBuf, PluginError> {
        let relative = Path::new(path.as_str().trim_start_matches('/'));
        if relative.components().any(|c| c == Component::ParentDir) || alloc_id.as_str().contains('/') {
            return Err(PluginError::invalid("Path escapes the alloc directory"));
        }
        Ok(self.0.alloc_dir.join(alloc_id.as_str()).join(relative))
    }

    fn info(name: &str, meta: &std::fs::Metadata) -> FileInfo {
        FileInfo {
            name: name.into(),
            is_dir: meta.is_dir(),
            size: meta.len() as i64,
            mode: meta.mode(),
            mod_time_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            content_type: RString::new(),
        }
    }
}

fn io(op: &str, path: &Path) -> impl FnOnce(std::io::Error) -> PluginError {
    move |e| PluginError::io(op, path, &e)
}

impl StorageBackend for Storage {
    fn alloc_info(&self, alloc_id: RStr<'_>) -> PluginResult<ROption<AllocInfo>> {
        let Ok(dir) = self.resolve(alloc_id, "".into()) else { return RResult::ROk(RNone) };
        let Ok(entries) = std::fs::read_dir(&dir) else { return RResult::ROk(RNone) };
        let mut tasks: Vec<RString> = entries
            .flatten()
            .filter(|e| e.path().is_dir() && e.file_name() != "alloc")
            .map(|e| e.file_name().to_string_lossy().as_ref().into())
            .collect();
        tasks.sort();
        RResult::ROk(RSome(AllocInfo { namespace: "default".into(), tasks: tasks.into() }))
    }

    fn list_allocs(&self) -> PluginResult<RVec<RString>> {
        let entries = std::fs::read_dir(&self.0.alloc_dir).map_err(io("open", &self.0.alloc_dir));
        entries
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().as_ref().into()).collect())
            .into()
    }

    fn list(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<RVec<FileInfo>> {
        let listing = || -> Result<RVec<FileInfo>, PluginError> {
            let dir = self.resolve(alloc_id, path)?;
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(io("open", &dir))?.flatten() {
                let meta = entry.metadata().map_err(io("lstat", &entry.path()))?;
                entries.push(Self::info(&entry.file_name().to_string_lossy(), &meta));
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries.into())
        };
        listing().into()
    }

    fn stat(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileInfo> {
        let stat = || -> Result<FileInfo, PluginError> {
            let file = self.resolve(alloc_id, path)?;
            let meta = std::fs::metadata(&file).map_err(io("stat", &file))?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(Self::info(&name, &meta))
        };
        stat().into()
    }

    fn open(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileReaderBox> {
        let open = || -> Result<FileReaderBox, PluginError> {
            let path = self.resolve(alloc_id, path)?;
            let file = File::open(&path).map_err(io("open", &path))?;
            Ok(FileReader_TO::from_value(Reader(file), TD_Opaque))
        };
        open().into()
    }

    fn identify(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileIdentity> {
        let identify = || -> Result<FileIdentity, PluginError> {
            let path = self.resolve(alloc_id, path)?;
            let meta = std::fs::metadata(&path).map_err(io("stat", &path))?;
            Ok(FileIdentity { device: meta.dev(), inode: meta.ino(), size: meta.len() })
        };
        identify().into()
    }

    fn watch_paths(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<RVec<RString>> {
        self.resolve(alloc_id, path).map(|p| RVec::from(vec![RString::from(p.to_string_lossy().as_ref())])).into()
    }

    fn gc(&self, alloc_id: RStr<'_>) -> PluginResult<()> {
        let remove = || -> Result<(), PluginError> {
            let dir = self.resolve(alloc_id, "".into())?;
            std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))
        };
        remove().into()
    }
}

struct Reader(File);

impl FileReader for Reader {
    fn read_at(&self, offset: u64, mut buf: RSliceMut<'_, u8>) -> PluginResult<u64> {
        self.0
            .read_at(buf.as_mut_slice(), offset)
            .map(|n| n as u64)
            .map_err(|e| PluginError::internal(e.to_string()))
            .into()
    }

    fn identity(&self) -> PluginResult<FileIdentity> {
        let meta = self.0.metadata().map_err(|e| PluginError::internal(e.to_string()));
        meta.map(|meta| FileIdentity { device: meta.dev(), inode: meta.ino(), size: meta.len() }).into()
    }
}

extern "C" fn descriptor() -> PluginDescriptor {
    let kinds = PluginKinds::METRICS.union(PluginKinds::STORAGE);
    PluginDescriptor { name: "pinned-abi-1-0".into(), version: env!("CARGO_PKG_VERSION").into(), kinds }
}

extern "C" fn new_metrics(config: RStr<'_>, _host: HostContext) -> PluginResult<ROption<MetricsProviderBox>> {
    parse(config).map(|config| RSome(MetricsProvider_TO::from_value(Metrics(config), TD_Opaque))).into()
}

extern "C" fn new_storage(config: RStr<'_>, _host: HostContext) -> PluginResult<ROption<StorageBackendBox>> {
    parse(config).map(|config| RSome(StorageBackend_TO::from_value(Storage(config), TD_Opaque))).into()
}

/// The exported root module, as ABI 1.0 defines it.
#[export_root_module]
pub fn allocd_plugin_root() -> PluginModRef {
    PluginMod { descriptor, new_metrics, new_storage }.leak_into_prefix()
}
