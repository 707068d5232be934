//! `cgroup`: a metric provider for Nomad tasks isolated in cgroups — what Nomad's exec and java
//! drivers report through the libcontainer executor (spec `nomad-stats.md` §5, §6, §7, §9).
//!
//! Every `sample_tasks` call probes the configured root (v1, hybrid → v1, or v2), lists
//! Nomad's task cgroups (`nomad.slice/{share,reserve}.slice/<alloc>.<task>.scope` or
//! `<controller>/nomad/<alloc>.<task>`), and reports per task its memory and CPU with
//! libcontainer's field mapping and Nomad's `Measured` lists, CPU percentages from Nomad's
//! trackers (0.0 on a task's first sample), `TotalTicks` from the node's compute, whether it is
//! running, exited or unknown ([`liveness`]) and its `Pids` map from /proc. The report is
//! complete only when the hierarchy matches and everything could be read: the host deletes
//! an allocation only on positive evidence.
//!
//! Modules, one concern each:
//! * [`detect`] — which hierarchy the root holds; v1 controller directories;
//! * [`discover`] — task cgroup names and where they live;
//! * [`liveness`] — running, exited or unknown, descendants included;
//! * [`v1`], [`v2`] — one task's counters from its cgroup files;
//! * [`procs`] — the per-process `Pids` map (5 s cache, like Nomad);
//! * [`tracker`] — CPU percent trackers and tick normalisation over the node's compute
//!   (detected by [`allocd_plugin_sdk::compute`]);
//! * [`usage`] — counters to `ResourceUsage`, `Measured` lists;
//! * [`sampler`] — one sample of everything, per-task state;
//! * [`read`], [`parse`], [`warn`] — allocation-free file reading and parsing, warn-once logs.
//!
//! Config (`plugin "cgroup" { config { ... } }`): `root` (default `/sys/fs/cgroup`), `mode`
//! (`"v1"` or `"v2"`, default: probe), `cpu_total_compute` (MHz, default: detected).

pub mod detect;
pub mod discover;
pub mod liveness;
pub mod parse;
pub mod procs;
pub mod read;
pub mod sampler;
pub mod tracker;
pub mod usage;
pub mod v1;
pub mod v2;
pub mod warn;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use allocd_plugin_sdk::{MetricsPlugin, PluginConfig};
use allocd_plugin_sdk::{PluginError, TaskReport};
use serde::Deserialize;

use crate::detect::Mode;
use crate::procs::ProcSettings;
use crate::sampler::{Sampler, Settings};
use crate::tracker::Compute;

/// The plugin's `config` block.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the cgroup hierarchies are mounted (default `/sys/fs/cgroup`).
    pub root: Option<PathBuf>,
    /// `"v1"` or `"v2"` to skip probing.
    pub mode: Option<Mode>,
    /// Nomad's `cpu_total_compute` override, in MHz (0 or absent: detect).
    pub cpu_total_compute: Option<f64>,
}

/// Default cgroup root.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// The provider.
pub struct CgroupMetrics {
    sampler: Mutex<Sampler>,
}

