//! Per-CPU percentages from /proc/stat, as gopsutil's `cpu.Times(true)` plus Nomad's
//! calculator: previous values start at zero, so the first sample averages since boot.

use std::collections::HashMap;

use allocd_plugin_sdk::HostCpuStats;

/// The ten /proc/stat counters of one CPU, in ticks.
#[derive(Clone, Copy, Default)]
struct Times {
    user: f64,
    system: f64,
    idle: f64,
    busy: f64,
}

impl Times {
    fn total(&self) -> f64 {
        self.idle + self.busy
    }
}

/// Remembers each CPU's previous counters.
#[derive(Default)]
pub struct Tracker {
    previous: HashMap<String, Times>,
}

impl Tracker {
    /// One sample of every `cpuN` line; `total_compute` in MHz spreads over the CPU lines.
    pub fn sample(&mut self, total_compute: f64) -> Vec<HostCpuStats> {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        self.sample_text(&text, total_compute)
    }

    fn sample_text(&mut self, text: &str, total_compute: f64) -> Vec<HostCpuStats> {
        let cpus = parse(text);
        let count = cpus.len() as f64;
        cpus.into_iter()
            .map(|(name, now)| {
                let before = self.previous.insert(name.clone(), now).unwrap_or_default();
                let delta_total = now.total() - before.total();
                let pct = |now: f64, before: f64| (now - before) / delta_total * 100.0;
                let guard = |v: f64, fallback: f64| if v.is_finite() && v >= 0.0 { v } else { fallback };
                let total_percent = guard(pct(now.busy, before.busy), 0.0);
                HostCpuStats {
                    cpu: name.into(),
                    user: guard(pct(now.user, before.user), 0.0),
                    system: guard(pct(now.system, before.system), 0.0),
                    idle: guard(pct(now.idle, before.idle), 100.0),
                    total_percent,
                    total_ticks: total_percent / 100.0 * total_compute / count,
                }
            })
            .collect()
    }
}

fn parse(text: &str) -> Vec<(String, Times)> {
    text.lines()
        .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?.to_string();
            let v: Vec<f64> = fields.map(|f| f.parse().unwrap_or(0.0)).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
            // user nice system idle iowait irq softirq steal guest guest_nice
            let busy = at(0) + at(1) + at(2) + at(4) + at(5) + at(6) + at(7) + at(8) + at(9);
            Some((name, Times { user: at(0), system: at(2), idle: at(3), busy }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_averages_since_boot_then_deltas() {
        let mut tracker = Tracker::default();
        let first = "cpu  1 1 1 1 1 1 1 1 1 1\ncpu0 10 0 10 70 10 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0 0 0\n";
        let stats = tracker.sample_text(first, 2000.0);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].cpu.as_str(), "cpu0");
        assert_eq!(stats[0].user, 10.0);
        assert_eq!(stats[0].idle, 70.0);
        assert_eq!(stats[0].total_percent, 30.0); // iowait counts as busy
        assert_eq!(stats[0].total_ticks, 0.3 * 2000.0 / 2.0);
        let second = "cpu0 20 0 10 80 10 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0 0 0\n";
        let stats = tracker.sample_text(second, 2000.0);
        assert_eq!(stats[0].user, 50.0);
        assert_eq!(stats[0].idle, 50.0);
        // No time passed on cpu1: NaN guards give idle 100 and zero elsewhere.
        assert_eq!(stats[1].idle, 100.0);
        assert_eq!(stats[1].total_percent, 0.0);
    }
}
