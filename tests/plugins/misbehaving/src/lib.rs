//! `misbehaving`: a plugin that fails on purpose, so the end-to-end tests can show that a bad
//! plugin costs one request, never the agent.
//!
//! One library provides both kinds; its `config { mode = "..." }` picks the failure:
//!
//! | mode            | storage backend                          | metric provider                  |
//! |-----------------|------------------------------------------|----------------------------------|
//! | `ok` (default)  | holds nothing (`alloc_info` → `None`)    | reports nothing                  |
//! | `panic`         | every call panics                        | reports nothing                  |
//! | `hang`          | every call sleeps forever                | reports nothing                  |
//! | `panic-metrics` | holds nothing                            | `host_stats`/`sample_tasks` panic |
//! | `reject`        | the constructor refuses the config       | the constructor refuses the config |
//!
//! The metric side is inert outside `panic-metrics` so each test exercises one failure only.
//! `config { while_exists = "/path" }` limits `panic-metrics` to while that file exists, so a
//! test can make the plugin recover. `config { hang_for = "<alloc ID>" }` makes the storage
//! backend's calls about that one allocation sleep forever (a file on a hung mount), whatever
//! the mode.

use allocd_plugin_sdk::{AllocInfo, FileIdentity, FileInfo, HostStats, PluginError, TaskReport};
use allocd_plugin_sdk::{FilePlugin, MetricsPlugin, PluginConfig, StoragePlugin};
use serde::Deserialize;

/// The failure a plugin instance acts out.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    #[default]
    Ok,
    Panic,
    Hang,
    PanicMetrics,
    Reject,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    mode: Mode,
    while_exists: Option<std::path::PathBuf>,
    hang_for: Option<String>,
}

fn parse_config(config: &PluginConfig) -> Result<Config, PluginError> {
    let config: Config = config.parse()?;
    if config.mode == Mode::Reject {
        return Err(PluginError::invalid("rejecting config on purpose"));
    }
    Ok(config)
}

/// Acts out `mode` for a call of `method`; returns only when the mode is harmless.
fn misbehave(mode: Mode, method: &str) {
    match mode {
        Mode::Panic => panic!("misbehaving plugin panics in {method} on purpose"),
        Mode::Hang => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        Mode::Ok | Mode::PanicMetrics | Mode::Reject => {}
    }
}

/// The storage side.
pub struct Storage {
    mode: Mode,
    hang_for: Option<String>,
}

impl Storage {
    pub fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let Config { mode, hang_for, .. } = parse_config(config)?;
        Ok(Self { mode, hang_for })
    }

    fn enter(&self, method: &str) {
        misbehave(self.mode, method);
    }

    /// [`Storage::enter`] for a call about `alloc_id`.
    fn enter_for(&self, method: &str, alloc_id: &str) {
        if self.hang_for.as_deref() == Some(alloc_id) {
            misbehave(Mode::Hang, method);
        }
        self.enter(method);
    }
}

/// Never handed out: `open` misbehaves or finds nothing before a file exists.
pub struct NoFile;

impl FilePlugin for NoFile {
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> Result<usize, PluginError> {
        Err(PluginError::internal("misbehaving plugin has no files"))
    }
    fn identity(&self) -> Result<FileIdentity, PluginError> {
        Err(PluginError::internal("misbehaving plugin has no files"))
    }
}

fn unknown(alloc_id: &str) -> PluginError {
    PluginError::not_found(format!("Unknown allocation {alloc_id:?}"))
}

impl StoragePlugin for Storage {
    type File = NoFile;

