//! One cgroup v1 task: its counters per spec §6.1 (opencontainers/cgroups `fs/memory.go`,
//! `fs/cpuacct.go`, `fs/cpu.go` as Nomad's executor maps them) and its pids.
//!
//! The task's directory in each controller is `<controller>/nomad/<allocID>.<task>`. Only the
//! controllers it was found in are read; a controller it lacks reports zeros.
//!
//! | field | file |
//! |---|---|
//! | RSS / Cache | `memory.stat` `rss` (else `anon`) / `cache` (else `file`) |
//! | Swap | `memory.memsw.usage_in_bytes` (memory+swap; 0 without swap accounting) |
//! | Usage / MaxUsage | `memory.usage_in_bytes` / `memory.max_usage_in_bytes` |
//! | KernelUsage / KernelMaxUsage | `memory.kmem.usage_in_bytes` / `memory.kmem.max_usage_in_bytes` (0 if absent) |
//! | CPU total ns | `cpuacct.usage` |
//! | CPU user / system ns | `cpuacct.stat` `user` / `system` ticks × 1e9 / CLK_TCK |
//! | ThrottledPeriods / ThrottledTime | `cpu.stat` `nr_throttled` / `throttled_time` (ns) |
//!
//! Pids come from the freezer cgroup's `cgroup.procs` (Nomad's v1 "stats cgroup"), else
//! the memory, cpuacct or cpu one.

use std::path::{Path, PathBuf};

use crate::detect::{CPU, CPUACCT, ControllerMask, FREEZER, MEMORY, V1Controllers};
use crate::liveness::task_state;
use crate::parse::{keyed, single};
use crate::read::{CgFile, TaskFiles};
use crate::usage::{Counters, memory_stat};

// The files read, each with its slot among the task's kept descriptors.
// v1 caches a pid list per open `cgroup.procs`: open it afresh every time.
const PROCS: CgFile = CgFile::required("cgroup.procs", 0).reopened();
const MEMORY_STAT: CgFile = CgFile::required("memory.stat", 1);
const USAGE: CgFile = CgFile::required("memory.usage_in_bytes", 2);
const MAX_USAGE: CgFile = CgFile::required("memory.max_usage_in_bytes", 3);
const MEMSW_USAGE: CgFile = CgFile::optional("memory.memsw.usage_in_bytes", 4);
const KMEM_USAGE: CgFile = CgFile::optional("memory.kmem.usage_in_bytes", 5);
const KMEM_MAX_USAGE: CgFile = CgFile::optional("memory.kmem.max_usage_in_bytes", 6);
const CPUACCT_USAGE: CgFile = CgFile::required("cpuacct.usage", 7);
const CPUACCT_STAT: CgFile = CgFile::required("cpuacct.stat", 8);
const CPU_STAT: CgFile = CgFile::required("cpu.stat", 9);

/// Reads task `name` found in the controllers of `mask`. Fills `pids` (unsorted, as listed)
/// and returns the counters, or `None` when the task's cgroup vanished while being read.
pub fn read(
    files: &mut TaskFiles<'_>,
    controllers: &V1Controllers,
    name: &str,
    mask: ControllerMask,
    clk_tck: u64,
    dir: &mut PathBuf,
    pids: &mut Vec<u32>,
) -> Option<Counters> {
    let task_dir = |bit: ControllerMask, dir: &mut PathBuf| -> bool {
        let Some(controller) = controllers.get(bit).filter(|_| mask & bit != 0) else { return false };
        dir.as_mut_os_string().clear();
        dir.push(controller);
        dir.push("nomad");
        dir.push(name);
        true
    };

    pids.clear();
    let mut c = Counters::default();
    if [FREEZER, MEMORY, CPUACCT, CPU].into_iter().any(|bit| task_dir(bit, dir)) {
        let listed = files.procs(dir, &PROCS, pids);
        c.state = task_state(listed, pids, dir);
    }

    if task_dir(MEMORY, dir) {
        read_memory(files, dir, &mut c);
    }
    if task_dir(CPUACCT, dir) {
        c.cpu_total_ns = files.get(dir, &CPUACCT_USAGE, single).unwrap_or(0);
        let [user, system] =
            files.get(dir, &CPUACCT_STAT, |b| keyed(b, [b"user".as_slice(), b"system"])).unwrap_or_default();
        let to_ns = |ticks: u64| (u128::from(ticks) * 1_000_000_000 / u128::from(clk_tck.max(1))) as u64;
        c.cpu_user_ns = to_ns(user);
        c.cpu_system_ns = to_ns(system);
    }
    if task_dir(CPU, dir) {
        let [periods, time] = files
            .get(dir, &CPU_STAT, |b| keyed(b, [b"nr_throttled".as_slice(), b"throttled_time"]))
            .unwrap_or_default();
        c.throttled_periods = periods;
        c.throttled_time_ns = time;
    }
    (!files.vanished()).then_some(c)
}

