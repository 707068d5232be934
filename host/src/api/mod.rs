//! allocd's HTTP API: Nomad's client endpoints, dispatched the way Nomad's mux does.
//!
//! | Route | Parameters | Handler | Nomad capability (issue: ACLs) |
//! |---|---|---|---|
//! | `/v1/client/stats` | `node_id` | [`stats::host`] | `node:read` |
//! | `/v1/client/fs/ls/:alloc_id` | `path` (default `/`) | [`fs::ls`] | `read-fs` |
//! | `/v1/client/fs/stat/:alloc_id` | `path` | [`fs::stat`] | `read-fs` |
//! | `/v1/client/fs/cat/:alloc_id` | `path` | [`fs::cat`] | `read-fs` |
//! | `/v1/client/fs/readat/:alloc_id` | `path`, `offset`, `limit` | [`fs::readat`] | `read-fs` |
//! | `/v1/client/fs/stream/:alloc_id` | `path`, `offset`, `origin`, `follow` | [`stream::stream`] | `read-fs` |
//! | `/v1/client/fs/logs/:alloc_id` | `task`, `type`, `offset`, `origin`, `follow`, `plain` | [`stream::logs`] | `read-logs` or `read-fs` |
//! | `/v1/client/allocation/:alloc_id/stats` | `task` | [`alloc::dispatch`] | `read-job` |
//! | `/v1/client/allocation/:alloc_id/gc` | — | [`alloc::dispatch`] | `submit-job` or `gc-allocation` |
//! | `/v1/client/gc` | `node_id` | [`alloc::gc_all`] | `node:write` |
//! | `/v1/allocations` | `prefix`, `namespace` | [`listing::list`] | `read-job` |
//! | `/v1/allocation/:alloc_id` | — | [`listing::one`] | `read-job` |
//! | `/v1/metrics` (GET) | `format=prometheus` | [`metrics::metrics`] | — |
//! | `/v1/agent/health` (GET) | — | [`health::health`] | — |
//! | `/` (307 to `/ui/`), `/ui/...` | — | [`crate::ui::serve`] | — (the pages' own API calls carry the token) |
//!
//! Every route answers any method (Nomad checks none), takes `?pretty` where it returns JSON,
//! and answers errors as plain text. [`response::finish`] applies gzip, `Vary` and CORS.
//! Before any route, [`clean`] redirects unclean paths as Go's `ServeMux` does; a path no
//! route serves is 404 with an empty body, as Nomad's fallthrough answers. In fleet mode
//! [`crate::cluster::Cluster::serve`] decides whether another agent answers instead.

pub mod alloc;
pub mod allocs;
pub mod clean;
pub mod error;
pub mod fs;
pub mod health;
pub mod listing;
pub mod metrics;
pub mod model;
pub mod params;
pub mod response;
pub mod stats;
pub mod stream;
pub mod wire;

use std::sync::Arc;

use warp::http::StatusCode;

use self::error::ApiError;
use self::params::{Query, Request};
use self::response::{ApiResponse, RequestMeta};
use crate::cluster::Answer;
use crate::cluster::forward::Outgoing;
use crate::plugins::Registry;
use crate::stats::Sampler;

/// What every handler may use.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub sampler: Arc<Sampler>,
    /// This agent's node ID (persisted in the data dir).
    pub node_id: String,
    /// Who may do what.
    pub acl: crate::acl::LiveAcl,
    /// Deletes terminal allocations.
    pub collector: Arc<crate::gc::Collector>,
    /// The inotify watcher shared by every follower.
    pub watch_hub: Arc<crate::stream::watch::WatchHub>,
    /// Permits for concurrent cat, readat, stream and logs responses.
    pub streams: Arc<tokio::sync::Semaphore>,
    /// What `/v1/metrics` publishes, and the agent's own counters.
    pub telemetry: crate::telemetry::Telemetry,
    /// Fleet mode: the other agents answer for their allocations (none: single node).
    pub cluster: crate::cluster::LiveCluster,
}

