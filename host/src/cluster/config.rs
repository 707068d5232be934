//! The `cluster { }` block: where the fleet's etcd is, how other agents reach this one, and
//! how long this agent's records outlive it. Checked before the agent starts; a bad value is
//! one error line naming the key (`cluster.lease_ttl: ...`).
//!
//! ```hcl
//! cluster {
//!   etcd_endpoints = ["https://etcd-1:2379", "https://etcd-2:2379", "https://etcd-3:2379"]
//!   advertise      = "https://10.0.0.5:4646"   # how other agents reach this one
//!   prefix         = "/allocd"                 # key prefix shared by the fleet (default)
//!   lease_ttl      = "10s"                     # whole seconds, at least 1s (default 10s)
//!   etcd_ca_file   = "/etc/allocd/etcd-ca.pem" # etcd client TLS (all optional)
//!   etcd_cert_file = "/etc/allocd/etcd.pem"
//!   etcd_key_file  = "/etc/allocd/etcd-key.pem"
//! }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Url;
use serde::Deserialize;

/// A validated `cluster { }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub etcd_endpoints: Vec<Url>,
    /// This agent's base URL as the other agents dial it.
    pub advertise: Url,
    /// The fleet's key prefix, without a trailing `/`.
    pub prefix: String,
    pub lease_ttl: Duration,
    pub etcd_ca_file: Option<PathBuf>,
    pub etcd_cert_file: Option<PathBuf>,
    pub etcd_key_file: Option<PathBuf>,
}

/// The block as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(default)]
    etcd_endpoints: Vec<String>,
    advertise: Option<String>,
    prefix: Option<String>,
    lease_ttl: Option<String>,
    etcd_ca_file: Option<PathBuf>,
    etcd_cert_file: Option<PathBuf>,
    etcd_key_file: Option<PathBuf>,
}

/// An `http://` or `https://` URL with a host and nothing after the authority.
fn base_url(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text).with_context(|| format!("{text:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("{text:?} must be an http:// or https:// URL with a host");
    }
    if url.path() != "/" || url.query().is_some() {
        bail!("{text:?} must have no path or query");
    }
    Ok(url)
}

impl RawCluster {
    /// Checks every key; `tls_http` says whether this agent serves HTTPS.
    pub fn resolve(self, tls_http: bool) -> anyhow::Result<ClusterConfig> {
        if self.etcd_endpoints.is_empty() {
            bail!("cluster.etcd_endpoints: at least one etcd endpoint is needed");
        }
        let etcd_endpoints = self
            .etcd_endpoints
            .iter()
            .map(|text| base_url(text))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("cluster.etcd_endpoints")?;
        let Some(advertise) = self.advertise else {
            bail!("cluster.advertise: missing: how other agents reach this one, e.g. \"https://10.0.0.5:4646\"");
        };
        let advertise = base_url(&advertise).context("cluster.advertise")?;
        if (advertise.scheme() == "https") != tls_http {
            bail!(
                "cluster.advertise: {:?} must use {} because tls.http is {tls_http}",
                advertise.as_str(),
                if tls_http { "https://" } else { "http://" }
            );
        }
        let prefix = self.prefix.unwrap_or_else(|| "/allocd".to_string());
        if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
            bail!("cluster.prefix: {prefix:?} must start with / and not end with /");
        }
        let lease_ttl = match self.lease_ttl {
            Some(text) => crate::config::parse_duration(&text).context("cluster.lease_ttl")?,
            None => Duration::from_secs(10),
        };
        if lease_ttl < Duration::from_secs(1) || lease_ttl.subsec_nanos() != 0 {
            bail!("cluster.lease_ttl: {lease_ttl:?} must be whole seconds, at least 1s (etcd leases count seconds)");
        }
        if self.etcd_cert_file.is_some() != self.etcd_key_file.is_some() {
            bail!("cluster.etcd_cert_file: a client certificate needs both etcd_cert_file and etcd_key_file");
        }
        Ok(ClusterConfig {
            etcd_endpoints,
            advertise,
            prefix,
            lease_ttl,
            etcd_ca_file: self.etcd_ca_file,
            etcd_cert_file: self.etcd_cert_file,
            etcd_key_file: self.etcd_key_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error_line(text: &str) -> String {
        format!("{:#}", Config::from_hcl(text).unwrap_err())
    }

    #[test]
    fn the_documented_block_parses() {
        let config = Config::from_hcl(
            r#"
            cluster {
              etcd_endpoints = ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
              advertise      = "http://10.0.0.5:4646"
              prefix         = "/fleet"
              lease_ttl      = "2s"
            }
            "#,
        )
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.etcd_endpoints.len(), 2);
        assert_eq!(cluster.advertise.as_str(), "http://10.0.0.5:4646/");
        assert_eq!((cluster.prefix.as_str(), cluster.lease_ttl.as_secs()), ("/fleet", 2));
        assert!(Config::from_hcl("").unwrap().cluster.is_none(), "no block: the single-node agent");
    }

    #[test]
    fn bad_values_are_one_line_naming_the_key() {
        let ok = "etcd_endpoints = [\"http://127.0.0.1:2379\"]\nadvertise = \"http://127.0.0.1:4646\"";
        let cases = [
            ("advertise = \"http://a:1\"".to_string(), "cluster.etcd_endpoints: at least one"),
            ("etcd_endpoints = [\"nope\"]\nadvertise = \"http://a:1\"".into(), "cluster.etcd_endpoints: \"nope\""),
            ("etcd_endpoints = [\"http://e:1\"]".into(), "cluster.advertise: missing"),
            ("etcd_endpoints = [\"http://e:1\"]\nadvertise = \"https://a:1\"".into(), "cluster.advertise: \"https"),
            ("etcd_endpoints = [\"http://e:1\"]\nadvertise = \"http://a:1/x\"".into(), "cluster.advertise: \"http"),
            (format!("{ok}\nlease_ttl = \"500ms\""), "cluster.lease_ttl: 500ms must be whole seconds"),
            (format!("{ok}\nlease_ttl = \"-1s\""), "cluster.lease_ttl: invalid duration"),
            (format!("{ok}\nprefix = \"allocd/\""), "cluster.prefix: \"allocd/\" must start with /"),
            (format!("{ok}\netcd_cert_file = \"/x.pem\""), "cluster.etcd_cert_file: a client certificate needs"),
            (format!("{ok}\nbogus = 1"), "cluster.bogus: unknown field"),
        ];
        for (body, expected) in cases {
            let line = error_line(&format!("cluster {{\n{body}\n}}"));
            assert!(line.starts_with(expected), "{body:?}: {line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
