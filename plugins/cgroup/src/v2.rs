//! One cgroup v2 task: its counters per spec §6.2 (opencontainers/cgroups `fs2/memory.go`,
//! `fs2/cpu.go` as Nomad's executor maps them) and its pids, all from the
//! `<allocID>.<task>.scope` directory.
//!
//! | field | file |
//! |---|---|
//! | RSS / Cache | `memory.stat` `anon` / `file` (`rss`/`cache` would win if present, as in runc) |
//! | Swap | `memory.swap.current` + `memory.current` (runc imitates v1 memsw); `memory.current` without swap accounting |
//! | Usage | `memory.current` |
//! | MaxUsage | `memory.peak` (kernel ≥ 5.19), else 0; not in Measured |
//! | KernelUsage / KernelMaxUsage | 0 |
//! | CPU total / user / system ns | `cpu.stat` `usage_usec` / `user_usec` / `system_usec` × 1000 |
//! | ThrottledPeriods / ThrottledTime | `cpu.stat` `nr_throttled` / `throttled_usec` × 1000 |

use std::path::Path;

use crate::liveness::task_state;
use crate::parse::{keyed, single};
use crate::read::{CgFile, TaskFiles};
use crate::usage::{Counters, memory_stat};

// The files read, each with its slot among the task's kept descriptors.
// v2 restarts its task iterator on a read at offset 0, so a kept `cgroup.procs` is fresh.
const PROCS: CgFile = CgFile::required("cgroup.procs", 0);
const MEMORY_STAT: CgFile = CgFile::required("memory.stat", 1);
const MEMORY_CURRENT: CgFile = CgFile::required("memory.current", 2);
const SWAP_CURRENT: CgFile = CgFile::optional("memory.swap.current", 3);
const MEMORY_PEAK: CgFile = CgFile::optional("memory.peak", 4);
const CPU_STAT: CgFile = CgFile::required("cpu.stat", 5);

