//! End-to-end tests: the real `allocd` binary with the real plugin libraries built beside it
//! (run `cargo build --workspace` first), over real HTTP on loopback, and for the fleet between
//! test hosts of their own (network namespaces).

mod harness;

// Host stats: shape, Nomad's encoding, caching.
mod stats;
// ls, stat, cat, readat: answers, headers and every bad input.
mod fs;
// fs/stream and fs/logs: framing, following, rotation, lifecycle.
mod follow;
// Allocation stats.
mod alloc;
// Allocation listing: /v1/allocations and /v1/allocation/:id.
mod listing;
// The `allocd alloc` / `allocd node` CLI against the real agent.
mod cli;
// Garbage collection on positive evidence only.
mod gc;
// ACLs, TLS, hostile input.
mod security;
// Hostile clients: handshake timeouts, connection caps, stalled readers.
mod clients;
// The overlay backend beside local-disk.
mod overlay;
// A hostile task racing the path sandbox with symlink, directory and FIFO swaps.
mod race;
// Real metric providers: cgroups and the Docker Engine.
mod providers;
// Failure containment: panicking, hanging, foreign and rejecting plugins; the example plugin.
mod containment;
// Plugin ABI compatibility: a plugin pinned to the previous ABI minor in this allocd.
mod compat;
// Startup: -dev, config errors, plugin loading errors, shutdown.
mod startup;
// Nomad's wire: Go's path redirects, the empty 404, CORS, key order, empty bodies, quoting.
mod wire;
// /v1/metrics (Nomad's names, JSON and Prometheus), health, allocd's own metrics.
mod telemetry;
// Fleet mode: a real etcd cluster and several agents forwarding to each other.
mod fleet;
// Test hosts: network namespaces on a test-owned bridge.
mod netns;
// SIGHUP reloads (tokens, certificates, log level) and log formats.
mod reload;
// The web view: / → /ui/, embedded assets, their content types, gzip and total size.
mod ui;
