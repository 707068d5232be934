//! Responses and the wrapping Nomad puts around every one of them: gzip/deflate exactly as
//! gorilla/handlers chooses it (the first `Accept-Encoding` token that is exactly `gzip` or
//! `deflate`; streams are flushed through the compressor chunk by chunk, see
//! [`compress`](crate::stream::compress): anything but a small body is compressed off the
//! async workers), `Vary`, and rs/cors'
//! headers on `/v1/client/stats` and the `/v1/client/fs/` and `/v1/client/allocation/` subtrees.
//!
//! An empty body is never compressed (a deliberate difference): Nomad wraps it in a 20-byte
//! gzip stream, which Nomad's own Go API client then fails to decode (`EOF`) on the GC calls.
//! allocd sends `Content-Length: 0` and no `Content-Encoding`.

use bytes::Bytes;
use serde::Serialize;
use tokio_stream::StreamExt;
use warp::Reply;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::{Method, StatusCode};

use super::error::ApiError;
use super::wire;
use crate::stream::body::BodyReceiver;
use crate::stream::compress::{self, Encoding, Input};

/// Lists up to this long are encoded where they are (well under a millisecond).
const LIST_INLINE_LIMIT: usize = 512;

/// A response body.
pub enum Body {
    Empty,
    Full(Bytes),
    /// Chunks produced by a task; the channel's byte budget is the back-pressure.
    Stream(BodyReceiver),
}

/// A response before Nomad's wrapping is applied.
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

impl ApiResponse {
    pub fn new(status: StatusCode, body: Body) -> Self {
        Self { status, headers: HeaderMap::new(), body }
    }

    /// 200 with Nomad's JSON encoding of `value`.
    pub fn json<T: Serialize>(value: &T, pretty: bool) -> Self {
        Self::json_bytes(Bytes::from(wire::to_json(value, pretty)))
    }

    /// [`Self::json`] for a list; a long one is encoded on the [`cpu`](crate::cpu) pool, off
    /// the async workers that answer everyone else.
    pub async fn json_list<T: Serialize + Send + 'static>(items: Vec<T>, pretty: bool) -> Self {
        if items.len() <= LIST_INLINE_LIMIT {
            return Self::json(&items, pretty);
        }
        match crate::cpu::run(move || wire::to_json(&items, pretty)).await {
            Some(json) => Self::json_bytes(Bytes::from(json)),
            None => ApiError::internal("encoding the answer failed").into(),
        }
    }

    /// 200 with already-encoded JSON.
    pub fn json_bytes(body: Bytes) -> Self {
        Self::new(StatusCode::OK, Body::Full(body)).with_header(header::CONTENT_TYPE, "application/json")
    }

    /// 200 with no body and no content type (Nomad's GC answers).
    pub fn empty() -> Self {
        Self::new(StatusCode::OK, Body::Empty)
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.insert(name, HeaderValue::from_static(value));
        self
    }
}

impl From<ApiError> for ApiResponse {
    fn from(error: ApiError) -> Self {
        Self::new(error.status, Body::Full(Bytes::from(error.message)))
            .with_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
    }
}

/// What of the request shapes the response's wrapping.
pub struct RequestMeta {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// Where Go's mux redirects this request before any handler (see [`super::clean`]).
    pub redirect: Option<String>,
}

impl RequestMeta {
    /// CORS wraps the host stats and these subtrees only (not `/v1/client/gc`), and never a
    /// redirect (the mux answers it before the route's wrappers).
    pub fn cors_applies(&self) -> bool {
        self.redirect.is_none()
            && (self.path == "/v1/client/stats"
                || self.path.starts_with("/v1/client/fs/")
                || self.path.starts_with("/v1/client/allocation/"))
    }

    /// A CORS preflight: OPTIONS with `Access-Control-Request-Method`.
    pub fn is_preflight(&self) -> bool {
        self.method == Method::OPTIONS && self.headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    fn encoding(&self) -> Option<Encoding> {
        if self.headers.contains_key(header::UPGRADE) {
            return None;
        }
        let accept = self.headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
        accept.split(',').map(str::trim).find_map(|token| match token {
            "gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            _ => None,
        })
    }
}

/// rs/cors' answer to a preflight: 204, empty body.
pub fn preflight(meta: &RequestMeta) -> ApiResponse {
    let mut response = ApiResponse::new(StatusCode::NO_CONTENT, Body::Empty);
    let vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
    response.headers.append(header::VARY, HeaderValue::from_static(vary));
    let requested = meta.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD).cloned();
    let allowed = requested.as_ref().is_some_and(|m| matches!(m.as_bytes(), b"GET" | b"HEAD" | b"OPTIONS"));
    if meta.headers.contains_key(header::ORIGIN) && allowed {
        let headers = &mut response.headers;
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, requested.expect("checked above"));
        if let Some(asked) = meta.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    response
}

/// Applies compression, `Vary` and CORS, and hands the response to warp.
pub fn finish(response: ApiResponse, meta: &RequestMeta) -> warp::reply::Response {
    let ApiResponse { status, mut headers, body } = response;
    let encoding = if matches!(body, Body::Empty) { None } else { meta.encoding() };
    let body: warp::reply::Response = match (body, encoding) {
        (Body::Empty, _) => warp::reply::Response::new(Default::default()),
        (Body::Full(bytes), None) => warp::reply::Response::new(bytes.into()),
        (Body::Stream(rx), None) => stream_reply(rx),
        (Body::Full(bytes), Some(encoding)) if bytes.len() <= compress::INLINE_LIMIT => {
            warp::reply::Response::new(compress::compress_small(&bytes, encoding).into())
        }
        (Body::Full(bytes), Some(encoding)) => stream_reply(compress::compress(Input::Whole(bytes), encoding)),
        (Body::Stream(rx), Some(encoding)) => stream_reply(compress::compress(Input::Stream(rx), encoding)),
    };
    let mut reply = body;
    *reply.status_mut() = status;
    if let Some(encoding) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.name()));
        headers.remove(header::CONTENT_LENGTH);
    }
    headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if meta.cors_applies() && !meta.is_preflight() {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        if meta.headers.contains_key(header::ORIGIN) && matches!(meta.method, Method::GET | Method::HEAD) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
    reply.headers_mut().extend(headers);
    reply
}

fn stream_reply(rx: BodyReceiver) -> warp::reply::Response {
    let stream = rx.into_stream().map(Ok::<Bytes, std::convert::Infallible>);
    warp::reply::stream(stream).into_response()
}