/// Reads the scope directory `dir`. Fills `pids` (unsorted, as listed) and returns the
/// counters, or `None` when the cgroup vanished while being read.
pub fn read(files: &mut TaskFiles<'_>, dir: &Path, pids: &mut Vec<u32>) -> Option<Counters> {
    let listed = files.procs(dir, &PROCS, pids);
    let mut c = Counters { state: task_state(listed, pids, dir), ..Counters::default() };
    (c.rss, c.cache) = files.get(dir, &MEMORY_STAT, memory_stat).unwrap_or_default();
    c.usage = files.get(dir, &MEMORY_CURRENT, single).unwrap_or(0);
    let swap_only = files.get(dir, &SWAP_CURRENT, single).unwrap_or(0);
    c.swap = swap_only.saturating_add(c.usage);
    c.max_usage = files.get(dir, &MEMORY_PEAK, single).unwrap_or(0);
    let keys = [b"usage_usec".as_slice(), b"user_usec", b"system_usec", b"nr_throttled", b"throttled_usec"];
    let [usage, user, system, throttled, throttled_usec] =
        files.get(dir, &CPU_STAT, |b| keyed(b, keys)).unwrap_or_default();
    c.cpu_total_ns = usage.saturating_mul(1000);
    c.cpu_user_ns = user.saturating_mul(1000);
    c.cpu_system_ns = system.saturating_mul(1000);
    c.throttled_periods = throttled;
    c.throttled_time_ns = throttled_usec.saturating_mul(1000);
    (!files.vanished()).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{FdBudget, OpenFiles, Reader};
    use crate::warn::{Problem, Warnings};
    use std::fs;

    fn scope(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in [
            ("cgroup.procs", "7\n8\n"),
            ("memory.stat", "anon 4096\nfile 8192\nkernel 100\nfile_mapped 512\nshmem 0\n"),
            ("memory.current", "20000\n"),
            ("memory.swap.current", "1000\n"),
            ("memory.peak", "30000\n"),
            (
                "cpu.stat",
                "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\nnr_periods 10\nnr_throttled 3\nthrottled_usec 250\nnr_bursts 0\nburst_usec 0\n",
            ),
        ] {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    fn read_dir(dir: &Path, warnings: &mut Warnings) -> (Option<Counters>, Vec<u32>) {
        let (mut reader, mut open, mut budget) = (Reader::default(), OpenFiles::default(), FdBudget::new(64));
        let mut files = TaskFiles::new(&mut reader, warnings, &mut open, &mut budget);
        let mut pids = Vec::new();
        (read(&mut files, dir, &mut pids), pids)
    }

    #[test]
    fn every_field_is_mapped() {
        let dir = tempfile::tempdir().unwrap();
        scope(dir.path());
        let mut warnings = Warnings::default();
        let (c, pids) = read_dir(dir.path(), &mut warnings);
        assert_eq!(pids, [7, 8]);
        assert_eq!(
            c.unwrap(),
            Counters {
                rss: 4096,
                cache: 8192,
                swap: 21000,
                usage: 20000,
                max_usage: 30000,
                kernel_usage: 0,
                kernel_max_usage: 0,
                cpu_total_ns: 2_000_000_000,
                cpu_user_ns: 1_500_000_000,
                cpu_system_ns: 500_000_000,
                throttled_periods: 3,
                throttled_time_ns: 250_000,
                state: allocd_plugin_sdk::TaskState::RUNNING,
            }
        );
    }

    #[test]
    fn without_swap_accounting_or_peak() {
        let dir = tempfile::tempdir().unwrap();
        scope(dir.path());
        fs::remove_file(dir.path().join("memory.swap.current")).unwrap();
        fs::remove_file(dir.path().join("memory.peak")).unwrap();
        // Without the cpu controller, cpu.stat has only the usage lines.
        fs::write(dir.path().join("cpu.stat"), "usage_usec 10\nuser_usec 6\nsystem_usec 4\n").unwrap();
        let mut warnings = Warnings::default();
        let c = read_dir(dir.path(), &mut warnings).0.unwrap();
        assert_eq!(c.swap, 20000, "swap is memory.current alone");
        assert_eq!(c.max_usage, 0);
        assert_eq!((c.cpu_total_ns, c.throttled_periods, c.throttled_time_ns), (10_000, 0, 0));
        assert!(!warnings.reported(Problem::Missing, "memory.peak"));
    }

    #[test]
    fn memory_controller_off_reads_zero_and_warns_once() {
        let dir = tempfile::tempdir().unwrap();
        scope(dir.path());
        for f in ["memory.stat", "memory.current", "memory.swap.current", "memory.peak"] {
            fs::remove_file(dir.path().join(f)).unwrap();
        }
        let mut warnings = Warnings::default();
        let c = read_dir(dir.path(), &mut warnings).0.unwrap();
        assert_eq!((c.rss, c.cache, c.usage, c.swap, c.max_usage), (0, 0, 0, 0, 0));
        assert_eq!(c.cpu_total_ns, 2_000_000_000);
        assert!(warnings.reported(Problem::Missing, "memory.stat"));
        assert!(warnings.reported(Problem::Missing, "memory.current"));
    }

    #[test]
    fn empty_and_garbled_files() {
        let dir = tempfile::tempdir().unwrap();
        scope(dir.path());
        fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        fs::write(dir.path().join("memory.current"), "").unwrap();
        fs::write(dir.path().join("cpu.stat"), "usage_usec 99999999999999999999999\n").unwrap();
        let mut warnings = Warnings::default();
        let (c, pids) = read_dir(dir.path(), &mut warnings);
        let c = c.unwrap();
        assert!(pids.is_empty());
        assert_eq!((c.usage, c.cpu_total_ns), (0, 0));
        assert_eq!(c.swap, 1000);
        assert!(warnings.reported(Problem::Garbled, "memory.current"));
        assert!(warnings.reported(Problem::Garbled, "cpu.stat"));
    }

    #[test]
    fn a_vanished_scope_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut warnings = Warnings::default();
        assert_eq!(read_dir(&dir.path().join("gone.scope"), &mut warnings).0, None);
    }
}
