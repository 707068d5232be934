//! Agent configuration: an HCL file shaped like Nomad's agent config, overridden by flags.
//!
//! ```hcl
//! data_dir   = "/var/lib/allocd"
//! alloc_dir  = "/var/lib/allocd/alloc"      # default: <data_dir>/alloc
//! bind_addr  = "127.0.0.1"
//! ports { http = 4646 }
//! plugin_dir = "/usr/lib/allocd"            # default: the allocd binary's directory
//! log_level  = "info"                     # trace, debug, info, warn, error (-log-level wins)
//! log_json   = false                      # one JSON object per log line
//! telemetry {
//!   collection_interval        = "1s"
//!   publish_node_metrics       = false     # nomad.client.host.* and nomad.client.uptime
//!   publish_allocation_metrics = false     # nomad.client.allocs.* per running task
//!   prometheus_metrics         = false     # /v1/metrics?format=prometheus
//!   disable_hostname           = false     # false: Nomad's names carry the hostname
//! }
//! client {                                 # Nomad's client GC policy, and allocd's own keys
//!   gc_interval             = "1m"
//!   gc_max_allocs           = 50
//!   gc_disk_usage_threshold = 80
//!   gc_exit_grace           = "1m"         # every task proven exited this long: terminal
//!   gc_enabled              = true         # false: never delete anything
//! }
//! acl { enabled = false }                 # see crate::acl
//! tls {                                    # see crate::server
//!   http = false
//!   cert_file = "/etc/allocd/tls/agent.pem"
//!   key_file = "/etc/allocd/tls/agent-key.pem"
//!   ca_file = "/etc/allocd/tls/ca.pem"
//!   verify_https_client = false
//! }
//! limits {
//!   http_max_conns_per_client = 100        # open connections per client address (0 = no limit)
//!   http_max_conns_total = 10000           # open connections in all (1 to 1,000,000)
//!   max_streams = 1024                     # concurrent cat/readat/stream/logs responses
//!   max_header_bytes = 16384               # request head size (8,192 to 1 MiB)
//! }
//! cluster { ... }                         # fleet mode, see crate::cluster::config
//! plugin "local-disk" {
//!   config { alloc_dir = "/srv/alloc" }
//! }
//! plugin "my-driver" {                     # a library outside plugin_dir
//!   path            = "/opt/x/liballocd_plugin_my_driver.so"
//!   timeout         = "5s"                 # per call (default 10s)
//!   max_concurrency = 16                   # concurrent calls (default 16)
//! }
//! ```
//! With no `plugin` blocks the default bundle (`host-metrics`, `local-disk`, `cgroup`, `docker`)
//! is loaded.
//!
//! Everything is checked here, before the agent starts: a value the agent could not run with
//! (a zero, negative or overflowing duration, a limit out of its range, a key in the wrong
//! place) is one error line naming the key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::acl::AclConfig;
use crate::cluster::config::{ClusterConfig, RawCluster};
use crate::gc::GcPolicy;

/// The plugins loaded when the config names none. cgroup and docker stay quiet (one
/// warning) on machines without task cgroups or a Docker Engine.
pub const DEFAULT_BUNDLE: &[&str] = &["host-metrics", "local-disk", "cgroup", "docker"];

/// A resolved agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    pub alloc_dir: Option<PathBuf>,
    pub bind_addr: IpAddr,
    pub http_port: u16,
    pub plugin_dir: Option<PathBuf>,
    pub collection_interval: Duration,
    pub telemetry: Telemetry,
    /// `log_level` from the file; `-log-level` overrides it.
    pub log_level: Option<String>,
    pub log_json: bool,
    pub gc: GcPolicy,
    pub acl: AclConfig,
    pub tls: TlsConfig,
    pub limits: Limits,
    pub plugins: Vec<PluginSpec>,
    /// Fleet mode; `None`: the single-node agent.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// The settings that take effect only at start whose values differ between `self` and
    /// `other`, by their names in the file (a reload applies the rest).
    pub fn restart_only_changes(&self, other: &Config) -> Vec<&'static str> {
        // (`tls.http` is not among them: a reload that changes it fails as a whole)
        [
            ("data_dir", self.data_dir != other.data_dir),
            ("alloc_dir", self.alloc_dir != other.alloc_dir),
            ("bind_addr", self.bind_addr != other.bind_addr),
            ("ports.http", self.http_port != other.http_port),
            ("plugin_dir", self.plugin_dir != other.plugin_dir),
            ("telemetry.collection_interval", self.collection_interval != other.collection_interval),
            ("telemetry", self.telemetry != other.telemetry),
            ("log_json", self.log_json != other.log_json),
            ("client", self.gc != other.gc),
            ("limits", self.limits != other.limits),
            ("plugin", self.plugins != other.plugins),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

/// The `tls { }` block (rustls).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub http: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub verify_https_client: bool,
}

