//! The plugins an agent runs with, constructed from config, and typed async access to them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use abi_stable::std_types::{ROption, RSliceMut, RStr, RString, RVec};
use allocd_plugin_abi::{
    AllocIndex, AllocInfo, ErrorKind, FileIdentity, FileInfo, FileReaderBox, HostContext, HostStats, LogLevel,
    MetricsProviderBox, PluginKinds, StorageBackendBox, TaskLabels, TaskReport,
};
use bytes::Bytes;

use super::call::{Caller, PluginFailure};
use super::loader;
use super::read_buffer;
use crate::config::PluginSpec;
use crate::telemetry::own::CallStats;

/// A constructed metric provider.
pub struct MetricsPlugin {
    provider: Arc<MetricsProviderBox>,
    caller: Caller,
    /// Set once the provider answered that it does not support `task_labels` (a library built
    /// against ABI 1.0, or one that leaves the method out): it is not asked again.
    labels_unsupported: AtomicBool,
}

/// A constructed storage backend.
pub struct StoragePlugin {
    backend: Arc<StorageBackendBox>,
    caller: Caller,
}

/// An open file of a storage backend, read through the backend's call policy.
#[derive(Clone)]
pub struct OpenFile {
    reader: Arc<FileReaderBox>,
    caller: Caller,
    /// The allocation the file belongs to (a read stuck on it holds back only it).
    alloc_id: Arc<str>,
}

/// Every plugin instance of the agent.
#[derive(Default)]
pub struct Registry {
    pub metrics: Vec<MetricsPlugin>,
    pub storage: Vec<StoragePlugin>,
    /// One call policy per loaded library, for its call statistics.
    libraries: Vec<Caller>,
}

impl Registry {
    /// Loads every configured plugin; the error is one line naming the plugin and file.
    pub fn load(specs: &[PluginSpec], plugin_dir: &Path, host: &HostContext) -> Result<Self, String> {
        let mut registry = Registry::default();
        for spec in specs {
            let path = spec.path.clone().unwrap_or_else(|| plugin_dir.join(loader::library_file_name(&spec.name)));
            let library = loader::open(&path).map_err(|e| format!("plugin {:?}: {e}", spec.name))?;
            let kinds = library.descriptor.kinds;
            tracing::info!(
                plugin = %spec.name, library = %path.display(), version = %library.descriptor.version, abi = %library.abi_version,
                kinds = ?kinds.names(), "loaded plugin"
            );
            let caller = Caller::new(&spec.name, spec.max_concurrency, spec.timeout);
            registry.libraries.push(caller.clone());
            let config = RStr::from(spec.config_json.as_str());
            let rejected = |e: allocd_plugin_abi::PluginError| {
                format!("plugin {:?} ({}): rejected its config: {}", spec.name, path.display(), e.message)
            };
            if kinds.contains(PluginKinds::METRICS) {
                let made = (library.module.new_metrics())(config, host.clone()).into_result().map_err(rejected)?;
                if let ROption::RSome(provider) = made {
                    let (provider, caller) = (Arc::new(provider), caller.with_own_health());
                    registry.metrics.push(MetricsPlugin {
                        provider,
                        caller,
                        labels_unsupported: AtomicBool::new(false),
                    });
                }
            }
            if kinds.contains(PluginKinds::STORAGE) {
                let made = (library.module.new_storage())(config, host.clone()).into_result().map_err(rejected)?;
                if let ROption::RSome(backend) = made {
                    registry
                        .storage
                        .push(StoragePlugin { backend: Arc::new(backend), caller: caller.with_own_health() });
                }
            }
        }
        Ok(registry)
    }

    /// Each loaded plugin's name and call statistics, in config order.
    pub fn call_stats(&self) -> impl Iterator<Item = (&str, &CallStats)> {
        self.libraries.iter().map(|caller| (caller.plugin(), caller.stats().as_ref()))
    }

    /// Why each unhealthy service is unhealthy: one line per service whose calls fail at once.
    pub fn outages(&self) -> Vec<String> {
        let metrics = self.metrics.iter().map(|p| (&p.caller, "metric provider"));
        let storage = self.storage.iter().map(|p| (&p.caller, "storage backend"));
        metrics
            .chain(storage)
            .filter_map(|(caller, kind)| Some(format!("plugin {:?} {kind}: {}", caller.plugin(), caller.outage()?)))
            .collect()
    }
}

impl MetricsPlugin {
    pub fn name(&self) -> &str {
        self.caller.plugin()
    }
    pub async fn host_stats(&self) -> Result<Option<HostStats>, PluginFailure> {
        self.caller.call(&self.provider, |p| p.host_stats()).await.map(ROption::into_option)
    }
    pub async fn sample_tasks(&self) -> Result<TaskReport, PluginFailure> {
        self.caller.call(&self.provider, |p| p.sample_tasks()).await
    }
    /// The labels the provider knows of its tasks; none from a provider without the method.
    pub async fn task_labels(&self) -> Result<Vec<TaskLabels>, PluginFailure> {
        if self.labels_unsupported.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        match self.caller.call(&self.provider, |p| p.task_labels()).await {
            Err(failure) if failure.kind() == ErrorKind::UNSUPPORTED => {
                tracing::debug!(plugin = self.name(), "provides no task labels: {}", failure.message());
                self.labels_unsupported.store(true, Ordering::Relaxed);
                Ok(Vec::new())
            }
            answer => answer.map(RVec::into_vec),
        }
    }
}

