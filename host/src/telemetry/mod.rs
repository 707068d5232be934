//! `GET /v1/metrics`: Nomad's client metrics and allocd's own, gathered when scraped.
//!
//! Nomad pushes gauges into go-metrics' sinks every collection interval; allocd builds the same
//! gauges at scrape time from the sampler's cached samples ([`nomad`]), so a scrape never calls
//! a plugin and costs a walk over the samples. allocd's own metrics ([`own`]) are counters the
//! agent keeps as it works. [`encode`] writes both forms: go-metrics' JSON display and the
//! Prometheus text format.
//!
//! go-metrics' in-memory sink aggregates per 10 s interval; allocd's own counters and samples
//! are cumulative since the agent started (their JSON `Rate` is per second over that time).

pub mod encode;
pub mod nomad;
pub mod own;
pub mod served;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use self::own::{Distribution, Followers, RequestCounts};
use self::served::ServedBytes;
use crate::api::AppState;
use crate::config;
use crate::plugins::Registry;

/// Label names and values in emission order.
pub type Labels = Arc<[(&'static str, Arc<str>)]>;

/// One metric series: a dotted name, labels, a value. Names and label sets are shared: a
/// scrape of 500 tasks builds thousands of series from 500 label sets and 14 names.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: Arc<str>,
    pub labels: Labels,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// go-metrics gauges are float32.
    Gauge(f32),
    Counter(u64),
    /// Boxed: a scrape moves thousands of gauges, which need not be this large.
    Distribution(Box<Distribution>),
}

/// go-metrics' in-memory aggregation interval, which the JSON `Timestamp` names.
const INTERVAL: Duration = Duration::from_secs(10);

/// The `/v1/metrics` state: what to publish, under which names, and the request counters.
pub struct Telemetry {
    pub config: config::Telemetry,
    /// How often samples are taken (the health check's staleness measure).
    pub collection_interval: Duration,
    /// Nomad's prefix for gauges: `nomad`, or `nomad.<hostname>` unless `disable_hostname`.
    gauge_prefix: String,
    node_id: String,
    max_streams: usize,
    started: SystemTime,
    pub requests: RequestCounts,
    /// Response bytes sent, per endpoint (the server counts them).
    pub served: Arc<ServedBytes>,
    /// Responses following a file (`follow=true`) right now.
    pub followers: Followers,
}

impl Telemetry {
    pub fn new(config: &config::Config, node_id: &str) -> Self {
        let gauge_prefix = match nix::unistd::gethostname() {
            Ok(host) if !config.telemetry.disable_hostname => format!("nomad.{}", host.to_string_lossy()),
            _ => "nomad".to_string(),
        };
        Self {
            config: config.telemetry.clone(),
            collection_interval: config.collection_interval,
            gauge_prefix,
            node_id: node_id.to_string(),
            max_streams: config.limits.max_streams,
            started: SystemTime::now(),
            requests: RequestCounts::default(),
            served: Arc::default(),
            followers: Followers::default(),
        }
    }

    /// Every published metric, from cached samples and counters only.
    pub fn gather(&self, state: &AppState) -> Vec<Metric> {
        let mut metrics = Vec::new();
        if self.config.publish_node_metrics
            && let Some(host) = state.sampler.host()
        {
            metrics.extend(nomad::host_gauges(&host.stats, &self.gauge_prefix, &self.node_id));
        }
        if self.config.publish_allocation_metrics {
            metrics.extend(nomad::task_gauges(&state.sampler.tasks(), &self.gauge_prefix));
        }
        metrics.extend(self.plugin_metrics(&state.registry));
        metrics.extend(self.agent_metrics(state));
        metrics
    }

    fn plugin_metrics(&self, registry: &Registry) -> Vec<Metric> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut metrics = Vec::new();
        for (plugin, stats) in registry.call_stats() {
            let labels: Labels = Arc::new([("plugin", Arc::from(plugin))]);
            for (name, counter) in [
                ("allocd.plugin.calls", &stats.calls),
                ("allocd.plugin.errors", &stats.errors),
                ("allocd.plugin.panics", &stats.panics),
                ("allocd.plugin.timeouts", &stats.timeouts),
                ("allocd.plugin.skipped", &stats.skipped),
            ] {
                metrics.push(Metric {
                    name: name.into(),
                    labels: labels.clone(),
                    value: Value::Counter(counter.load(Relaxed)),
                });
            }
            let latency = Value::Distribution(Box::new(stats.latency()));
            metrics.push(Metric { name: "allocd.plugin.call_seconds".into(), labels, value: latency });
        }
        metrics
    }

    fn agent_metrics(&self, state: &AppState) -> Vec<Metric> {
        let unlabelled = |name: &str, value: Value| Metric { name: name.into(), labels: Arc::new([]), value };
        let mut metrics = Vec::new();
        for (code, count) in self.requests.counts() {
            let labels: Labels = Arc::new([("code", Arc::from(code.to_string()))]);
            metrics.push(Metric { name: "allocd.http.requests".into(), labels, value: Value::Counter(count) });
        }
        for (endpoint, bytes) in self.served.counts() {
            let labels: Labels = Arc::new([("endpoint", Arc::from(endpoint))]);
            metrics.push(Metric { name: "allocd.http.bytes_served".into(), labels, value: Value::Counter(bytes) });
        }
        let open = self.max_streams.saturating_sub(state.streams.available_permits());
        let collections = state.collector.collections.load(std::sync::atomic::Ordering::Relaxed);
        metrics.extend([
            unlabelled("allocd.streams.open", Value::Gauge(open as f32)),
            unlabelled("allocd.follow.followers", Value::Gauge(self.followers.count() as f32)),
            unlabelled("allocd.follow.watched_paths", Value::Gauge(state.watch_hub.watched_paths() as f32)),
            unlabelled("allocd.follow.polls", Value::Gauge(state.watch_hub.polls() as f32)),
            unlabelled("allocd.gc.collections", Value::Counter(collections)),
            unlabelled("allocd.gc.bytes_freed", Value::Counter(state.collector.bytes_freed())),
        ]);
        metrics
    }

    /// The JSON `Timestamp` (Go's `time.String()` of the last finished 10 s interval, or the
    /// current one in the first 10 s) and the seconds the cumulative metrics cover.
    pub fn timestamp(&self) -> (String, f64) {
        let now = SystemTime::now();
        let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let current = unix - unix % INTERVAL.as_secs();
        let started = self.started.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let shown = if started + INTERVAL.as_secs() <= current { current - INTERVAL.as_secs() } else { current };
        let time = chrono::DateTime::from_timestamp(shown as i64, 0).unwrap_or_default();
        let covered = now.duration_since(self.started).unwrap_or_default().as_secs_f64();
        (time.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(), covered)
    }
}
