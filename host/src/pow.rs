//! The one libm function the agent links, from Rust's `libm` crate instead of the system's
//! `libm.so.6`.
//!
//! tokio's scheduler calls `f64::powf` (its poll-time average) and nothing else in the agent
//! needs the system math library; yet loading `libm.so.6` for that one symbol cost about half a
//! MiB of resident memory (its code around `pow` and, since the dynamic linker searches it for
//! every symbol the agent and its plugins import, its symbol tables). Defining `pow` here lets
//! the linker drop the library (`--as-needed`). `libm` is the rust-lang port of musl's math
//! library (`pow` within about half an ulp, as glibc's); the agent's own code does integer
//! arithmetic where it needs a logarithm. The symbol is in the executable's dynamic table, so a
//! plugin that calls `pow` gets this one too (the executable comes first in symbol lookup); the
//! plugin's other math functions still come from its own `libm.so.6`.

/// `pow(3)`: `x` raised to the power `y`.
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