impl StoragePlugin {
    pub fn name(&self) -> &str {
        self.caller.plugin()
    }
    pub async fn alloc_info(&self, alloc_id: &str) -> Result<Option<AllocInfo>, PluginFailure> {
        let id = alloc_id.to_owned();
        let call = move |b: &StorageBackendBox| b.alloc_info(id.as_str().into());
        self.caller.call_for(alloc_id, &self.backend, call).await.map(ROption::into_option)
    }
    /// The backend's allocations unless `known_generation` is still current (ABI 1.1,
    /// optional: an older library answers `UNSUPPORTED`).
    pub async fn alloc_index(&self, known_generation: u64) -> Result<AllocIndex, PluginFailure> {
        self.caller.call(&self.backend, move |b| b.alloc_index(known_generation)).await
    }
    pub async fn list_allocs(&self) -> Result<Vec<String>, PluginFailure> {
        let ids = self.caller.call(&self.backend, |b| b.list_allocs()).await?;
        Ok(ids.into_iter().map(RString::into_string).collect())
    }
    pub async fn list(&self, alloc_id: &str, path: &str) -> Result<Vec<FileInfo>, PluginFailure> {
        let (id, path) = (alloc_id.to_owned(), path.to_owned());
        self.caller
            .call_for(alloc_id, &self.backend, move |b| b.list(id.as_str().into(), path.as_str().into()))
            .await
            .map(RVec::into_vec)
    }
    pub async fn stat(&self, alloc_id: &str, path: &str) -> Result<FileInfo, PluginFailure> {
        let (id, path) = (alloc_id.to_owned(), path.to_owned());
        self.caller.call_for(alloc_id, &self.backend, move |b| b.stat(id.as_str().into(), path.as_str().into())).await
    }
    pub async fn open(&self, alloc_id: &str, path: &str) -> Result<OpenFile, PluginFailure> {
        let (id, path) = (alloc_id.to_owned(), path.to_owned());
        let call = move |b: &StorageBackendBox| b.open(id.as_str().into(), path.as_str().into());
        let reader = self.caller.call_for(alloc_id, &self.backend, call).await?;
        Ok(OpenFile { reader: Arc::new(reader), caller: self.caller.clone(), alloc_id: alloc_id.into() })
    }
    pub async fn identify(&self, alloc_id: &str, path: &str) -> Result<FileIdentity, PluginFailure> {
        let (id, path) = (alloc_id.to_owned(), path.to_owned());
        let call = move |b: &StorageBackendBox| b.identify(id.as_str().into(), path.as_str().into());
        self.caller.call_for(alloc_id, &self.backend, call).await
    }
    pub async fn watch_paths(&self, alloc_id: &str, path: &str) -> Result<Vec<String>, PluginFailure> {
        let (id, path) = (alloc_id.to_owned(), path.to_owned());
        let call = move |b: &StorageBackendBox| b.watch_paths(id.as_str().into(), path.as_str().into());
        let paths = self.caller.call_for(alloc_id, &self.backend, call).await?;
        Ok(paths.into_iter().map(RString::into_string).collect())
    }
    pub async fn gc(&self, alloc_id: &str) -> Result<(), PluginFailure> {
        let id = alloc_id.to_owned();
        self.caller.call_changing(alloc_id, &self.backend, move |b| b.gc(id.as_str().into())).await
    }
}

impl OpenFile {
    /// Reads up to `len` bytes at `offset`; no bytes means end of file.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, PluginFailure> {
        self.caller
            .call_for(&self.alloc_id, &self.reader, move |r| {
                read_buffer::read_into(len, |buf| r.read_at(offset, RSliceMut::from_mut_slice(buf)).into_result())
                    .into()
            })
            .await
    }
    pub async fn identity(&self) -> Result<FileIdentity, PluginFailure> {
        self.caller.call_for(&self.alloc_id, &self.reader, |r| r.identity()).await
    }
}

/// The logging callback handed to plugins: their records become tracing events.
pub extern "C" fn plugin_log(level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
    let (target, message) = (target.as_str(), message.as_str());
    match level {
        LogLevel::ERROR => tracing::error!(plugin_target = target, "{message}"),
        LogLevel::WARN => tracing::warn!(plugin_target = target, "{message}"),
        LogLevel::INFO => tracing::info!(plugin_target = target, "{message}"),
        LogLevel::DEBUG => tracing::debug!(plugin_target = target, "{message}"),
        _ => tracing::trace!(plugin_target = target, "{message}"),
    }
}
