//! `/v1/client/allocation/:alloc_id/{stats,gc}` and `/v1/client/gc`
//! (`spec/nomad-stats.md` §1.3, §2.2; `spec/nomad-fs.md` §13).

use super::AppState;
use super::allocs;
use super::error::ApiError;
use super::model::AllocResourceUsage;
use super::params::Request;
use super::response::ApiResponse;
use crate::acl;
use crate::gc::{DISABLED, NOT_ELIGIBLE};

/// Dispatches `<alloc_id>/<action>`: exactly two tokens, else `resource not found`.
pub async fn dispatch(state: &AppState, rest: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    let tokens: Vec<&str> = rest.split('/').collect();
    match tokens.as_slice() {
        [alloc_id, "stats"] => stats(state, alloc_id, req).await,
        [alloc_id, "gc"] => gc(state, alloc_id, req).await,
        _ => Err(ApiError::not_found("resource not found")),
    }
}

/// The allocation's latest usage, composed from the cached task samples (found through the
/// allocation index; the compact answer for all tasks is encoded once per round of samples).
async fn stats(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    let alloc = allocs::find_indexed(state, alloc_id, req, acl::READ_JOB).await?;
    let task = Some(req.query.get("task")).filter(|t| !t.is_empty());
    if task.is_none() && !req.query.pretty() {
        return Ok(ApiResponse::json_bytes(state.sampler.alloc_stats_json(alloc.id)));
    }
    let samples = state.sampler.tasks();
    let usage = AllocResourceUsage::compose(
        samples.get(alloc.id).into_iter().flat_map(|t| t.values().map(|s| &s.sample)),
        task,
    );
    Ok(ApiResponse::json(&usage, req.query.pretty()))
}

/// Deletes a terminal allocation: 200 with an empty body once it is out of sight. The ACL is
/// checked before anything about the allocation is revealed.
async fn gc(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    let token = req.token.as_deref();
    state.acl.check_any_namespace(token, acl::GC_ALLOCATION)?;
    // Collected, or being collected (checked again after the lookup: a concurrent GC may have
    // moved it out of sight meanwhile).
    let gone = || {
        let namespace = state.collector.collected_namespace(alloc_id)?;
        Some(state.acl.check(token, acl::GC_ALLOCATION, &namespace).and(Err(ApiError::internal(NOT_ELIGIBLE))))
    };
    if let Some(answer) = gone() {
        return answer;
    }
    let alloc = match allocs::find(state, alloc_id, req, acl::GC_ALLOCATION).await {
        Ok(alloc) => alloc,
        Err(err) => return gone().unwrap_or(Err(err)),
    };
    let tasks: Vec<String> = alloc.info.tasks.iter().map(|t| t.to_string()).collect();
    let namespace = alloc.info.namespace.as_str();
    state
        .collector
        .delete_terminal(alloc.backend_index, alloc.id, namespace, &tasks)
        .await
        .map_err(ApiError::internal)?;
    Ok(ApiResponse::empty())
}

/// `/v1/client/gc`: collects every terminal allocation, answering before they are deleted.
pub fn gc_all(state: &AppState, req: &Request) -> Result<ApiResponse, ApiError> {
    state.acl.check(req.token.as_deref(), acl::Need::NodeWrite, "")?;
    let node_id = req.query.get("node_id");
    if !node_id.is_empty() && node_id != state.node_id {
        return Err(ApiError::internal(format!("Unknown node {node_id}")));
    }
    if !state.collector.enabled() {
        return Err(ApiError::internal(DISABLED));
    }
    state.collector.collect_all();
    Ok(ApiResponse::empty())
}
