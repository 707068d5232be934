//! Per-process statistics: the `Pids` map of a task (spec §6 last bullet, §7), as Nomad's
//! `procstats` computes it from /proc through gopsutil.
//!
//! For each pid of the task's `cgroup.procs`:
//! * memory: `RSS` = `/proc/<pid>/statm` field 2 × page size, `Swap` = 0 (gopsutil reads only
//!   statm), `Measured` `["RSS","Swap"]` when the read succeeded, else zeros and `[]`;
//! * CPU from `/proc/<pid>/stat`: utime, stime and delayacct_blkio_ticks over CLK_TCK are
//!   seconds, × 1e9 into that pid's own trackers; `Percent` uses user + system + iowait;
//!   `Measured` `["System Mode","User Mode","Percent"]`; `TotalTicks` stays 0.
//!
//! A pid whose /proc entry is gone is left out. Like Nomad, the whole map is cached for
//! 5 s per task ([`PID_STATS_TTL`]): within that window the previous map is returned as is,
//! so per-pid values move about every 5 s while the task's own figures move every sample.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use abi_stable::std_types::RVec;
use allocd_plugin_sdk::{CpuStats, MemoryStats, PidUsage, ResourceUsage};

use crate::parse::{proc_stat, statm_resident};
use crate::read::Reader;
use crate::tracker::CpuTrackers;
use crate::usage::{PID_CPU_MEASURED, PID_MEMORY_MEASURED, measured};

/// Nomad's `procstats` cache lifetime.
pub const PID_STATS_TTL: Duration = Duration::from_secs(5);

/// How to read /proc: its root (tests use fixtures) and the system constants.
#[derive(Clone, Debug)]
pub struct ProcSettings {
    pub proc_root: std::path::PathBuf,
    pub page_size: u64,
    pub clk_tck: u64,
    pub ttl: Duration,
}

impl Default for ProcSettings {
    fn default() -> Self {
        Self { proc_root: "/proc".into(), page_size: page_size(), clk_tck: clk_tck(), ttl: PID_STATS_TTL }
    }
}

/// `sysconf(_SC_CLK_TCK)`, 100 when unknown.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

/// `sysconf(_SC_PAGESIZE)`, 4096 when unknown.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

/// One task's per-pid trackers and its cached map.
#[derive(Debug, Default)]
pub struct PidCache {
    at: Option<Instant>,
    trackers: HashMap<u32, CpuTrackers>,
    latest: RVec<PidUsage>,
}

impl PidCache {
    /// The task's `Pids` map at `now`; `pids` must be sorted and free of duplicates.
    pub fn sample(
        &mut self,
        reader: &mut Reader,
        settings: &ProcSettings,
        pids: &[u32],
        now: Instant,
    ) -> RVec<PidUsage> {
        if self.at.is_some_and(|at| now <= at + settings.ttl) {
            return self.latest.clone();
        }
        self.trackers.retain(|pid, _| pids.binary_search(pid).is_ok());
        self.latest.clear();
        for &pid in pids {
            let trackers = self.trackers.entry(pid).or_default();
            if let Some(usage) = read_pid(reader, settings, pid, trackers, now) {
                self.latest.push(PidUsage { pid, usage });
            }
        }
        self.at = Some(now);
        self.latest.clone()
    }
}

