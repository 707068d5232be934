//! Metric sampling: the background [`sampler`] keeps the latest host sample ready so requests
//! never wait on collection, and the allocation [`index`] it refreshes.

pub mod index;
pub mod sampler;

pub use sampler::Sampler;
