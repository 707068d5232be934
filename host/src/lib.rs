//! allocd: a node agent serving Nomad's client HTTP API from plugins loaded at run time.
//!
//! [`cli`] and [`config`] decide what to run, [`agent`] runs it, [`plugins`] loads and calls
//! the plugin libraries, [`stats`] keeps the latest samples, [`api`] serves Nomad's endpoints over [`server`] (TCP or TLS), [`acl`] decides who may
//! and [`stream`] moves file bytes into response bodies. [`gc`] collects terminal allocations, [`telemetry`] gathers `/v1/metrics`, [`hcl1`] accepts Nomad's one-line HCL blocks, and [`dev`] is the `-dev` sample setup. [`client`] is the `allocd alloc`/`allocd node` CLI. [`cluster`] is fleet mode (etcd membership, forwarding). [`cpu`] runs CPU-heavy work below the async workers' priority; [`live`] holds what a SIGHUP replaces.

pub mod acl;
pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod cpu;
pub mod dev;
pub mod gc;
pub mod hcl1;
pub mod inspect;
pub mod live;
pub mod logging;
pub mod plugins;
mod pow;
pub mod server;
pub mod stats;
pub mod stream;
pub mod telemetry;
pub mod ui;