fn read_memory(files: &mut TaskFiles<'_>, dir: &Path, c: &mut Counters) {
    (c.rss, c.cache) = files.get(dir, &MEMORY_STAT, memory_stat).unwrap_or_default();
    c.usage = files.get(dir, &USAGE, single).unwrap_or(0);
    c.max_usage = files.get(dir, &MAX_USAGE, single).unwrap_or(0);
    c.swap = files.get(dir, &MEMSW_USAGE, single).unwrap_or(0);
    c.kernel_usage = files.get(dir, &KMEM_USAGE, single).unwrap_or(0);
    c.kernel_max_usage = files.get(dir, &KMEM_MAX_USAGE, single).unwrap_or(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{FdBudget, OpenFiles, Reader};
    use crate::warn::{Problem, Warnings};
    use std::fs;

    const TASK: &str = "5fb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f60.web";

    fn write_all(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    /// A v1 task with every file under `root`.
    fn fixture(root: &Path) {
        write_all(
            &root.join("memory/nomad").join(TASK),
            &[
                ("cgroup.procs", "40\n41\n"),
                (
                    "memory.stat",
                    "cache 3000\nrss 2000\nrss_huge 0\nshmem 0\nmapped_file 777\nswap 0\ntotal_cache 999999\ntotal_rss 999999\n",
                ),
                ("memory.usage_in_bytes", "8000\n"),
                ("memory.max_usage_in_bytes", "9000\n"),
                ("memory.memsw.usage_in_bytes", "8500\n"),
                ("memory.kmem.usage_in_bytes", "100\n"),
                ("memory.kmem.max_usage_in_bytes", "200\n"),
            ],
        );
        write_all(
            &root.join("cpuacct/nomad").join(TASK),
            &[
                ("cgroup.procs", "40\n41\n"),
                ("cpuacct.usage", "5000000000\n"),
                ("cpuacct.stat", "user 300\nsystem 150\n"),
            ],
        );
        write_all(
            &root.join("cpu/nomad").join(TASK),
            &[
                ("cgroup.procs", "40\n41\n"),
                ("cpu.stat", "nr_periods 50\nnr_throttled 7\nthrottled_time 123456\nnr_bursts 0\nburst_time 0\n"),
            ],
        );
        write_all(&root.join("freezer/nomad").join(TASK), &[("cgroup.procs", "41\n40\n42\n")]);
    }

    fn read_task(root: &Path, mask: ControllerMask, warnings: &mut Warnings) -> (Option<Counters>, Vec<u32>) {
        let controllers = V1Controllers::find(root);
        let (mut reader, mut open, mut budget) = (Reader::default(), OpenFiles::default(), FdBudget::new(64));
        let mut files = TaskFiles::new(&mut reader, warnings, &mut open, &mut budget);
        let mut pids = Vec::new();
        let c = read(&mut files, &controllers, TASK, mask, 100, &mut PathBuf::new(), &mut pids);
        (c, pids)
    }

    #[test]
    fn every_field_is_mapped() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let mut warnings = Warnings::default();
        let (c, pids) = read_task(dir.path(), MEMORY | CPUACCT | CPU | FREEZER, &mut warnings);
        assert_eq!(pids, [41, 40, 42], "pids come from the freezer cgroup");
        assert_eq!(
            c.unwrap(),
            Counters {
                rss: 2000,
                cache: 3000,
                swap: 8500,
                usage: 8000,
                max_usage: 9000,
                kernel_usage: 100,
                kernel_max_usage: 200,
                cpu_total_ns: 5_000_000_000,
                cpu_user_ns: 3_000_000_000,
                cpu_system_ns: 1_500_000_000,
                throttled_periods: 7,
                throttled_time_ns: 123456,
                state: allocd_plugin_sdk::TaskState::RUNNING,
            }
        );
        assert!(!warnings.reported(Problem::Missing, "memory.stat"));
    }

    #[test]
    fn optional_files_missing_read_zero_quietly() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let memory = dir.path().join("memory/nomad").join(TASK);
        for f in ["memory.memsw.usage_in_bytes", "memory.kmem.usage_in_bytes", "memory.kmem.max_usage_in_bytes"] {
            fs::remove_file(memory.join(f)).unwrap();
        }
        fs::write(memory.join("memory.stat"), "cache 0\nrss 0\nmapped_file 0\n").unwrap();
        let mut warnings = Warnings::default();
        let (c, _) = read_task(dir.path(), MEMORY | CPUACCT | CPU | FREEZER, &mut warnings);
        let c = c.unwrap();
        assert_eq!((c.swap, c.kernel_usage, c.kernel_max_usage, c.rss, c.cache), (0, 0, 0, 0, 0));
        assert!(!warnings.reported(Problem::Missing, "memory.memsw.usage_in_bytes"));
    }

    #[test]
    fn only_the_controllers_found_are_read() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let mut warnings = Warnings::default();
        // Found only in memory: no freezer, so pids come from memory; CPU is zero.
        let (c, pids) = read_task(dir.path(), MEMORY, &mut warnings);
        let c = c.unwrap();
        assert_eq!(pids, [40, 41]);
        assert_eq!(c.usage, 8000);
        assert_eq!((c.cpu_total_ns, c.throttled_periods), (0, 0));
        // Found nowhere that exists: zeros, no pids, not vanished (nothing was read).
        let (c, pids) = read_task(dir.path(), 0, &mut warnings);
        assert_eq!(c, Some(Counters::default()));
        assert!(pids.is_empty());
    }

    #[test]
    fn garbled_files_read_zero_and_warn() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let cpuacct = dir.path().join("cpuacct/nomad").join(TASK);
        fs::write(cpuacct.join("cpuacct.usage"), "lots\n").unwrap();
        fs::write(cpuacct.join("cpuacct.stat"), "user many\nsystem 1\n").unwrap();
        fs::write(dir.path().join("freezer/nomad").join(TASK).join("cgroup.procs"), "\u{0}\u{1}garbage").unwrap();
        let mut warnings = Warnings::default();
        let (c, pids) = read_task(dir.path(), MEMORY | CPUACCT | CPU | FREEZER, &mut warnings);
        let c = c.unwrap();
        assert_eq!((c.cpu_total_ns, c.cpu_user_ns, c.cpu_system_ns), (0, 0, 0));
        assert_eq!(c.usage, 8000, "other files are unaffected");
        assert!(pids.is_empty());
        assert!(warnings.reported(Problem::Garbled, "cpuacct.usage"));
        assert!(warnings.reported(Problem::Garbled, "cpuacct.stat"));
        assert!(warnings.reported(Problem::Garbled, "cgroup.procs"));
    }

    #[test]
    fn a_task_removed_before_reading_vanishes() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        fs::remove_dir_all(dir.path().join("memory/nomad").join(TASK)).unwrap();
        let mut warnings = Warnings::default();
        let (c, _) = read_task(dir.path(), MEMORY | CPUACCT | CPU | FREEZER, &mut warnings);
        assert_eq!(c, None);
        assert!(!warnings.reported(Problem::Missing, "memory.stat"));
    }
}
