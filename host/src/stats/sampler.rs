//! The background sampler behind `GET /v1/client/stats` and the allocation stats.
//!
//! Every `collection_interval` it asks the metric providers for a host sample (the first that
//! answers wins) and for their task samples, on the blocking pool. The host sample is stored
//! with its compact JSON already encoded, so the endpoint is a clone of `Bytes`; task samples
//! replace the previous ones, except that a task no provider reports any more keeps its last
//! sample marked not running (Nomad keeps an exited task's last sample). The first samples are
//! taken before the agent serves, as Nomad collects synchronously when none exists yet.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use allocd_plugin_api::TaskSample;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;

use crate::api::model;
use crate::api::wire;
use crate::plugins::Registry;

/// One stored host sample.
pub struct HostSample {
    pub stats: model::HostStats,
    pub compact_json: Bytes,
}

/// A task sample and the provider (its position in the registry) that reported it.
#[derive(Clone)]
pub struct Sampled {
    pub provider: usize,
    pub sample: TaskSample,
}

/// Task samples by allocation ID, then by task name.
pub type TaskSamples = HashMap<String, HashMap<String, Sampled>>;

/// The latest samples, shared by the sampling task and the handlers.
#[derive(Default)]
pub struct Sampler {
    host: RwLock<Option<Arc<HostSample>>>,
    tasks: RwLock<Arc<TaskSamples>>,
    /// The last failure reported per provider and kind, so each is logged once.
    failures: std::sync::Mutex<HashMap<String, String>>,
}

impl Sampler {
    /// The latest host sample, if any provider reports the host.
    pub fn host(&self) -> Option<Arc<HostSample>> {
        self.host.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The latest task samples.
    pub fn tasks(&self) -> Arc<TaskSamples> {
        Arc::clone(&self.tasks.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// True when a provider reports a live task of `alloc_id`.
    pub fn is_running(&self, alloc_id: &str) -> bool {
        self.tasks().get(alloc_id).is_some_and(|tasks| tasks.values().any(|t| t.sample.running))
    }

    /// Forgets a collected allocation's samples.
    pub fn forget(&self, alloc_id: &str) {
        let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
        if tasks.contains_key(alloc_id) {
            Arc::make_mut(&mut tasks).remove(alloc_id);
        }
    }

    /// Logs a provider's failure when it starts or changes, and its recovery.
    fn report(&self, plugin: &str, what: &str, failure: Option<&str>) {
        let key = format!("{plugin}\0{what}");
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failure {
            Some(message) if failures.get(&key).map(String::as_str) != Some(message) => {
                tracing::warn!(plugin, "{what} failed: {message}");
                failures.insert(key, message.to_string());
            }
            None if failures.remove(&key).is_some() => tracing::info!(plugin, "{what} recovered"),
            _ => {}
        }
    }

    /// Forgets the samples of allocations no backend holds any more (they were deleted
    /// behind allocd's back, e.g. by a Nomad client sharing the alloc dir).
    pub fn retain(&self, existing: &std::collections::HashSet<String>) {
        let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
        if tasks.keys().any(|id| !existing.contains(id)) {
            Arc::make_mut(&mut tasks).retain(|id, _| existing.contains(id));
        }
    }

    /// Takes one round of samples from the providers and stores them.
    pub async fn collect(&self, registry: &Registry) {
        tokio::join!(self.collect_host(registry), self.collect_tasks(registry));
    }

    async fn collect_tasks(&self, registry: &Registry) {
        let mut fresh = TaskSamples::new();
        // Providers are asked concurrently, so a slow one delays no other.
        let answers = join_all(registry.metrics.iter().map(|p| async move { (p, p.sample_tasks().await) })).await;
        let mut failed = Vec::new();
        for (index, (provider, answer)) in answers.into_iter().enumerate() {
            match answer {
                Ok(samples) => {
                    self.report(provider.name(), "task samples", None);
                    for sample in samples {
                        let by_task = fresh.entry(sample.alloc_id.to_string()).or_default();
                        by_task.entry(sample.task.to_string()).or_insert(Sampled { provider: index, sample });
                    }
                }
                Err(failure) => {
                    failed.push(index);
                    self.report(provider.name(), "task samples", Some(failure.message()));
                }
            }
        }
        // A task missing from this round has exited: its last sample stays, not running. But a
        // task of a provider that failed this round is unknown, not exited (a Docker daemon
        // restarting must not make running allocations collectable): it stays as it was.
        let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
        for (alloc_id, old_tasks) in tasks.iter() {
            for (task, old) in old_tasks {
                let by_task = fresh.entry(alloc_id.clone()).or_default();
                by_task.entry(task.clone()).or_insert_with(|| {
                    let running = old.sample.running && failed.contains(&old.provider);
                    Sampled { provider: old.provider, sample: TaskSample { running, ..old.sample.clone() } }
                });
            }
        }
        *tasks = Arc::new(fresh);
    }

    async fn collect_host(&self, registry: &Registry) {
        // The first provider to answer with a sample wins; a slow one does not hold it up.
        let mut answers: FuturesUnordered<_> =
            registry.metrics.iter().map(|p| async move { (p, p.host_stats().await) }).collect();
        while let Some((provider, answer)) = answers.next().await {
            match answer {
                Ok(Some(stats)) => {
                    let stats = model::HostStats::from(&stats);
                    let compact_json = Bytes::from(wire::to_json(&stats, false));
                    *self.host.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(HostSample { stats, compact_json }));
                    return;
                }
                Ok(None) => {}
                Err(failure) => self.report(provider.name(), "host sample", Some(failure.message())),
            }
        }
    }

    /// Samples forever, every `interval`: host and task samples in loops of their own, so a
    /// slow task provider never makes the host sample stale.
    pub async fn run(self: Arc<Self>, registry: Arc<Registry>, interval: Duration) {
        let host = every(interval, || self.collect_host(&registry));
        let tasks = every(interval, || self.collect_tasks(&registry));
        tokio::join!(host, tasks);
    }
}

/// Runs `round` every `interval` after the first interval (the agent sampled at startup).
async fn every<F: Future<Output = ()>>(interval: Duration, mut round: impl FnMut() -> F) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        round().await;
    }
}
