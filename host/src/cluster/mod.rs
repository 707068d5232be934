//! Fleet mode: any agent answers for any allocation in the fleet, with etcd as the membership
//! store. Without a `cluster { }` block none of this runs and allocd is the single-node agent.
//!
//! - [`config`]: the `cluster { }` block.
//! - [`etcd`]: etcd's v3 API through its JSON gateway (why not gRPC: see there).
//! - [`registration`]: this agent's lease, node record and allocation keys.
//! - [`membership`]: every agent's node record, kept by a watch.
//! - [`index`]: which node holds an allocation, looked up on demand and cached.
//! - [`forward`]: relaying a request to the holder and its answer back unchanged.
//!
//! Routing ([`Cluster::serve`]) keeps every local answer exactly as the single-node agent
//! gives it. A request is forwarded only when
//! - it is `/v1/client/stats` or `/v1/client/gc` with `?node_id=` naming another member, or
//! - this agent answered `Unknown allocation` for it and another member holds the allocation
//!   (so an allocation this agent holds never costs an etcd request, and every check the local
//!   handler makes before its lookup, such as a malformed ID, answers as it always did).
//!
//! A `node_id` that is no member gets the local answer (Nomad's `Unknown node`), an allocation
//! no member holds the local `Unknown allocation`. While etcd cannot be trusted (see
//! [`membership`]), such requests answer 500 with the reason; local ones are untouched. The
//! load this puts on etcd is written down in docs/fleet.md.
//!
//! A SIGHUP that changes the block replaces the whole [`Cluster`] in the agent's
//! [`LiveCluster`]: the old one leaves (lease revoked) before the new one registers.

pub mod config;
pub mod etcd;
pub mod forward;
pub mod index;
pub mod membership;
pub mod peer;
pub mod registration;

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use self::config::ClusterConfig;
use self::etcd::Etcd;
use self::forward::{FORWARDED_BY, Forwarder, Outgoing, TlsFiles};
use self::index::AllocIndex;
use self::membership::{Membership, NodeRecord};
use self::registration::Registration;
use crate::api::error::ApiError;
use crate::api::params::Request;
use crate::api::response::{ApiResponse, RequestMeta};
use crate::config::TlsConfig;
use crate::live::Live;
use crate::plugins::Registry;

/// An answer: this agent's own (Nomad's wrapping still to apply), or a holder's, relayed as is.
pub enum Answer {
    Local(ApiResponse),
    Relayed(warp::reply::Response),
}

