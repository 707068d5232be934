//! The allocd plugin SDK: what a plugin author writes against. It changes with every allocd
//! release without touching the ABI (`allocd-plugin-abi`, re-exported here whole, so a plugin
//! needs this crate and `abi_stable` only).
//!
//! * [`author`] holds the plain Rust traits ([`MetricsPlugin`], [`StoragePlugin`]), the adapter
//!   that turns them into ABI objects and catches panics on every call, the [`export_plugin!`]
//!   macro, and a `log` backend that forwards to the host.
//! * [`paths`], [`files`], [`remove`], [`index`] and [`sniff`] are helpers every storage backend
//!   shares, so all of them enforce the same sandbox rules, delete alike, keep the allocation
//!   index alike and report the same content types as Nomad.
//! * [`compute`] is a helper every metric provider shares: the node's `TotalCompute` (MHz) and
//!   `NumCores` detected with Nomad's rules, so all of them normalise CPU ticks alike.

pub mod author;
pub mod compute;
pub mod files;
pub mod index;
pub mod paths;
pub mod remove;
pub mod sniff;

pub use allocd_plugin_abi as abi;
pub use allocd_plugin_abi::*;
pub use author::{FilePlugin, MetricsPlugin, PluginConfig, StoragePlugin, guard};
