//! The background sampler behind `GET /v1/client/stats`, the allocation stats, and the
//! evidence garbage collection rests on.
//!
//! Every `collection_interval` it asks the metric providers for a host sample (the first that
//! answers wins) and for their task reports, on the blocking pool. The host sample is stored
//! with its compact JSON already encoded, so the endpoint is a clone of `Bytes`. Task reports
//! go to the [`Evidence`] store first, then replace the previous samples; a task no provider
//! reports any more keeps its last sample (Nomad keeps an exited task's last sample) with the
//! state the evidence gives it: exited when its provider's view was complete, unknown when not.
//! The first samples are taken before the agent serves, as Nomad collects synchronously when
//! none exists yet. Tasks the agent runs itself (the `-dev` sample) report through a
//! [`TaskSource`] like a provider.
//!
//! Each task round also refreshes the allocation [`AllocsIndex`], and an allocation's compact
//! stats answer is encoded once per round, on its first request ([`Sampler::alloc_stats_json`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use allocd_plugin_abi::{TaskLabels, TaskReport, TaskSample, TaskState};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;

use super::index::AllocsIndex;
use crate::api::model;
use crate::api::wire;
use crate::gc::evidence::Evidence;
use crate::gc::now_ns;
use crate::plugins::Registry;

/// Tasks the agent runs itself, reported like a metric provider's.
pub trait TaskSource: Send + Sync {
    fn name(&self) -> &str;
    fn report(&self) -> TaskReport;
}

/// One stored host sample.
pub struct HostSample {
    pub stats: model::HostStats,
    pub compact_json: Bytes,
}

/// A task sample, the provider that reported it, and the labels (job, task group, namespace)
/// the provider knows for the task.
#[derive(Clone)]
pub struct Sampled {
    pub provider: Arc<str>,
    pub sample: TaskSample,
    pub labels: Option<Arc<TaskLabels>>,
}

/// Task samples by allocation ID, then by task name.
pub type TaskSamples = HashMap<String, HashMap<String, Sampled>>;

/// Compact allocation stats answers, encoded from one round of task samples.
#[derive(Default)]
struct AllocAnswers {
    round: Arc<TaskSamples>,
    answers: HashMap<String, Bytes>,
}

/// The latest samples, shared by the sampling task and the handlers.
pub struct Sampler {
    host: RwLock<Option<Arc<HostSample>>>,
    tasks: RwLock<Arc<TaskSamples>>,
    alloc_answers: std::sync::Mutex<AllocAnswers>,
    allocs: AllocsIndex,
    evidence: Evidence,
    own_tasks: Vec<Arc<dyn TaskSource>>,
    /// The last failure reported per provider and kind, so each is logged once.
    failures: std::sync::Mutex<HashMap<String, String>>,
}

impl Sampler {
    /// A sampler feeding `evidence`, with tasks the agent runs itself.
    pub fn new(evidence: Evidence, own_tasks: Vec<Arc<dyn TaskSource>>) -> Self {
        Self {
            host: RwLock::default(),
            tasks: RwLock::default(),
            alloc_answers: std::sync::Mutex::default(),
            allocs: AllocsIndex::default(),
            evidence,
            own_tasks,
            failures: std::sync::Mutex::default(),
        }
    }

