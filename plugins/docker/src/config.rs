//! The plugin's `config { ... }` block and its validation.
//!
//! ```hcl
//! plugin "docker" {
//!   config {
//!     endpoint          = "unix:///var/run/docker.sock"  # the default
//!     cpu_total_compute = 5192                           # MHz; default: detected (Nomad's rule)
//!     num_cores         = 2                              # default: logical CPUs
//!     stats_interval    = "1s"                           # Go duration, the default
//!   }
//! }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use allocd_plugin_sdk::PluginError;
use allocd_plugin_sdk::compute::Compute;
use serde::Deserialize;

/// The config block as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_endpoint")]
    endpoint: String,
    cpu_total_compute: Option<u64>,
    num_cores: Option<u32>,
    #[serde(default = "default_interval")]
    stats_interval: String,
}

fn default_endpoint() -> String {
    "unix:///var/run/docker.sock".to_string()
}

fn default_interval() -> String {
    "1s".to_string()
}

/// The validated settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The endpoint as configured, for messages.
    pub endpoint: String,
    /// The daemon's unix socket.
    pub socket: PathBuf,
    pub compute: Compute,
    pub stats_interval: Duration,
}

impl Settings {
    /// Parses the config JSON; `detect` supplies whatever the block leaves out.
    pub fn parse(json: &str, detect: impl FnOnce() -> Compute) -> Result<Self, PluginError> {
        let raw: Raw = serde_json::from_str(json).map_err(|e| PluginError::invalid(format!("invalid config: {e}")))?;
        let socket = match raw.endpoint.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => PathBuf::from(path),
            _ => {
                return Err(PluginError::invalid(format!(
                    "invalid config: endpoint {:?}: only unix:///absolute/path endpoints are supported",
                    raw.endpoint
                )));
            }
        };
        let stats_interval = parse_go_duration(&raw.stats_interval).filter(|d| !d.is_zero()).ok_or_else(|| {
            PluginError::invalid(format!(
                "invalid config: stats_interval {:?}: expected a positive duration such as \"1s\" or \"500ms\"",
                raw.stats_interval
            ))
        })?;
        if raw.num_cores == Some(0) {
            return Err(PluginError::invalid("invalid config: num_cores must be at least 1"));
        }
        let compute = match (raw.cpu_total_compute, raw.num_cores) {
            (Some(total_compute), Some(num_cores)) => Compute { total_compute, num_cores },
            (total, cores) => {
                let detected = detect();
                Compute {
                    total_compute: total.unwrap_or(detected.total_compute),
                    num_cores: cores.unwrap_or(detected.num_cores),
                }
            }
        };
        Ok(Self { endpoint: raw.endpoint, socket, compute, stats_interval })
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (`ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h`), e.g. `"1.5s"`, `"1m30s"`, `"500ms"`; `"0"` alone is zero. Negative durations
/// are refused (`None`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = after;
    }
    (total.is_finite() && total < u64::MAX as f64).then(|| Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETECTED: Compute = Compute { total_compute: 5192, num_cores: 2 };

    #[test]
    fn defaults() {
        let s = Settings::parse("{}", || DETECTED).unwrap();
        assert_eq!(s.endpoint, "unix:///var/run/docker.sock");
        assert_eq!(s.socket, PathBuf::from("/var/run/docker.sock"));
        assert_eq!(s.compute, DETECTED);
        assert_eq!(s.stats_interval, Duration::from_secs(1));
    }

    #[test]
    fn overrides() {
        let json =
            r#"{"endpoint":"unix:///run/d.sock","cpu_total_compute":8000,"num_cores":4,"stats_interval":"500ms"}"#;
        let s = Settings::parse(json, || panic!("nothing left to detect")).unwrap();
        assert_eq!(s.socket, PathBuf::from("/run/d.sock"));
        assert_eq!(s.compute, Compute { total_compute: 8000, num_cores: 4 });
        assert_eq!(s.stats_interval, Duration::from_millis(500));
        let s = Settings::parse(r#"{"num_cores":8}"#, || DETECTED).unwrap();
        assert_eq!(s.compute, Compute { total_compute: 5192, num_cores: 8 });
    }

    #[test]
    fn refusals() {
        for json in [
            r#"{"endpont":"unix:///x"}"#,
            r#"{"endpoint":"tcp://127.0.0.1:2375"}"#,
            r#"{"endpoint":"unix://relative.sock"}"#,
            r#"{"stats_interval":"1"}"#,
            r#"{"stats_interval":"0s"}"#,
            r#"{"stats_interval":"-1s"}"#,
            r#"{"num_cores":0}"#,
            r#"{"cpu_total_compute":-5}"#,
        ] {
            let err = Settings::parse(json, || DETECTED).unwrap_err();
            assert_eq!(err.kind, allocd_plugin_sdk::ErrorKind::INVALID_ARGUMENT, "{json}");
            assert!(err.message.starts_with("invalid config: "), "{json}: {}", err.message);
        }
    }

    #[test]
    fn go_durations() {
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(parse_go_duration("1s"), ms(1000));
        assert_eq!(parse_go_duration("500ms"), ms(500));
        assert_eq!(parse_go_duration("1.5s"), ms(1500));
        assert_eq!(parse_go_duration("1m30s"), ms(90_000));
        assert_eq!(parse_go_duration("1h"), ms(3_600_000));
        assert_eq!(parse_go_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_go_duration("250µs"), Some(Duration::from_micros(250)));
        assert_eq!(parse_go_duration("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "1", "1x", "1..5s", ".s", "-1s", "1 s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }
}
