//! allocd's own metrics: what the agent itself does, counted where it happens.
//!
//! Each plugin call ends in one typed [`CallOutcome`], recorded by the call policy
//! (`plugins::call`) into that plugin's [`CallStats`]; each response's status code into
//! [`RequestCounts`]. They are plain atomics (and one small mutex per plugin for the latency
//! aggregate), so recording costs nothing measurable and a scrape only reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the plugin call latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0];

/// How one plugin call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The plugin answered (a value or an error of its own) after this long.
    Answered { error: bool, took: Duration },
    /// The adapter caught a panic in the plugin.
    Panicked,
    /// The call did not finish within the plugin's timeout.
    TimedOut,
    /// The plugin was unhealthy: the call failed at once without reaching it.
    Skipped,
}

/// A latency distribution: bucket counts plus what go-metrics' samples display.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`].
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
    pub sum_squares: f64,
    pub min: f64,
    pub max: f64,
}

impl Distribution {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        if self.count == 0 || seconds < self.min {
            self.min = seconds;
        }
        self.max = self.max.max(seconds);
        self.count += 1;
        self.sum += seconds;
        self.sum_squares += seconds * seconds;
    }
}

/// What one plugin's calls have done since the agent started.
#[derive(Debug, Default)]
pub struct CallStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub panics: AtomicU64,
    pub timeouts: AtomicU64,
    pub skipped: AtomicU64,
    latency: Mutex<Distribution>,
}

impl CallStats {
    pub fn record(&self, outcome: CallOutcome) {
        let counter = match outcome {
            CallOutcome::Answered { error, took } => {
                self.latency.lock().unwrap_or_else(|e| e.into_inner()).observe(took.as_secs_f64());
                if error {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
                &self.calls
            }
            CallOutcome::Panicked => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                &self.panics
            }
            CallOutcome::TimedOut => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                &self.timeouts
            }
            CallOutcome::Skipped => &self.skipped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The latency of answered calls so far.
    pub fn latency(&self) -> Distribution {
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Responses by status code.
pub struct RequestCounts([AtomicU64; 600]);

impl Default for RequestCounts {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl RequestCounts {
    pub fn record(&self, status: u16) {
        if let Some(count) = self.0.get(usize::from(status)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(status, count)` for every status answered at least once.
    pub fn counts(&self) -> Vec<(u16, u64)> {
        (0u16..600)
            .map(|status| (status, self.0[usize::from(status)].load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

/// How many responses are following a file right now.
#[derive(Default)]
pub struct Followers(Arc<AtomicU64>);

/// One follower, counted until dropped.
pub struct Following(Arc<AtomicU64>);

impl Followers {
    /// Counts a follower for as long as the returned guard lives.
    pub fn enter(&self) -> Following {
        self.0.fetch_add(1, Ordering::Relaxed);
        Following(Arc::clone(&self.0))
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_land_in_their_counters() {
        let stats = CallStats::default();
        stats.record(CallOutcome::Answered { error: false, took: Duration::from_millis(2) });
        stats.record(CallOutcome::Answered { error: true, took: Duration::from_millis(30) });
        stats.record(CallOutcome::Panicked);
        stats.record(CallOutcome::TimedOut);
        stats.record(CallOutcome::Skipped);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        assert_eq!(
            [load(&stats.calls), load(&stats.errors), load(&stats.panics), load(&stats.timeouts), load(&stats.skipped)],
            [4, 1, 1, 1, 1]
        );
        let latency = stats.latency();
        assert_eq!((latency.count, latency.min, latency.max), (2, 0.002, 0.03));
        assert_eq!(latency.buckets[..6], [0, 0, 1, 1, 1, 1], "cumulative buckets");
    }
}
