//! This agent's entries in etcd: a lease kept alive, and under it the node record
//! (`<prefix>/nodes/<node id>`) and one key per allocation it holds
//! (`<prefix>/allocs/<alloc id>` → node ID). The allocation keys follow the storage backends:
//! every [`SYNC_INTERVAL`] the agent lists its allocations and writes only what changed (a new
//! allocation is routable fleet-wide within that interval; a collected one is deleted).
//!
//! When etcd stops answering or the lease has expired (a partition longer than `lease_ttl`),
//! the agent registers again from scratch under a new lease as soon as etcd answers: the
//! records come back without anyone's help. On shutdown the lease is revoked, so the agent
//! leaves the fleet at once rather than after `lease_ttl`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;

use super::etcd::{Etcd, EtcdError};
use super::membership::{Membership, NodeRecord};
use crate::plugins::Registry;

/// How often the held allocations are compared with what etcd has.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);
/// How long to wait before registering again after etcd failed.
const RETRY: Duration = Duration::from_millis(500);

/// Why a registration ended.
enum Ended {
    /// etcd answered that the lease is gone (a partition or a stall longer than `lease_ttl`).
    Expired(i64),
    /// etcd did not answer.
    Etcd(EtcdError),
}

/// Keeps this agent registered.
pub struct Registration {
    pub etcd: Arc<Etcd>,
    pub membership: Arc<Membership>,
    pub registry: Arc<Registry>,
    pub prefix: String,
    pub record: NodeRecord,
    pub lease_ttl: Duration,
    /// The lease in force (0: none), revoked by [`Registration::leave`].
    lease: AtomicI64,
}

impl Registration {
    pub fn new(
        etcd: Arc<Etcd>,
        membership: Arc<Membership>,
        registry: Arc<Registry>,
        prefix: String,
        record: NodeRecord,
        lease_ttl: Duration,
    ) -> Self {
        Self { etcd, membership, registry, prefix, record, lease_ttl, lease: AtomicI64::new(0) }
    }

    fn alloc_key(&self, alloc_id: &str) -> String {
        format!("{}/allocs/{alloc_id}", self.prefix)
    }

    /// Registers, and registers again after every failure, for as long as the agent runs.
    pub async fn run(self: Arc<Self>) {
        loop {
            match self.register_and_renew().await {
                // etcd answered: the fleet's view stays trustworthy while this agent re-registers.
                Ended::Expired(lease) => {
                    tracing::warn!("cluster registration: lease {lease} expired; registering again")
                }
                Ended::Etcd(fault) => {
                    tracing::warn!("cluster registration: {fault}; registering again");
                    let reason = format!("this agent's etcd lease is not renewed: {fault}");
                    self.membership.set_lease_fault(Some(reason));
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One registration, renewed until it ends: why it did.
    async fn register_and_renew(&self) -> Ended {
        let (lease, mut published) = match self.register().await {
            Ok(registered) => registered,
            Err(err) => return Ended::Etcd(err),
        };
        // Renewing and syncing interleave, so a slow sync never delays a renewal.
        let renew = async {
            loop {
                tokio::time::sleep(self.lease_ttl / 3).await;
                match self.etcd.keep_alive(lease).await {
                    Ok(0) => return Ended::Expired(lease),
                    Ok(_) => {}
                    Err(err) => return Ended::Etcd(err),
                }
            }
        };
        let sync = async {
            loop {
                tokio::time::sleep(SYNC_INTERVAL).await;
                if let Err(err) = self.sync(&mut published, lease).await {
                    return Ended::Etcd(err);
                }
            }
        };
        tokio::select! {
            ended = renew => ended,
            ended = sync => ended,
        }
    }

    /// A new lease with the node record and every held allocation under it.
    async fn register(&self) -> Result<(i64, BTreeSet<String>), EtcdError> {
        let ttl = self.lease_ttl.as_secs();
        let lease = self.etcd.grant(ttl).await?;
        let previous = self.lease.swap(lease, Ordering::Relaxed);
        let node_key = format!("{}/nodes/{}", self.prefix, self.record.id);
        let record = serde_json::to_vec(&self.record).expect("a node record serializes");
        self.etcd.put(&node_key, &record, lease).await?;
        let mut published = BTreeSet::new();
        self.sync(&mut published, lease).await?;
        if previous != 0 {
            // Nothing is left under the old lease; free it if etcd still has it.
            let _ = self.etcd.revoke(previous).await;
        }
        tracing::info!(node_id = %self.record.id, lease, allocations = published.len(), "registered in the fleet");
        self.membership.set_lease_fault(None);
        Ok((lease, published))
    }

    /// Writes the allocations that appeared and deletes those that went since `published`.
    /// When a backend cannot list, nothing is deleted (it may still hold what it did not list).
    async fn sync(&self, published: &mut BTreeSet<String>, lease: i64) -> Result<(), EtcdError> {
        let listings = join_all(self.registry.storage.iter().map(|backend| backend.list_allocs())).await;
        let complete = listings.iter().all(Result::is_ok);
        let held: BTreeSet<String> = listings.into_iter().filter_map(Result::ok).flatten().collect();
        for alloc_id in held.difference(published).cloned().collect::<Vec<_>>() {
            self.etcd.put(&self.alloc_key(&alloc_id), self.record.id.as_bytes(), lease).await?;
            published.insert(alloc_id);
        }
        if complete {
            for alloc_id in published.difference(&held).cloned().collect::<Vec<_>>() {
                self.etcd.delete(&self.alloc_key(&alloc_id)).await?;
                published.remove(&alloc_id);
            }
        }
        Ok(())
    }

    /// Leaves the fleet now (at shutdown): revokes the lease, deleting every record under it.
    pub async fn leave(&self) {
        let lease = self.lease.swap(0, Ordering::Relaxed);
        if lease != 0
            && let Err(err) = self.etcd.revoke(lease).await
        {
            tracing::warn!("could not leave the fleet at once ({err}); the records expire with the lease");
        }
    }
}
