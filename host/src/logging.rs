//! The agent's log: stderr, plain text (coloured only when stderr is a terminal) or, with
//! Nomad's `log_json = true`, one JSON object per line; its level can change while running
//! (SIGHUP re-reads `log_level`). `RUST_LOG`, when set, wins over both and stays.
//!
//! The filter is tracing-subscriber's `Targets` (`info`, `allocd=debug,hyper=warn`: a default
//! level and levels per target), not `EnvFilter`, whose span and field filters this agent does
//! not need and whose regex engine added about 300 KB of code to the binary.

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Registry, reload};

/// Changes the running agent's log level.
pub struct LogControl {
    filter: reload::Handle<Targets, Registry>,
    from_env: bool,
}

/// Installs the global subscriber at `level` (one of `cli::parse_log_level`'s).
pub fn init(level: &str, json: bool) -> LogControl {
    let (filter, from_env) = match std::env::var("RUST_LOG").ok().and_then(|value| value.parse().ok()) {
        Some(filter) => (filter, true),
        None => (level_filter(level), false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let plain =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let subscriber = tracing_subscriber::registry().with(filter);
    if json {
        subscriber.with(plain.json().flatten_event(true)).init();
    } else {
        subscriber.with(plain).init();
    }
    LogControl { filter: handle, from_env }
}

impl LogControl {
    /// Sets the level, unless `RUST_LOG` chose the filter.
    pub fn set_level(&self, level: &str) -> anyhow::Result<()> {
        if !self.from_env {
            self.filter.reload(level_filter(level))?;
        }
        Ok(())
    }
}

/// Everything at `level` or more severe (`level` is one of `cli::parse_log_level`'s, which
/// always parse; anything else means the default, `info`).
fn level_filter(level: &str) -> Targets {
    level.parse().unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn levels_and_rust_log_directives_filter_by_target() {
        let warn = level_filter("warn");
        assert!(warn.would_enable("allocd::server", &Level::WARN));
        assert!(!warn.would_enable("allocd::server", &Level::INFO));
        let directives: Targets = "info,allocd::cluster=debug".parse().unwrap();
        assert!(directives.would_enable("allocd::cluster::etcd", &Level::DEBUG));
        assert!(!directives.would_enable("allocd::server", &Level::DEBUG));
        assert!(directives.would_enable("hyper", &Level::INFO));
    }
}
