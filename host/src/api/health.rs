//! `GET /v1/agent/health`: Nomad's agent health check, for load balancers and orchestrators.
//!
//! Healthy is `200 {"client":{"message":"ok","ok":true}}`. The client is unhealthy while the
//! host sample is stale (older than three collection intervals, at least 5 s) or a plugin's
//! service is unhealthy (a call timed out or panicked and no probe has been answered since);
//! Nomad then answers 500 with the JSON as a plain-text error, its `message` saying why.

use std::time::Duration;

use serde::Serialize;
use warp::http::{Method, StatusCode};

use super::AppState;
use super::error::ApiError;
use super::metrics::require_get;
use super::response::ApiResponse;
use crate::gc::now_ns;

/// Nomad's `healthResponseAgent`; `ok` comes first in its error text (Go's `encoding/json`).
#[derive(Serialize)]
struct Agent {
    ok: bool,
    message: String,
}

#[derive(Serialize)]
struct Health {
    client: Agent,
}

/// Why the client is unhealthy, if it is.
fn problems(state: &AppState) -> Vec<String> {
    let mut problems = state.registry.outages();
    let stale_after = (3 * state.telemetry.collection_interval).max(Duration::from_secs(5));
    match state.sampler.host() {
        None => problems.push("no host sample: no metric provider reports host stats".to_string()),
        Some(host) => {
            let age = Duration::from_nanos(now_ns().saturating_sub(host.stats.timestamp).max(0) as u64);
            if age > stale_after {
                problems.push(format!("host sample is stale: taken {}s ago", age.as_secs()));
            }
        }
    }
    problems
}

pub fn health(state: &AppState, method: &Method) -> Result<ApiResponse, ApiError> {
    require_get(method)?;
    let problems = problems(state);
    if problems.is_empty() {
        // Nomad's encoder sorts keys: message before ok.
        return Ok(ApiResponse::json_bytes(bytes::Bytes::from_static(br#"{"client":{"message":"ok","ok":true}}"#)));
    }
    let health = Health { client: Agent { ok: false, message: problems.join("; ") } };
    Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, serde_json::to_string(&health).unwrap_or_default()))
}
