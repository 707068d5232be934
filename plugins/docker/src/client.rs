//! A minimal Docker Engine API client over the daemon's unix socket.
//!
//! Every request opens its own connection (`tokio::net::UnixStream` + hyper 1's HTTP/1
//! handshake), so a slow stats answer never holds up another request, and everything — connect,
//! request and body — runs under one deadline. Paths are unversioned, so the daemon answers in
//! its own API version. Must be called from inside the plugin's own runtime (see `collector`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;

use crate::containers::{ALLOC_LABEL, ContainerSummary};
use crate::mapping::StatsResponse;

/// What a request can run into. Every message names the endpoint.
#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be connected (no daemon, wrong path, no permission).
    Connect { endpoint: Arc<str>, error: std::io::Error },
    /// No complete answer within the deadline.
    Timeout { endpoint: Arc<str>, path: String, after: Duration },
    /// The connection broke or spoke something other than HTTP.
    Http { endpoint: Arc<str>, path: String, error: hyper::Error },
    /// The daemon answered with an error status; `message` is its `{"message": ...}`.
    Status { endpoint: Arc<str>, path: String, status: StatusCode, message: String },
    /// The daemon's JSON did not have the expected shape.
    Decode { endpoint: Arc<str>, path: String, error: serde_json::Error },
}

impl ClientError {
    /// Whether the daemon itself is unreachable, unresponsive or confused — as opposed to an
    /// answer about one request (an error status or an odd body).
    pub fn is_daemon_failure(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Timeout { .. } | Self::Http { .. })
    }

    /// The status of an error answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { endpoint, error } => write!(f, "cannot reach {endpoint}: {error}"),
            Self::Timeout { endpoint, path, after } => {
                write!(f, "{endpoint} did not answer GET {path} within {}s", after.as_secs_f64())
            }
            Self::Http { endpoint, path, error } => write!(f, "GET {path} on {endpoint} failed: {error}"),
            Self::Status { endpoint, path, status, message } => {
                write!(f, "{endpoint} answered GET {path} with {status}: {message}")
            }
            Self::Decode { endpoint, path, error } => {
                write!(f, "{endpoint} answered GET {path} with unexpected JSON: {error}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// The daemon at one unix socket. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DockerClient {
    endpoint: Arc<str>,
    socket: Arc<Path>,
    timeout: Duration,
}

impl DockerClient {
    /// `endpoint` is the configured text (for messages); `socket` the path it names.
    pub fn new(endpoint: &str, socket: PathBuf, timeout: Duration) -> Self {
        Self { endpoint: endpoint.into(), socket: socket.into(), timeout }
    }

    /// Every container, stopped ones included, that carries Nomad's alloc label
    /// (`GET /containers/json?all=1&filters={"label":["com.hashicorp.nomad.alloc_id"]}`).
    pub async fn list_task_containers(&self) -> Result<Vec<ContainerSummary>, ClientError> {
        self.get_json(&list_path()).await
    }

    /// One stats answer with `precpu_stats` filled (`stream=false`, no `one-shot`, as Nomad
    /// asks); the daemon takes about a second or two to produce it.
    pub async fn stats(&self, container_id: &str) -> Result<StatsResponse, ClientError> {
        let id = utf8_percent_encode(container_id, ESCAPED);
        self.get_json(&format!("/containers/{id}/stats?stream=false")).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.get(path).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
            return Err(ClientError::Status { endpoint: self.endpoint.clone(), path: path.into(), status, message });
        }
        serde_json::from_slice(&body).map_err(|error| ClientError::Decode {
            endpoint: self.endpoint.clone(),
            path: path.into(),
            error,
        })
    }

    /// One GET on a fresh connection, bounded by the client's timeout.
    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), ClientError> {
        let http = |error| ClientError::Http { endpoint: self.endpoint.clone(), path: path.into(), error };
        let exchange = async {
            let stream = tokio::net::UnixStream::connect(&*self.socket)
                .await
                .map_err(|error| ClientError::Connect { endpoint: self.endpoint.clone(), error })?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
            // The connection task ends with this guard: on success, on error and on timeout.
            let _connection = AbortOnDrop(tokio::spawn(async move {
                let _ = connection.await;
            }));
            let request = Request::get(path)
                .header(hyper::header::HOST, "docker")
                .header(hyper::header::USER_AGENT, concat!("allocd-plugin-docker/", env!("CARGO_PKG_VERSION")))
                .body(Empty::<Bytes>::new())
                .expect("a GET with a valid path and static headers");
            let response = sender.send_request(request).await.map_err(http)?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(http)?.to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or_else(|_| {
            Err(ClientError::Timeout { endpoint: self.endpoint.clone(), path: path.into(), after: self.timeout })
        })
    }
}

/// Everything but RFC 3986's unreserved characters is escaped (Go's `url.QueryEscape` set).
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `/containers/json` of all containers that have the alloc label (any value).
fn list_path() -> String {
    let filters = serde_json::json!({ "label": [ALLOC_LABEL] }).to_string();
    format!("/containers/json?all=1&filters={}", utf8_percent_encode(&filters, ESCAPED))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn list_path_is_url_encoded() {
        assert_eq!(
            list_path(),
            "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22com.hashicorp.nomad.alloc_id%22%5D%7D"
        );
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// A one-connection fake daemon: records the request head, sends `response` (or nothing).
    async fn fake_daemon(
        listener: tokio::net::UnixListener,
        response: Option<String>,
    ) -> tokio::task::JoinHandle<String> {
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            match response {
                Some(text) => stream.write_all(text.as_bytes()).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
            String::from_utf8(head).unwrap()
        })
    }

    #[test]
    fn requests_and_answers() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("d.sock");
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            let body = r#"[{"Id":"abc","Names":["/web-x"],"Labels":{},"State":"running"}]"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let server = fake_daemon(listener, Some(reply)).await;
            let client = DockerClient::new("unix://test", socket, Duration::from_secs(5));
            let list = client.list_task_containers().await.unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].id, "abc");
            let head = server.await.unwrap();
            assert!(head.starts_with(&format!("GET {} HTTP/1.1\r\n", list_path())), "{head}");
            assert!(head.to_ascii_lowercase().contains("host: docker\r\n"), "{head}");
        });
    }

    #[test]
    fn error_statuses_carry_the_daemon_message() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("d.sock");
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            let body = r#"{"message":"No such container: abc"}"#;
            let reply = format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _server = fake_daemon(listener, Some(reply)).await;
            let client = DockerClient::new("unix://test", socket, Duration::from_secs(5));
            let err = client.stats("abc").await.unwrap_err();
            assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
            assert!(!err.is_daemon_failure());
            assert_eq!(
                err.to_string(),
                "unix://test answered GET /containers/abc/stats?stream=false with 404 Not Found: No such container: abc"
            );
        });
    }

    #[test]
    fn silence_times_out() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("d.sock");
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            let _server = fake_daemon(listener, None).await;
            let client = DockerClient::new("unix://test", socket, Duration::from_millis(200));
            let started = std::time::Instant::now();
            let err = client.list_task_containers().await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(2));
            assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
            assert!(err.is_daemon_failure());
            assert!(err.to_string().contains("within 0.2s"), "{err}");
        });
    }

    #[test]
    fn no_daemon_is_a_connect_error() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let client =
                DockerClient::new("unix:///nowhere.sock", dir.path().join("none.sock"), Duration::from_secs(1));
            let err = client.list_task_containers().await.unwrap_err();
            assert!(matches!(err, ClientError::Connect { .. }));
            assert!(err.to_string().starts_with("cannot reach unix:///nowhere.sock: "), "{err}");
        });
    }
}
