//! `driver-metrics`: an allocd metric provider for a custom task driver, written out of tree
//! the way an operator would write one.
//!
//! The driver already knows how much memory and CPU its tasks use and writes it to a JSON
//! status file (format in [`status`]). This plugin reads that file whenever allocd samples
//! (every `telemetry.collection_interval`) and hands each task's usage to allocd, which serves it
//! as Nomad's `GET /v1/client/allocation/:id/stats` and decides from each task's `state` whether
//! an allocation is terminal (and so may be garbage-collected).
//!
//! ```hcl
//! plugin "driver-metrics" {
//!   path = "/opt/my-driver/liballocd_plugin_driver_metrics.so"
//!   config {
//!     status_file      = "/run/my-driver/status.json"
//!     cpu_mhz_per_core = 2400   # optional; default: detected like Nomad (sysfs, /proc/cpuinfo)
//!   }
//! }
//! ```
//!
//! Everything here is plain Rust: the SDK (`allocd_plugin_sdk::sdk`) turns [`DriverMetrics`]
//! into an ABI object, catches panics, and forwards `log` records to the agent's log.

pub mod status;

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use allocd_plugin_sdk::compute::Compute;
use allocd_plugin_sdk::{MetricsPlugin, PluginConfig};
use allocd_plugin_sdk::{PluginError, TaskReport};
use serde::Deserialize;

use crate::status::{Conversion, StatusFile};

/// The plugin's `config { ... }` block.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The driver's status file; a relative path is relative to the agent's `data_dir`.
    status_file: PathBuf,
    /// MHz of one core, for Nomad's `TotalTicks`; default: detected as Nomad does.
    cpu_mhz_per_core: Option<f64>,
}

/// The metric provider. It keeps no state between samples: the status file is the truth.
#[derive(Debug)]
pub struct DriverMetrics {
    status_file: PathBuf,
    mhz_per_core: f64,
}

impl DriverMetrics {
    /// The constructor allocd calls once at startup with the plugin's config block. An error
    /// here stops the agent with a one-line message naming the plugin, so check what can be
    /// checked now rather than failing every sample later.
    pub fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let parsed: Config = config.parse()?;
        let status_file = Path::new(config.host.data_dir.as_str()).join(parsed.status_file);
        let mhz_per_core = match parsed.cpu_mhz_per_core {
            Some(mhz) if mhz.is_finite() && mhz >= 0.0 => mhz,
            Some(mhz) => return Err(PluginError::invalid(format!("cpu_mhz_per_core must be >= 0, not {mhz}"))),
            None => {
                // The SDK's detection of Nomad's node figures (sysfs, else /proc/cpuinfo).
                let node = Compute::detect();
                node.total_compute as f64 / f64::from(node.num_cores.max(1))
            }
        };
        // The file may not exist yet (the driver starts later): that is not a config error.
        log::info!("driver-metrics: reading {} ({mhz_per_core} MHz per core)", status_file.display());
        Ok(Self { status_file, mhz_per_core })
    }

    /// The status file this provider reads.
    pub fn status_file(&self) -> &Path {
        &self.status_file
    }
}

impl MetricsPlugin for DriverMetrics {
    // `host_stats` keeps the SDK default (`None`): the host-metrics plugin measures the host.

    fn sample_tasks(&self) -> Result<TaskReport, PluginError> {
        let shown = self.status_file.display();
        let (text, modified) = match read_with_mtime(&self.status_file) {
            Ok(read) => read,
            // No file yet: the driver has not started. Not an error, but no evidence either:
            // a partial report, so tasks seen before stay unknown rather than "exited".
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(TaskReport::partial(Vec::new())),
            Err(err) => return Err(PluginError::unavailable(format!("reading {shown}: {err}"))),
        };
        let file: StatusFile =
            serde_json::from_str(&text).map_err(|err| PluginError::internal(format!("parsing {shown}: {err}")))?;
        // The file lists every task the driver runs: a task missing from it has gone.
        Ok(TaskReport::complete(file.samples(Conversion { mhz_per_core: self.mhz_per_core, timestamp: modified })))
    }
}

/// The file's text and modification time (Unix ns): the driver measured when it wrote.
fn read_with_mtime(path: &Path) -> std::io::Result<(String, i64)> {
    let text = std::fs::read_to_string(path)?;
    let modified = std::fs::metadata(path)?.modified()?;
    let ns = modified.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default();
    Ok((text, ns))
}

