//! Garbage collection of terminal allocations: the endpoints' deletions and Nomad's client-side
//! policy (`gc_interval`, `gc_max_allocs`, `gc_disk_usage_threshold`).
//!
//! An allocation is deleted only on positive evidence that it is finished ([`evidence`]):
//! absence of evidence is "unknown", never "finished". The backend that holds it moves it out
//! of sight at once and deletes it in the background without ever leaving it. Deletions of one
//! allocation never overlap, one policy sweep runs at a time, and the set of collected IDs
//! (remembered so that a second GC, and streams on them, get Nomad's answers) is bounded.

pub mod evidence;
mod freed;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;

use self::evidence::Verdict;
use self::freed::FreedSpace;
use crate::plugins::Registry;
use crate::stats::Sampler;

/// Nomad's client GC settings and allocd's own (`client { ... }` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct GcPolicy {
    /// `false` turns every kind of GC off (read-only deployments beside a Nomad client).
    pub enabled: bool,
    pub interval: Duration,
    pub max_allocs: usize,
    /// Percent of the alloc dir's filesystem.
    pub disk_usage_threshold: f64,
    /// How long every task must have been proven exited before its allocation is terminal.
    pub exit_grace: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            max_allocs: 50,
            disk_usage_threshold: 80.0,
            exit_grace: Duration::from_secs(60),
        }
    }
}

/// Nomad's text for a GC of a running, unknown or already collected allocation.
pub const NOT_ELIGIBLE: &str = "No such allocation on client, or allocation not eligible for GC";
/// The answer while `client.gc_enabled = false`.
pub const DISABLED: &str = "garbage collection is disabled on this agent (client.gc_enabled = false)";

/// How long the policy waits, at most, for a background deletion to show on the disk.
const FREED_SPACE_POLL: Duration = Duration::from_millis(250);
const FREED_SPACE_POLLS: usize = 120;

/// How many collected allocation IDs are remembered.
const REMEMBERED: usize = 10_000;

/// Deletes terminal allocations and remembers which.
pub struct Collector {
    registry: Arc<Registry>,
    sampler: Arc<Sampler>,
    policy: GcPolicy,
    /// Collected allocation → its namespace (for the ACL check of a repeated GC).
    collected: Mutex<LruCache<String, String>>,
    /// Allocations being deleted right now → their namespace.
    deleting: Mutex<HashMap<String, String>>,
    /// Held by the policy sweep or a client GC; a second one is skipped.
    sweeping: tokio::sync::Mutex<()>,
    /// Allocations collected since the agent started (for `/v1/metrics`).
    pub collections: std::sync::atomic::AtomicU64,
    /// The disk space collections gave back (for `/v1/metrics`).
    freed: FreedSpace,
}

/// An allocation the policy may collect.
struct Candidate {
    backend: usize,
    id: String,
    namespace: String,
    tasks: Vec<String>,
    mod_time_ns: i64,
}

/// Removes an ID from the in-flight set when the deletion ends, however it ends.
struct Deleting<'a>(&'a Collector, &'a str);

impl Drop for Deleting<'_> {
    fn drop(&mut self) {
        self.0.deleting.lock().unwrap_or_else(|e| e.into_inner()).remove(self.1);
    }
}

impl Collector {
    pub fn new(registry: Arc<Registry>, sampler: Arc<Sampler>, policy: GcPolicy) -> Self {
        let remembered = NonZeroUsize::new(REMEMBERED).expect("non-zero");
        Self {
            registry,
            sampler,
            policy,
            collected: Mutex::new(LruCache::new(remembered)),
            deleting: Mutex::default(),
            sweeping: tokio::sync::Mutex::new(()),
            collections: std::sync::atomic::AtomicU64::new(0),
            freed: FreedSpace::default(),
        }
    }

    /// False when `client.gc_enabled = false`.
    pub fn enabled(&self) -> bool {
        self.policy.enabled
    }

