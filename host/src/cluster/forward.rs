//! Relaying a request to the agent that can answer it, and its answer back unchanged: the
//! status, every header (`Content-Encoding`, `Vary`, CORS, the untrusted-content headers) and
//! the body as the holder wrote it, already compressed when the caller asked for gzip (this
//! agent never decodes or re-encodes it). The body flows through a budgeted channel (see
//! `stream::body`), so a caller that stops reading stops the holder's stream too, and a
//! caller that leaves closes the connection to the holder.
//!
//! The caller's headers travel along, its ACL token among them: the holder decides. Between
//! agents the connection uses this agent's own TLS files: the CA in `tls.ca_file` verifies
//! the holder, and the agent's certificate is its client certificate (which the holder
//! demands when `verify_https_client` is on). A relayed request carries [`FORWARDED_BY`], and
//! an agent never forwards such a request again: a disagreement about who holds what ends in
//! a 404, never in a loop.
//!
//! A holder that cannot be reached (refused, no route, no TLS session within
//! [`CONNECT_TIMEOUT`]) is Nomad's `No path to node`, 404 as Nomad's handlers map it. A holder
//! that dies in the middle of a stream ends the relayed body cleanly.
//!
//! The client is hyper-util's pooled one with rustls through hyper-rustls, not reqwest (which
//! is built on them): per request, reqwest parsed a `Url` (with IDNA), cloned its client and
//! connector and copied header maps, and the forwarding agent spent about three times the
//! holder's CPU on a forwarded stats request; here the URL is one string that `http::Uri`
//! parses in place, and the header map is copied once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as _, Incoming};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tokio_stream::StreamExt;
use warp::Reply;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::{Method, Request, Uri};

use super::membership::NodeRecord;
use super::with_causes;
use crate::api::error::ApiError;
use crate::config::TlsConfig;
use crate::stream::body;

/// The header marking a forwarded request; its value is the forwarding agent's node ID.
pub const FORWARDED_BY: &str = "x-allocd-forwarded-by";
/// Nomad's text when no connection to the node exists (`structs.ErrNoNodeConn`).
pub const NO_PATH_TO_NODE: &str = "No path to node";
/// How long reaching the holder (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the holder may take to start answering, and to finish an answer read whole (a plugin
/// call times out in 10 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an unused connection to another agent stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Largest answer read whole before it is relayed: one body channel's budget.
const WHOLE_LIMIT: u64 = body::BUDGET as u64;

/// Headers that belong to one connection, never relayed (RFC 9110 §7.6.1), besides those the
/// `Connection` header names.
const HOP_BY_HOP: [&str; 8] =
    ["connection", "host", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// Removes the headers that belong to one connection.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
        headers.remove(name);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The contents of the TLS files the forwarding client is built from, kept so that a reload
/// can tell whether they changed (a certificate rotated in place keeps its paths).
#[derive(PartialEq)]
pub struct TlsFiles {
    ca: Option<Vec<u8>>,
    /// The agent's certificate and key, its client certificate (with `tls.http` only).
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    pub fn read(tls: &TlsConfig) -> anyhow::Result<Self> {
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("cluster: reading tls.{what} {}", path.display()))
        };
        let ca = tls.ca_file.as_deref().map(|ca| read("ca_file", ca)).transpose()?;
        let identity = match (tls.http, &tls.cert_file, &tls.key_file) {
            (true, Some(cert), Some(key)) => Some((read("cert_file", cert)?, read("key_file", key)?)),
            _ => None,
        };
        Ok(Self { ca, identity })
    }

    /// The client side of TLS: the system's roots and `tls.ca_file` verify the holder, the
    /// agent's certificate is the client certificate.
    fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(ca) = &self.ca {
            for cert in CertificateDer::pem_slice_iter(ca) {
                roots.add(cert.context("cluster: tls.ca_file")?).context("cluster: tls.ca_file")?;
            }
        }
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match &self.identity {
            Some((cert, key)) => {
                let certs = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .context("cluster: tls.cert_file")?;
                let key = PrivateKeyDer::from_pem_slice(key).context("cluster: tls.key_file")?;
                builder.with_client_auth_cert(certs, key).context("cluster: tls.cert_file and tls.key_file")?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(config)
    }
}

/// An HTTP client for talking to the other agents: hyper's pooled client, one keep-alive
/// connection per concurrent request kept for reuse.
pub struct Forwarder {
    client: Client<Connector, Empty<Bytes>>,
    /// [`FORWARDED_BY`]'s value: this agent's node ID.
    forwarded_by: HeaderValue,
    files: TlsFiles,
}

/// What to send on: the request as it came.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// The path as received (still percent-encoded) and the raw query.
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
}

impl Forwarder {
    pub fn new(files: TlsFiles, own_node_id: &str) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        // A holder that dies or is cut off mid-answer (a follow may be silent for minutes) is
        // noticed by TCP keepalive: probes after 5 s of silence, one a second, three missed.
        http.set_keepalive(Some(Duration::from_secs(5)));
        http.set_keepalive_interval(Some(Duration::from_secs(1)));
        http.set_keepalive_retries(Some(3));
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(files.client_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(Connector(https));
        let forwarded_by = HeaderValue::from_str(own_node_id).context("cluster: the node ID as a header")?;
        Ok(Self { client, forwarded_by, files })
    }

