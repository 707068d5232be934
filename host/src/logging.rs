//! The agent's log: stderr, plain text (coloured only when stderr is a terminal) or, with
//! Nomad's `log_json = true`, one JSON object per line; its level can change while running
//! (SIGHUP re-reads `log_level`). `RUST_LOG`, when set, wins over both and stays.

use std::io::IsTerminal;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the running agent's log level.
pub struct LogControl {
    filter: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

/// Installs the global subscriber at `level` (one of `cli::parse_log_level`'s).
pub fn init(level: &str, json: bool) -> LogControl {
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, true),
        Err(_) => (EnvFilter::new(level), false),
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
            self.filter.reload(EnvFilter::new(level))?;
        }
        Ok(())
    }
}
