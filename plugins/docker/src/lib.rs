//! `docker`: per-task usage of Nomad's Docker containers, read from the Docker Engine API over
//! its unix socket and mapped exactly as Nomad's docker driver does (spec `nomad-stats.md` §8).
//!
//! Modules, one concern each:
//! * [`config`] — the `config { ... }` block (endpoint, `stats_interval`, and the
//!   `cpu_total_compute`/`num_cores` overrides of the [`Compute`] the SDK detects);
//! * [`client`] — HTTP/1 over the unix socket (hyper 1), with a deadline per request;
//! * [`containers`] — which containers are Nomad tasks (label + `<task>-<allocID>` name), and
//!   their job, task group and namespace (Nomad's labels, served as [`MetricsPlugin::task_labels`]);
//! * [`mapping`] — the pure stats → `ResourceUsage` mapping;
//! * [`collector`] — the private runtime on its own thread that keeps the latest samples.
//!
//! A stats answer takes the daemon one to two seconds, so collection runs in the background and
//! [`MetricsPlugin::sample_tasks`] only copies the latest samples and container states. Docker reports no per-process
//! data (`Pids` is `null`) and no host sample.

pub mod client;
pub mod collector;
pub mod config;
pub mod containers;
pub mod mapping;

use allocd_plugin_sdk::compute::Compute;
use allocd_plugin_sdk::{MetricsPlugin, PluginConfig};
use allocd_plugin_sdk::{PluginError, TaskLabels, TaskReport};

use crate::collector::Collector;
use crate::config::Settings;

/// The metric provider; collection stops when it is dropped.
pub struct DockerMetrics {
    collector: Collector,
}

impl DockerMetrics {
    /// Parses the config and starts the background collector; never waits for the daemon.
    pub fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let settings = Settings::parse(&config.json, Compute::detect)?;
        log::info!(
            "docker: endpoint {}, stats every {:?}, {} cores, total compute {} MHz",
            settings.endpoint,
            settings.stats_interval,
            settings.compute.num_cores,
            settings.compute.total_compute
        );
        Ok(Self { collector: Collector::start(&settings)? })
    }
}

impl MetricsPlugin for DockerMetrics {
    fn sample_tasks(&self) -> Result<TaskReport, PluginError> {
        self.collector.latest()
    }
    fn task_labels(&self) -> Result<Vec<TaskLabels>, PluginError> {
        Ok(self.collector.task_labels())
    }
}

allocd_plugin_sdk::export_plugin! {
    name: "docker",
    metrics: DockerMetrics::new,
}
