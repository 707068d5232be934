//! The file endpoints: ls, stat, cat, readat (`spec/nomad-fs.md` §2, §4–6, §8–9).
//!
//! Parameter validation comes first, in Nomad's order and with its texts; then the alloc
//! lookup; then the backend. cat and readat stat the path first (a failure is 400, a
//! directory is 400) and answer with the intended status codes rather than Nomad's
//! accidental 200s. Their bodies carry Nomad's untrusted-content headers, and each holds a
//! `max_streams` slot until it ends or its client leaves.

use allocd_plugin_sdk::sniff::detect_content_type;
use warp::http::StatusCode;
use warp::http::header::{self, HeaderName, HeaderValue};

use super::AppState;
use super::allocs;
use super::error::ApiError;
use super::model::AllocFileInfo;
use super::params::{Query, Request, parse_int};
use super::response::{ApiResponse, Body};
use super::wire::go_quote;
use crate::acl;
use crate::stream::raw;

/// Nomad's first check on every fs endpoint.
pub fn require_alloc_id(alloc_id: &str) -> Result<(), ApiError> {
    if alloc_id.is_empty() { Err(ApiError::bad_request("must provide a valid alloc id")) } else { Ok(()) }
}

/// The `path` parameter, required.
pub fn require_path(query: &Query) -> Result<&str, ApiError> {
    match query.get("path") {
        "" => Err(ApiError::bad_request("must provide a file name")),
        path => Ok(path),
    }
}

/// `GET /v1/client/fs/ls/:alloc_id?path=`
pub async fn ls(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    require_alloc_id(alloc_id)?;
    let path = match req.query.get("path") {
        "" => "/",
        path => path,
    };
    let alloc = allocs::find(state, alloc_id, req, acl::READ_FS).await?;
    let entries = alloc.backend.list(alloc.id, path).await.map_err(|f| ApiError::from_fs_failure(&f))?;
    let entries: Vec<AllocFileInfo> = entries.iter().map(AllocFileInfo::from).collect();
    Ok(ApiResponse::json_list(entries, req.query.pretty()).await)
}

/// `GET /v1/client/fs/stat/:alloc_id?path=`
pub async fn stat(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    require_alloc_id(alloc_id)?;
    let path = require_path(&req.query)?;
    let alloc = allocs::find(state, alloc_id, req, acl::READ_FS).await?;
    let info = alloc.backend.stat(alloc.id, path).await.map_err(|f| ApiError::from_fs_failure(&f))?;
    Ok(ApiResponse::json(&AllocFileInfo::from(&info), req.query.pretty()))
}

/// `GET /v1/client/fs/cat/:alloc_id?path=`
pub async fn cat(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    require_alloc_id(alloc_id)?;
    let path = require_path(&req.query)?;
    read_plain(state, alloc_id, req, path, 0, 0).await
}

/// `GET /v1/client/fs/readat/:alloc_id?path=&offset=&limit=`
pub async fn readat(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    require_alloc_id(alloc_id)?;
    let path = require_path(&req.query)?;
    let offset =
        parse_int(req.query.get("offset")).map_err(|e| ApiError::internal(format!("error parsing offset: {e}")))?;
    let limit = match req.query.get("limit") {
        "" => 0,
        limit => parse_int(limit).map_err(|e| ApiError::internal(format!("error parsing limit: {e}")))?,
    };
    read_plain(state, alloc_id, req, path, offset, limit).await
}

/// Raw bytes of `path` from `offset`, at most `limit` bytes when `limit > 0`.
async fn read_plain(
    state: &AppState,
    alloc_id: &str,
    req: &Request,
    path: &str,
    offset: i64,
    limit: i64,
) -> Result<ApiResponse, ApiError> {
    let alloc = allocs::find(state, alloc_id, req, acl::READ_FS).await?;
    let info = alloc.backend.stat(alloc.id, path).await.map_err(|f| ApiError::from_prestream_failure(&f))?;
    if info.is_dir {
        return Err(ApiError::bad_request(format!("file {} is a directory", go_quote(path))));
    }
    let offset = u64::try_from(offset)
        .map_err(|_| ApiError::internal(format!("can't seek to offset {offset}: seek {path}: invalid argument")))?;
    let permit = state.stream_permit()?;
    let file = alloc.backend.open(alloc.id, path).await.map_err(|f| ApiError::from_failure(&f))?;
    let remaining = u64::try_from(limit).ok().filter(|&limit| limit > 0);
    let first = file.read_at(offset, raw::next_len(remaining)).await.map_err(|f| ApiError::from_failure(&f))?;
    let mut response = ApiResponse::new(StatusCode::OK, Body::Empty);
    if first.is_empty() {
        // Nomad's writer never saw a write: sniffed type of nothing, no security headers.
        response.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return Ok(response);
    }
    let sniffed = detect_content_type(&first[..first.len().min(512)]);
    let content_type = if ["text/html", "text/xhtml", "text/xhtml+xml"].iter().any(|p| sniffed.starts_with(p)) {
        "text/plain"
    } else {
        sniffed
    };
    response.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in UNTRUSTED_CONTENT_HEADERS {
        response.headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response.body = Body::Stream(raw::spawn_body(file, first, offset, remaining, permit));
    Ok(response)
}

/// Nomad's `noxssrw` headers for cat and readat bodies.
const UNTRUSTED_CONTENT_HEADERS: [(&str, &str); 3] = [
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
];