/// What `/v1/metrics` publishes: Nomad's `telemetry` switches, all off by default as in Nomad.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    pub publish_node_metrics: bool,
    pub publish_allocation_metrics: bool,
    pub prometheus_metrics: bool,
    /// Nomad (go-metrics) inserts the hostname into gauge names unless this is set.
    pub disable_hostname: bool,
}

/// The `limits { }` block: bounds that protect the agent from hostile or runaway clients.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open connections per client address; 0 = unlimited (Nomad's default is 100).
    pub http_max_conns_per_client: usize,
    /// Open connections in all, whatever their address.
    pub http_max_conns_total: usize,
    /// Concurrent cat, readat, stream and logs responses.
    pub max_streams: usize,
    /// Largest request head (request line + headers) in bytes.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            http_max_conns_per_client: 100,
            http_max_conns_total: 10_000,
            max_streams: 1024,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    /// Each limit within the range the agent can run with.
    fn validate(&self) -> anyhow::Result<()> {
        check_range("limits.http_max_conns_total", self.http_max_conns_total, 1, 1_000_000)?;
        check_range("limits.max_streams", self.max_streams, 1, 1_000_000)?;
        // hyper needs 8 KiB of read buffer; Go's default for the whole head is 1 MiB.
        check_range("limits.max_header_bytes", self.max_header_bytes, 8192, 1 << 20)
    }
}

fn check_range(key: &str, value: usize, min: usize, max: usize) -> anyhow::Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        bail!("{key} = {value} is out of range: it must be from {min} to {max}")
    }
}

/// One `plugin "<name>" { ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    /// Explicit library path; default `<plugin_dir>/liballocd_plugin_<name>.so`.
    pub path: Option<PathBuf>,
    /// The `config { }` block as JSON, handed to the plugin's constructor.
    pub config_json: String,
    pub timeout: Duration,
    pub max_concurrency: usize,
}

impl PluginSpec {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            path: None,
            config_json: "{}".to_string(),
            timeout: Duration::from_secs(10),
            max_concurrency: 16,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            alloc_dir: None,
            bind_addr: IpAddr::from([127, 0, 0, 1]),
            http_port: 4646,
            plugin_dir: None,
            collection_interval: Duration::from_secs(1),
            telemetry: Telemetry::default(),
            log_level: None,
            log_json: false,
            gc: GcPolicy::default(),
            acl: AclConfig::default(),
            tls: TlsConfig::default(),
            limits: Limits::default(),
            plugins: DEFAULT_BUNDLE.iter().map(|name| PluginSpec::named(name)).collect(),
            cluster: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    alloc_dir: Option<PathBuf>,
    bind_addr: Option<String>,
    ports: Option<RawPorts>,
    plugin_dir: Option<PathBuf>,
    log_level: Option<String>,
    log_json: Option<bool>,
    telemetry: Option<RawTelemetry>,
    client: Option<RawClient>,
    acl: Option<AclConfig>,
    tls: Option<TlsConfig>,
    limits: Option<Limits>,
    cluster: Option<RawCluster>,
    #[serde(default)]
    plugin: IndexMap<String, RawPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPorts {
    http: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    collection_interval: Option<String>,
    publish_node_metrics: Option<bool>,
    publish_allocation_metrics: Option<bool>,
    prometheus_metrics: Option<bool>,
    disable_hostname: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    gc_interval: Option<String>,
    gc_max_allocs: Option<usize>,
    gc_disk_usage_threshold: Option<f64>,
    gc_exit_grace: Option<String>,
    gc_enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    path: Option<PathBuf>,
    timeout: Option<String>,
    max_concurrency: Option<usize>,
    config: Option<serde_json::Value>,
}

impl Config {
    /// Reads an HCL config file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        Self::from_hcl(&text).with_context(|| format!("config {}", path.display()))
    }

