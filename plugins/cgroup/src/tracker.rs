//! Nomad's CPU percent trackers and tick normalisation (`client/lib/cpustats/stats.go`,
//! spec §5).
//!
//! A [`Tracker`] turns a cumulative CPU time into a percentage of one core over the time since
//! its previous call: 0.0 on the first call (and whenever the previous value was 0), then
//! `Δcpu_ns / Δwall_ns × 100`, and 0.0 when either delta is not positive. Wall time is
//! monotonic ([`Instant`]), passed in so callers take it once per task and tests control it.

use std::time::Instant;

/// One aspect (total, user or system time) of one task's or process's CPU use.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    prev_cpu_ns: f64,
    prev_time: Option<Instant>,
}

impl Tracker {
    /// Percent of one core used since the previous call; `cpu_ns` is cumulative.
    pub fn percent(&mut self, cpu_ns: f64, now: Instant) -> f64 {
        let previous = self.prev_time.filter(|_| self.prev_cpu_ns != 0.0);
        let before = self.prev_cpu_ns;
        self.prev_cpu_ns = cpu_ns;
        self.prev_time = Some(now);
        let Some(then) = previous else { return 0.0 };
        let wall_ns = now.saturating_duration_since(then).as_nanos() as f64;
        let cpu_delta = cpu_ns - before;
        if wall_ns <= 0.0 || cpu_delta <= 0.0 {
            return 0.0;
        }
        cpu_delta / wall_ns * 100.0
    }
}

/// The three trackers Nomad keeps per task (and per process).
#[derive(Clone, Debug, Default)]
pub struct CpuTrackers {
    pub total: Tracker,
    pub user: Tracker,
    pub system: Tracker,
}

/// Percentages derived from one reading of cumulative CPU times.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuPercents {
    pub percent: f64,
    pub user_mode: f64,
    pub system_mode: f64,
}

impl CpuTrackers {
    /// Feeds cumulative nanoseconds (total, user, system) taken at `now`.
    pub fn update(&mut self, now: Instant, total_ns: f64, user_ns: f64, system_ns: f64) -> CpuPercents {
        CpuPercents {
            percent: self.total.percent(total_ns, now),
            user_mode: self.user.percent(user_ns, now),
            system_mode: self.system.percent(system_ns, now),
        }
    }
}

/// Nomad's `cpustats.Compute`: the node's total MHz and logical core count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compute {
    pub total_compute: f64,
    pub num_cores: u32,
}

impl Compute {
    /// This node's compute, detected by the SDK ([`allocd_plugin_sdk::compute`]) with Nomad's rules.
    pub fn detect() -> Self {
        allocd_plugin_sdk::compute::Compute::detect().into()
    }

    /// `TicksConsumed`: `percent/100 × TotalCompute / NumCores`, MHz-equivalent.
    pub fn ticks_consumed(&self, percent: f64) -> f64 {
        if self.num_cores == 0 {
            return 0.0;
        }
        percent / 100.0 * self.total_compute / f64::from(self.num_cores)
    }
}

/// The SDK's whole MHz as this crate's float MHz (a `cpu_total_compute` override may be fractional).
impl From<allocd_plugin_sdk::compute::Compute> for Compute {
    fn from(detected: allocd_plugin_sdk::compute::Compute) -> Self {
        Self { total_compute: detected.total_compute as f64, num_cores: detected.num_cores }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_sample_is_zero_then_delta_over_wall_time() {
        let start = Instant::now();
        let mut t = Tracker::default();
        assert_eq!(t.percent(1_000_000_000.0, start), 0.0);
        // 250 ms of CPU in 500 ms of wall time: half a core.
        assert_eq!(t.percent(1_250_000_000.0, start + Duration::from_millis(500)), 50.0);
        // Two cores busy for a second: 200 (can exceed 100).
        assert_eq!(t.percent(3_250_000_000.0, start + Duration::from_millis(1500)), 200.0);
        // No progress, or a counter going backwards (cgroup recreated): 0.
        assert_eq!(t.percent(3_250_000_000.0, start + Duration::from_millis(2500)), 0.0);
        assert_eq!(t.percent(1_000.0, start + Duration::from_millis(3500)), 0.0);
        // ... and the new value is the base for the next delta.
        assert_eq!(t.percent(500_001_000.0, start + Duration::from_millis(4500)), 50.0);
    }

    #[test]
    fn a_zero_previous_value_restarts_like_a_first_sample() {
        let start = Instant::now();
        let mut t = Tracker::default();
        assert_eq!(t.percent(0.0, start), 0.0);
        // Nomad: prevCPUTime == 0 → store and return 0, even though time passed.
        assert_eq!(t.percent(1_000_000.0, start + Duration::from_secs(1)), 0.0);
        assert_eq!(t.percent(11_000_000.0, start + Duration::from_secs(2)), 1.0);
    }

    #[test]
    fn no_wall_time_is_zero() {
        let start = Instant::now();
        let mut t = Tracker::default();
        t.percent(1.0, start);
        assert_eq!(t.percent(2.0, start), 0.0);
    }

    #[test]
    fn three_trackers_and_ticks() {
        let start = Instant::now();
        let mut cpu = CpuTrackers::default();
        assert_eq!(cpu.update(start, 10.0, 6.0, 4.0), CpuPercents::default());
        let p = cpu.update(start + Duration::from_nanos(100), 60.0, 36.0, 24.0);
        assert_eq!(p, CpuPercents { percent: 50.0, user_mode: 30.0, system_mode: 20.0 });
        let compute = Compute { total_compute: 8000.0, num_cores: 4 };
        assert_eq!(compute.ticks_consumed(50.0), 1000.0);
        assert_eq!(compute.ticks_consumed(0.0), 0.0);
        assert_eq!(Compute { total_compute: 8000.0, num_cores: 0 }.ticks_consumed(50.0), 0.0);
    }

    #[test]
    fn from_the_sdk_compute() {
        let detected = allocd_plugin_sdk::compute::Compute { total_compute: 5192, num_cores: 2 };
        assert_eq!(Compute::from(detected), Compute { total_compute: 5192.0, num_cores: 2 });
        assert_eq!(Compute::detect(), Compute::from(allocd_plugin_sdk::compute::Compute::detect()));
    }
}
