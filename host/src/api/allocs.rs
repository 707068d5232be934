//! Finding the storage backend that holds an allocation.
//!
//! IDs are matched exactly. A non-UUID gets Nomad's index error (400, see DESIGN.md), an
//! unknown UUID `Unknown allocation "<id>"` (404), and an ID held by two backends is an
//! error rather than a silent pick. The backend that holds an allocation answers for it even
//! when another backend fails; an ID that no backend holds is a 500 naming the failing
//! backend (it might hold it), not a 404.
//!
//! Allocation stats look the allocation up in the sampler's allocation index first
//! ([`find_indexed`]); the other endpoints, which call the backend anyway and some of which
//! act on the task list (logs, GC), ask the backends every time. Any lookup that hears a
//! backend say "not found" drops a stale index entry of it.

use allocd_plugin_abi::AllocInfo;
use allocd_plugin_sdk::paths::is_alloc_id;
use futures_util::future::join_all;

use super::AppState;
use super::error::ApiError;
use super::params::Request;
use super::wire::go_quote;
use crate::acl::Need;
use crate::plugins::StoragePlugin;

/// An allocation and the backend that holds it.
pub struct Alloc<'a> {
    pub id: &'a str,
    pub backend: &'a StoragePlugin,
    /// Position of `backend` in the registry (streams outlive the request's borrow).
    pub backend_index: usize,
    pub info: AllocInfo,
}

/// Looks `alloc_id` up across every storage backend, then checks the ACL in the
/// allocation's namespace (an unknown allocation is reported first, as Nomad does).
pub async fn find<'a>(
    state: &'a AppState,
    alloc_id: &'a str,
    req: &Request,
    need: Need,
) -> Result<Alloc<'a>, ApiError> {
    let alloc = lookup(state, alloc_id).await?;
    state.acl.check(req.token.as_deref(), need, alloc.info.namespace.as_str())?;
    Ok(alloc)
}

/// [`find`], answered from the allocation index without any plugin call when it knows the
/// holder; a miss (a new allocation, a backend without an index) falls back to [`find`]. An
/// allocation collected or being collected is never answered from the index.
pub async fn find_indexed<'a>(
    state: &'a AppState,
    alloc_id: &'a str,
    req: &Request,
    need: Need,
) -> Result<Alloc<'a>, ApiError> {
    let hit =
        state.sampler.allocs().holder(alloc_id).filter(|_| state.collector.collected_namespace(alloc_id).is_none());
    let Some((backend_index, info)) = hit else { return find(state, alloc_id, req, need).await };
    let alloc = Alloc { id: alloc_id, backend: &state.registry.storage[backend_index], backend_index, info };
    state.acl.check(req.token.as_deref(), need, alloc.info.namespace.as_str())?;
    Ok(alloc)
}

async fn lookup<'a>(state: &'a AppState, alloc_id: &'a str) -> Result<Alloc<'a>, ApiError> {
    if alloc_id.len() != 36 {
        return Err(ApiError::bad_request("alloc lookup failed: index error: UUID must be 36 characters"));
    }
    if !is_alloc_id(alloc_id) {
        return Err(ApiError::not_found(format!("Unknown allocation {}", go_quote(alloc_id))));
    }
    // Backends are asked concurrently; an unhealthy one answers at once (see plugins::call),
    // so a hung backend delays no lookup once its first call has timed out.
    let answers = join_all(state.registry.storage.iter().map(|backend| backend.alloc_info(alloc_id))).await;
    let mut holders = Vec::new();
    let mut failures = Vec::new();
    for (backend_index, (backend, answer)) in state.registry.storage.iter().zip(answers).enumerate() {
        match answer {
            Ok(Some(info)) => holders.push(Alloc { id: alloc_id, backend, backend_index, info }),
            Ok(None) => state.sampler.allocs().forget_in(backend_index, alloc_id),
            Err(failure) => failures.push(failure),
        }
    }
    match holders.len() {
        // A backend that failed may hold the allocation: no answer is better than a wrong 404.
        0 if !failures.is_empty() => Err(ApiError::from_failure(&failures[0])),
        0 if state.collector.collected_namespace(alloc_id).is_some() => {
            Err(ApiError::not_found(format!("state for allocation {alloc_id} not found on client")))
        }
        0 => Err(ApiError::not_found(format!("Unknown allocation {}", go_quote(alloc_id)))),
        1 => Ok(holders.remove(0)),
        _ => {
            let names: Vec<&str> = holders.iter().map(|h| h.backend.name()).collect();
            Err(ApiError::internal(format!(
                "allocation {} is held by more than one storage backend: {}",
                go_quote(alloc_id),
                names.join(", ")
            )))
        }
    }
}
