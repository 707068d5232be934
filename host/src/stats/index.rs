//! The allocation index: which storage backend holds which allocation, kept from the
//! backends' own `alloc_index` answers, so that allocation stats find an allocation without
//! asking every backend `alloc_info` on each request.
//!
//! The sampler refreshes it every round (a backend whose generation did not move answers
//! "unchanged" without listing). It only ever answers *who holds an allocation*, and only
//! when every backend is indexed and exactly one holds it; anything else (a miss, a backend
//! without `alloc_index`, one whose last listing failed) is left to the per-request lookup, so
//! a brand-new allocation is never missing and a failing backend never turns into a 404. A
//! collected allocation leaves the index at once ([`AllocsIndex::forget`]), and one a backend
//! answers "not found" for is dropped from that backend's entries.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use abi_stable::std_types::ROption;
use allocd_plugin_abi::{AllocInfo, ErrorKind};
use futures_util::future::join_all;

use crate::plugins::Registry;

/// What one backend's index is known to be.
#[derive(Clone, Default)]
enum Entry {
    /// Not listed yet, or its last listing failed: ask it per request.
    #[default]
    Unknown,
    /// The backend provides no `alloc_index` (ABI 1.0): never asked again.
    Unsupported,
    Listed {
        generation: u64,
        allocs: Arc<HashMap<String, AllocInfo>>,
    },
}

/// The backends' allocation indexes, in registry order.
#[derive(Default)]
pub struct AllocsIndex {
    backends: RwLock<Vec<Entry>>,
}

impl AllocsIndex {
    /// The backend (registry position) holding `alloc_id` and what it holds, when the index
    /// knows for sure; `None` sends the caller to the per-request lookup.
    pub fn holder(&self, alloc_id: &str) -> Option<(usize, AllocInfo)> {
        let backends = self.backends.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (index, entry) in backends.iter().enumerate() {
            let Entry::Listed { allocs, .. } = entry else { return None };
            if let Some(info) = allocs.get(alloc_id) {
                if found.is_some() {
                    return None; // held twice: the lookup reports it
                }
                found = Some((index, info));
            }
        }
        found.map(|(index, info)| (index, info.clone()))
    }

    /// Asks every indexing backend for its index (concurrently) and keeps the answers.
    pub async fn refresh(&self, registry: &Registry) {
        let known = self.backends.read().unwrap_or_else(|e| e.into_inner()).clone();
        let answers = join_all(registry.storage.iter().enumerate().map(|(index, backend)| {
            let known = known.get(index).cloned().unwrap_or_default();
            async move {
                let generation = match &known {
                    Entry::Unsupported => return known,
                    Entry::Listed { generation, .. } => *generation,
                    Entry::Unknown => 0,
                };
                match backend.alloc_index(generation).await {
                    Ok(answer) => match answer.allocs {
                        ROption::RSome(allocs) => {
                            let allocs = allocs.into_iter().map(|a| (a.alloc_id.into_string(), a.info)).collect();
                            Entry::Listed { generation: answer.generation, allocs: Arc::new(allocs) }
                        }
                        ROption::RNone => known,
                    },
                    Err(failure) if failure.kind() == ErrorKind::UNSUPPORTED => {
                        tracing::debug!(plugin = backend.name(), "provides no allocation index: {}", failure.message());
                        Entry::Unsupported
                    }
                    Err(failure) => {
                        tracing::debug!(plugin = backend.name(), "allocation index failed: {}", failure.message());
                        Entry::Unknown
                    }
                }
            }
        }))
        .await;
        // An allocation collected while the backends answered may be listed again here: the
        // lookup checks the collector before trusting a hit.
        *self.backends.write().unwrap_or_else(|e| e.into_inner()) = answers;
    }

    /// Drops `alloc_id` from backend `index`'s entries (it answered "not found" for it).
    pub fn forget_in(&self, index: usize, alloc_id: &str) {
        let mut backends = self.backends.write().unwrap_or_else(|e| e.into_inner());
        if let Some(Entry::Listed { allocs, .. }) = backends.get_mut(index)
            && allocs.contains_key(alloc_id)
        {
            Arc::make_mut(allocs).remove(alloc_id);
        }
    }

    /// Drops a collected allocation from every backend's entries.
    pub fn forget(&self, alloc_id: &str) {
        let len = self.backends.read().unwrap_or_else(|e| e.into_inner()).len();
        for index in 0..len {
            self.forget_in(index, alloc_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(ids: &[&str]) -> Entry {
        let allocs = ids.iter().map(|id| (id.to_string(), AllocInfo::default())).collect();
        Entry::Listed { generation: 1, allocs: Arc::new(allocs) }
    }

    fn index(entries: Vec<Entry>) -> AllocsIndex {
        AllocsIndex { backends: RwLock::new(entries) }
    }

    #[test]
    fn only_a_single_holder_among_indexed_backends_is_an_answer() {
        assert_eq!(index(vec![listed(&["a"]), listed(&["b"])]).holder("b").map(|(i, _)| i), Some(1));
        assert!(index(vec![listed(&["a"]), listed(&["b"])]).holder("c").is_none(), "a miss");
        assert!(index(vec![listed(&["a"]), listed(&["a"])]).holder("a").is_none(), "held twice");
        assert!(index(vec![listed(&["a"]), Entry::Unknown]).holder("a").is_none(), "a backend not listed");
        assert!(index(vec![listed(&["a"]), Entry::Unsupported]).holder("a").is_none(), "a backend without index");
        assert!(index(Vec::new()).holder("a").is_none(), "no backend");
    }

    #[test]
    fn forgotten_allocations_leave_the_index() {
        let index = index(vec![listed(&["a", "b"]), listed(&["c"])]);
        index.forget("a");
        index.forget_in(1, "c");
        assert!(index.holder("a").is_none() && index.holder("c").is_none());
        assert!(index.holder("b").is_some());
    }
}
