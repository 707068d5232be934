//! The allocd plugin test kit: load a *built* plugin library in-process the way allocd does
//! and call it the way allocd calls it, so a plugin's own tests see what the agent will see.
//!
//! * [`Library::open`] runs the host's checks (the same [`compat`] code): root module name,
//!   ABI version (same major, a minor no newer than this kit's), and the layout of that minor.
//! * [`Library::metrics`] / [`Library::storage`] construct a kind with a `config` block given
//!   as JSON, as the agent does at startup.
//! * [`Service::call`] runs one call on its own thread with a timeout: a panic the SDK caught
//!   comes back as [`ErrorKind::PANICKED`], a call that does not return in time as
//!   [`ErrorKind::UNAVAILABLE`] ("call timed out after ..."), exactly the failures the agent
//!   records. [`Failure::is_plugin_fault`] and [`Failure::describe`] say how the agent answers
//!   a failure: a fault of the plugin becomes `500 plugin "<name>": <message>`, any other kind
//!   is an answer about the request and keeps the plugin's text (`docs/plugin-abi.md`).
//! * [`exercise`] calls every method of every kind a library provides and returns a
//!   [`Report`]; [`Report::assert_contained`] fails a test on a panic or a timeout.
//!
//! ```no_run
//! let library = allocd_plugin_testkit::Library::open(allocd_plugin_testkit::library_path("my-driver")).unwrap();
//! let report = allocd_plugin_testkit::exercise(&library, &serde_json::json!({ "status_file": "s.json" }));
//! report.assert_contained();
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use abi_stable::library::lib_header_from_path;
use abi_stable::std_types::{ROption, RSliceMut, RStr};
pub use allocd_plugin_abi::compat::{self, AbiVersion, OptionalMethod};
pub use allocd_plugin_abi::*;

/// The agent's default per-call timeout (`timeout` in a plugin block).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A plugin library that passed the agent's checks.
pub struct Library {
    pub path: PathBuf,
    pub module: PluginModRef,
    pub descriptor: PluginDescriptor,
    /// The ABI version the library was built against.
    pub abi_version: AbiVersion,
    /// The optional methods its vtables have.
    pub optional_methods: Vec<OptionalMethod>,
}

/// `liballocd_plugin_<name>.so` in the build output directory of the running test (the
/// `target/<profile>` beside its `deps/`), where `cargo build` puts plugin libraries.
pub fn library_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let deps = exe.parent().expect("the test binary is in a directory");
    let profile_dir = if deps.ends_with("deps") { deps.parent().unwrap_or(deps) } else { deps };
    profile_dir.join(format!("liballocd_plugin_{}.so", name.replace('-', "_")))
}

/// A host context as the agent builds it, with a log callback that prints to stderr (the test
/// output) and the given directories.
pub fn host_context(data_dir: &Path, alloc_dir: &Path) -> HostContext {
    extern "C" fn log(level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        eprintln!("plugin log [{}] {target}: {message}", level.0);
    }
    HostContext {
        log,
        data_dir: data_dir.to_string_lossy().as_ref().into(),
        alloc_dir: alloc_dir.to_string_lossy().as_ref().into(),
    }
}

impl Library {
    /// Opens a library with the agent's checks; the error is the agent's one line.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, String> {
        let path = path.as_ref();
        let shown = path.display();
        let header = lib_header_from_path(path).map_err(|err| format!("{shown}: cannot be loaded: {err}"))?;
        let name = header.root_mod_consts().name();
        if name != compat::module_name() {
            return Err(format!("{shown}: not an allocd plugin (it exports the {name:?} module)"));
        }
        let (abi_version, module) = compat::load_root_module(header).map_err(|reason| format!("{shown}: {reason}"))?;
        let descriptor = (module.descriptor())();
        let optional_methods = compat::provided_methods(header);
        Ok(Self { path: path.to_path_buf(), module, descriptor, abi_version, optional_methods })
    }

    /// Constructs the metric provider with `config` (the plugin block's `config { }`), or `None`
    /// when the library provides no metrics.
    pub fn metrics(
        &self,
        config: &serde_json::Value,
        host: HostContext,
    ) -> Result<Option<Service<MetricsProviderBox>>, Failure> {
        let made = (self.module.new_metrics())(config.to_string().as_str().into(), host);
        self.service(made)
    }

    /// Constructs the storage backend with `config`, or `None` when the library has none.
    pub fn storage(
        &self,
        config: &serde_json::Value,
        host: HostContext,
    ) -> Result<Option<Service<StorageBackendBox>>, Failure> {
        let made = (self.module.new_storage())(config.to_string().as_str().into(), host);
        self.service(made)
    }

    fn service<T>(&self, made: PluginResult<ROption<T>>) -> Result<Option<Service<T>>, Failure> {
        let plugin = self.descriptor.name.to_string();
        match made.into_result() {
            Ok(target) => Ok(target.into_option().map(|target| Service {
                target: Arc::new(target),
                plugin,
                timeout: DEFAULT_TIMEOUT,
            })),
            Err(error) => Err(Failure { plugin, error }),
        }
    }
}