    pub fn from_hcl(text: &str) -> anyhow::Result<Self> {
        let parsed = hcl::de::Deserializer::from_str(&crate::hcl1::normalize(text)).map_err(|err| match err {
            hcl::Error::Parse(parse) => {
                let at = parse.location();
                anyhow::anyhow!("line {}, column {}: {}", at.line(), at.column(), parse.message())
            }
            other => anyhow::anyhow!("{other}"),
        })?;
        // The error names the key (`limits.max_streams: invalid value: integer `-1`, ...`).
        let raw: RawConfig = serde_path_to_error::deserialize(parsed).map_err(|err| anyhow::anyhow!("{err}"))?;
        let mut config = Config {
            data_dir: raw.data_dir,
            alloc_dir: raw.alloc_dir,
            plugin_dir: raw.plugin_dir,
            acl: raw.acl.unwrap_or_default(),
            tls: raw.tls.unwrap_or_default(),
            limits: raw.limits.unwrap_or_default(),
            ..Config::default()
        };
        if let Some(addr) = raw.bind_addr {
            config.bind_addr = addr.parse().with_context(|| format!("bind_addr {addr:?}"))?;
        }
        if let Some(port) = raw.ports.and_then(|p| p.http) {
            config.http_port = port;
        }
        if let Some(telemetry) = raw.telemetry {
            if let Some(interval) = telemetry.collection_interval {
                config.collection_interval = parse_interval(&interval).context("telemetry.collection_interval")?;
            }
            config.telemetry = Telemetry {
                publish_node_metrics: telemetry.publish_node_metrics.unwrap_or(false),
                publish_allocation_metrics: telemetry.publish_allocation_metrics.unwrap_or(false),
                prometheus_metrics: telemetry.prometheus_metrics.unwrap_or(false),
                disable_hostname: telemetry.disable_hostname.unwrap_or(false),
            };
        }
        if let Some(level) = raw.log_level {
            config.log_level = Some(crate::cli::parse_log_level(&level).context("log_level")?);
        }
        config.log_json = raw.log_json.unwrap_or(false);
        if let Some(client) = raw.client {
            if let Some(interval) = client.gc_interval {
                config.gc.interval = parse_interval(&interval).context("client.gc_interval")?;
            }
            if let Some(grace) = client.gc_exit_grace {
                config.gc.exit_grace = parse_duration(&grace).context("client.gc_exit_grace")?;
            }
            config.gc.enabled = client.gc_enabled.unwrap_or(config.gc.enabled);
            config.gc.max_allocs = client.gc_max_allocs.unwrap_or(config.gc.max_allocs);
            config.gc.disk_usage_threshold = client.gc_disk_usage_threshold.unwrap_or(config.gc.disk_usage_threshold);
        }
        if !raw.plugin.is_empty() {
            config.plugins = raw
                .plugin
                .into_iter()
                .map(|(name, raw)| {
                    let mut spec = PluginSpec::named(&name);
                    spec.path = raw.path;
                    if let Some(timeout) = raw.timeout {
                        spec.timeout = parse_interval(&timeout).with_context(|| format!("plugin {name:?} timeout"))?;
                    }
                    spec.max_concurrency = raw.max_concurrency.unwrap_or(spec.max_concurrency);
                    check_range(&format!("plugin {name:?} max_concurrency"), spec.max_concurrency, 1, 1024)?;
                    spec.config_json = raw.config.unwrap_or_else(|| serde_json::json!({})).to_string();
                    Ok(spec)
                })
                .collect::<anyhow::Result<_>>()?;
        }
        config.limits.validate()?;
        config.cluster = raw.cluster.map(|cluster| cluster.resolve(config.tls.http)).transpose()?;
        Ok(config)
    }
}

/// A duration that something runs every (or waits at most): greater than zero.
fn parse_interval(text: &str) -> anyhow::Result<Duration> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        bail!("{text:?} must be greater than zero");
    }
    Ok(duration)
}

