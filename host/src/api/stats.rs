//! `GET /v1/client/stats`: the latest cached host sample.

use super::AppState;
use super::error::ApiError;
use super::params::Request;
use super::response::ApiResponse;
use super::wire::go_quote;
use crate::acl;

/// Serves the cached sample; `node_id`, when given, must be this node's.
pub fn host(state: &AppState, req: &Request) -> Result<ApiResponse, ApiError> {
    state.acl.check(req.token.as_deref(), acl::Need::NodeRead, "")?;
    let node_id = req.query.get("node_id");
    if !node_id.is_empty() && node_id != state.node_id {
        return Err(ApiError::not_found(format!("Unknown node {}", go_quote(node_id))));
    }
    let sample = state.sampler.host().ok_or_else(|| ApiError::internal("no metric provider reports host stats"))?;
    if req.query.pretty() {
        Ok(ApiResponse::json(&sample.stats, true))
    } else {
        Ok(ApiResponse::json_bytes(sample.compact_json.clone()))
    }
}
