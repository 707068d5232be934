//! The plugin contract of allocd, in one crate.
//!
//! * [`abi`] is the stable ABI itself: the root module every plugin library exports, the
//!   `#[sabi_trait]` interfaces, and the `#[repr(C)]` data types that cross the boundary.
//!   Any change to it bumps this crate's version; host and plugins are built in lockstep.
//! * [`sdk`] is what a plugin author writes against: plain Rust traits ([`sdk::MetricsPlugin`],
//!   [`sdk::StoragePlugin`]), the adapter that turns them into ABI objects and catches panics on
//!   every call, the [`export_plugin!`] macro, and a `log` backend that forwards to the host.
//! * [`paths`], [`files`] and [`sniff`] are helpers every storage backend shares, so all of them enforce
//!   the same sandbox rules and report the same content types as Nomad.
//! * [`compute`] is a helper every metric provider shares: the node's `TotalCompute` (MHz) and
//!   `NumCores` detected with Nomad's rules, so all of them normalise CPU ticks alike. Like the
//!   other helpers it is not part of the ABI.
#![allow(non_local_definitions)] // #[sabi_trait] expansions trip this lint on current rustc.

pub mod abi;
pub mod compute;
pub mod files;
pub mod paths;
pub mod remove;
pub mod sdk;
pub mod sniff;

pub use abi::*;
pub use abi_stable;
