//! The HTTP side of the client: an agent address and credentials resolved as Nomad's CLI
//! resolves them (flags over `NOMAD_*` variables), TLS through rustls, and Nomad's API error
//! text (`Unexpected response code: 403 (Permission denied)`) for any answer but 200.

use std::net::ToSocketAddrs;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Certificate, Identity, Url};

use super::args::Connection;

/// An answer other than 200, kept typed so followers can tell "gone" from "refused".
#[derive(Debug)]
pub struct StatusError {
    pub code: u16,
    pub body: String,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unexpected response code: {} ({})", self.code, self.body.trim_end())
    }
}

impl std::error::Error for StatusError {}

/// A connection to one agent.
pub struct Api {
    client: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// A flag's value, else the variable's, else nothing (an empty variable counts as unset).
fn pick(flag: &Option<String>, variable: &str) -> Option<String> {
    flag.clone().or_else(|| std::env::var(variable).ok()).filter(|v| !v.is_empty())
}

fn read(path: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {path}"))
}

impl Api {
    /// Resolves the address and credentials; fails on unreadable or malformed TLS files.
    pub fn new(connection: &Connection) -> anyhow::Result<Self> {
        let address = pick(&connection.address, "NOMAD_ADDR").unwrap_or_else(|| "http://127.0.0.1:4646".into());
        let mut base = Url::parse(address.trim_end_matches('/')).with_context(|| format!("address {address:?}"))?;
        // Streams carry a heartbeat every second: 30 s of silence is a dead connection that
        // no reset reported (a follower then reconnects).
        let mut builder =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).read_timeout(Duration::from_secs(30));
        if let Some(ca) = pick(&connection.ca_cert, "NOMAD_CACERT") {
            let certs = Certificate::from_pem_bundle(&read(&ca, "CA certificate")?).context("NOMAD_CACERT")?;
            builder = certs.into_iter().fold(builder.tls_built_in_root_certs(false), |b, c| b.add_root_certificate(c));
        }
        match (pick(&connection.client_cert, "NOMAD_CLIENT_CERT"), pick(&connection.client_key, "NOMAD_CLIENT_KEY")) {
            (Some(cert), Some(key)) => {
                let mut pem = read(&cert, "client certificate")?;
                pem.push(b'\n');
                pem.extend(read(&key, "client key")?);
                builder = builder.identity(Identity::from_pem(&pem).context("client certificate and key")?);
            }
            (None, None) => {}
            _ => bail!("a client certificate needs both NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY"),
        }
        let skip = std::env::var("NOMAD_SKIP_VERIFY").ok().and_then(|v| crate::api::params::parse_bool(&v).ok());
        if connection.skip_verify || skip == Some(true) {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(name) = pick(&connection.tls_server_name, "NOMAD_TLS_SERVER_NAME") {
            // Verify the certificate against `name` while connecting to the address given.
            let host = base.host_str().context("the address has no host")?.to_string();
            let port = base.port_or_known_default().unwrap_or(4646);
            let addr = (host.as_str(), port).to_socket_addrs()?.next().with_context(|| format!("resolving {host}"))?;
            builder = builder.resolve(&name, addr);
            base.set_host(Some(&name)).with_context(|| format!("server name {name:?}"))?;
        }
        let token = pick(&connection.token, "NOMAD_TOKEN");
        Ok(Self { client: builder.build()?, base, token })
    }

    /// GETs `path_and_query`; any status but 200 is a [`StatusError`].
    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path_and_query}", self.base.as_str().trim_end_matches('/'));
        let mut request = self.client.get(&url);
        if let Some(token) = &self.token {
            request = request.header("X-Nomad-Token", token);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        if response.status().as_u16() != 200 {
            let code = response.status().as_u16();
            return Err(StatusError { code, body: response.text().await.unwrap_or_default() }.into());
        }
        Ok(response)
    }

    /// GETs and parses JSON.
    pub async fn json(&self, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        let bytes = self.get(path_and_query).await?.bytes().await?;
        serde_json::from_slice(&bytes).with_context(|| format!("decoding the answer to {path_and_query}"))
    }
}

/// Query string encoding of `pairs`.
pub fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// Whether `error` is the agent answering 404 (the allocation or file is gone).
pub fn is_not_found(error: &anyhow::Error) -> bool {
    error.downcast_ref::<StatusError>().is_some_and(|e| e.code == 404)
}
