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

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use reqwest::{Certificate, Identity};
use tokio_stream::StreamExt;
use warp::Reply;
use warp::http::header::{self, HeaderMap, HeaderName};
use warp::http::{Method, StatusCode};

use super::describe;
use super::membership::NodeRecord;
use crate::api::error::ApiError;
use crate::config::TlsConfig;
use crate::stream::body;

/// The header marking a forwarded request; its value is the forwarding agent's node ID.
pub const FORWARDED_BY: &str = "x-allocd-forwarded-by";
/// Nomad's text when no connection to the node exists (`structs.ErrNoNodeConn`).
pub const NO_PATH_TO_NODE: &str = "No path to node";
/// How long reaching the holder (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the holder may take to start answering (a plugin call times out in 10 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest answer read whole before it is relayed: one body channel's budget.
const WHOLE_LIMIT: u64 = body::BUDGET as u64;

/// Headers that belong to one connection, never relayed.
const HOP_BY_HOP: [HeaderName; 6] =
    [header::CONNECTION, header::HOST, header::TE, header::TRAILER, header::TRANSFER_ENCODING, header::UPGRADE];

/// An HTTP client for talking to the other agents.
pub struct Forwarder {
    client: reqwest::Client,
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
    pub fn new(tls: &TlsConfig) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_gzip()
            .no_deflate();
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("cluster: reading tls.ca_file {}", ca.display()))?;
            let certs = Certificate::from_pem_bundle(&pem).context("cluster: tls.ca_file")?;
            builder = certs.into_iter().fold(builder, |b, c| b.add_root_certificate(c));
        }
        if let (true, Some(cert), Some(key)) = (tls.http, &tls.cert_file, &tls.key_file) {
            let mut pem =
                std::fs::read(cert).with_context(|| format!("cluster: reading tls.cert_file {}", cert.display()))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).with_context(|| format!("cluster: reading tls.key_file {}", key.display()))?);
            builder = builder.identity(Identity::from_pem(&pem).context("cluster: tls.cert_file and tls.key_file")?);
        }
        Ok(Self { client: builder.build().context("cluster: building the forwarding client")? })
    }

    /// Sends the request to `node` and relays its answer; `Err` when the node cannot be reached.
    pub async fn forward(
        &self,
        node: &NodeRecord,
        request: &Outgoing<'_>,
        own_node_id: &str,
    ) -> Result<warp::reply::Response, ApiError> {
        let mut url = format!("{}{}", node.address.trim_end_matches('/'), request.raw_path);
        if !request.raw_query.is_empty() {
            url = format!("{url}?{}", request.raw_query);
        }
        let mut headers = request.headers.clone();
        HOP_BY_HOP.iter().for_each(|name| drop(headers.remove(name)));
        headers.insert(FORWARDED_BY, own_node_id.parse().map_err(|_| ApiError::internal("bad node ID"))?);
        let sent = self.client.request(request.method.clone(), &url).headers(headers).send();
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, sent).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                tracing::warn!(node_id = %node.id, %url, "forwarding failed: {}", describe(&err));
                return Err(ApiError::not_found(NO_PATH_TO_NODE));
            }
            Err(_) => {
                tracing::warn!(node_id = %node.id, %url, "forwarding failed: no answer within {ANSWER_TIMEOUT:?}");
                return Err(ApiError::not_found(NO_PATH_TO_NODE));
            }
        };
        relay(answer).await
    }
}

/// The holder's answer as this agent's answer. A body of known length up to [`WHOLE_LIMIT`]
/// is read whole and sent on in one piece (most answers: stats, stat, ls, small files); any
/// other is streamed as it arrives.
async fn relay(mut answer: reqwest::Response) -> Result<warp::reply::Response, ApiError> {
    let status: StatusCode = answer.status();
    let mut headers = std::mem::take(answer.headers_mut());
    HOP_BY_HOP.iter().for_each(|name| drop(headers.remove(name)));
    if answer.content_length().is_some_and(|len| len <= WHOLE_LIMIT) {
        let body = answer.bytes().await.map_err(|err| {
            tracing::warn!("the holder's answer ended early: {}", describe(&err));
            ApiError::not_found(NO_PATH_TO_NODE)
        })?;
        let mut reply = warp::reply::Response::new(body.into());
        *reply.status_mut() = status;
        *reply.headers_mut() = headers;
        return Ok(reply);
    }
    let (tx, rx) = body::channel();
    tokio::spawn(async move {
        loop {
            let chunk: Option<Bytes> = tokio::select! {
                chunk = answer.chunk() => match chunk {
                    Ok(chunk) => chunk,
                    Err(err) => {
                        tracing::info!("the holder's answer ended early: {}", describe(&err));
                        None
                    }
                },
                () = tx.closed() => None,
            };
            let Some(chunk) = chunk else { return };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let stream = rx.into_stream().map(Ok::<Bytes, std::convert::Infallible>);
    let mut reply = warp::reply::stream(stream).into_response();
    *reply.status_mut() = status;
    *reply.headers_mut() = headers;
    Ok(reply)
}
