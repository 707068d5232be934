//! `GET /v1/metrics`: Nomad's metrics endpoint, JSON or (`?format=prometheus`) Prometheus text.

use bytes::Bytes;
use warp::http::{Method, StatusCode, header};

use super::AppState;
use super::error::ApiError;
use super::params::Request;
use super::response::{ApiResponse, Body};
use crate::telemetry::encode;

/// Nomad's answer to any method but GET on its agent endpoints.
pub fn require_get(method: &Method) -> Result<(), ApiError> {
    if method == Method::GET { Ok(()) } else { Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Invalid method")) }
}

/// Serves every published metric from cached samples and counters; never calls a plugin.
pub fn metrics(state: &AppState, method: &Method, req: &Request) -> Result<ApiResponse, ApiError> {
    require_get(method)?;
    let telemetry = &state.telemetry;
    let metrics = telemetry.gather(state);
    if req.query.get("format") == "prometheus" {
        if !telemetry.config.prometheus_metrics {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Prometheus is not enabled"));
        }
        let text = Bytes::from(encode::prometheus(&metrics));
        return Ok(ApiResponse::new(StatusCode::OK, Body::Full(text))
            .with_header(header::CONTENT_TYPE, encode::PROMETHEUS_CONTENT_TYPE));
    }
    let (timestamp, covered) = telemetry.timestamp();
    Ok(ApiResponse::json_bytes(Bytes::from(encode::json(&metrics, &timestamp, covered, req.query.pretty()))))
}
