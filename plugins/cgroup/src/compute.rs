//! The node's CPU capacity as Nomad computes it (`client/lib/numalib`, spec §5), needed for
//! `TotalTicks`: `TotalCompute` is the sum over every logical core of its MHz, `NumCores` the
//! number of cores.
//!
//! A core's MHz is its base speed if known, else its maximum speed, else a guess:
//! * base: `/sys/devices/system/cpu/cpuN/cpufreq/base_frequency` (kHz), or, when
//!   `cpufreq/scaling_driver` is `acpi-cpufreq`, `acpi_cppc/nominal_freq` (MHz);
//! * max: `cpufreq/cpuinfo_max_freq` (kHz);
//! * guess: the `cpu MHz` line of that processor in `/proc/cpuinfo` (Nomad's SMBIOS guess is
//!   not attempted: it needs dmidecode).
//!
//! MHz are whole numbers (Nomad's `hw.MHz` is an integer), so 2596.142 counts as 2596.
//! The operator's `cpu_total_compute` overrides the total (not the core count).

use std::path::Path;

use crate::tracker::Compute;

/// Detects the compute of this machine.
pub fn detect_host() -> Compute {
    detect(Path::new("/sys/devices/system/cpu"), Path::new("/proc/cpuinfo"))
}

/// Detects the compute from a sysfs cpu directory and a cpuinfo file (tests pass fixtures).
pub fn detect(sys_cpu: &Path, cpuinfo: &Path) -> Compute {
    let cpuinfo = std::fs::read_to_string(cpuinfo).unwrap_or_default();
    let guesses = cpuinfo_mhz(&cpuinfo);
    let fallback_guess = guesses.first().map(|&(_, mhz)| mhz).unwrap_or(0);
    let guess = |core: u32| guesses.iter().find(|&&(id, _)| id == core).map(|&(_, mhz)| mhz).unwrap_or(fallback_guess);

    let mut cores = core_ids(sys_cpu);
    if cores.is_empty() {
        // No sysfs (an unusual container): the processors cpuinfo lists, else the CPU count.
        cores = guesses.iter().map(|&(id, _)| id).collect();
        if cores.is_empty() {
            let count = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            cores = (0..count as u32).collect();
        }
    }
    let total: u64 =
        cores.iter().map(|&core| sysfs_mhz(&sys_cpu.join(format!("cpu{core}"))).unwrap_or_else(|| guess(core))).sum();
    Compute { total_compute: total as f64, num_cores: cores.len() as u32 }
}

/// Logical core ids from the `cpuN` entries of the sysfs cpu directory, ascending.
fn core_ids(sys_cpu: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(sys_cpu) else { return Vec::new() };
    let mut ids: Vec<u32> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let digits = name.to_str()?.strip_prefix("cpu")?;
            crate::parse::digits(digits.as_bytes()).and_then(|id| u32::try_from(id).ok())
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Base speed, else max speed, from sysfs; `None` when neither is known.
fn sysfs_mhz(core: &Path) -> Option<u64> {
    let number = |file: &str| -> Option<u64> {
        let text = std::fs::read(core.join(file)).ok()?;
        crate::parse::single(&text).filter(|&v| v > 0)
    };
    let driver = std::fs::read(core.join("cpufreq/scaling_driver")).unwrap_or_default();
    let base = if driver.trim_ascii() == b"acpi-cpufreq" {
        number("acpi_cppc/nominal_freq")
    } else {
        number("cpufreq/base_frequency").map(|khz| khz / 1000)
    };
    base.filter(|&mhz| mhz > 0).or_else(|| number("cpufreq/cpuinfo_max_freq").map(|khz| khz / 1000))
}

/// `(processor, whole MHz)` pairs from /proc/cpuinfo.
fn cpuinfo_mhz(text: &str) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut processor = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let (key, value) = (key.trim(), value.trim());
        if key == "processor" {
            processor = value.parse::<u32>().ok();
        } else if key == "cpu MHz" {
            let whole = value.split('.').next().unwrap_or_default();
            if let (Some(id), Some(mhz)) = (processor, crate::parse::digits(whole.as_bytes())) {
                out.push((id, mhz));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn base_then_max_then_cpuinfo_guess() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = dir.path().join("cpu");
        // cpu0: base 2000 MHz (max ignored); cpu1: max only; cpu2: acpi-cpufreq nominal;
        // cpu3: nothing in sysfs, cpuinfo says 1499.9; cpu10 sorts numerically and has no
        // cpuinfo entry, so it takes the first cpuinfo value.
        write(&cpu.join("cpu0/cpufreq/base_frequency"), "2000000\n");
        write(&cpu.join("cpu0/cpufreq/cpuinfo_max_freq"), "3900000\n");
        write(&cpu.join("cpu1/cpufreq/cpuinfo_max_freq"), "3100000\n");
        write(&cpu.join("cpu1/cpufreq/base_frequency"), "0\n");
        write(&cpu.join("cpu2/cpufreq/scaling_driver"), "acpi-cpufreq\n");
        write(&cpu.join("cpu2/cpufreq/base_frequency"), "9000000\n");
        write(&cpu.join("cpu2/acpi_cppc/nominal_freq"), "2400\n");
        fs::create_dir_all(cpu.join("cpu3")).unwrap();
        fs::create_dir_all(cpu.join("cpu10")).unwrap();
        fs::create_dir_all(cpu.join("cpufreq")).unwrap(); // not a core
        fs::create_dir_all(cpu.join("cpuidle")).unwrap(); // not a core
        let cpuinfo = dir.path().join("cpuinfo");
        write(
            &cpuinfo,
            "processor\t: 0\ncpu MHz\t\t: 1000.000\n\nprocessor\t: 3\nmodel name\t: X: Y\ncpu MHz\t\t: 1499.9\n\n",
        );
        let compute = detect(&cpu, &cpuinfo);
        assert_eq!(compute.num_cores, 5);
        assert_eq!(compute.total_compute, (2000 + 3100 + 2400 + 1499 + 1000) as f64);
    }

    #[test]
    fn without_sysfs_cpuinfo_counts_the_cores() {
        let dir = tempfile::tempdir().unwrap();
        let cpuinfo = dir.path().join("cpuinfo");
        write(&cpuinfo, "processor : 0\ncpu MHz : 2596.142\nprocessor : 1\ncpu MHz : 2596.142\n");
        let compute = detect(&dir.path().join("nope"), &cpuinfo);
        assert_eq!(compute, Compute { total_compute: 5192.0, num_cores: 2 });
    }

    #[test]
    fn this_host_has_cores() {
        let compute = detect_host();
        assert!(compute.num_cores >= 1);
    }
}