    /// The TLS files this client was built from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Sends the request to `node` and relays its answer; `Err` when the node cannot be reached.
    pub async fn forward(&self, node: &NodeRecord, request: &Outgoing<'_>) -> Result<warp::reply::Response, ApiError> {
        let uri = target(&node.address, request).map_err(|_| ApiError::internal("bad forwarding address"))?;
        let mut headers = request.headers.clone();
        strip_hop_by_hop(&mut headers);
        headers.insert(FORWARDED_BY, self.forwarded_by.clone());
        let mut outgoing = Request::new(Empty::new());
        *outgoing.method_mut() = request.method.clone();
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = headers;
        let uri = outgoing.uri().clone();
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, self.client.request(outgoing)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                tracing::warn!(node_id = %node.id, %uri, "forwarding failed: {}", with_causes(&err));
                return Err(ApiError::not_found(NO_PATH_TO_NODE));
            }
            Err(_) => {
                tracing::warn!(node_id = %node.id, %uri, "forwarding failed: no answer within {ANSWER_TIMEOUT:?}");
                return Err(ApiError::not_found(NO_PATH_TO_NODE));
            }
        };
        relay(answer).await
    }
}

/// The holder's URL for `request`: its base address, the path and query as received, built in
/// one string that [`Uri`] parses without copying.
fn target(address: &str, request: &Outgoing<'_>) -> Result<Uri, warp::http::uri::InvalidUri> {
    let address = address.trim_end_matches('/');
    let mut url = String::with_capacity(address.len() + request.raw_path.len() + 1 + request.raw_query.len());
    url.push_str(address);
    url.push_str(request.raw_path);
    if !request.raw_query.is_empty() {
        url.push('?');
        url.push_str(request.raw_query);
    }
    Uri::try_from(url)
}

/// hyper-rustls's connector under [`CONNECT_TIMEOUT`] for TCP and TLS together (the TCP
/// connector's own timeout ends at the TCP handshake).
#[derive(Clone)]
struct Connector(HttpsConnector<HttpConnector>);

impl tower_service::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(format!("no TCP/TLS session within {CONNECT_TIMEOUT:?}").into()),
            }
        })
    }
}

/// The holder's answer as this agent's answer. A body of known length up to [`WHOLE_LIMIT`]
/// is read whole and sent on in one piece (most answers: stats, stat, ls, small files); any
/// other is streamed as it arrives.
async fn relay(answer: hyper::Response<Incoming>) -> Result<warp::reply::Response, ApiError> {
    let (parts, mut incoming) = answer.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let finish = |mut reply: warp::reply::Response| {
        *reply.status_mut() = parts.status;
        *reply.headers_mut() = headers;
        reply
    };
    if incoming.size_hint().exact().is_some_and(|len| len <= WHOLE_LIMIT) {
        let whole = match tokio::time::timeout(ANSWER_TIMEOUT, incoming.collect()).await {
            Ok(Ok(whole)) => whole,
            Ok(Err(err)) => {
                tracing::warn!("the holder's answer ended early: {}", with_causes(&err));
                return Err(ApiError::not_found(NO_PATH_TO_NODE));
            }
            Err(_) => {
                tracing::warn!("the holder's answer stalled for {ANSWER_TIMEOUT:?} after its head");
                return Err(ApiError::not_found(NO_PATH_TO_NODE));
            }
        };
        return Ok(finish(warp::reply::Response::new(whole.to_bytes().into())));
    }
    let (tx, rx) = body::channel();
    tokio::spawn(async move {
        loop {
            let chunk = tokio::select! {
                chunk = next_chunk(&mut incoming) => chunk,
                () = tx.closed() => None,
            };
            let Some(chunk) = chunk else { return };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let stream = rx.into_stream().map(Ok::<Bytes, std::convert::Infallible>);
    Ok(finish(warp::reply::stream(stream).into_response()))
}

/// The next piece of the holder's body; `None` at its end (trailers are not relayed).
async fn next_chunk(incoming: &mut Incoming) -> Option<Bytes> {
    loop {
        match incoming.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(data);
                }
            }
            Err(err) => {
                tracing::info!("the holder's answer ended early: {}", with_causes(&err));
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::header::HeaderName;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Private-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-private-hop", "1"),
            ("proxy-connection", "keep-alive"),
            ("host", "a:4646"),
            ("x-nomad-token", "secret"),
            ("accept-encoding", "gzip"),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, ["accept-encoding", "x-nomad-token"]);
    }

    #[test]
    fn a_client_without_tls_files_builds() {
        let files = TlsFiles::read(&TlsConfig::default()).unwrap();
        assert!(files.ca.is_none() && files.identity.is_none());
        Forwarder::new(files, "5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11").unwrap();
    }

    #[test]
    fn files_rewritten_in_place_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let [ca, cert, key] = ["ca.pem", "cert.pem", "key.pem"].map(|name| dir.path().join(name));
        [&ca, &cert, &key].iter().for_each(|path| std::fs::write(path, "before").unwrap());
        let tls = TlsConfig {
            http: true,
            cert_file: Some(cert.clone()),
            key_file: Some(key),
            ca_file: Some(ca),
            verify_https_client: true,
        };
        let before = TlsFiles::read(&tls).unwrap();
        assert!(before == TlsFiles::read(&tls).unwrap());
        std::fs::write(&cert, "after").unwrap();
        assert!(before != TlsFiles::read(&tls).unwrap());
    }

    #[test]
    fn the_target_is_the_base_address_with_the_path_and_query_as_received() {
        let headers = HeaderMap::new();
        let request = |raw_path, raw_query| Outgoing { method: &Method::GET, raw_path, raw_query, headers: &headers };
        let uri = target("https://10.0.0.5:4646/", &request("/v1/client/fs/cat/a%20b", "path=x%2Fy&plain")).unwrap();
        assert_eq!(uri.to_string(), "https://10.0.0.5:4646/v1/client/fs/cat/a%20b?path=x%2Fy&plain");
        let uri = target("http://127.0.0.1:4646", &request("/v1/client/stats", "")).unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:4646/v1/client/stats");
    }
}
