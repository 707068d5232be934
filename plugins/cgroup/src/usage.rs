//! From raw cgroup counters to Nomad's `ResourceUsage` (spec §2.2, §6): the `Measured` lists
//! exactly as the libcontainer executor sends them over gRPC, CPU percentages through the
//! task's trackers, and `TotalTicks` from the node's compute. `MappedFile` is always 0 because
//! Nomad's executor proto has no field for it (§9).

use std::time::Instant;

use abi_stable::std_types::{RString, RVec};
use allocd_plugin_sdk::{CpuStats, MemoryStats, ResourceUsage, TaskState};

use crate::detect::Mode;
use crate::tracker::{Compute, CpuTrackers};

/// Memory `Measured` of a v1 task cgroup.
pub const V1_MEMORY_MEASURED: &[&str] =
    &["RSS", "Cache", "Swap", "Usage", "Max Usage", "Kernel Usage", "Kernel Max Usage"];
/// Memory `Measured` of a v2 task cgroup (`MaxUsage` is filled but not listed).
pub const V2_MEMORY_MEASURED: &[&str] = &["RSS", "Cache", "Swap", "Usage"];
/// CPU `Measured` of a task cgroup, v1 and v2 (`TotalTicks` is filled but never listed).
pub const CGROUP_CPU_MEASURED: &[&str] =
    &["System Mode", "User Mode", "Throttled Periods", "Throttled Time", "Percent"];
/// Memory `Measured` of one process (§7).
pub const PID_MEMORY_MEASURED: &[&str] = &["RSS", "Swap"];
/// CPU `Measured` of one process (§7).
pub const PID_CPU_MEASURED: &[&str] = &["System Mode", "User Mode", "Percent"];

/// A `Measured` list.
pub fn measured(names: &[&str]) -> RVec<RString> {
    names.iter().map(|&n| RString::from(n)).collect()
}

/// What one read of a task cgroup yields, before the trackers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub rss: u64,
    pub cache: u64,
    pub swap: u64,
    pub usage: u64,
    pub max_usage: u64,
    pub kernel_usage: u64,
    pub kernel_max_usage: u64,
    /// Cumulative CPU time, nanoseconds.
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time_ns: u64,
    /// Running, exited or unknown ([`crate::liveness`]).
    pub state: TaskState,
}

/// `memory.stat` as libcontainer and Nomad read it: `rss`, else `anon` when that is 0;
/// `cache`, else `file`. Works for both v1 (rss/cache) and v2 (anon/file).
pub fn memory_stat(bytes: &[u8]) -> Option<(u64, u64)> {
    let [rss, anon, cache, file] = crate::parse::keyed(bytes, [b"rss".as_slice(), b"anon", b"cache", b"file"])?;
    Some((if rss == 0 { anon } else { rss }, if cache == 0 { file } else { cache }))
}

/// The task's `ResourceUsage` from its counters; `now` is when they were read.
pub fn task_usage(
    counters: &Counters,
    mode: Mode,
    trackers: &mut CpuTrackers,
    now: Instant,
    compute: &Compute,
) -> ResourceUsage {
    let cpu =
        trackers.update(now, counters.cpu_total_ns as f64, counters.cpu_user_ns as f64, counters.cpu_system_ns as f64);
    ResourceUsage {
        memory: MemoryStats {
            rss: counters.rss,
            cache: counters.cache,
            swap: counters.swap,
            mapped_file: 0,
            usage: counters.usage,
            max_usage: counters.max_usage,
            kernel_usage: counters.kernel_usage,
            kernel_max_usage: counters.kernel_max_usage,
            measured: measured(match mode {
                Mode::V1 => V1_MEMORY_MEASURED,
                Mode::V2 => V2_MEMORY_MEASURED,
            }),
        },
        cpu: CpuStats {
            system_mode: cpu.system_mode,
            user_mode: cpu.user_mode,
            total_ticks: compute.ticks_consumed(cpu.percent),
            throttled_periods: counters.throttled_periods,
            throttled_time: counters.throttled_time_ns,
            percent: cpu.percent,
            measured: measured(CGROUP_CPU_MEASURED),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn memory_stat_fallbacks() {
        assert_eq!(memory_stat(b"cache 5\nrss 7\nmapped_file 3\n"), Some((7, 5)));
        assert_eq!(memory_stat(b"anon 11\nfile 13\nfile_mapped 2\n"), Some((11, 13)));
        assert_eq!(memory_stat(b"rss 0\nanon 4\ncache 0\nfile 6\n"), Some((4, 6)));
        assert_eq!(memory_stat(b"garbage"), None);
    }

    #[test]
    fn usage_from_counters() {
        let counters = Counters {
            rss: 1,
            cache: 2,
            swap: 3,
            usage: 4,
            max_usage: 5,
            kernel_usage: 6,
            kernel_max_usage: 7,
            cpu_total_ns: 1_000,
            cpu_user_ns: 600,
            cpu_system_ns: 400,
            throttled_periods: 8,
            throttled_time_ns: 9,
            state: TaskState::RUNNING,
        };
        let compute = Compute { total_compute: 4000.0, num_cores: 2 };
        let mut trackers = CpuTrackers::default();
        let start = Instant::now();
        let first = task_usage(&counters, Mode::V1, &mut trackers, start, &compute);
        assert_eq!(first.memory.mapped_file, 0);
        assert_eq!((first.memory.rss, first.memory.cache, first.memory.swap, first.memory.usage), (1, 2, 3, 4));
        assert_eq!((first.memory.max_usage, first.memory.kernel_usage, first.memory.kernel_max_usage), (5, 6, 7));
        assert_eq!(first.memory.measured, measured(V1_MEMORY_MEASURED));
        assert_eq!(first.cpu.measured, measured(CGROUP_CPU_MEASURED));
        assert_eq!((first.cpu.throttled_periods, first.cpu.throttled_time), (8, 9));
        assert_eq!(
            (first.cpu.percent, first.cpu.user_mode, first.cpu.system_mode, first.cpu.total_ticks),
            (0.0, 0.0, 0.0, 0.0)
        );

        let later = Counters { cpu_total_ns: 2_000, cpu_user_ns: 1_200, cpu_system_ns: 800, ..counters };
        let second = task_usage(&later, Mode::V2, &mut trackers, start + Duration::from_nanos(1_000), &compute);
        assert_eq!(second.cpu.percent, 100.0);
        assert_eq!(second.cpu.user_mode, 60.0);
        assert_eq!(second.cpu.system_mode, 40.0);
        assert_eq!(second.cpu.total_ticks, 2000.0);
        assert_eq!(second.memory.measured, measured(V2_MEMORY_MEASURED));
    }
}
