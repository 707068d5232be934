//! Who is in the fleet: every agent's node record (`<prefix>/nodes/<node id>`), read once and
//! then kept current by a watch, so routing to a node costs no etcd request. A record lives
//! under its agent's lease: when an agent dies, etcd deletes the record within `lease_ttl`
//! and the watch removes the node here (and, through the callback, from the allocation
//! cache).
//!
//! The view is trusted only while etcd answers: when the watch breaks or this agent's own
//! lease cannot be renewed, [`Membership::check`] reports why, and requests that need the
//! fleet answer 500 with that reason instead of trusting a view that may be stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::etcd::{Etcd, Event};
use super::lock;

/// How long to wait before reading the records again after etcd failed.
const RETRY: Duration = Duration::from_millis(500);

/// One agent as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeRecord {
    #[serde(rename = "ID")]
    pub id: String,
    /// The base URL other agents forward to.
    pub address: String,
    /// The agent's allocd version.
    pub version: String,
}

/// The fleet's members and whether that view can be trusted now.
pub struct Membership {
    nodes: RwLock<HashMap<String, Arc<NodeRecord>>>,
    /// Why the view cannot be trusted now (`None`: the watch is live and the lease renewed).
    watch_fault: Mutex<Option<String>>,
    lease_fault: Mutex<Option<String>>,
    /// Asks the watcher to start over (after this agent re-registered: a watch on a
    /// partitioned connection may hang without an error).
    restart: Notify,
}

impl Default for Membership {
    fn default() -> Self {
        Self {
            nodes: RwLock::new(HashMap::new()),
            watch_fault: Mutex::new(Some("the fleet's membership has not been read from etcd yet".into())),
            lease_fault: Mutex::new(None),
            restart: Notify::new(),
        }
    }
}

impl Membership {
    /// `node_id`'s record, if it is a member.
    pub fn get(&self, node_id: &str) -> Option<Arc<NodeRecord>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).get(node_id).cloned()
    }

    /// `Err(reason)` while the view cannot be trusted.
    pub fn check(&self) -> Result<(), String> {
        match (lock(&self.watch_fault).clone(), lock(&self.lease_fault).clone()) {
            (None, None) => Ok(()),
            (Some(reason), _) | (None, Some(reason)) => Err(reason),
        }
    }

    /// Set by the registration: `Some(reason)` while this agent's lease cannot be renewed.
    pub fn set_lease_fault(&self, fault: Option<String>) {
        let recovered = fault.is_none() && lock(&self.lease_fault).is_some();
        *lock(&self.lease_fault) = fault;
        if recovered {
            self.restart.notify_one();
        }
    }

    /// Keeps the view current for as long as the agent runs; `departed` hears of every node
    /// that leaves.
    pub async fn watch(self: Arc<Self>, etcd: Arc<Etcd>, prefix: String, departed: impl Fn(&str)) {
        let nodes_prefix = format!("{prefix}/nodes/");
        loop {
            let fault = tokio::select! {
                fault = self.follow(&etcd, &nodes_prefix, &departed) => fault,
                () = self.restart.notified() => "restarting the watch".to_string(),
            };
            tracing::warn!("cluster membership: {fault}");
            *lock(&self.watch_fault) = Some(fault);
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Reads every record, then applies the watch's events until it fails: the reason.
    async fn follow(&self, etcd: &Etcd, nodes_prefix: &str, departed: &impl Fn(&str)) -> String {
        let (records, revision) = match etcd.get_prefix(nodes_prefix).await {
            Ok(read) => read,
            Err(err) => return err.to_string(),
        };
        let mut watch = match etcd.watch_prefix(nodes_prefix, revision + 1).await {
            Ok(watch) => watch,
            Err(err) => return err.to_string(),
        };
        let fresh: HashMap<String, Arc<NodeRecord>> = records
            .iter()
            .filter_map(|(_, value)| serde_json::from_slice::<NodeRecord>(value).ok())
            .map(|record| (record.id.clone(), Arc::new(record)))
            .collect();
        let members = fresh.len();
        let gone: Vec<String> = {
            let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
            let gone = nodes.keys().filter(|id| !fresh.contains_key(*id)).cloned().collect();
            *nodes = fresh;
            gone
        };
        gone.iter().for_each(|id| departed(id));
        tracing::info!(members, revision, "cluster membership read from etcd");
        *lock(&self.watch_fault) = None;
        loop {
            let events = match watch.next().await {
                Ok(events) => events,
                Err(err) => return err.to_string(),
            };
            for event in events {
                match event {
                    Event::Put { key, value } => match serde_json::from_slice::<NodeRecord>(&value) {
                        Ok(record) => {
                            tracing::info!(node_id = %record.id, address = %record.address, "node joined the fleet");
                            self.nodes
                                .write()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(record.id.clone(), Arc::new(record));
                        }
                        Err(err) => tracing::warn!("ignoring the malformed node record {key}: {err}"),
                    },
                    Event::Delete { key } => {
                        let id = key.strip_prefix(nodes_prefix).unwrap_or(&key);
                        if self.nodes.write().unwrap_or_else(|e| e.into_inner()).remove(id).is_some() {
                            tracing::info!(node_id = %id, "node left the fleet");
                            departed(id);
                        }
                    }
                }
            }
        }
    }
}