/// The fleet machinery of one agent, for one `cluster { }` block.
pub struct Cluster {
    config: ClusterConfig,
    node_id: String,
    etcd: Arc<Etcd>,
    membership: Arc<Membership>,
    index: Arc<AllocIndex>,
    /// Replaced when a reload finds the TLS files changed (see [`Cluster::forwarder_for`]).
    forwarder: Live<Arc<Forwarder>>,
    registration: Arc<Registration>,
    /// The registration and the membership watch, once [`Cluster::run`] started them.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// Builds the clients (reading every TLS file now); nothing runs until [`Cluster::run`].
    pub fn new(
        config: &ClusterConfig,
        tls: &TlsConfig,
        node_id: &str,
        registry: Arc<Registry>,
    ) -> anyhow::Result<Self> {
        let etcd = Arc::new(Etcd::new(config)?);
        let forwarder = Live::new(Arc::new(Forwarder::new(TlsFiles::read(tls)?, node_id)?));
        let membership = Arc::new(Membership::default());
        let index = Arc::new(AllocIndex::new(&config.prefix));
        let record = NodeRecord {
            id: node_id.to_string(),
            address: config.advertise.as_str().trim_end_matches('/').to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let registration = Arc::new(Registration::new(
            Arc::clone(&etcd),
            Arc::clone(&membership),
            registry,
            config.prefix.clone(),
            record,
            config.lease_ttl,
        ));
        Ok(Self {
            config: config.clone(),
            node_id: node_id.to_string(),
            etcd,
            membership,
            index,
            forwarder,
            registration,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The block this cluster runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// A forwarding client for `tls` when its files' contents differ from those the running
    /// one was built from (a certificate rotated in place keeps its paths); `None` when not.
    pub fn forwarder_for(&self, tls: &TlsConfig) -> anyhow::Result<Option<Forwarder>> {
        let files = TlsFiles::read(tls)?;
        if &files == self.forwarder.current().files() {
            return Ok(None);
        }
        Forwarder::new(files, &self.node_id).map(Some)
    }

    /// Forwards with `forwarder` from now on (requests in flight finish with the old one;
    /// its idle connections close with it).
    pub fn replace_forwarder(&self, forwarder: Forwarder) {
        self.forwarder.replace(Arc::new(forwarder));
    }

    /// Starts registering and watching the membership.
    pub fn run(&self) {
        let registration = tokio::spawn(Arc::clone(&self.registration).run());
        let departed_index = Arc::clone(&self.index);
        let departed = move |node_id: &str| departed_index.forget_node(node_id);
        let prefix = self.config.prefix.clone();
        let watch = tokio::spawn(Arc::clone(&self.membership).watch(Arc::clone(&self.etcd), prefix, departed));
        lock(&self.tasks).extend([registration, watch]);
        tracing::info!(
            advertise = %self.config.advertise,
            prefix = %self.config.prefix,
            "fleet mode: registering in etcd"
        );
    }

    /// Leaves the fleet at once (at shutdown, or when a reload replaces this cluster): stops
    /// registering and watching, waits until those tasks are gone (a lease they were granting
    /// is then in `registration`, never granted after the revoke), then revokes the lease.
    pub async fn leave(&self) {
        let tasks: Vec<JoinHandle<()>> = lock(&self.tasks).drain(..).collect();
        tasks.iter().for_each(JoinHandle::abort);
        for task in tasks {
            let _ = task.await;
        }
        self.registration.leave().await;
    }

    /// Answers `meta`: locally through `local`, or by the member that can.
    pub async fn serve<F, Fut>(&self, meta: &RequestMeta, outgoing: &Outgoing<'_>, req: &Request, local: F) -> Answer
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ApiResponse, ApiError>>,
    {
        let as_local = |result: Result<ApiResponse, ApiError>| Answer::Local(result.unwrap_or_else(ApiResponse::from));
        if meta.headers.contains_key(FORWARDED_BY) {
            return as_local(local().await);
        }
        let node_id = req.query.get("node_id");
        let node_addressed = matches!(meta.path.as_str(), "/v1/client/stats" | "/v1/client/gc");
        if node_addressed && !node_id.is_empty() && node_id != self.node_id {
            if let Err(reason) = self.membership.check() {
                return as_local(Err(unavailable(&reason)));
            }
            return match self.membership.get(node_id) {
                Some(node) => self.relay(&node, outgoing).await,
                None => as_local(local().await),
            };
        }
        match local().await {
            Err(err) if is_unknown_allocation(&err) => match alloc_id_in(&meta.path) {
                Some(alloc_id) => self.forward_alloc(alloc_id, outgoing, err).await,
                None => as_local(Err(err)),
            },
            other => as_local(other),
        }
    }

    /// Forwards to whoever holds `alloc_id`, or answers `unknown` when nobody does.
    async fn forward_alloc(&self, alloc_id: &str, outgoing: &Outgoing<'_>, unknown: ApiError) -> Answer {
        if let Err(reason) = self.membership.check() {
            return Answer::Local(unavailable(&reason).into());
        }
        match self.index.holder(&self.etcd, &self.membership, alloc_id).await {
            Ok(Some(node)) if node.id != self.node_id => {
                let answer = self.relay(&node, outgoing).await;
                if let Answer::Relayed(reply) = &answer
                    && reply.status() == warp::http::StatusCode::NOT_FOUND
                {
                    self.index.forget(alloc_id);
                }
                answer
            }
            Ok(_) => Answer::Local(unknown.into()),
            Err(err) => Answer::Local(unavailable(&err.to_string()).into()),
        }
    }

    async fn relay(&self, node: &NodeRecord, outgoing: &Outgoing<'_>) -> Answer {
        let forwarder = self.forwarder.current();
        match forwarder.forward(node, outgoing).await {
            Ok(reply) => Answer::Relayed(reply),
            Err(err) => Answer::Local(err.into()),
        }
    }
}

/// The cluster in force (`None`: the single-node agent), replaced when a SIGHUP changes the
/// `cluster { }` block. A request keeps the cluster it started with.
pub type LiveCluster = Live<Option<Arc<Cluster>>>;

/// A mutex's guard, also after a panic while it was held.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// 500 with the reason the fleet cannot be asked now.
fn unavailable(reason: &str) -> ApiError {
    ApiError::internal(format!("cluster unavailable, cannot reach other nodes: {reason}"))
}

/// The local handler's answer for an allocation no local backend holds.
fn is_unknown_allocation(err: &ApiError) -> bool {
    err.status == warp::http::StatusCode::NOT_FOUND && err.message.starts_with("Unknown allocation ")
}

/// The allocation a client endpoint's path names.
fn alloc_id_in(path: &str) -> Option<&str> {
    if let Some(rest) = path.strip_prefix("/v1/client/fs/") {
        return rest.split_once('/').map(|(_, alloc_id)| alloc_id);
    }
    path.strip_prefix("/v1/client/allocation/").and_then(|rest| rest.split('/').next())
}

/// A transport error with its causes (reqwest's own text hides them).
pub(crate) fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() { chain("timed out".to_string(), err) } else { with_causes(err) }
}

/// An error's text followed by its causes'.
pub(crate) fn with_causes(err: &dyn std::error::Error) -> String {
    chain(err.to_string(), err)
}

fn chain(mut text: String, err: &dyn std::error::Error) -> String {
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocation_a_path_names() {
        let id = "5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11";
        assert_eq!(alloc_id_in(&format!("/v1/client/fs/cat/{id}")), Some(id));
        assert_eq!(alloc_id_in(&format!("/v1/client/allocation/{id}/stats")), Some(id));
        assert_eq!(alloc_id_in("/v1/client/fs/cat"), None);
        assert_eq!(alloc_id_in("/v1/client/stats"), None);
    }
}
