//! `host-metrics`: the host sample behind `GET /v1/client/stats`, with Nomad's formulas
//! (`client/hoststats/host.go` over gopsutil; spec `nomad-stats.md` §4–5).
//!
//! sysinfo supplies uptime. /proc supplies what sysinfo computes differently from Nomad: memory
//! `Used` (Total − Free − Buffers − Cached − SReclaimable), per-CPU user/system/idle splits
//! (iowait counts as busy; the first sample is the average since boot), and the mount table;
//! statvfs supplies sizes and inode counts. `TotalCompute`, which the per-CPU `TotalTicks`
//! spread, is the `cpu_total_compute` override or else what the SDK's
//! [`allocd_plugin_sdk::compute`] detects with Nomad's rules (the same figure every task
//! provider uses).

mod cpu;
mod disk;
mod memory;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use allocd_plugin_sdk::compute::Compute;
use allocd_plugin_sdk::{HostStats, PluginError};
use allocd_plugin_sdk::{MetricsPlugin, PluginConfig};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Directory whose filesystem is reported as `AllocDirStats` (default: the agent's).
    alloc_dir: Option<PathBuf>,
    /// Nomad's `cpu_total_compute` override, in MHz.
    cpu_total_compute: Option<f64>,
}

/// The provider: CPU trackers persist between samples.
pub struct HostMetrics {
    alloc_dir: PathBuf,
    total_compute: f64,
    cpu_tracker: Mutex<cpu::Tracker>,
}

impl HostMetrics {
    pub fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let parsed: Config = config.parse()?;
        let alloc_dir = parsed.alloc_dir.unwrap_or_else(|| PathBuf::from(config.host.alloc_dir.as_str()));
        let total_compute = total_compute(parsed.cpu_total_compute);
        log::info!("host metrics: total compute {total_compute} MHz, alloc dir {}", alloc_dir.display());
        Ok(Self { alloc_dir, total_compute, cpu_tracker: Mutex::new(cpu::Tracker::default()) })
    }
}

/// `TotalCompute` in MHz: the configured override, else the node's detected compute.
fn total_compute(configured: Option<f64>) -> f64 {
    configured.unwrap_or_else(|| Compute::detect().total_compute as f64)
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

impl MetricsPlugin for HostMetrics {
    fn host_stats(&self) -> Result<Option<HostStats>, PluginError> {
        let timestamp = now_ns();
        let uptime = sysinfo::System::uptime();
        let memory = memory::read().unwrap_or_default();
        let cpu = {
            let mut tracker = self.cpu_tracker.lock().unwrap_or_else(|e| e.into_inner());
            tracker.sample(self.total_compute)
        };
        let cpu_ticks_consumed = cpu.iter().map(|c| c.total_ticks).sum();
        let disk_stats = disk::partitions();
        let alloc_dir_stats = disk::usage(&self.alloc_dir, "", "").unwrap_or_default();
        Ok(Some(HostStats {
            memory,
            cpu: cpu.into(),
            disk_stats: if disk_stats.is_empty() { None.into() } else { Some(disk_stats.into()).into() },
            alloc_dir_stats,
            uptime,
            timestamp,
            cpu_ticks_consumed,
        }))
    }
}

allocd_plugin_sdk::export_plugin! {
    name: "host-metrics",
    metrics: HostMetrics::new,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_compute_is_the_override_else_detected() {
        assert_eq!(total_compute(Some(12000.5)), 12000.5);
        assert_eq!(total_compute(Some(0.0)), 0.0);
        assert_eq!(total_compute(None), Compute::detect().total_compute as f64);
    }
}
