//! The plugin author's side: plain Rust traits, the adapter that makes them ABI objects, and
//! the [`export_plugin!`](crate::export_plugin) macro.
//!
//! Optional ABI methods (added in a minor ABI version) are trait methods with a default that
//! answers "not supported", so a plugin implements only what it knows.
//!
//! A plugin crate implements [`MetricsPlugin`] and/or [`StoragePlugin`] with ordinary
//! `Result`/`&str`/`Vec` signatures and exports them with one macro call. The adapter wraps
//! every call in `catch_unwind`: a panicking plugin returns a `panicked` error instead of
//! taking the agent down (abi_stable aborts the process on a panic that reaches its glue).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RNone, ROption, RResult, RSliceMut, RSome, RStr, RString, RVec};

use crate::abi::*;

/// A metric provider, written as plain Rust.
pub trait MetricsPlugin: Send + Sync + 'static {
    /// The host sample; `None` when this plugin does not measure the host.
    fn host_stats(&self) -> Result<Option<HostStats>, PluginError> {
        Ok(None)
    }
    /// Latest usage and state of every task this plugin can see, and whether that view is
    /// complete (see [`TaskReport`]). The default covers no tasks.
    fn sample_tasks(&self) -> Result<TaskReport, PluginError> {
        Ok(TaskReport::complete(Vec::new()))
    }
    /// Labels (`job`, `task_group`, `namespace`) of the tasks of the latest sample, where this
    /// plugin knows them; the host puts them on the task's metrics. Optional (ABI 1.1).
    fn task_labels(&self) -> Result<Vec<TaskLabels>, PluginError> {
        Err(PluginError::unsupported("task_labels"))
    }
}

/// An open file handed out by a [`StoragePlugin`].
pub trait FilePlugin: Send + Sync + 'static {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, PluginError>;
    fn identity(&self) -> Result<FileIdentity, PluginError>;
}

/// An allocation storage backend, written as plain Rust. See [`StorageBackend`] for the
/// meaning of each method; [`crate::paths`] implements the sandbox rules they must follow.
pub trait StoragePlugin: Send + Sync + 'static {
    type File: FilePlugin;
    fn alloc_info(&self, alloc_id: &str) -> Result<Option<AllocInfo>, PluginError>;
    fn list_allocs(&self) -> Result<Vec<String>, PluginError>;
    fn list(&self, alloc_id: &str, path: &str) -> Result<Vec<FileInfo>, PluginError>;
    fn stat(&self, alloc_id: &str, path: &str) -> Result<FileInfo, PluginError>;
    fn open(&self, alloc_id: &str, path: &str) -> Result<Self::File, PluginError>;
    fn identify(&self, alloc_id: &str, path: &str) -> Result<FileIdentity, PluginError>;
    fn watch_paths(&self, alloc_id: &str, path: &str) -> Result<Vec<String>, PluginError>;
    fn gc(&self, alloc_id: &str) -> Result<(), PluginError>;
    /// The allocations this backend holds, with their [`AllocInfo`], unless `known_generation` is current (see
    /// [`AllocIndex`]). Optional (ABI 1.1): without it the host asks `alloc_info`.
    fn alloc_index(&self, known_generation: u64) -> Result<AllocIndex, PluginError> {
        let _ = known_generation;
        Err(PluginError::unsupported("alloc_index"))
    }
}

/// A constructor's input: the plugin's `config` block and the host context.
pub struct PluginConfig {
    /// The `config { ... }` block as JSON (`{}` when absent).
    pub json: String,
    pub host: HostContext,
}

impl PluginConfig {
    /// Deserializes the config block; failures become a clear invalid-argument error.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_str(&self.json).map_err(|e| PluginError::invalid(format!("invalid config: {e}")))
    }
}

/// Runs a plugin call, turning a panic into a `panicked` error.
pub fn guard<T>(call: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(result) => result.into(),
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            RResult::RErr(PluginError::new(ErrorKind::PANICKED, format!("plugin panicked: {text}")))
        }
    }
}

