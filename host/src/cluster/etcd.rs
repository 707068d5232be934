//! An etcd v3 client over etcd's own JSON gateway (`/v3/kv/range`, `/v3/kv/put`,
//! `/v3/kv/deleterange`, `/v3/lease/grant|keepalive|revoke`, `/v3/watch`; keys and values
//! base64, 64-bit integers as decimal strings).
//!
//! Why the gateway and not the `etcd-client` crate: that crate generates its gRPC code with a
//! system `protoc` at build time, and allocd must build with only the Rust toolchain and a C
//! compiler. The gateway is part of every etcd server since 3.3, speaks the same v3 API with
//! the same semantics (linearizable reads, leases, revisions, watches), and rides on the
//! `reqwest`/rustls client allocd already has, so fleet mode adds no dependency at all. The
//! handful of calls allocd needs fit in this one file.
//!
//! Every call tries the endpoints in turn, starting with the last one that answered, each
//! attempt bounded by [`ATTEMPT_TIMEOUT`]: a dead member costs one refused connection, a
//! silent one at most that timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use reqwest::{Certificate, Identity, Url};
use serde_json::{Value, json};

use super::config::ClusterConfig;
use super::describe;

/// How long one unary call may take on one endpoint.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long connecting to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why etcd did not answer (every endpoint failed, or etcd refused the call).
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdError(pub String);

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A change under a watched prefix.
#[derive(Debug, PartialEq)]
pub enum Event {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// The client: the endpoints and one HTTP client.
pub struct Etcd {
    client: reqwest::Client,
    endpoints: Vec<Url>,
    /// Index of the endpoint that answered last.
    preferred: AtomicUsize,
}

fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cluster.{what}: reading {}", path.display()))
}

/// The `end` of a range covering every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An int64 the gateway writes as a string (or omits when zero).
fn int(value: &Value) -> i64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(0),
        Value::Number(number) => number.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn decode(value: &Value) -> Vec<u8> {
    value.as_str().and_then(|text| BASE64.decode(text).ok()).unwrap_or_default()
}

fn key_of(kv: &Value) -> String {
    String::from_utf8_lossy(&decode(&kv["key"])).into_owned()
}

impl Etcd {
    /// A client for `config`'s endpoints, with its TLS files read now.
    pub fn new(config: &ClusterConfig) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).no_gzip().no_deflate();
        if let Some(ca) = &config.etcd_ca_file {
            let certs = Certificate::from_pem_bundle(&read(ca, "etcd_ca_file")?).context("cluster.etcd_ca_file")?;
            builder = certs.into_iter().fold(builder.tls_built_in_root_certs(false), |b, c| b.add_root_certificate(c));
        }
        if let (Some(cert), Some(key)) = (&config.etcd_cert_file, &config.etcd_key_file) {
            let mut pem = read(cert, "etcd_cert_file")?;
            pem.push(b'\n');
            pem.extend(read(key, "etcd_key_file")?);
            builder = builder.identity(Identity::from_pem(&pem).context("cluster.etcd_cert_file and etcd_key_file")?);
        }
        Ok(Self {
            client: builder.build().context("cluster: building the etcd client")?,
            endpoints: config.etcd_endpoints.clone(),
            preferred: AtomicUsize::new(0),
        })
    }

    /// Sends `body` to `path` on the first endpoint that answers; `timeout: None` for a watch.
    async fn send(&self, path: &str, body: &Value, timeout: Option<Duration>) -> Result<reqwest::Response, EtcdError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for offset in 0..self.endpoints.len() {
            let index = (start + offset) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let url = endpoint.join(path).expect("a base URL joins a path");
            let mut request = self.client.post(url).body(body.to_string());
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
                Ok(response) if response.status().is_server_error() => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    failures.push(format!("{endpoint}: {status} {}", text.trim()));
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    return Err(EtcdError(format!("etcd refused {path}: {status} {}", text.trim())));
                }
                Err(err) => failures.push(format!("{endpoint}: {}", describe(&err))),
            }
        }
        Err(EtcdError(format!("etcd unreachable ({})", failures.join("; "))))
    }

    /// A unary call: the answer's JSON.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let response = self.send(path, &body, Some(ATTEMPT_TIMEOUT)).await?;
        let bytes = response.bytes().await.map_err(|err| EtcdError(format!("etcd {path}: {}", describe(&err))))?;
        serde_json::from_slice(&bytes).map_err(|err| EtcdError(format!("etcd {path}: not JSON: {err}")))
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EtcdError> {
        let answer = self.call("/v3/kv/range", json!({ "key": BASE64.encode(key) })).await?;
        Ok(answer["kvs"].as_array().and_then(|kvs| kvs.first()).map(|kv| decode(&kv["value"])))
    }

    /// Every key under `prefix` with its value, and the store's revision at that read.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<(String, Vec<u8>)>, i64), EtcdError> {
        let body = json!({ "key": BASE64.encode(prefix), "range_end": BASE64.encode(prefix_end(prefix)) });
        let answer = self.call("/v3/kv/range", body).await?;
        let kvs = answer["kvs"].as_array().map(Vec::as_slice).unwrap_or_default();
        let pairs = kvs.iter().map(|kv| (key_of(kv), decode(&kv["value"]))).collect();
        Ok((pairs, int(&answer["header"]["revision"])))
    }

    /// Writes `key` under `lease` (it goes when the lease does).
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        let body = json!({ "key": BASE64.encode(key), "value": BASE64.encode(value), "lease": lease.to_string() });
        self.call("/v3/kv/put", body).await.map(drop)
    }

    pub async fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.call("/v3/kv/deleterange", json!({ "key": BASE64.encode(key) })).await.map(drop)
    }

    /// A new lease of `ttl` seconds: its ID.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/lease/grant", json!({ "TTL": ttl.to_string() })).await?;
        match int(&answer["ID"]) {
            0 => Err(EtcdError(format!("etcd granted no lease: {}", answer["error"]))),
            id => Ok(id),
        }
    }

    /// Renews `lease`: its remaining TTL in seconds, 0 when it has already expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/lease/keepalive", json!({ "ID": lease.to_string() })).await?;
        Ok(int(&answer["result"]["TTL"]))
    }

    /// Ends `lease` now, deleting every key under it.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() })).await.map(drop)
    }

    /// Watches every key under `prefix` from `start_revision` on.
    pub async fn watch_prefix(&self, prefix: &str, start_revision: i64) -> Result<Watch, EtcdError> {
        let body = json!({ "create_request": {
            "key": BASE64.encode(prefix),
            "range_end": BASE64.encode(prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
        }});
        let response = self.send("/v3/watch", &body, None).await?;
        Ok(Watch { response, pending: Vec::new() })
    }
}

