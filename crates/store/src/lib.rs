//! Bulk data storage (the start of it): cutting data into blocks,
//! Reed-Solomon coding each block into `k + m` checksummed shards, and the
//! redundancy policies buckets choose from.
//!
//! This crate does not yet place shards on disks and peers, repair or
//! scrub; it holds the parts those build on, each tested on its own.

mod erasure;
mod policy;

pub use erasure::{Codec, CodecError, Shard};
pub use policy::{Policy, PolicyError, default_policy};
