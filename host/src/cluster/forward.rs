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
//! [`CONNECT_TIMEOUT`](super::peer::CONNECT_TIMEOUT)) is Nomad's `No path to node`, 404 as Nomad's handlers map it. A holder
//! that dies in the middle of a stream ends the relayed body cleanly. The connections
//! themselves are [`peer`](super::peer)'s.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tokio_stream::StreamExt;
use warp::Reply;
use warp::http::Method;
use warp::http::header::{HeaderMap, HeaderValue};

use super::membership::NodeRecord;
use super::peer::{AnswerHead, BodyReading, Conn, Destination, Framing, Peers, request_head};
use crate::api::error::ApiError;
use crate::config::TlsConfig;
use crate::stream::body;

/// The header marking a forwarded request; its value is the forwarding agent's node ID.
pub const FORWARDED_BY: &str = "x-allocd-forwarded-by";
/// Nomad's text when no connection to the node exists (`structs.ErrNoNodeConn`).
pub const NO_PATH_TO_NODE: &str = "No path to node";
/// How long the holder may take to start answering, and to finish an answer read whole (a plugin
/// call times out in 10 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest answer read whole before it is relayed: one body channel's budget.
const WHOLE_LIMIT: u64 = body::BUDGET as u64;

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

/// The forwarding client: connections to the other agents, kept alive for reuse.
pub struct Forwarder {
    peers: Arc<Peers>,
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
        let mut tls = files.client_config()?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let peers = Arc::new(Peers::new(TlsConnector::from(Arc::new(tls))));
        let forwarded_by = HeaderValue::from_str(own_node_id).context("cluster: the node ID as a header")?;
        Ok(Self { peers, forwarded_by, files })
    }

    /// The TLS files this client was built from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Sends the request to `node` and relays its answer; `Err` when the node cannot be reached.
    pub async fn forward(&self, node: &NodeRecord, request: &Outgoing<'_>) -> Result<warp::reply::Response, ApiError> {
        let Some(destination) = Destination::parse(&node.address) else {
            tracing::warn!(node_id = %node.id, address = %node.address, "forwarding failed: a bad address");
            return Err(ApiError::not_found(NO_PATH_TO_NODE));
        };
        let head = request_head(
            request.method,
            (request.raw_path, request.raw_query),
            destination.authority(),
            request.headers,
            &[(FORWARDED_BY, &self.forwarded_by)],
        );
        let asking = async {
            let (mut conn, answer) = self.peers.ask(&node.address, &destination, &head, request.method).await?;
            // A body of known length up to WHOLE_LIMIT is read whole and sent on in one piece
            // (most answers: stats, stat, ls, small files); any other is streamed as it arrives.
            let whole = match answer.framing {
                Framing::Length(len) if len <= WHOLE_LIMIT => Some(conn.whole_body(len as usize).await?),
                _ => None,
            };
            Ok::<_, std::io::Error>((conn, answer, whole))
        };
        let (conn, mut answer, whole) = match tokio::time::timeout(ANSWER_TIMEOUT, asking).await {
            Ok(Ok(asked)) => asked,
            Ok(Err(err)) => {
                tracing::warn!(node_id = %node.id, address = %node.address, "forwarding failed: {err}");
                return Err(ApiError::not_found(NO_PATH_TO_NODE));
            }
            Err(_) => {
                tracing::warn!(node_id = %node.id, address = %node.address, "forwarding failed: no answer within {ANSWER_TIMEOUT:?}");
                return Err(ApiError::not_found(NO_PATH_TO_NODE));
            }
        };
        let status = answer.status;
        let headers = std::mem::take(&mut answer.headers);
        let mut reply = match whole {
            Some(whole) => {
                self.peers.checkin(&node.address, conn, answer.keep_alive);
                warp::reply::Response::new(whole.into())
            }
            None => stream(Arc::clone(&self.peers), node.address.clone(), conn, answer),
        };
        *reply.status_mut() = status;
        *reply.headers_mut() = headers;
        Ok(reply)
    }
}

/// A body relayed as it arrives, by a task that stops when the caller leaves; the connection is
/// kept for reuse when the body was read to its end.
fn stream(peers: Arc<Peers>, address: String, mut conn: Conn, answer: AnswerHead) -> warp::reply::Response {
    let (tx, rx) = body::channel();
    tokio::spawn(async move {
        let mut reading = BodyReading::from(answer.framing);
        loop {
            let piece = tokio::select! {
                piece = conn.next_piece(&mut reading) => piece,
                () = tx.closed() => return,
            };
            match piece {
                Ok(Some(piece)) => {
                    if tx.send(piece).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::info!("the holder's answer ended early: {err}");
                    return;
                }
            }
        }
        peers.checkin(&address, conn, answer.keep_alive);
    });
    let stream = rx.into_stream().map(Ok::<Bytes, std::convert::Infallible>);
    warp::reply::stream(stream).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