fn read_pid(
    reader: &mut Reader,
    settings: &ProcSettings,
    pid: u32,
    trackers: &mut CpuTrackers,
    now: Instant,
) -> Option<ResourceUsage> {
    // The process is gone when its stat cannot be read: leave it out (Nomad's NewProcess).
    let times = proc_stat(reader.read_pid(&settings.proc_root, pid, "stat").ok()?);
    let resident = reader.read_pid(&settings.proc_root, pid, "statm").ok().and_then(statm_resident);

    let memory = match resident {
        Some(pages) => MemoryStats {
            rss: pages.saturating_mul(settings.page_size),
            swap: 0,
            measured: measured(PID_MEMORY_MEASURED),
            ..MemoryStats::default()
        },
        None => MemoryStats::default(),
    };
    let cpu = match times {
        Some((utime, stime, blkio)) => {
            let tck = settings.clk_tck.max(1) as f64;
            let (user, system, iowait) = (utime as f64 / tck, stime as f64 / tck, blkio as f64 / tck);
            const SECOND: f64 = 1e9;
            CpuStats {
                system_mode: trackers.system.percent(system * SECOND, now),
                user_mode: trackers.user.percent(user * SECOND, now),
                percent: trackers.total.percent((user + system + iowait) * SECOND, now),
                total_ticks: 0.0,
                measured: measured(PID_CPU_MEASURED),
                ..CpuStats::default()
            }
        }
        None => CpuStats::default(),
    };
    Some(ResourceUsage { memory, cpu })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn stat_line(pid: u32, utime: u64, stime: u64, blkio: u64) -> String {
        let mut fields: Vec<String> = (3..=52).map(|_| "0".to_string()).collect();
        fields[0] = "S".into();
        fields[14 - 3] = utime.to_string();
        fields[15 - 3] = stime.to_string();
        fields[42 - 3] = blkio.to_string();
        format!("{pid} (task (x)) {}\n", fields.join(" "))
    }

    fn write_proc(root: &Path, pid: u32, utime: u64, stime: u64, blkio: u64, resident: Option<u64>) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("stat"), stat_line(pid, utime, stime, blkio)).unwrap();
        match resident {
            Some(pages) => fs::write(dir.join("statm"), format!("1000 {pages} 10 1 0 50 0\n")).unwrap(),
            None => {
                let _ = fs::remove_file(dir.join("statm"));
            }
        }
    }

    fn settings(root: &Path) -> ProcSettings {
        ProcSettings { proc_root: root.to_path_buf(), page_size: 4096, clk_tck: 100, ttl: PID_STATS_TTL }
    }

    #[test]
    fn per_pid_fields_trackers_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_proc(root, 10, 100, 50, 10, Some(25));
        write_proc(root, 11, 0, 0, 0, None);
        let settings = settings(root);
        let mut reader = Reader::default();
        let mut cache = PidCache::default();
        let t0 = Instant::now();

        // 12 is listed but has no /proc entry: left out.
        let first = cache.sample(&mut reader, &settings, &[10, 11, 12], t0);
        assert_eq!(first.iter().map(|p| p.pid).collect::<Vec<_>>(), [10, 11]);
        let p10 = &first[0].usage;
        assert_eq!(p10.memory.rss, 25 * 4096);
        assert_eq!(p10.memory.swap, 0);
        assert_eq!(p10.memory.mapped_file, 0);
        assert_eq!(p10.memory.measured, measured(&["RSS", "Swap"]));
        assert_eq!(p10.cpu.measured, measured(&["System Mode", "User Mode", "Percent"]));
        assert_eq!(
            (p10.cpu.percent, p10.cpu.user_mode, p10.cpu.system_mode, p10.cpu.total_ticks),
            (0.0, 0.0, 0.0, 0.0)
        );
        // statm unreadable: zero memory, empty Measured; CPU still measured.
        let p11 = &first[1].usage;
        assert_eq!(p11.memory, MemoryStats::default());
        assert_eq!(p11.cpu.measured.len(), 3);

        // Within the TTL: the same map, even though /proc moved on.
        write_proc(root, 10, 200, 100, 60, Some(30));
        let cached = cache.sample(&mut reader, &settings, &[10, 11], t0 + Duration::from_secs(5));
        assert_eq!(cached, first);

        // After it: +100 user ticks, +50 system, +50 iowait over 10 s at CLK_TCK 100 = 1 s, 0.5 s, 0.5 s.
        let fresh = cache.sample(&mut reader, &settings, &[10], t0 + Duration::from_secs(10));
        assert_eq!(fresh.len(), 1);
        let p10 = &fresh[0].usage;
        assert_eq!(p10.memory.rss, 30 * 4096);
        assert_eq!(p10.cpu.user_mode, 10.0);
        assert_eq!(p10.cpu.system_mode, 5.0);
        assert_eq!(p10.cpu.percent, 20.0, "percent includes iowait");
        assert_eq!(p10.cpu.total_ticks, 0.0);
        assert!(!cache.trackers.contains_key(&11), "trackers of pids that left are dropped");
    }

    #[test]
    fn garbled_stat_keeps_the_pid_with_zero_cpu() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("5")).unwrap();
        fs::write(dir.path().join("5/stat"), "garbage").unwrap();
        fs::write(dir.path().join("5/statm"), "1 2").unwrap();
        let mut cache = PidCache::default();
        let out = cache.sample(&mut Reader::default(), &settings(dir.path()), &[5], Instant::now());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].usage.cpu, CpuStats::default());
        assert_eq!(out[0].usage.memory.rss, 8192);
    }

    #[test]
    fn this_process() {
        let settings = ProcSettings::default();
        assert_eq!(settings.clk_tck, 100);
        let me = std::process::id();
        let out = PidCache::default().sample(&mut Reader::default(), &settings, &[me], Instant::now());
        assert_eq!(out.len(), 1);
        assert!(out[0].usage.memory.rss > 0);
    }
}
