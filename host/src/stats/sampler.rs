//! The background host sampler behind `GET /v1/client/stats`.
//!
//! Every `collection_interval` it asks the metric providers for a host sample (the first that
//! answers wins) on the blocking pool, and stores it with its compact JSON already encoded, so
//! the endpoint is a clone of `Bytes`. The first sample is taken before the agent serves, as
//! Nomad collects synchronously when no sample exists yet.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;

use crate::api::model;
use crate::api::wire;
use crate::plugins::Registry;

/// One stored host sample.
pub struct HostSample {
    pub stats: model::HostStats,
    pub compact_json: Bytes,
}

/// The latest samples, shared by the sampling task and the handlers.
#[derive(Default)]
pub struct Sampler {
    host: RwLock<Option<Arc<HostSample>>>,
}

impl Sampler {
    /// The latest host sample, if any provider reports the host.
    pub fn host(&self) -> Option<Arc<HostSample>> {
        self.host.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes one host sample from the providers and stores it.
    pub async fn collect(&self, registry: &Registry) {
        for provider in &registry.metrics {
            match provider.host_stats().await {
                Ok(Some(stats)) => {
                    let stats = model::HostStats::from(&stats);
                    let compact_json = Bytes::from(wire::to_json(&stats, false));
                    *self.host.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(HostSample { stats, compact_json }));
                    return;
                }
                Ok(None) => {}
                Err(failure) => tracing::warn!(plugin = provider.name(), "host sample failed: {}", failure.message()),
            }
        }
    }

    /// Samples forever, every `interval`.
    pub async fn run(self: Arc<Self>, registry: Arc<Registry>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; the agent sampled at startup
        loop {
            ticker.tick().await;
            self.collect(&registry).await;
        }
    }
}