// The library's root module: the name operators write in `plugin "driver-metrics" { }` and the
// constructor of each kind this library provides (here: metrics only).
allocd_plugin_sdk::export_plugin! {
    name: "driver-metrics",
    metrics: DriverMetrics::new,
}

#[cfg(test)]
mod tests {
    use allocd_plugin_sdk::abi_stable::std_types::{RStr, RString};
    use allocd_plugin_sdk::{ErrorKind, HostContext, LogLevel, TaskState};

    use super::*;

    const ALLOC: &str = "5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11";

    /// Stands in for the agent's log callback (the SDK also routes panic messages here).
    extern "C" fn test_log(_level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        eprintln!("[{target}] {message}");
    }

    fn host(data_dir: &Path) -> HostContext {
        let data_dir = data_dir.to_string_lossy();
        HostContext { log: test_log, data_dir: RString::from(data_dir.as_ref()), alloc_dir: RString::new() }
    }

    fn plugin_config(data_dir: &Path, config: serde_json::Value) -> PluginConfig {
        PluginConfig { json: config.to_string(), host: host(data_dir) }
    }

    fn status_json() -> serde_json::Value {
        serde_json::json!({ "allocs": { ALLOC: {
            "web": {
                "state": "running",
                "rss_bytes": 52_428_800,
                "cpu_percent": 12.5,
                "pids": [{ "pid": 4242, "rss_bytes": 52_428_800, "cpu_percent": 12.5 }]
            },
            "sidecar": { "state": "exited", "rss_bytes": 1024 }
        }}})
    }

    #[test]
    fn samples_come_from_the_status_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status.json"), status_json().to_string()).unwrap();
        let config = serde_json::json!({ "status_file": "status.json", "cpu_mhz_per_core": 2000 });
        let plugin = DriverMetrics::new(&plugin_config(dir.path(), config)).unwrap();
        assert_eq!(plugin.status_file(), dir.path().join("status.json"), "relative to data_dir");

        let report = plugin.sample_tasks().unwrap();
        assert!(report.complete, "the file lists every task");
        let samples = report.tasks;
        let tasks: Vec<(&str, &str, TaskState)> =
            samples.iter().map(|s| (s.alloc_id.as_str(), s.task.as_str(), s.state)).collect();
        assert_eq!(tasks, [(ALLOC, "sidecar", TaskState::EXITED), (ALLOC, "web", TaskState::RUNNING)]);

        let web = &samples[1];
        assert_eq!(web.usage.memory.rss, 52_428_800);
        assert_eq!(web.usage.cpu.percent, 12.5);
        assert_eq!(web.usage.cpu.total_ticks, 250.0);
        assert_eq!(web.usage.memory.measured.as_slice(), [RString::from("RSS")]);
        assert_eq!(web.usage.cpu.measured.as_slice(), [RString::from("Percent")]);
        assert!(web.timestamp > 0, "the file's modification time");
        let pids = web.pids.as_ref().into_option().expect("per-process figures");
        assert_eq!((pids.len(), pids[0].pid, pids[0].usage.memory.rss), (1, 4242, 52_428_800));
    }

    #[test]
    fn a_missing_file_means_no_tasks_and_a_broken_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let plugin = DriverMetrics::new(&plugin_config(dir.path(), serde_json::json!({ "status_file": path })))
            .expect("the file need not exist at startup");
        assert_eq!(plugin.sample_tasks(), Ok(TaskReport::partial(Vec::new())), "no file: no evidence");

        std::fs::write(&path, "{\"allocs\": {").unwrap(); // a half-written file
        let error = plugin.sample_tasks().unwrap_err();
        assert_eq!(error.kind, ErrorKind::INTERNAL);
        assert!(error.message.contains("status.json"), "{error}");
    }

    #[test]
    fn config_mistakes_are_refused_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let refuse = |config: serde_json::Value| DriverMetrics::new(&plugin_config(dir.path(), config)).unwrap_err();
        assert!(refuse(serde_json::json!({})).message.contains("missing field `status_file`"));
        assert!(refuse(serde_json::json!({ "status_file": "s", "typo": 1 })).message.contains("unknown field `typo`"));
        let error = refuse(serde_json::json!({ "status_file": "s", "cpu_mhz_per_core": -1 }));
        assert_eq!(error.kind, ErrorKind::INVALID_ARGUMENT);
    }
}