struct MetricsAdapter<T>(T);

impl<T: MetricsPlugin> MetricsProvider for MetricsAdapter<T> {
    fn host_stats(&self) -> PluginResult<ROption<HostStats>> {
        guard(|| self.0.host_stats().map(ROption::from))
    }
    fn sample_tasks(&self) -> PluginResult<TaskReport> {
        guard(|| self.0.sample_tasks())
    }
    fn task_labels(&self) -> PluginResult<RVec<TaskLabels>> {
        guard(|| self.0.task_labels().map(RVec::from))
    }
}

struct FileAdapter<F>(F);

impl<F: FilePlugin> FileReader for FileAdapter<F> {
    fn read_at(&self, offset: u64, mut buf: RSliceMut<'_, u8>) -> PluginResult<u64> {
        guard(|| self.0.read_at(offset, buf.as_mut_slice()).map(|n| n as u64))
    }
    fn identity(&self) -> PluginResult<FileIdentity> {
        guard(|| self.0.identity())
    }
}

struct StorageAdapter<S>(S);

impl<S: StoragePlugin> StorageBackend for StorageAdapter<S> {
    fn alloc_info(&self, alloc_id: RStr<'_>) -> PluginResult<ROption<AllocInfo>> {
        guard(|| self.0.alloc_info(alloc_id.as_str()).map(ROption::from))
    }
    fn list_allocs(&self) -> PluginResult<RVec<RString>> {
        guard(|| Ok(self.0.list_allocs()?.into_iter().map(RString::from).collect()))
    }
    fn list(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<RVec<FileInfo>> {
        guard(|| self.0.list(alloc_id.as_str(), path.as_str()).map(RVec::from))
    }
    fn stat(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileInfo> {
        guard(|| self.0.stat(alloc_id.as_str(), path.as_str()))
    }
    fn open(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileReaderBox> {
        guard(|| {
            let file = self.0.open(alloc_id.as_str(), path.as_str())?;
            Ok(FileReader_TO::from_value(FileAdapter(file), TD_Opaque))
        })
    }
    fn identify(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileIdentity> {
        guard(|| self.0.identify(alloc_id.as_str(), path.as_str()))
    }
    fn watch_paths(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<RVec<RString>> {
        guard(|| {
            let paths = self.0.watch_paths(alloc_id.as_str(), path.as_str())?;
            Ok(paths.into_iter().map(RString::from).collect())
        })
    }
    fn gc(&self, alloc_id: RStr<'_>) -> PluginResult<()> {
        guard(|| self.0.gc(alloc_id.as_str()))
    }
    fn alloc_index(&self, known_generation: u64) -> PluginResult<AllocIndex> {
        guard(|| self.0.alloc_index(known_generation))
    }
}

/// Builds a metric provider from a native constructor (used by [`crate::export_plugin!`]).
pub fn construct_metrics<T: MetricsPlugin>(
    config: RStr<'_>,
    host: HostContext,
    new: fn(&PluginConfig) -> Result<T, PluginError>,
) -> PluginResult<ROption<MetricsProviderBox>> {
    install_logger(&host);
    let config = PluginConfig { json: config.as_str().to_owned(), host };
    guard(|| Ok(RSome(MetricsProvider_TO::from_value(MetricsAdapter(new(&config)?), TD_Opaque))))
}

/// Builds a storage backend from a native constructor (used by [`crate::export_plugin!`]).
pub fn construct_storage<S: StoragePlugin>(
    config: RStr<'_>,
    host: HostContext,
    new: fn(&PluginConfig) -> Result<S, PluginError>,
) -> PluginResult<ROption<StorageBackendBox>> {
    install_logger(&host);
    let config = PluginConfig { json: config.as_str().to_owned(), host };
    guard(|| Ok(RSome(StorageBackend_TO::from_value(StorageAdapter(new(&config)?), TD_Opaque))))
}

/// The answer of a library that does not provide the asked-for kind.
pub fn not_provided<T>() -> PluginResult<ROption<T>> {
    RResult::ROk(RNone)
}

/// Forwards this library's `log` records (and panic messages) to the host callback.
struct HostLogger {
    callback: extern "C" fn(LogLevel, RStr<'_>, RStr<'_>),
}

static LOGGER: OnceLock<HostLogger> = OnceLock::new();

impl log::Log for HostLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let level = match record.level() {
            log::Level::Error => LogLevel::ERROR,
            log::Level::Warn => LogLevel::WARN,
            log::Level::Info => LogLevel::INFO,
            log::Level::Debug => LogLevel::DEBUG,
            log::Level::Trace => LogLevel::TRACE,
        };
        let message = record.args().to_string();
        (self.callback)(level, RStr::from(record.target()), RStr::from(message.as_str()));
    }
    fn flush(&self) {}
}

fn install_logger(host: &HostContext) {
    let mut first = false;
    let logger = LOGGER.get_or_init(|| {
        first = true;
        HostLogger { callback: host.log }
    });
    if first {
        let _ = log::set_logger(logger);
        log::set_max_level(log::LevelFilter::Debug);
        let callback = host.log;
        std::panic::set_hook(Box::new(move |info| {
            let message = info.to_string();
            callback(LogLevel::ERROR, RStr::from("panic"), RStr::from(message.as_str()));
        }));
    }
}

/// The descriptor helper used by [`crate::export_plugin!`].
pub fn descriptor(name: &str, version: &str, kinds: PluginKinds) -> PluginDescriptor {
    PluginDescriptor { name: name.into(), version: version.into(), kinds }
}

/// Exports a plugin library's root module.
///
/// ```ignore
/// allocd_plugin_sdk::export_plugin! {
///     name: "my-driver",
///     metrics: MyDriverMetrics::new,   // fn(&PluginConfig) -> Result<MyDriverMetrics, PluginError>
/// }
/// ```
/// `metrics:` and `storage:` may each be given or left out; the plugin version is the crate's.
/// The plugin crate needs `abi_stable` as a dependency (the export attribute names it).
/// The library reports the ABI version of the `allocd-plugin-abi` it was built against.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr $(, metrics: $metrics:path)? $(, storage: $storage:path)? $(,)?) => {
        #[::abi_stable::export_root_module]
        pub fn allocd_plugin_root() -> $crate::PluginModRef {
            use ::abi_stable::prefix_type::PrefixTypeTrait;

            extern "C" fn descriptor() -> $crate::PluginDescriptor {
                #[allow(unused_mut)]
                let mut kinds = $crate::PluginKinds::default();
                $( let _ = $metrics; kinds = kinds.union($crate::PluginKinds::METRICS); )?
                $( let _ = $storage; kinds = kinds.union($crate::PluginKinds::STORAGE); )?
                $crate::author::descriptor($name, env!("CARGO_PKG_VERSION"), kinds)
            }

            extern "C" fn new_metrics(
                config: ::abi_stable::std_types::RStr<'_>,
                host: $crate::HostContext,
            ) -> $crate::PluginResult<::abi_stable::std_types::ROption<$crate::MetricsProviderBox>> {
                let _ = (&config, &host);
                $( return $crate::author::construct_metrics(config, host, $metrics); )?
                #[allow(unreachable_code)]
                $crate::author::not_provided()
            }

            extern "C" fn new_storage(
                config: ::abi_stable::std_types::RStr<'_>,
                host: $crate::HostContext,
            ) -> $crate::PluginResult<::abi_stable::std_types::ROption<$crate::StorageBackendBox>> {
                let _ = (&config, &host);
                $( return $crate::author::construct_storage(config, host, $storage); )?
                #[allow(unreachable_code)]
                $crate::author::not_provided()
            }

            $crate::PluginMod { descriptor, new_metrics, new_storage }.leak_into_prefix()
        }
    };
}
