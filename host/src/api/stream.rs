//! The following endpoints: `fs/stream` and `fs/logs` (`spec/nomad-fs.md` §2.5–2.6, §10–11).
//!
//! Parameters are checked in Nomad's order with its texts — note the asymmetries: `follow`
//! defaults to true on stream and false on logs, and parse errors are 500 on stream but 400
//! on logs. Everything that can fail before the first byte is answered with a status code;
//! then a task streams into the response (see [`crate::stream`]).

use std::sync::Arc;

use warp::http::StatusCode;
use warp::http::header::{self, HeaderValue};

use super::AppState;
use super::allocs;
use super::error::ApiError;
use super::fs::{require_alloc_id, require_path};
use super::params::{Query, Request, parse_bool, parse_int};
use super::response::{ApiResponse, Body};
use super::wire::go_quote;
use crate::acl;
use crate::stream::body::BodyReceiver;
use crate::stream::follow::{Cursor, Source};
use crate::stream::frame::Sink;
use crate::stream::{self as engine, logs};

/// `origin`: `start` (also when empty) or `end`.
fn parse_origin(query: &Query) -> Result<bool, ApiError> {
    match query.get("origin") {
        "" | "start" => Ok(false),
        "end" => Ok(true),
        _ => Err(ApiError::bad_request("origin must be start or end")),
    }
}

fn source(state: &Arc<AppState>, alloc: &allocs::Alloc<'_>) -> Source {
    Source {
        registry_index: alloc.backend_index,
        alloc_id: alloc.id.to_owned(),
        hub: Arc::clone(&state.watch_hub),
        registry: Arc::clone(&state.registry),
    }
}

/// `GET /v1/client/fs/stream/:alloc_id?path=&offset=&origin=&follow=`
pub async fn stream(state: &Arc<AppState>, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    require_alloc_id(alloc_id)?;
    let path = require_path(&req.query)?.to_owned();
    let follow = match req.query.get("follow") {
        "" => true,
        value => parse_bool(value)
            .map_err(|e| ApiError::internal(format!("failed to parse follow field to boolean: {e}")))?,
    };
    let offset = match req.query.get("offset") {
        "" => 0,
        value => parse_int(value).map_err(|e| ApiError::internal(format!("error parsing offset: {e}")))?,
    };
    let from_end = parse_origin(&req.query)?;

    let alloc = allocs::find(state, alloc_id, req, acl::READ_FS).await?;
    let info = alloc.backend.stat(alloc.id, &path).await.map_err(|f| ApiError::from_prestream_failure(&f))?;
    if info.is_dir {
        return Err(ApiError::bad_request(format!("file {} is a directory", go_quote(&path))));
    }
    let start = if from_end {
        // origin=end: the last `offset` bytes; a negative offset points past the end.
        (info.size.max(0) as i128 - offset as i128).max(0) as u64
    } else {
        u64::try_from(offset)
            .map_err(|_| ApiError::internal(format!("can't seek to offset {offset}: seek {path}: invalid argument")))?
    };
    let permit = state.stream_permit()?;
    // Opened before answering, so a file that cannot be read gets a status code.
    let cursor =
        Cursor::open(&source(state, &alloc), &path, &path, start).await.map_err(|f| ApiError::from_failure(&f))?;
    let (mut sink, body) = Sink::new(false);
    let following = follow.then(|| state.telemetry.followers.enter());
    tokio::spawn(async move {
        let _held = (permit, following);
        let result = engine::stream_file(cursor, follow, &mut sink).await;
        engine::finish(result, &mut sink).await;
    });
    Ok(streaming_response("text/plain; charset=utf-8", body))
}

/// `GET /v1/client/fs/logs/:alloc_id?task=&type=&follow=&plain=&offset=&origin=`
pub async fn logs(state: &Arc<AppState>, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    require_alloc_id(alloc_id)?;
    let task = match req.query.get("task") {
        "" => return Err(ApiError::bad_request("must provide task name")),
        task => task.to_owned(),
    };
    let parse_flag = |name: &str| match req.query.get(name) {
        "" => Ok(false),
        value => parse_bool(value)
            .map_err(|e| ApiError::bad_request(format!("failed to parse {name} field to boolean: {e}"))),
    };
    let follow = parse_flag("follow")?;
    let plain = parse_flag("plain")?;
    let log_type = match req.query.get("type") {
        kind @ ("stdout" | "stderr") => kind.to_owned(),
        _ => return Err(ApiError::bad_request("must provide log type (stdout/stderr)")),
    };
    let offset = match req.query.get("offset") {
        "" => 0,
        value => parse_int(value).map_err(|e| ApiError::bad_request(format!("error parsing offset: {e}")))?,
    };
    let from_end = parse_origin(&req.query)?;

    let alloc = allocs::find(state, alloc_id, req, acl::READ_LOGS).await?;
    if !alloc.info.tasks.iter().any(|t| t.as_str() == task) {
        return Err(ApiError::bad_request(format!("unknown task name {}", go_quote(&task))));
    }
    let entries = alloc
        .backend
        .list(alloc.id, logs::LOG_DIR)
        .await
        .map_err(|f| ApiError::internal(format!("failed to list entries: {}", f.message())))?;
    let files = logs::log_files(&entries, &task, &log_type).map_err(ApiError::internal)?;
    let (desired, offset) = if from_end { (None, offset.saturating_neg()) } else { (Some(0), offset) };
    let Some((at, start)) = logs::find_closest(&files, desired, offset) else {
        return Err(ApiError::not_found(format!(
            "log entry for task {} and log type {} not found",
            go_quote(&task),
            go_quote(&log_type)
        )));
    };
    let index = files[at].index;
    let permit = state.stream_permit()?;
    let source = source(state, &alloc);
    let (mut sink, body) = Sink::new(plain);
    let following = follow.then(|| state.telemetry.followers.enter());
    tokio::spawn(async move {
        let _held = (permit, following);
        let result = logs::stream(&source, &task, &log_type, index, start, follow, &mut sink).await;
        engine::finish(result, &mut sink).await;
    });
    Ok(streaming_response(if plain { "text/plain" } else { "application/json" }, body))
}

fn streaming_response(content_type: &'static str, body: BodyReceiver) -> ApiResponse {
    let mut response = ApiResponse::new(StatusCode::OK, Body::Stream(body));
    response.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
