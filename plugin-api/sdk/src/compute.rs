//! The node's CPU capacity as Nomad computes it, shared by every metric provider: Nomad's
//! `cpustats.Compute` (spec `nomad-stats.md` §5), `TotalCompute` in MHz and `NumCores`, the
//! topology core count.
//!
//! This is an SDK helper, not part of the ABI: nothing here crosses the plugin boundary, and a
//! plugin applies its own config overrides (`cpu_total_compute`, `num_cores`) to what it detects.
//!
//! Detection follows Nomad's Linux topology (`client/lib/numalib/detect_linux.go`): the cores are
//! the logical CPUs in `/sys/devices/system/cpu/online` (else the processors `/proc/cpuinfo`
//! lists, else the available parallelism); each core's speed is, in whole MHz:
//! * its base speed: `cpuN/cpufreq/base_frequency` (kHz), or, when `cpuN/cpufreq/scaling_driver`
//!   is `acpi-cpufreq`, `cpuN/acpi_cppc/nominal_freq` (MHz);
//! * else its maximum speed: `cpuN/cpufreq/cpuinfo_max_freq` (kHz);
//! * else a guess: the `cpu MHz` line of that processor in `/proc/cpuinfo`, truncated (Nomad's
//!   SMBIOS guess is not attempted: it needs dmidecode); 0 when there is none.
//!
//! `TotalCompute` is the sum over the cores. Only std is used: [`detect_at`] takes a sysfs `cpu`
//! directory and the cpuinfo text, so tests run against fixture directories.

use std::collections::HashMap;
use std::path::Path;

/// Nomad's `cpustats.Compute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compute {
    /// Σ per-core MHz.
    pub total_compute: u64,
    /// Logical cores of the topology (not a container's `online_cpus`); never 0.
    pub num_cores: u32,
}

impl Compute {
    /// This machine's topology, from `/sys/devices/system/cpu` and `/proc/cpuinfo`.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        detect_at(Path::new("/sys/devices/system/cpu"), &cpuinfo)
    }
}

/// Detection against a sysfs `cpu` directory and `/proc/cpuinfo` text (tests point it elsewhere).
pub fn detect_at(sys_cpu: &Path, cpuinfo: &str) -> Compute {
    let guesses = cpuinfo_mhz(cpuinfo);
    let ids = std::fs::read_to_string(sys_cpu.join("online"))
        .ok()
        .and_then(|text| parse_cpu_list(&text))
        .filter(|ids| !ids.is_empty())
        .unwrap_or_else(|| {
            let mut ids: Vec<u32> = guesses.keys().copied().collect();
            ids.sort_unstable();
            if ids.is_empty() {
                let count = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
                ids = (0..count).collect();
            }
            ids
        });
    let total_compute =
        ids.iter().map(|&id| core_mhz(sys_cpu, id).or_else(|| guesses.get(&id).copied()).unwrap_or(0)).sum();
    Compute { total_compute, num_cores: (ids.len() as u32).max(1) }
}

/// A core's base speed, else its maximum speed, in whole MHz.
fn core_mhz(sys_cpu: &Path, id: u32) -> Option<u64> {
    let dir = sys_cpu.join(format!("cpu{id}"));
    let read = |file: &str| -> Option<u64> {
        let value: u64 = std::fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()?;
        (value > 0).then_some(value)
    };
    let driver = std::fs::read_to_string(dir.join("cpufreq/scaling_driver")).unwrap_or_default();
    let base = if driver.trim() == "acpi-cpufreq" {
        read("acpi_cppc/nominal_freq") // already MHz
    } else {
        read("cpufreq/base_frequency").map(|khz| khz / 1000)
    };
    base.or_else(|| read("cpufreq/cpuinfo_max_freq").map(|khz| khz / 1000)).filter(|&mhz| mhz > 0)
}

/// `processor` → truncated `cpu MHz` from /proc/cpuinfo.
fn cpuinfo_mhz(text: &str) -> HashMap<u32, u64> {
    let mut speeds = HashMap::new();
    let mut processor = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key.trim() {
            "processor" => processor = value.trim().parse::<u32>().ok(),
            "cpu MHz" => {
                if let (Some(id), Ok(mhz)) = (processor, value.trim().parse::<f64>()) {
                    speeds.insert(id, mhz as u64);
                }
            }
            _ => {}
        }
    }
    speeds
}

/// Parses a kernel CPU list such as `0-3,6,8-9`.
fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => ids.extend(first.parse::<u32>().ok()?..=last.parse::<u32>().ok()?),
            None => ids.push(part.parse().ok()?),
        }
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6,8-9\n"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn base_then_max_then_cpuinfo() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "online", "0-3\n");
        write(root, "cpu0/cpufreq/base_frequency", "2100000\n");
        write(root, "cpu0/cpufreq/cpuinfo_max_freq", "3900000\n");
        write(root, "cpu1/cpufreq/cpuinfo_max_freq", "3900999\n");
        write(root, "cpu2/cpufreq/scaling_driver", "acpi-cpufreq\n");
        write(root, "cpu2/acpi_cppc/nominal_freq", "2000\n");
        write(root, "cpu2/cpufreq/base_frequency", "9999999\n"); // ignored under acpi-cpufreq
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 1.0\n\nprocessor\t: 3\ncpu MHz\t\t: 2596.142\n";
        let compute = detect_at(root, cpuinfo);
        assert_eq!(compute, Compute { total_compute: 2100 + 3900 + 2000 + 2596, num_cores: 4 });
    }

    #[test]
    fn zero_speeds_fall_through_and_offline_cores_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "online", "0,2\n");
        write(root, "cpu0/cpufreq/base_frequency", "0\n"); // unknown: use the max
        write(root, "cpu0/cpufreq/cpuinfo_max_freq", "3100000\n");
        write(root, "cpu1/cpufreq/base_frequency", "5000000\n"); // offline
        write(root, "cpu2/cpufreq/scaling_driver", "acpi-cpufreq\n");
        write(root, "cpu2/acpi_cppc/nominal_freq", "0\n"); // unknown, no max: guess
        let cpuinfo = "processor\t: 2\nmodel name\t: X: Y\ncpu MHz\t\t: 1499.9\n";
        assert_eq!(detect_at(root, cpuinfo), Compute { total_compute: 3100 + 1499, num_cores: 2 });
    }

    #[test]
    fn without_sysfs_counts_cpuinfo_processors() {
        let dir = tempfile::tempdir().unwrap();
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2596.142\nprocessor\t: 1\ncpu MHz\t\t: 2596.142\n";
        assert_eq!(detect_at(dir.path(), cpuinfo), Compute { total_compute: 5192, num_cores: 2 });
    }

    #[test]
    fn without_sysfs_or_cpuinfo_counts_the_parallelism() {
        let dir = tempfile::tempdir().unwrap();
        let compute = detect_at(&dir.path().join("nope"), "");
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        assert_eq!(compute, Compute { total_compute: 0, num_cores: parallelism });
    }

    #[test]
    fn this_machine_has_cores() {
        assert!(Compute::detect().num_cores >= 1);
    }
}
