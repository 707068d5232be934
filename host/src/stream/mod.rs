//! Moving file bytes from a storage backend to an HTTP body.
//!
//! [`raw`] serves cat and readat: large `read_at` chunks through a small bounded channel, so
//! throughput is high and memory stays flat however large the file.

pub mod raw;
