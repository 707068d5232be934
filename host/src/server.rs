//! The HTTP server under the API: TCP or TLS (rustls), limits, graceful shutdown.
//!
//! allocd runs its own accept loop and hands each connection to hyper with the API's handler
//! ([`crate::api::answer`]) as the service. That is also
//! where the protections against hostile clients live: a cap on open connections per client
//! address (Nomad's `http_max_conns_per_client`, answered 429) and in all
//! (`http_max_conns_total`, closed at once), a TLS handshake timeout, Go's 400 answer to plain
//! HTTP on the TLS port, a cap on the request head size (hyper answers 431), a header read
//! timeout, and mutual TLS when asked for.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_rustls::server::TlsStream;

use crate::config::{Limits, TlsConfig};
use crate::telemetry::served::ServedBytes;

/// How long a client may take to send its request head (after the TLS handshake).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to start and finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// What Go's net/http (so Nomad) writes to a client that speaks plain HTTP to the TLS port.
const PLAIN_HTTP_ON_TLS_PORT: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Builds the TLS acceptor for `tls { http = true ... }`; `None` when TLS is off.
pub fn tls_acceptor(config: &TlsConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    if !config.http {
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        bail!("tls: http = true needs cert_file and key_file");
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect())
        .with_context(|| format!("tls: reading cert_file {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("tls: reading key_file {}", key_file.display()))?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = if config.verify_https_client {
        let Some(ca_file) = &config.ca_file else { bail!("tls: verify_https_client needs ca_file") };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file)
            .with_context(|| format!("tls: reading ca_file {}", ca_file.display()))?
        {
            roots.add(cert?)?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut server = builder.with_single_cert(certs, key).context("tls: certificate and key do not match")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// The TLS configuration in force: SIGHUP replaces it; open connections keep the one they
/// were accepted with.
pub type LiveTls = crate::live::Live<TlsAcceptor>;

/// Open connections per client address.
#[derive(Default)]
struct ConnectionCounts(Mutex<HashMap<IpAddr, usize>>);

/// One counted connection; uncounted on drop.
struct Counted {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
}

impl ConnectionCounts {
    fn admit(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Counted> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_default();
        if limit != 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(Counted { counts: Arc::clone(self), ip })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Nomad's answer to a client over its connection limit.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 80\r\nConnection: close\r\n\r\nYour IP is issuing too many concurrent connections, please rate limit your calls";

/// The cap on open connections in all; a connection over it is closed at once, and the first
/// of each run of refusals is logged.
struct TotalCap {
    permits: Arc<Semaphore>,
    refusing: AtomicBool,
}

impl TotalCap {
    fn new(limit: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)), refusing: AtomicBool::new(false) }
    }

    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
        let refusing = permit.is_none();
        if self.refusing.swap(refusing, Ordering::Relaxed) != refusing {
            if refusing {
                tracing::warn!("limits.http_max_conns_total reached: closing new connections");
            } else {
                tracing::info!("accepting connections again");
            }
        }
        permit
    }
}

/// Serves `handler`'s answers on `listener` until `shutdown` resolves, then waits for open
/// connections (the caller bounds that wait).
pub async fn serve<H, A>(
    listener: TcpListener,
    handler: H,
    tls: Option<Arc<LiveTls>>,
    limits: &Limits,
    served: Arc<ServedBytes>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(hyper::Request<hyper::body::Incoming>) -> A + Clone + Send + Sync + 'static,
    A: Future<Output = warp::reply::Response> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let counts = Arc::new(ConnectionCounts::default());
    let total = TotalCap::new(limits.http_max_conns_total);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::debug!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admitted) = total.admit() else { continue };
        let Some(counted) = counts.admit(peer.ip(), limits.http_max_conns_per_client) else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The API's handler as the service, each response body counted against its endpoint.
        let (handler, served) = (handler.clone(), Arc::clone(&served));
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let endpoint = ServedBytes::endpoint(request.uri().path());
            let served = Arc::clone(&served);
            let response = handler(request);
            async move { Ok::<_, Infallible>(response.await.map(|body| served.count(endpoint, body))) }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(limits.max_header_bytes);
        let watcher = graceful.watcher();
        let tls = tls.as_ref().map(|live| live.current());
        tokio::spawn(async move {
            let _held = (admitted, counted);
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept_tls(&acceptor, stream)).await {
                        Ok(Some(stream)) => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
                        Ok(None) => return,
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
            };
            if let Err(err) = result {
                tracing::debug!(%peer, "connection ended: {err}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The TLS handshake, after a look at the first byte: a client speaking plain HTTP gets Go's
/// 400 answer instead of TLS bytes it cannot read.
async fn accept_tls(acceptor: &TlsAcceptor, mut stream: TcpStream) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(1) if first[0].is_ascii_alphabetic() => {
            let _ = stream.write_all(PLAIN_HTTP_ON_TLS_PORT).await;
            let _ = stream.shutdown().await;
            // Read what the client sent (within the handshake timeout), so that closing with
            // unread bytes does not reset the connection before the client reads the answer.
            let _ = tokio::io::copy(&mut (&mut stream).take(64 * 1024), &mut tokio::io::sink()).await;
            return None;
        }
        _ => return None,
    }
    let peer = stream.peer_addr().ok();
    acceptor.accept(stream).await.inspect_err(|err| tracing::debug!(?peer, "TLS handshake failed: {err}")).ok()
}

async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
    let _ = stream.shutdown().await;
}