impl AppState {
    /// A slot among `limits.max_streams` concurrent streamed responses, or 429.
    pub fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.streams).try_acquire_owned().map_err(|_| {
            ApiError::new(warp::http::StatusCode::TOO_MANY_REQUESTS, "too many concurrent streams, try again later")
        })
    }
}

/// Answers one request: the whole API. Only the method, the path, the raw query and the
/// headers are read (no endpoint takes a request body). The HTTP server calls it directly
/// rather than through a warp filter: warp's routing, its rejection when a request has no
/// query string and its copy of the headers cost about a tenth of a `/v1/client/stats` request.
pub async fn answer(state: &Arc<AppState>, request: hyper::Request<hyper::body::Incoming>) -> warp::reply::Response {
    let (parts, _body) = request.into_parts();
    let (raw_path, query) = (parts.uri.path(), parts.uri.query().unwrap_or(""));
    let redirect = clean::redirect_target(raw_path, query);
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy().into_owned();
    let meta = RequestMeta { method: parts.method, path: decoded, headers: parts.headers, redirect };
    let answer = if let Some(location) = &meta.redirect {
        Answer::Local(clean::moved_permanently(&meta.method, location))
    } else if meta.cors_applies() && meta.is_preflight() {
        Answer::Local(response::preflight(&meta))
    } else if let Some(page) = crate::ui::serve(&meta, query) {
        Answer::Local(page)
    } else {
        let request = Request { query: Query::parse(query), token: crate::acl::request_token(&meta.headers) };
        let local = || dispatch(state, &meta, &request);
        match state.cluster.current() {
            Some(cluster) => {
                let outgoing = Outgoing { method: &meta.method, raw_path, raw_query: query, headers: &meta.headers };
                cluster.serve(&meta, &outgoing, &request, local).await
            }
            None => Answer::Local(local().await.unwrap_or_else(ApiResponse::from)),
        }
    };
    let reply = match answer {
        Answer::Local(response) => response::finish(response, &meta),
        Answer::Relayed(reply) => reply,
    };
    state.telemetry.requests.record(reply.status().as_u16());
    reply
}

/// Nomad's dispatch: exact `/v1/client/stats`, then the `fs` subtree by operation prefix.
async fn dispatch(state: &Arc<AppState>, meta: &RequestMeta, req: &Request) -> Result<ApiResponse, ApiError> {
    let path = meta.path.as_str();
    if path == "/v1/client/stats" {
        return stats::host(state, req);
    }
    if path == "/v1/allocations" {
        return listing::list(state, req).await;
    }
    if let Some(alloc_id) = path.strip_prefix("/v1/allocation/").filter(|rest| !rest.contains('/')) {
        return listing::one(state, alloc_id, req).await;
    }
    if path == "/v1/metrics" {
        return metrics::metrics(state, &meta.method, req);
    }
    if path == "/v1/agent/health" {
        return health::health(state, &meta.method);
    }
    if path == "/v1/client/gc" {
        return alloc::gc_all(state, req);
    }
    if let Some(rest) = path.strip_prefix("/v1/client/allocation/") {
        return alloc::dispatch(state, rest, req).await;
    }
    if let Some(rest) = path.strip_prefix("/v1/client/fs/") {
        let (op, alloc_id) = rest.split_once('/').unwrap_or((rest, ""));
        if !rest.contains('/') {
            return Err(ApiError::not_found("Invalid method"));
        }
        return match op {
            "ls" => fs::ls(state, alloc_id, req).await,
            "stat" => fs::stat(state, alloc_id, req).await,
            "cat" => fs::cat(state, alloc_id, req).await,
            "readat" => fs::readat(state, alloc_id, req).await,
            "stream" => stream::stream(state, alloc_id, req).await,
            "logs" => stream::logs(state, alloc_id, req).await,
            _ => Err(ApiError::not_found("Invalid method")),
        };
    }
    // Nomad's fallthrough handler: 404 with an empty body.
    Ok(ApiResponse::new(StatusCode::NOT_FOUND, response::Body::Empty))
}