/// A constructed plugin service, called as the agent calls it.
pub struct Service<T> {
    target: Arc<T>,
    plugin: String,
    timeout: Duration,
}

impl<T: Send + Sync + 'static> Service<T> {
    /// The same service with another call timeout (the plugin block's `timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs one call on its own thread, as the agent runs it on its blocking pool; a call that
    /// does not return within the timeout is left running and fails as the agent fails it.
    pub fn call<R: Send + 'static>(
        &self,
        call: impl FnOnce(&T) -> PluginResult<R> + Send + 'static,
    ) -> Result<R, Failure> {
        let (sender, receiver) = mpsc::channel();
        let target = Arc::clone(&self.target);
        std::thread::spawn(move || {
            let _ = sender.send(call(&target).into_result());
        });
        let error = match receiver.recv_timeout(self.timeout) {
            Ok(result) => return result.map_err(|error| self.failure(error)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                PluginError::unavailable(format!("call timed out after {:?}", self.timeout))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                PluginError::new(ErrorKind::PANICKED, "plugin call failed: the call's thread panicked")
            }
        };
        Err(self.failure(error))
    }

    fn failure(&self, error: PluginError) -> Failure {
        Failure { plugin: self.plugin.clone(), error }
    }
}

/// A failed call, naming the plugin, as the agent records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub plugin: String,
    pub error: PluginError,
}

impl Failure {
    pub fn kind(&self) -> ErrorKind {
        self.error.kind
    }
    /// A failure of the plugin itself: the agent answers 500 with [`Failure::describe`].
    pub fn is_plugin_fault(&self) -> bool {
        self.error.kind.is_plugin_fault()
    }
    /// The agent's text for a plugin fault: `plugin "<name>": <message>`.
    pub fn describe(&self) -> String {
        format!("plugin {:?}: {}", self.plugin, self.error.message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.describe(), self.error.kind.name())
    }
}

/// What [`exercise`] saw: one line per call, `method: outcome`.
#[derive(Debug, Default)]
pub struct Report {
    pub plugin: String,
    pub calls: Vec<(String, Result<String, Failure>)>,
}

impl Report {
    fn record<R>(&mut self, method: &str, result: &Result<R, Failure>, summary: impl FnOnce(&R) -> String) {
        self.calls.push((method.to_string(), result.as_ref().map(summary).map_err(Clone::clone)));
    }

    /// The calls that panicked or timed out.
    pub fn uncontained(&self) -> Vec<String> {
        let bad = |failure: &Failure| {
            matches!(failure.kind(), ErrorKind::PANICKED) || failure.error.message.contains("timed out")
        };
        self.calls
            .iter()
            .filter_map(|(method, result)| result.as_ref().err().filter(|f| bad(f)).map(|f| format!("{method}: {f}")))
            .collect()
    }

    /// The outcome of `method`'s first call, if it was called.
    pub fn outcome(&self, method: &str) -> Option<&Result<String, Failure>> {
        self.calls.iter().find(|(called, _)| called == method).map(|(_, result)| result)
    }

    /// Panics, listing every call, unless no call panicked or timed out.
    pub fn assert_contained(&self) {
        let uncontained = self.uncontained();
        assert!(uncontained.is_empty(), "plugin {:?}: {uncontained:?}\n{self}", self.plugin);
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (method, result) in &self.calls {
            match result {
                Ok(summary) => writeln!(f, "{method}: ok: {summary}")?,
                Err(failure) => writeln!(f, "{method}: {failure}")?,
            }
        }
        Ok(())
    }
}

/// An allocation ID no backend holds, for the calls that need one.
pub const UNKNOWN_ALLOC: &str = "00000000-0000-4000-8000-000000000000";

/// Constructs every kind the library provides with `config` (directories: a fresh temporary
/// one) and calls every method once: the metric provider's, and the storage backend's on the
/// first allocation it lists (or an unknown one), `gc` only on an unknown allocation.
pub fn exercise(library: &Library, config: &serde_json::Value) -> Report {
    let dir = std::env::temp_dir();
    exercise_with(library, config, host_context(&dir, &dir))
}