    /// The namespace of an allocation collected here, or being collected right now (it may
    /// already be out of the backend's sight).
    pub fn collected_namespace(&self, alloc_id: &str) -> Option<String> {
        let collected = self.collected.lock().unwrap_or_else(|e| e.into_inner()).peek(alloc_id).cloned();
        collected.or_else(|| self.deleting.lock().unwrap_or_else(|e| e.into_inner()).get(alloc_id).cloned())
    }

    /// Whether the allocation may be deleted now.
    pub fn verdict(&self, alloc_id: &str, tasks: &[String]) -> Verdict {
        self.sampler.evidence().verdict(alloc_id, tasks, self.policy.exit_grace, now_ns())
    }

    /// Deletes one terminal allocation held by backend `index` (whose storage shows `tasks`),
    /// returning once it is out of sight; `Err` carries the answer's text.
    pub async fn delete_terminal(
        self: &Arc<Self>,
        index: usize,
        alloc_id: &str,
        namespace: &str,
        tasks: &[String],
    ) -> Result<(), String> {
        if !self.policy.enabled {
            return Err(DISABLED.to_string());
        }
        {
            let mut deleting = self.deleting.lock().unwrap_or_else(|e| e.into_inner());
            if deleting.contains_key(alloc_id) {
                return Err(NOT_ELIGIBLE.to_string()); // another GC of it is under way
            }
            deleting.insert(alloc_id.to_string(), namespace.to_string());
        }
        let _deleting = Deleting(self, alloc_id);
        match self.verdict(alloc_id, tasks) {
            Verdict::Terminal => {}
            Verdict::Live(why) | Verdict::Unknown(why) => {
                tracing::info!(alloc_id, "not collected: {why}");
                return Err(NOT_ELIGIBLE.to_string());
            }
        }
        let backend = &self.registry.storage[index];
        if self.freed.window().is_none() {
            self.sampler.collect_host(&self.registry).await; // the baseline of a new measurement
        }
        let used_before = self.disk_used_bytes();
        backend.gc(alloc_id).await.map_err(|failure| match failure.kind() {
            allocd_plugin_abi::ErrorKind::NOT_FOUND => NOT_ELIGIBLE.to_string(),
            _ => failure.describe(),
        })?;
        self.collected.lock().unwrap_or_else(|e| e.into_inner()).put(alloc_id.to_string(), namespace.to_string());
        self.sampler.forget(alloc_id).await;
        self.collections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(alloc_id, backend = backend.name(), "collected allocation");
        if let Some(used) = used_before
            && self.freed.begin(used)
        {
            tokio::spawn(Arc::clone(self).measure_freed_space());
        }
        Ok(())
    }