/// An open watch: one JSON message per line.
pub struct Watch {
    response: reqwest::Response,
    pending: Vec<u8>,
}

impl Watch {
    /// The next batch of events (empty for the creation and progress messages); an error
    /// when the stream ends or etcd cancels the watch (a compacted revision, a lost member).
    pub async fn next(&mut self) -> Result<Vec<Event>, EtcdError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return parse_watch_message(&line);
            }
            let chunk: Option<Bytes> =
                self.response.chunk().await.map_err(|err| EtcdError(format!("etcd watch: {}", describe(&err))))?;
            match chunk {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => return Err(EtcdError("etcd watch: the stream ended".into())),
            }
        }
    }
}

fn parse_watch_message(line: &[u8]) -> Result<Vec<Event>, EtcdError> {
    let message: Value =
        serde_json::from_slice(line).map_err(|err| EtcdError(format!("etcd watch: not JSON: {err}")))?;
    if !message["error"].is_null() {
        return Err(EtcdError(format!("etcd watch: {}", message["error"])));
    }
    let result = &message["result"];
    if result["canceled"].as_bool() == Some(true) {
        return Err(EtcdError(format!("etcd watch canceled: {}", result["cancel_reason"])));
    }
    let events = result["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(events
        .iter()
        .map(|event| {
            let key = key_of(&event["kv"]);
            // The gateway omits the type of a PUT (the enum's zero value).
            if event["type"].as_str() == Some("DELETE") {
                Event::Delete { key }
            } else {
                Event::Put { key, value: decode(&event["kv"]["value"]) }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(prefix_end("/a/"), b"/a0");
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80");
    }

    #[test]
    fn watch_messages_as_the_gateway_writes_them() {
        let created = br#"{"result":{"header":{"revision":"7"},"created":true}}"#;
        assert_eq!(parse_watch_message(created), Ok(vec![]));
        let events = br#"{"result":{"header":{"revision":"9"},"events":[
            {"kv":{"key":"L2EvMQ==","value":"eA==","mod_revision":"8"}},
            {"type":"DELETE","kv":{"key":"L2EvMg==","mod_revision":"9"}}]}}"#;
        let expected =
            vec![Event::Put { key: "/a/1".into(), value: b"x".to_vec() }, Event::Delete { key: "/a/2".into() }];
        assert_eq!(
            parse_watch_message(&events.iter().copied().filter(|&b| b != b'\n').collect::<Vec<_>>()),
            Ok(expected)
        );
        let canceled = br#"{"result":{"canceled":true,"cancel_reason":"mvcc: required revision has been compacted"}}"#;
        assert!(parse_watch_message(canceled).unwrap_err().0.contains("compacted"));
    }
}