    fn alloc_info(&self, alloc_id: &str) -> Result<Option<AllocInfo>, PluginError> {
        self.enter_for("alloc_info", alloc_id);
        Ok(None)
    }
    fn list_allocs(&self) -> Result<Vec<String>, PluginError> {
        self.enter("list_allocs");
        Ok(Vec::new())
    }
    fn list(&self, alloc_id: &str, _path: &str) -> Result<Vec<FileInfo>, PluginError> {
        self.enter_for("list", alloc_id);
        Err(unknown(alloc_id))
    }
    fn stat(&self, alloc_id: &str, _path: &str) -> Result<FileInfo, PluginError> {
        self.enter_for("stat", alloc_id);
        Err(unknown(alloc_id))
    }
    fn open(&self, alloc_id: &str, _path: &str) -> Result<NoFile, PluginError> {
        self.enter_for("open", alloc_id);
        Err(unknown(alloc_id))
    }
    fn identify(&self, alloc_id: &str, _path: &str) -> Result<FileIdentity, PluginError> {
        self.enter_for("identify", alloc_id);
        Err(unknown(alloc_id))
    }
    fn watch_paths(&self, alloc_id: &str, _path: &str) -> Result<Vec<String>, PluginError> {
        self.enter_for("watch_paths", alloc_id);
        Ok(Vec::new())
    }
    fn gc(&self, alloc_id: &str) -> Result<(), PluginError> {
        self.enter_for("gc", alloc_id);
        Err(unknown(alloc_id))
    }
}

/// The metric side.
pub struct Metrics {
    mode: Mode,
    while_exists: Option<std::path::PathBuf>,
}

impl Metrics {
    pub fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let Config { mode, while_exists, .. } = parse_config(config)?;
        Ok(Self { mode, while_exists })
    }

    fn enter(&self, method: &str) {
        if self.mode == Mode::PanicMetrics && self.while_exists.as_ref().is_none_or(|path| path.exists()) {
            misbehave(Mode::Panic, method);
        }
    }
}

impl MetricsPlugin for Metrics {
    fn host_stats(&self) -> Result<Option<HostStats>, PluginError> {
        self.enter("host_stats");
        Ok(None)
    }
    fn sample_tasks(&self) -> Result<TaskReport, PluginError> {
        self.enter("sample_tasks");
        Ok(TaskReport::complete(Vec::new()))
    }
}

allocd_plugin_sdk::export_plugin! {
    name: "misbehaving",
    metrics: Metrics::new,
    storage: Storage::new,
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::{RStr, RString};
    use allocd_plugin_sdk::guard;
    use allocd_plugin_sdk::{ErrorKind, HostContext, LogLevel};

    use super::*;

    extern "C" fn no_log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

    fn config(json: serde_json::Value) -> PluginConfig {
        let host = HostContext { log: no_log, data_dir: RString::new(), alloc_dir: RString::new() };
        PluginConfig { json: json.to_string(), host }
    }

    #[test]
    fn modes_are_chosen_by_config() {
        let error = Storage::new(&config(serde_json::json!({ "mode": "reject" }))).err().unwrap();
        assert_eq!((error.kind, error.message.as_str()), (ErrorKind::INVALID_ARGUMENT, "rejecting config on purpose"));
        assert!(Metrics::new(&config(serde_json::json!({ "mode": "reject" }))).is_err());
        assert!(Storage::new(&config(serde_json::json!({ "mode": "explode" }))).is_err());

        let ok = Storage::new(&config(serde_json::json!({}))).unwrap();
        assert_eq!(ok.alloc_info("5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11"), Ok(None));
    }

    #[test]
    fn panics_are_what_the_sdk_guard_catches() {
        let storage = Storage::new(&config(serde_json::json!({ "mode": "panic" }))).unwrap();
        let error = guard(|| storage.alloc_info("x")).into_result().unwrap_err();
        assert_eq!(error.kind, ErrorKind::PANICKED);
        assert!(error.message.contains("alloc_info"), "{error}");

        let metrics = Metrics::new(&config(serde_json::json!({ "mode": "panic-metrics" }))).unwrap();
        assert_eq!(guard(|| metrics.sample_tasks()).into_result().unwrap_err().kind, ErrorKind::PANICKED);
        assert_eq!(guard(|| metrics.host_stats()).into_result().unwrap_err().kind, ErrorKind::PANICKED);
        let inert = Metrics::new(&config(serde_json::json!({ "mode": "panic" }))).unwrap();
        assert_eq!(inert.sample_tasks(), Ok(TaskReport::complete(Vec::new())));
    }
}
