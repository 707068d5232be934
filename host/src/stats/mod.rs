//! Metric sampling: the background [`sampler`] keeps the latest host sample ready so requests
//! never wait on collection.

pub mod sampler;

pub use sampler::Sampler;