impl CgroupMetrics {
    /// The native constructor the export macro calls.
    pub fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let parsed: Config = config.parse()?;
        let settings = settings(parsed)?;
        let mode = match (settings.mode, detect::detect(&settings.root)) {
            (Some(mode), _) => format!("{mode:?} (configured)"),
            (None, Some(found)) => format!("{:?} (probed: {found:?})", found.mode()),
            (None, None) => "none found yet".to_string(),
        };
        log::info!(
            "cgroup: root {}, mode {mode}, total compute {} MHz over {} cores",
            settings.root.display(),
            settings.compute.total_compute,
            settings.compute.num_cores
        );
        Ok(Self::with_settings(settings))
    }

    /// A provider with explicit settings (tests use fixture roots and a fixture /proc).
    pub fn with_settings(settings: Settings) -> Self {
        Self { sampler: Mutex::new(Sampler::new(settings)) }
    }

    /// The settings in use.
    pub fn settings(&self) -> Settings {
        self.lock().settings().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sampler> {
        // A panic mid-sample (caught by the SDK) leaves consistent-enough state: keep going.
        self.sampler.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Validates a parsed config into sampler settings.
pub fn settings(config: Config) -> Result<Settings, PluginError> {
    let root = config.root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    if root.as_os_str().is_empty() {
        return Err(PluginError::invalid("invalid config: root must not be empty"));
    }
    let mut compute = Compute::detect();
    match config.cpu_total_compute {
        Some(mhz) if !mhz.is_finite() || mhz < 0.0 => {
            return Err(PluginError::invalid(format!(
                "invalid config: cpu_total_compute must be a non-negative number of MHz, got {mhz}"
            )));
        }
        Some(mhz) if mhz > 0.0 => compute.total_compute = mhz,
        _ => {}
    }
    Ok(Settings { root, mode: config.mode, compute, procs: ProcSettings::default() })
}

impl MetricsPlugin for CgroupMetrics {
    fn sample_tasks(&self) -> Result<TaskReport, PluginError> {
        Ok(self.lock().sample(Instant::now()))
    }
}

allocd_plugin_sdk::export_plugin! {
    name: "cgroup",
    metrics: CgroupMetrics::new,
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RStr, RString};
    use allocd_plugin_sdk::{HostContext, LogLevel};

    /// The host's log callback. Constructing through the ABI installs it as this test binary's
    /// logger and panic hook, so it prints (a silent one would swallow assertion messages).
    extern "C" fn print_log(level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        eprintln!("[plugin log {level:?} {target}] {message}");
    }

    fn config(json: &str) -> PluginConfig {
        PluginConfig {
            json: json.into(),
            host: HostContext { log: print_log, data_dir: RString::new(), alloc_dir: RString::new() },
        }
    }

    #[test]
    fn defaults() {
        let plugin = CgroupMetrics::new(&config("{}")).unwrap();
        let settings = plugin.settings();
        assert_eq!(settings.root, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(settings.mode, None);
        assert!(settings.compute.num_cores >= 1);
        assert_eq!(settings.compute, Compute::detect());
        assert_eq!(settings.procs.clk_tck, procs::clk_tck());
    }

    #[test]
    fn every_option() {
        let plugin =
            CgroupMetrics::new(&config(r#"{"root":"/tmp/cg","mode":"v2","cpu_total_compute":12000}"#)).unwrap();
        let settings = plugin.settings();
        assert_eq!(settings.root, PathBuf::from("/tmp/cg"));
        assert_eq!(settings.mode, Some(Mode::V2));
        assert_eq!(settings.compute.total_compute, 12000.0);
        assert_eq!(settings.compute.num_cores, Compute::detect().num_cores, "the override is the total only");
        // 0 means "not set", as in Nomad.
        let plugin = CgroupMetrics::new(&config(r#"{"cpu_total_compute":0}"#)).unwrap();
        assert_eq!(plugin.settings().compute, Compute::detect());
        // A root with nothing in it samples to nothing.
        assert!(plugin_with_root("/nonexistent/cgroup").sample_tasks().unwrap().tasks.is_empty());
    }

    fn plugin_with_root(root: &str) -> CgroupMetrics {
        CgroupMetrics::new(&config(&format!(r#"{{"root":"{root}"}}"#))).unwrap()
    }

    #[test]
    fn bad_configs_are_invalid_arguments() {
        for json in [
            r#"{"rooot":"/x"}"#,
            r#"{"mode":"v3"}"#,
            r#"{"mode":"V1"}"#,
            r#"{"cpu_total_compute":-1}"#,
            r#"{"cpu_total_compute":"fast"}"#,
            r#"{"root":""}"#,
            r#"[]"#,
        ] {
            let err = CgroupMetrics::new(&config(json)).err().unwrap_or_else(|| panic!("{json} accepted"));
            assert_eq!(err.kind, allocd_plugin_sdk::ErrorKind::INVALID_ARGUMENT, "{json}");
            assert!(err.message.starts_with("invalid config"), "{json}: {}", err.message);
        }
    }

    #[test]
    fn the_library_exports_a_metrics_plugin_named_cgroup() {
        let module = allocd_plugin_root();
        let descriptor = module.descriptor()();
        assert_eq!(descriptor.name.as_str(), "cgroup");
        assert!(descriptor.kinds.contains(allocd_plugin_sdk::PluginKinds::METRICS));
        assert!(!descriptor.kinds.contains(allocd_plugin_sdk::PluginKinds::STORAGE));
        let host = HostContext { log: print_log, data_dir: RString::new(), alloc_dir: RString::new() };
        let provider = module.new_metrics()(RStr::from(r#"{"root":"/nonexistent"}"#), host.clone()).unwrap().unwrap();
        assert!(provider.host_stats().unwrap().is_none(), "host stats are host-metrics' job");
        assert!(provider.sample_tasks().unwrap().tasks.is_empty());
        assert!(module.new_storage()(RStr::from("{}"), host).unwrap().is_none());
        match module.new_metrics()(RStr::from(r#"{"x":1}"#), config("").host) {
            abi_stable::std_types::RErr(err) => assert_eq!(err.kind, allocd_plugin_sdk::ErrorKind::INVALID_ARGUMENT),
            abi_stable::std_types::ROk(_) => panic!("unknown field accepted"),
        }
    }
}
