//! Which node holds an allocation: looked up on demand, one etcd read
//! (`<prefix>/allocs/<alloc id>`) on a cache miss, then remembered until the holder leaves the
//! fleet or answers 404 for it. Nobody watches the allocation keys, so etcd's load grows with
//! lookups and node churn, never with (agents × allocation churn); see docs/fleet.md.
//!
//! The cache is bounded ([`CAPACITY`] entries, least recently used out). A miss that etcd
//! answers with "no holder" is not remembered: an allocation created a moment later must be
//! found.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::etcd::{Etcd, EtcdError};
use super::membership::{Membership, NodeRecord};

/// Allocations remembered at most (about 100 bytes each).
pub const CAPACITY: usize = 100_000;

/// allocation ID → holder's node ID.
pub struct AllocIndex {
    prefix: String,
    holders: Mutex<LruCache<String, String>>,
}

impl AllocIndex {
    pub fn new(prefix: &str) -> Self {
        let capacity = NonZeroUsize::new(CAPACITY).expect("non-zero");
        Self { prefix: prefix.to_string(), holders: Mutex::new(LruCache::new(capacity)) }
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, LruCache<String, String>> {
        self.holders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The member holding `alloc_id`, or `None` when no member does.
    pub async fn holder(
        &self,
        etcd: &Etcd,
        membership: &Membership,
        alloc_id: &str,
    ) -> Result<Option<Arc<NodeRecord>>, EtcdError> {
        let cached = self.holders().get(alloc_id).cloned();
        if let Some(node_id) = cached {
            if let Some(record) = membership.get(&node_id) {
                return Ok(Some(record));
            }
            self.holders().pop(alloc_id);
        }
        let Some(value) = etcd.get(&format!("{}/allocs/{alloc_id}", self.prefix)).await? else {
            return Ok(None);
        };
        let node_id = String::from_utf8_lossy(&value).into_owned();
        let record = membership.get(&node_id);
        if record.is_some() {
            self.holders().put(alloc_id.to_string(), node_id);
        }
        Ok(record)
    }

    /// The holder answered 404: ask etcd again next time.
    pub fn forget(&self, alloc_id: &str) {
        self.holders().pop(alloc_id);
    }

    /// `node_id` left the fleet: forget everything it held.
    pub fn forget_node(&self, node_id: &str) {
        let mut holders = self.holders();
        let gone: Vec<String> =
            holders.iter().filter(|(_, holder)| holder.as_str() == node_id).map(|(alloc, _)| alloc.clone()).collect();
        for alloc_id in gone {
            holders.pop(&alloc_id);
        }
    }
}