    /// What the providers have proven about each task.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// The latest host sample, if any provider reports the host.
    pub fn host(&self) -> Option<Arc<HostSample>> {
        self.host.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The latest task samples.
    pub fn tasks(&self) -> Arc<TaskSamples> {
        Arc::clone(&self.tasks.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Which backend holds which allocation.
    pub fn allocs(&self) -> &AllocsIndex {
        &self.allocs
    }

    /// `/v1/client/allocation/:alloc_id/stats`'s compact answer from the latest task samples,
    /// encoded once per round of samples.
    pub fn alloc_stats_json(&self, alloc_id: &str) -> Bytes {
        let round = self.tasks();
        let mut cache = self.alloc_answers.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&cache.round, &round) {
            *cache = AllocAnswers { round: Arc::clone(&round), answers: HashMap::new() };
        }
        if let Some(answer) = cache.answers.get(alloc_id) {
            return answer.clone();
        }
        let samples = round.get(alloc_id).into_iter().flat_map(|t| t.values().map(|s| &s.sample));
        let answer = Bytes::from(wire::to_json(&model::AllocResourceUsage::compose(samples, None), false));
        cache.answers.insert(alloc_id.to_string(), answer.clone());
        answer
    }

    /// Forgets a collected allocation's samples, evidence and index entries.
    pub async fn forget(&self, alloc_id: &str) {
        self.allocs.forget(alloc_id);
        {
            let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
            if tasks.contains_key(alloc_id) {
                Arc::make_mut(&mut tasks).remove(alloc_id);
            }
        }
        self.evidence.forget(alloc_id).await;
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

    /// Forgets the samples and evidence of allocations no backend holds any more (they were
    /// deleted behind allocd's back, e.g. by a Nomad client sharing the alloc dir).
    pub async fn retain(&self, existing: &std::collections::HashSet<String>) {
        {
            let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
            if tasks.keys().any(|id| !existing.contains(id)) {
                Arc::make_mut(&mut tasks).retain(|id, _| existing.contains(id));
            }
        }
        self.evidence.retain(existing).await;
    }

    /// Takes one round of samples from the providers and stores them.
    pub async fn collect(&self, registry: &Registry) {
        tokio::join!(self.collect_host(registry), self.collect_tasks(registry));
    }

    async fn collect_tasks(&self, registry: &Registry) {
        // Providers are asked concurrently, so a slow one delays no other.
        let samples = join_all(registry.metrics.iter().map(|p| async move {
            let report = p.sample_tasks().await;
            let labels = if report.is_ok() { p.task_labels().await } else { Ok(Vec::new()) };
            (p, report, labels)
        }));
        let (answers, ()) = tokio::join!(samples, self.allocs.refresh(registry));
        let mut reports: Vec<(&str, Option<TaskReport>)> = Vec::new();
        let mut labels: HashMap<(String, String), Arc<TaskLabels>> = HashMap::new();
        for (provider, answer, known) in answers {
            match known {
                Ok(known) => {
                    self.report(provider.name(), "task labels", None);
                    let by_task =
                        known.into_iter().map(|l| ((l.alloc_id.to_string(), l.task.to_string()), Arc::new(l)));
                    labels.extend(by_task);
                }
                Err(failure) => self.report(provider.name(), "task labels", Some(failure.message())),
            }
            match answer {
                Ok(report) => {
                    self.report(provider.name(), "task samples", None);
                    reports.push((provider.name(), Some(report)));
                }
                Err(failure) => {
                    self.report(provider.name(), "task samples", Some(failure.message()));
                    reports.push((provider.name(), None));
                }
            }
        }
        reports.extend(self.own_tasks.iter().map(|source| (source.name(), Some(source.report()))));
        let rounds: Vec<(&str, Option<&TaskReport>)> = reports.iter().map(|(n, r)| (*n, r.as_ref())).collect();
        self.evidence.observe(&rounds, now_ns()).await;

        let previous = self.tasks();
        let mut fresh = TaskSamples::new();
        for (provider, report) in &reports {
            let provider: Arc<str> = Arc::from(*provider);
            for sample in report.iter().flat_map(|r| r.tasks.iter()) {
                let by_task = fresh.entry(sample.alloc_id.to_string()).or_default();
                if by_task.get(sample.task.as_str()).is_some_and(|s| s.sample.state == TaskState::RUNNING) {
                    continue; // a running container beats an old stopped one of the same task
                }
                let old = previous.get(sample.alloc_id.as_str()).and_then(|t| t.get(sample.task.as_str()));
                let key = (sample.alloc_id.to_string(), sample.task.to_string());
                let labels = labels.get(&key).cloned().or_else(|| old.and_then(|old| old.labels.clone()));
                let sample = keep_last_usage(sample, old);
                by_task.insert(sample.task.to_string(), Sampled { provider: Arc::clone(&provider), sample, labels });
            }
        }
        // A task missing from this round keeps its last sample, in the state the evidence gives.
        for (alloc_id, old_tasks) in previous.iter() {
            for (task, old) in old_tasks {
                let by_task = fresh.entry(alloc_id.clone()).or_default();
                by_task.entry(task.clone()).or_insert_with(|| {
                    let state = self.evidence.state(alloc_id, task, &old.provider);
                    let sample = TaskSample { state, ..old.sample.clone() };
                    Sampled { provider: Arc::clone(&old.provider), sample, labels: old.labels.clone() }
                });
            }
        }
        *self.tasks.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
    }

    /// Takes a fresh host sample (the GC policy wants current disk figures).
    pub async fn collect_host(&self, registry: &Registry) {
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

/// A task that stopped being measured (a stopped container) keeps the usage it last had, as
/// Nomad keeps an exited task's last sample.
fn keep_last_usage(sample: &TaskSample, old: Option<&Sampled>) -> TaskSample {
    match old {
        Some(old) if sample.state != TaskState::RUNNING && sample.usage == Default::default() => {
            TaskSample { state: sample.state, finished_at: sample.finished_at, ..old.sample.clone() }
        }
        _ => sample.clone(),
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