/// The longest duration Go's `time.Duration` holds (about 292 years).
const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Go's `time.ParseDuration` for the units configs use: `500ms`, `1s`, `1m30s`, `1.5h`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.starts_with('-') {
        bail!("invalid duration {text:?}: it must not be negative");
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let unit_len =
            rest[number_len..].find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len() - number_len);
        let (number, unit) = (&rest[..number_len], &rest[number_len..number_len + unit_len]);
        let value: f64 = number.parse().with_context(|| format!("invalid duration {text:?}"))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => bail!("invalid duration {text:?}: unknown unit {unit:?}"),
        };
        total += value * scale;
        rest = &rest[number_len + unit_len..];
    }
    match Duration::try_from_secs_f64(total) {
        Ok(duration) if duration <= MAX_DURATION => Ok(duration),
        _ => bail!("invalid duration {text:?}: out of range (at most {}h)", MAX_DURATION.as_secs() / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nomad_shaped_hcl() {
        let config = Config::from_hcl(
            r#"
            data_dir  = "/var/lib/allocd"
            bind_addr = "0.0.0.0"
            ports { http = 5656 }
            telemetry { collection_interval = "250ms" }
            plugin "host-metrics" {}
            plugin "local-disk" {
              config { alloc_dir = "/srv/alloc" }
            }
            plugin "my-driver" {
              path    = "/opt/x.so"
              timeout = "2s"
            }
            "#,
        )
        .unwrap();
        assert_eq!(config.http_port, 5656);
        assert_eq!(config.collection_interval, Duration::from_millis(250));
        let names: Vec<_> = config.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["host-metrics", "local-disk", "my-driver"]);
        assert_eq!(config.plugins[1].config_json, r#"{"alloc_dir":"/srv/alloc"}"#);
        assert_eq!(config.plugins[2].timeout, Duration::from_secs(2));
    }

    #[test]
    fn the_design_example_parses_as_written() {
        let config = Config::from_hcl(
            r#"
            data_dir   = "/var/lib/allocd"
            bind_addr  = "127.0.0.1"
            ports { http = 4646 }
            plugin_dir = "/usr/lib/allocd"
            telemetry { collection_interval = "1s" }
            plugin "host-metrics" {}
            plugin "local-disk"   { config { alloc_dir = "/var/lib/allocd/alloc" } }
            plugin "cgroup"       { config { root = "/sys/fs/cgroup" } }
            plugin "docker"       { config { endpoint = "unix:///var/run/docker.sock" } }
            plugin "my-driver"    { path = "/opt/vendor/liballocd_plugin_my_driver.so" }
            acl { enabled = false }
            tls { http = false }
            "#,
        )
        .unwrap();
        assert_eq!(config.plugins.len(), 5);
        assert_eq!(config.plugins[2].config_json, r#"{"root":"/sys/fs/cgroup"}"#);
        assert_eq!(config.plugins[4].path.as_deref(), Some(Path::new("/opt/vendor/liballocd_plugin_my_driver.so")));
    }

    #[test]
    fn telemetry_switches_and_log_keys() {
        let config = Config::from_hcl(
            "log_level = \"DEBUG\"\nlog_json = true\n\
             telemetry {\n  publish_node_metrics = true\n  prometheus_metrics = true\n}\n",
        )
        .unwrap();
        let expected = Telemetry { publish_node_metrics: true, prometheus_metrics: true, ..Telemetry::default() };
        assert_eq!(config.telemetry, expected);
        assert_eq!((config.log_level.as_deref(), config.log_json), (Some("debug"), true));
        assert_eq!(Config::default().telemetry, Telemetry::default(), "everything off, as in Nomad");
        assert!(error_line("log_level = \"loud\"").starts_with("log_level: "));
        assert!(
            error_line("telemetry { publish_node_metrics = \"yes\" }").starts_with("telemetry.publish_node_metrics")
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::from_hcl("bogus = 1").is_err());
    }

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5x").is_err());
    }

    /// The error line `allocd` prints for a config text.
    fn error_line(text: &str) -> String {
        format!("{:#}", Config::from_hcl(text).unwrap_err())
    }

    #[test]
    fn bad_durations_are_errors_naming_the_key() {
        let cases = [
            (
                "telemetry { collection_interval = \"0s\" }",
                "telemetry.collection_interval: \"0s\" must be greater than zero",
            ),
            ("client { gc_interval = \"0\" }", "client.gc_interval: \"0\" must be greater than zero"),
            (
                "client { gc_interval = \"-1m\" }",
                "client.gc_interval: invalid duration \"-1m\": it must not be negative",
            ),
            (
                "client { gc_interval = \"99999999999999999999h\" }",
                "client.gc_interval: invalid duration \"99999999999999999999h\": out of range (at most 2562047h)",
            ),
            ("plugin \"x\" { timeout = \"0ms\" }", "plugin \"x\" timeout: \"0ms\" must be greater than zero"),
            (
                "client { gc_exit_grace = \"-1s\" }",
                "client.gc_exit_grace: invalid duration \"-1s\": it must not be negative",
            ),
            ("client { gc_enabled = \"no\" }", "client.gc_enabled: invalid type: string \"no\", expected a boolean"),
        ];
        for (text, expected) in cases {
            assert_eq!(error_line(text), expected);
        }
    }

    #[test]
    fn limits_out_of_range_are_errors_naming_the_key() {
        let cases = [
            (
                "limits { max_header_bytes = 4096 }",
                "limits.max_header_bytes = 4096 is out of range: it must be from 8192 to 1048576",
            ),
            ("limits { max_streams = 0 }", "limits.max_streams = 0 is out of range: it must be from 1 to 1000000"),
            (
                "limits { http_max_conns_total = 0 }",
                "limits.http_max_conns_total = 0 is out of range: it must be from 1 to 1000000",
            ),
            (
                "plugin \"x\" { max_concurrency = 0 }",
                "plugin \"x\" max_concurrency = 0 is out of range: it must be from 1 to 1024",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error_line(text), expected);
        }
        let negative = error_line("limits { max_streams = -1 }");
        assert!(negative.starts_with("limits.max_streams: invalid value: integer `-1`"), "{negative}");
        let fraction = error_line("limits { max_streams = 1.5 }");
        assert!(fraction.starts_with("limits.max_streams: invalid type: floating point `1.5`"), "{fraction}");
    }
}
