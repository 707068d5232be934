//! Docker stats → Nomad's `TaskResourceUsage`, exactly as Nomad's docker driver does it
//! (`drivers/docker/util/stats_posix.go`; spec `nomad-stats.md` §8). Pure functions only.
//!
//! One `GET /containers/{id}/stats?stream=false` answer carries both the current sample and the
//! previous one (`precpu_stats`), so every CPU figure is a delta within that single answer:
//!
//! * `Percent` = pct(Δ`total_usage`, Δ`system_cpu_usage`), where `pct(n, d)` = n/d × C × 100 and
//!   C is the topology core count (not `online_cpus`); 0 unless both deltas are positive.
//! * `SystemMode`/`UserMode` = pct(Δkernel resp. Δuser time, Δ`total_usage`): the denominator is
//!   the *container's* CPU time, as in Nomad.
//! * `TotalTicks` = Percent/100 × TotalCompute / C.
//!
//! Memory takes `rss`/`cache` with cgroup v2's `anon`/`file` as fallbacks, `file_mapped` (a v2
//! key: 0 on v1 daemons), `swap` (no daemon reports it: 0), `usage` and `max_usage` (absent on
//! v2). The Measured memory list is v2's when `max_usage == 0 && usage != 0` — Nomad's heuristic.

use std::collections::HashMap;

use allocd_plugin_sdk::compute::Compute;
use allocd_plugin_sdk::{CpuStats, MemoryStats, ResourceUsage, TaskSample, TaskState};

use crate::containers::Target;
use serde::Deserialize;

/// Memory fields Nomad reports for Docker on cgroup v1.
pub const MEASURED_MEMORY_V1: [&str; 5] = ["RSS", "Cache", "Swap", "Usage", "Max Usage"];
/// Memory fields Nomad reports for Docker on cgroup v2 (no peak usage).
pub const MEASURED_MEMORY_V2: [&str; 4] = ["RSS", "Cache", "Swap", "Usage"];
/// CPU fields Nomad reports for Docker (SystemMode, UserMode, TotalTicks are filled but unlisted).
pub const MEASURED_CPU: [&str; 3] = ["Throttled Periods", "Throttled Time", "Percent"];