/// [`exercise`] with the host context to construct with.
pub fn exercise_with(library: &Library, config: &serde_json::Value, host: HostContext) -> Report {
    let mut report = Report { plugin: library.descriptor.name.to_string(), calls: Vec::new() };
    let kinds = library.descriptor.kinds;
    if kinds.contains(PluginKinds::METRICS) {
        match library.metrics(config, host.clone()) {
            Ok(Some(metrics)) => exercise_metrics(&metrics, &mut report),
            Ok(None) => report.calls.push(("new_metrics".into(), Ok("none".into()))),
            Err(failure) => report.calls.push(("new_metrics".into(), Err(failure))),
        }
    }
    if kinds.contains(PluginKinds::STORAGE) {
        match library.storage(config, host) {
            Ok(Some(storage)) => exercise_storage(&storage, &mut report),
            Ok(None) => report.calls.push(("new_storage".into(), Ok("none".into()))),
            Err(failure) => report.calls.push(("new_storage".into(), Err(failure))),
        }
    }
    report
}

fn exercise_metrics(metrics: &Service<MetricsProviderBox>, report: &mut Report) {
    let host = metrics.call(|m| m.host_stats());
    report.record("host_stats", &host, |stats| if stats.is_some() { "a sample" } else { "none" }.to_string());
    let tasks = metrics.call(|m| m.sample_tasks());
    report.record("sample_tasks", &tasks, |r| format!("{} tasks, complete: {}", r.tasks.len(), r.complete));
    let labels = metrics.call(|m| m.task_labels());
    report.record("task_labels", &labels, |labels| format!("{} tasks labelled", labels.len()));
}

fn exercise_storage(storage: &Service<StorageBackendBox>, report: &mut Report) {
    let index = storage.call(|s| s.alloc_index(0));
    report.record("alloc_index", &index, |index| match index.allocs.as_ref().into_option() {
        Some(allocs) => format!("{} allocations", allocs.len()),
        None => "unchanged".to_string(),
    });
    let allocs = storage.call(|s| s.list_allocs());
    report.record("list_allocs", &allocs, |ids| format!("{} allocations", ids.len()));
    let alloc = allocs.ok().and_then(|ids| ids.first().map(|id| id.to_string())).unwrap_or(UNKNOWN_ALLOC.to_string());
    let id = alloc.clone();
    let info = storage.call(move |s| s.alloc_info(id.as_str().into()));
    report.record("alloc_info", &info, |info| if info.is_some() { "held" } else { "not held" }.to_string());
    let id = alloc.clone();
    let listing = storage.call(move |s| s.list(id.as_str().into(), "/".into()));
    report.record("list", &listing, |entries| format!("{} entries", entries.len()));
    let id = alloc.clone();
    let stat = storage.call(move |s| s.stat(id.as_str().into(), "/".into()));
    report.record("stat", &stat, |info| format!("is_dir: {}", info.is_dir));
    let file = listing.ok().and_then(|entries| entries.iter().find(|e| !e.is_dir).map(|e| format!("/{}", e.name)));
    let path = file.unwrap_or_else(|| "/no-such-file".to_string());
    let (id, at) = (alloc.clone(), path.clone());
    let identity = storage.call(move |s| s.identify(id.as_str().into(), at.as_str().into()));
    report.record("identify", &identity, |identity| format!("size {}", identity.size));
    let (id, at) = (alloc.clone(), path.clone());
    let watched = storage.call(move |s| s.watch_paths(id.as_str().into(), at.as_str().into()));
    report.record("watch_paths", &watched, |paths| format!("{} paths", paths.len()));
    let (id, at) = (alloc.clone(), path);
    let opened = storage.call(move |s| s.open(id.as_str().into(), at.as_str().into()));
    report.record("open", &opened, |_| "open".to_string());
    if let Ok(file) = opened {
        let file = Service { target: Arc::new(file), plugin: storage.plugin.clone(), timeout: storage.timeout };
        let read = file.call(|f| {
            let mut buf = vec![0u8; 4096];
            f.read_at(0, RSliceMut::from_mut_slice(&mut buf))
        });
        report.record("read_at", &read, |n| format!("{n} bytes"));
        let identity = file.call(|f| f.identity());
        report.record("file identity", &identity, |identity| format!("size {}", identity.size));
    }
    let gc = storage.call(|s| s.gc(UNKNOWN_ALLOC.into()));
    report.record("gc (unknown allocation)", &gc, |_| "deleted".to_string());
}
