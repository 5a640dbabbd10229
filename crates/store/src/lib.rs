//! Bulk data storage (the start of it): Reed-Solomon coding of blocks into
//! `k + m` checksummed shards, durable shard files on a local disk, and the
//! redundancy policies buckets choose from.
//!
//! This crate does not yet place shards across disks and peers, repair or
//! scrub; it holds the parts those build on, each tested on its own.

mod disk;
mod erasure;
mod placement;
mod policy;

pub use disk::{BlockId, DiskError, DiskStore};
pub use erasure::{Codec, CodecError, Shard};
pub use placement::{DiskRef, PlacementError, ShardPlacement, SpreadPlacement};
pub use policy::{Policy, PolicyError, default_policy};
