//! End-to-end tests: the real `allocd` binary with the real plugin libraries built beside it
//! (run `cargo build --workspace` first), over real HTTP on loopback.

mod harness;

// Host stats: shape, Nomad's encoding, caching.
mod stats;
// ls, stat, cat, readat: answers, headers and every bad input.
mod fs;
// fs/stream and fs/logs: framing, following, rotation, lifecycle.
mod follow;
// Allocation stats and GC.
mod alloc;
// ACLs, TLS, hostile input.
mod security;
// Startup: -dev, config errors, plugin loading errors, shutdown.
mod startup;
