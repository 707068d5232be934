//! `/v1/client/allocation/:alloc_id/{stats,gc}` and `/v1/client/gc`
//! (`spec/nomad-stats.md` §1.3, §2.2; `spec/nomad-fs.md` §13).

use super::AppState;
use super::allocs;
use super::error::ApiError;
use super::model::AllocResourceUsage;
use super::params::Request;
use super::response::ApiResponse;
use crate::acl;
use crate::gc::NOT_ELIGIBLE;

/// Dispatches `<alloc_id>/<action>`: exactly two tokens, else `resource not found`.
pub async fn dispatch(state: &AppState, rest: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    let tokens: Vec<&str> = rest.split('/').collect();
    match tokens.as_slice() {
        [alloc_id, "stats"] => stats(state, alloc_id, req).await,
        [alloc_id, "gc"] => gc(state, alloc_id, req).await,
        _ => Err(ApiError::not_found("resource not found")),
    }
}

/// The allocation's latest usage, composed from the cached task samples.
async fn stats(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    let alloc = allocs::find(state, alloc_id, req, acl::READ_JOB).await?;
    let samples = state.sampler.tasks();
    let task = Some(req.query.get("task")).filter(|t| !t.is_empty());
    let usage = AllocResourceUsage::compose(
        samples.get(alloc.id).into_iter().flat_map(|t| t.values().map(|s| &s.sample)),
        task,
    );
    Ok(ApiResponse::json(&usage, req.query.pretty()))
}

/// Deletes a terminal allocation: 200 with an empty body.
async fn gc(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    if state.collector.was_collected(alloc_id) {
        return Err(ApiError::internal(NOT_ELIGIBLE));
    }
    let alloc = allocs::find(state, alloc_id, req, acl::GC_ALLOCATION).await?;
    state.collector.collect(alloc.backend_index, alloc.id).await.map_err(ApiError::internal)?;
    Ok(ApiResponse::empty())
}

/// `/v1/client/gc`: collects every terminal allocation, answering before they are deleted.
pub fn gc_all(state: &AppState, req: &Request) -> Result<ApiResponse, ApiError> {
    state.acl.check(req.token.as_deref(), acl::Need::NodeWrite, "")?;
    let node_id = req.query.get("node_id");
    if !node_id.is_empty() && node_id != state.node_id {
        return Err(ApiError::internal(format!("Unknown node {node_id}")));
    }
    state.collector.collect_all();
    Ok(ApiResponse::empty())
}
