//! Plugins as the host sees them: loading libraries ([`loader`]), calling into them safely
//! ([`call`]), and the set the agent runs with ([`registry`]).

pub mod call;
pub mod loader;
mod read_buffer;
pub mod registry;

pub use call::{Caller, PluginFailure};
pub use registry::{MetricsPlugin, Registry, StoragePlugin};
