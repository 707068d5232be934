//! `GET /v1/client/stats`: the latest cached host sample.

use super::AppState;
use super::error::ApiError;
use super::params::Query;
use super::response::ApiResponse;

/// Serves the cached sample; `node_id`, when given, must be this node's.
pub fn host(state: &AppState, query: &Query) -> Result<ApiResponse, ApiError> {
    let node_id = query.get("node_id");
    if !node_id.is_empty() && node_id != state.node_id {
        return Err(ApiError::not_found(format!("Unknown node {node_id:?}")));
    }
    let sample = state.sampler.host().ok_or_else(|| ApiError::internal("no metric provider reports host stats"))?;
    if query.pretty() {
        Ok(ApiResponse::json(&sample.stats, true))
    } else {
        Ok(ApiResponse::json_bytes(sample.compact_json.clone()))
    }
}