/// The parts of moby's `StatsResponse` that Nomad reads. Every field is optional on the wire.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct StatsResponse {
    /// RFC 3339 with nanoseconds; Go's zero time for a container that is not running.
    pub read: String,
    pub cpu_stats: CpuSample,
    pub precpu_stats: CpuSample,
    pub memory_stats: MemorySample,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct CpuSample {
    pub cpu_usage: CpuUsage,
    /// The host's aggregate CPU time in ns (absent on a first sample).
    pub system_cpu_usage: u64,
    pub throttling_data: Throttling,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct CpuUsage {
    pub total_usage: u64,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct Throttling {
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct MemorySample {
    pub usage: u64,
    pub max_usage: u64,
    /// Raw cgroup counters; values are kept as JSON so one odd entry cannot spoil the rest.
    pub stats: HashMap<String, serde_json::Value>,
}

impl MemorySample {
    /// A counter from `stats`, 0 when absent (Go's map lookup).
    fn stat(&self, key: &str) -> u64 {
        self.stats.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0)
    }
}

/// Nomad's `CalculateCPUPercent`: `(new − old) / (new_total − old_total) × cores × 100`, and 0
/// unless both differences are positive.
pub fn cpu_percent(new: u64, old: u64, new_total: u64, old_total: u64, cores: u32) -> f64 {
    if new <= old || new_total <= old_total {
        return 0.0;
    }
    ((new - old) as f64 / (new_total - old_total) as f64) * f64::from(cores) * 100.0
}

/// `read` as Unix nanoseconds; `None` when it is not a representable instant (Go's zero time
/// `0001-01-01T00:00:00Z`, which the daemon sends for a container that stopped).
pub fn timestamp_ns(read: &str) -> Option<i64> {
    let at = chrono::DateTime::parse_from_rfc3339(read).ok()?;
    at.timestamp_nanos_opt().filter(|&ns| ns > 0)
}

/// The §8 mapping of one stats answer.
pub fn resource_usage(stats: &StatsResponse, compute: &Compute) -> ResourceUsage {
    let mem = &stats.memory_stats;
    let v2 = mem.max_usage == 0 && mem.usage != 0;
    let measured: &[&str] = if v2 { &MEASURED_MEMORY_V2 } else { &MEASURED_MEMORY_V1 };
    let or_else = |value: u64, fallback: &str| if value == 0 { mem.stat(fallback) } else { value };
    let memory = MemoryStats {
        rss: or_else(mem.stat("rss"), "anon"),
        cache: or_else(mem.stat("cache"), "file"),
        swap: mem.stat("swap"),
        mapped_file: mem.stat("file_mapped"),
        usage: mem.usage,
        max_usage: mem.max_usage,
        kernel_usage: 0,
        kernel_max_usage: 0,
        measured: measured.iter().map(|&name| name.into()).collect(),
    };

    let (now, pre) = (&stats.cpu_stats, &stats.precpu_stats);
    let cores = compute.num_cores;
    let percent = cpu_percent(
        now.cpu_usage.total_usage,
        pre.cpu_usage.total_usage,
        now.system_cpu_usage,
        pre.system_cpu_usage,
        cores,
    );
    let share_of_container =
        |new: u64, old: u64| cpu_percent(new, old, now.cpu_usage.total_usage, pre.cpu_usage.total_usage, cores);
    let cpu = CpuStats {
        system_mode: share_of_container(now.cpu_usage.usage_in_kernelmode, pre.cpu_usage.usage_in_kernelmode),
        user_mode: share_of_container(now.cpu_usage.usage_in_usermode, pre.cpu_usage.usage_in_usermode),
        total_ticks: (percent / 100.0) * compute.total_compute as f64 / f64::from(cores),
        throttled_periods: now.throttling_data.throttled_periods,
        throttled_time: now.throttling_data.throttled_time,
        percent,
        measured: MEASURED_CPU.iter().map(|&name| name.into()).collect(),
    };
    ResourceUsage { memory, cpu }
}

/// The sample of a running container, or `None` when the answer is not a live sample (the
/// container stopped between listing and sampling).
pub fn task_sample(alloc_id: &str, task: &str, stats: &StatsResponse, compute: &Compute) -> Option<TaskSample> {
    Some(TaskSample {
        alloc_id: alloc_id.into(),
        task: task.into(),
        state: TaskState::RUNNING,
        finished_at: 0,
        timestamp: timestamp_ns(&stats.read)?,
        usage: resource_usage(stats, compute),
        pids: None.into(),
    })
}

/// A task container's state without usage: a stopped or not yet started container, or a
/// running one before its first stats answer.
pub fn state_sample(target: &Target) -> TaskSample {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    TaskSample {
        alloc_id: target.alloc_id.as_str().into(),
        task: target.task.as_str().into(),
        state: target.state,
        timestamp: now.as_nanos() as i64,
        ..TaskSample::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPUTE: Compute = Compute { total_compute: 5192, num_cores: 2 };

    fn fixture(name: &str) -> StatsResponse {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn measured(list: &abi_stable::std_types::RVec<abi_stable::std_types::RString>) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Nomad's formula spelled out on the raw numbers, for comparison with the implementation.
    fn pct(new: u64, old: u64, new_total: u64, old_total: u64, cores: f64) -> f64 {
        ((new - old) as f64 / (new_total - old_total) as f64) * cores * 100.0
    }

    #[test]
    fn pct_helper_and_zero_guards() {
        assert_eq!(cpu_percent(150, 100, 1100, 1000, 2), 100.0);
        assert_eq!(cpu_percent(150, 100, 1100, 1000, 4), 200.0);
        assert_eq!(cpu_percent(100, 100, 1100, 1000, 2), 0.0); // no CPU time used
        assert_eq!(cpu_percent(90, 100, 1100, 1000, 2), 0.0); // counter went backwards
        assert_eq!(cpu_percent(150, 100, 1000, 1000, 2), 0.0); // no time passed
        assert_eq!(cpu_percent(150, 100, 900, 1000, 2), 0.0);
        assert_eq!(cpu_percent(0, 0, 0, 0, 2), 0.0);
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp_ns("2026-11-26T23:59:20.808647487Z"), Some(1_795_737_560_808_647_487));
        assert_eq!(timestamp_ns("2026-11-27T00:59:20.808647487+01:00"), Some(1_795_737_560_808_647_487));
        assert_eq!(timestamp_ns("0001-01-01T00:00:00Z"), None);
        assert_eq!(timestamp_ns(""), None);
    }

    /// Real answer of Docker 20.10 on cgroup v1: a shell busy loop, one core saturated.
    #[test]
    fn v1_busy_loop() {
        let stats = fixture("stats-v1-busy-loop.json");
        let u = resource_usage(&stats, &COMPUTE);
        let m = &u.memory;
        assert_eq!(
            (m.rss, m.cache, m.swap, m.mapped_file, m.usage, m.max_usage, m.kernel_usage, m.kernel_max_usage),
            (57_344, 1_605_632, 0, 0, 2_121_728, 4_091_904, 0, 0)
        );
        assert_eq!(measured(&m.measured), names(&MEASURED_MEMORY_V1));
        assert_eq!(measured(&m.measured), names(&["RSS", "Cache", "Swap", "Usage", "Max Usage"]));

        let c = &u.cpu;
        let percent = pct(3_278_074_857, 2_274_311_976, 7_416_440_000_000, 7_414_450_000_000, 2.0);
        assert_eq!(c.percent, percent);
        assert!((c.percent - 100.88).abs() < 0.01, "{}", c.percent);
        assert_eq!(c.system_mode, 0.0); // no kernel time in either sample
        assert_eq!(c.user_mode, pct(3_270_000_000, 2_260_000_000, 3_278_074_857, 2_274_311_976, 2.0));
        assert_eq!(c.total_ticks, (percent / 100.0) * 5192.0 / 2.0);
        assert_eq!((c.throttled_periods, c.throttled_time), (0, 0));
        assert_eq!(measured(&c.measured), names(&["Throttled Periods", "Throttled Time", "Percent"]));
    }

    /// Real answer, cgroup v1: a loop of `cat /proc/self/stat`, so kernel time moves too.
    #[test]
    fn v1_kernel_and_user_shares() {
        let stats = fixture("stats-v1-syscalls.json");
        let u = resource_usage(&stats, &COMPUTE);
        let c = &u.cpu;
        let (total, pre_total) = (3_228_405_707, 2_741_012_738);
        assert_eq!(c.percent, pct(total, pre_total, 7_437_830_000_000, 7_435_830_000_000, 2.0));
        assert_eq!(c.system_mode, pct(2_070_000_000, 1_760_000_000, total, pre_total, 2.0));
        assert_eq!(c.user_mode, pct(1_150_000_000, 970_000_000, total, pre_total, 2.0));
        // Shares of the container's own CPU time × C × 100: together about 200 with C = 2.
        assert!((c.system_mode + c.user_mode - 200.0).abs() < 25.0, "{} {}", c.system_mode, c.user_mode);
        assert_eq!(c.total_ticks, (c.percent / 100.0) * 5192.0 / 2.0);
        let m = &u.memory;
        assert_eq!(
            (m.rss, m.cache, m.usage, m.max_usage, m.mapped_file),
            (102_400, 1_744_896, 3_944_448, 6_221_824, 0)
        );
        assert_eq!(measured(&m.measured), names(&MEASURED_MEMORY_V1));
    }

    /// Real answer, cgroup v1, `--cpus 0.5`: throttling counters are copied as they are.
    #[test]
    fn v1_throttled() {
        let stats = fixture("stats-v1-throttled.json");
        let u = resource_usage(&stats, &COMPUTE);
        assert_eq!(u.cpu.throttled_periods, 40);
        assert_eq!(u.cpu.throttled_time, 1_954_883_631);
        let percent = pct(2_060_515_043, 1_549_635_069, 7_745_170_000_000, 7_743_170_000_000, 2.0);
        assert_eq!(u.cpu.percent, percent);
        assert!((percent - 51.09).abs() < 0.01, "{percent}"); // half a core
        assert_eq!(u.cpu.system_mode, 0.0); // kernel time did not move
        assert_eq!(u.cpu.user_mode, pct(2_040_000_000, 1_530_000_000, 2_060_515_043, 1_549_635_069, 2.0));
        // C is the configured core count, not the daemon's online_cpus (2 here).
        let four = resource_usage(&stats, &Compute { total_compute: 8000, num_cores: 4 });
        assert_eq!(four.cpu.percent, pct(2_060_515_043, 1_549_635_069, 7_745_170_000_000, 7_743_170_000_000, 4.0));
        assert_eq!(four.cpu.total_ticks, (four.cpu.percent / 100.0) * 8000.0 / 4.0);
        let m = &u.memory;
        assert_eq!((m.rss, m.cache, m.usage, m.max_usage), (65_536, 1_593_344, 2_117_632, 4_083_712));
    }

    /// Hand-written from moby's cgroup v2 collector: no `max_usage`, `anon`/`file`/`file_mapped`
    /// instead of `rss`/`cache`/`mapped_file`, no `percpu_usage`.
    #[test]
    fn v2_fallbacks_and_measured() {
        let stats = fixture("stats-v2.json");
        let u = resource_usage(&stats, &COMPUTE);
        let m = &u.memory;
        assert_eq!(m.rss, 1_273_856); // anon
        assert_eq!(m.cache, 2_281_472); // file
        assert_eq!(m.mapped_file, 1_081_344); // file_mapped
        assert_eq!(m.swap, 0);
        assert_eq!(m.usage, 4_214_784);
        assert_eq!(m.max_usage, 0);
        assert_eq!((m.kernel_usage, m.kernel_max_usage), (0, 0));
        assert_eq!(measured(&m.measured), names(&["RSS", "Cache", "Swap", "Usage"]));

        let c = &u.cpu;
        let (total, pre_total) = (5_123_456_000, 4_120_000_000);
        assert_eq!(c.percent, pct(total, pre_total, 12_345_670_000_000, 12_343_670_000_000, 2.0));
        assert_eq!(c.system_mode, pct(133_456_000, 121_000_000, total, pre_total, 2.0));
        assert_eq!(c.user_mode, pct(4_990_000_000, 3_999_000_000, total, pre_total, 2.0));
        assert_eq!(c.total_ticks, (c.percent / 100.0) * 5192.0 / 2.0);
        assert_eq!((c.throttled_periods, c.throttled_time), (3, 21_000_000));
        assert_eq!(measured(&c.measured), names(&MEASURED_CPU));
    }

    #[test]
    fn rss_and_cache_prefer_v1_keys_and_swap_is_read_when_present() {
        let json = r#"{"memory_stats":{"usage":10,"max_usage":20,
            "stats":{"rss":1,"anon":2,"cache":3,"file":4,"swap":5,"mapped_file":6,"file_mapped":7,"odd":"x"}}}"#;
        let u = resource_usage(&serde_json::from_str(json).unwrap(), &COMPUTE);
        let m = &u.memory;
        assert_eq!((m.rss, m.cache, m.swap, m.mapped_file), (1, 3, 5, 7));
        assert_eq!(measured(&m.measured), names(&MEASURED_MEMORY_V1));
    }

    /// The v2 heuristic needs a non-zero usage: an empty answer counts as v1.
    #[test]
    fn stopped_container_is_not_a_sample() {
        let stats = fixture("stats-stopped.json");
        let u = resource_usage(&stats, &COMPUTE);
        assert_eq!(u.memory, MemoryStats { measured: u.memory.measured.clone(), ..Default::default() });
        assert_eq!(measured(&u.memory.measured), names(&MEASURED_MEMORY_V1));
        assert_eq!((u.cpu.percent, u.cpu.system_mode, u.cpu.user_mode, u.cpu.total_ticks), (0.0, 0.0, 0.0, 0.0));
        assert_eq!(task_sample("a", "t", &stats, &COMPUTE), None);
    }

    #[test]
    fn sample_of_a_running_container() {
        let stats = fixture("stats-v1-busy-loop.json");
        let sample = task_sample("11111111-2222-3333-4444-555555555555", "web", &stats, &COMPUTE).unwrap();
        assert_eq!(sample.alloc_id.as_str(), "11111111-2222-3333-4444-555555555555");
        assert_eq!(sample.task.as_str(), "web");
        assert_eq!(sample.state, TaskState::RUNNING);
        assert_eq!(sample.timestamp, 1_795_737_560_808_647_487);
        assert_eq!(sample.pids, None.into());
        assert_eq!(sample.usage, resource_usage(&stats, &COMPUTE));
    }

    #[test]
    fn missing_fields_are_zero() {
        let u = resource_usage(&serde_json::from_str("{}").unwrap(), &COMPUTE);
        assert_eq!(u.cpu.percent, 0.0);
        assert_eq!(u.memory.usage, 0);
    }
}
