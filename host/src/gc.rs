//! Garbage collection of terminal allocations: the endpoints' collector and Nomad's
//! client-side policy (`gc_interval`, `gc_max_allocs`, `gc_disk_usage_threshold`).
//!
//! An allocation is terminal when no metric provider reports a running task for it. Only
//! terminal allocations are collected, through the backend that holds them; collected IDs
//! are remembered so a second GC, and streams on them, get Nomad's answers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::plugins::Registry;
use crate::stats::Sampler;

/// Nomad's client GC settings (`client { ... }` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct GcPolicy {
    pub interval: Duration,
    pub max_allocs: usize,
    /// Percent of the alloc dir's filesystem.
    pub disk_usage_threshold: f64,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self { interval: Duration::from_secs(60), max_allocs: 50, disk_usage_threshold: 80.0 }
    }
}

/// Nomad's text for a GC of a running or already collected allocation.
pub const NOT_ELIGIBLE: &str = "No such allocation on client, or allocation not eligible for GC";

/// Deletes terminal allocations and remembers which.
pub struct Collector {
    registry: Arc<Registry>,
    sampler: Arc<Sampler>,
    collected: Mutex<HashSet<String>>,
}

/// A terminal allocation that may be collected.
struct Candidate {
    backend: usize,
    id: String,
    mod_time_ns: i64,
}

impl Collector {
    pub fn new(registry: Arc<Registry>, sampler: Arc<Sampler>) -> Self {
        Self { registry, sampler, collected: Mutex::new(HashSet::new()) }
    }

    pub fn was_collected(&self, alloc_id: &str) -> bool {
        self.collected.lock().unwrap_or_else(|e| e.into_inner()).contains(alloc_id)
    }

    /// Collects one allocation held by backend `index`; `Err` carries the reason.
    pub async fn collect(&self, index: usize, alloc_id: &str) -> Result<(), String> {
        if self.sampler.is_running(alloc_id) {
            return Err(NOT_ELIGIBLE.to_string());
        }
        let backend = &self.registry.storage[index];
        backend.gc(alloc_id).await.map_err(|f| f.describe())?;
        self.collected.lock().unwrap_or_else(|e| e.into_inner()).insert(alloc_id.to_string());
        self.sampler.forget(alloc_id);
        tracing::info!(alloc_id, backend = backend.name(), "collected allocation");
        Ok(())
    }

    /// Every terminal allocation, oldest first, and how many allocations exist in all.
    /// Samples of allocations that no longer exist are dropped on the way.
    async fn candidates(&self) -> (Vec<Candidate>, usize) {
        let mut candidates = Vec::new();
        let mut existing = HashSet::new();
        let mut listed_all = true;
        for (backend, plugin) in self.registry.storage.iter().enumerate() {
            let ids = match plugin.list_allocs().await {
                Ok(ids) => ids,
                Err(failure) => {
                    tracing::warn!(plugin = plugin.name(), "listing allocations failed: {}", failure.message());
                    listed_all = false;
                    continue;
                }
            };
            existing.extend(ids.iter().cloned());
            for id in ids.into_iter().filter(|id| !self.sampler.is_running(id)) {
                let mod_time_ns = plugin.stat(&id, "/").await.map(|info| info.mod_time_ns).unwrap_or(0);
                candidates.push(Candidate { backend, id, mod_time_ns });
            }
        }
        if listed_all {
            self.sampler.retain(&existing);
        }
        candidates.sort_by_key(|c| c.mod_time_ns);
        (candidates, existing.len())
    }

    /// `/v1/client/gc`: collects every terminal allocation in the background.
    pub fn collect_all(self: &Arc<Self>) {
        let collector = Arc::clone(self);
        tokio::spawn(async move {
            let (candidates, _) = collector.candidates().await;
            for candidate in candidates {
                if let Err(reason) = collector.collect(candidate.backend, &candidate.id).await {
                    tracing::warn!(alloc_id = candidate.id, "gc failed: {reason}");
                }
            }
        });
    }

    /// Applies the policy once: too many allocations, or a too-full alloc dir, collects the
    /// oldest terminal ones until back under the limits.
    pub async fn enforce(&self, policy: &GcPolicy) {
        let (candidates, mut total) = self.candidates().await;
        for candidate in candidates {
            let over_count = total > policy.max_allocs;
            let over_disk = self.disk_used_percent().is_some_and(|used| used > policy.disk_usage_threshold);
            if !over_count && !over_disk {
                return;
            }
            match self.collect(candidate.backend, &candidate.id).await {
                Ok(()) => {
                    total -= 1;
                    self.sampler.collect(&self.registry).await; // fresh disk figures
                }
                Err(reason) => tracing::warn!(alloc_id = candidate.id, "gc failed: {reason}"),
            }
        }
    }

    fn disk_used_percent(&self) -> Option<f64> {
        self.sampler.host().map(|sample| sample.stats.alloc_dir_stats.used_percent)
    }

    /// Runs the policy every `policy.interval`.
    pub async fn run(self: Arc<Self>, policy: GcPolicy) {
        let mut ticker = tokio::time::interval(policy.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate: give the agent an interval first
        loop {
            ticker.tick().await;
            self.enforce(&policy).await;
        }
    }
}