    /// Every terminal allocation, oldest first, and how many allocations exist in all.
    /// Evidence and samples of allocations that no longer exist are dropped on the way.
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
            for id in ids {
                if let Some(candidate) = self.candidate(backend, id).await {
                    candidates.push(candidate);
                }
            }
        }
        if listed_all {
            self.sampler.retain(&existing).await;
        }
        candidates.sort_by_key(|c| c.mod_time_ns);
        (candidates, existing.len())
    }

    /// `id` as a candidate when it is terminal and its age can be read.
    async fn candidate(&self, backend: usize, id: String) -> Option<Candidate> {
        let plugin = &self.registry.storage[backend];
        let info = match plugin.alloc_info(&id).await {
            Ok(Some(info)) => info,
            Ok(None) => return None,
            Err(failure) => {
                tracing::warn!(alloc_id = id, "skipped by GC: {failure}");
                return None;
            }
        };
        let tasks: Vec<String> = info.tasks.iter().map(|t| t.to_string()).collect();
        if self.verdict(&id, &tasks) != Verdict::Terminal {
            return None;
        }
        let namespace = info.namespace.to_string();
        match plugin.stat(&id, "/").await {
            Ok(root) => Some(Candidate { backend, id, namespace, tasks, mod_time_ns: root.mod_time_ns }),
            Err(failure) => {
                tracing::warn!(alloc_id = id, "skipped by GC, its age cannot be read: {failure}");
                None
            }
        }
    }

    /// `/v1/client/gc`: collects every terminal allocation in the background (skipped while a
    /// sweep is already running).
    pub fn collect_all(self: &Arc<Self>) {
        let collector = Arc::clone(self);
        tokio::spawn(async move { collector.sweep(None).await });
    }

    /// One sweep: with a policy, the oldest terminal allocations until back under its limits;
    /// without, every terminal allocation.
    async fn sweep(self: &Arc<Self>, policy: Option<&GcPolicy>) {
        if !self.policy.enabled {
            return;
        }
        let Ok(_sweeping) = self.sweeping.try_lock() else {
            tracing::debug!("a GC sweep is already running; skipped");
            return;
        };
        let (candidates, mut total) = self.candidates().await;
        for candidate in candidates {
            // Only the disk: after the deletion, wait for the space before judging again.
            let mut for_disk_only = false;
            if let Some(policy) = policy {
                let over_count = total > policy.max_allocs;
                let over_disk = self.disk_used_percent().is_some_and(|used| used > policy.disk_usage_threshold);
                if !over_count && !over_disk {
                    return;
                }
                for_disk_only = !over_count;
            }
            let Candidate { backend, id, namespace, tasks, .. } = &candidate;
            let used_before = self.disk_used_bytes();
            match self.delete_terminal(*backend, id, namespace, tasks).await {
                Ok(()) => {
                    total -= 1;
                    if for_disk_only {
                        self.await_freed_space(used_before).await;
                    }
                }
                Err(reason) => tracing::warn!(alloc_id = candidate.id, "gc failed: {reason}"),
            }
        }
    }

    /// The backend deletes in the background: before the policy judges the disk again, give
    /// it up to 30 s to free the space (fresh host samples until the used bytes have dropped
    /// and then hold still, i.e. the deletion is done), so one full disk does not take every
    /// terminal allocation with it. Returns the bytes in use then.
    async fn await_freed_space(&self, used_before: Option<u64>) -> Option<u64> {
        let mut last = used_before;
        for _ in 0..FREED_SPACE_POLLS {
            tokio::time::sleep(FREED_SPACE_POLL).await;
            self.sampler.collect_host(&self.registry).await;
            let now = self.disk_used_bytes();
            let dropped = now.zip(used_before).is_none_or(|(now, before)| now < before);
            if dropped && now == last {
                break;
            }
            last = now;
        }
        last
    }

    /// Counts the space the open window's deletions free once it has settled (waiting longer
    /// while more deletions join it).
    async fn measure_freed_space(self: Arc<Self>) {
        while let Some((used_before, deletions)) = self.freed.window() {
            let settled = self.await_freed_space(Some(used_before)).await;
            if self.freed.window().is_some_and(|(_, now)| now == deletions) {
                self.freed.end(settled.unwrap_or(used_before));
            }
        }
    }

    /// The bytes freed so far by collections, as the filesystem shows them.
    pub fn bytes_freed(&self) -> u64 {
        self.freed.total()
    }

    fn disk_used_percent(&self) -> Option<f64> {
        self.sampler.host().map(|sample| sample.stats.alloc_dir_stats.used_percent)
    }

    fn disk_used_bytes(&self) -> Option<u64> {
        self.sampler.host().map(|sample| sample.stats.alloc_dir_stats.used)
    }

    /// Runs the policy every `interval`.
    pub async fn run(self: Arc<Self>) {
        if !self.policy.enabled {
            tracing::info!("garbage collection is disabled (client.gc_enabled = false)");
            return;
        }
        let mut ticker = tokio::time::interval(self.policy.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate: give the agent an interval first
        loop {
            ticker.tick().await;
            let policy = self.policy.clone();
            self.sweep(Some(&policy)).await;
        }
    }
}

/// Now, Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}
