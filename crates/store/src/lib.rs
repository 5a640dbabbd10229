//! Bulk data storage, the parts built so far: Reed-Solomon coding of blocks
//! into `k + m` checksummed shards, durable shard files on a local disk,
//! the placement of a stripe's shards over zones, peers and disks, and the
//! redundancy policies buckets choose from.
//!
//! Not here yet: moving shards between peers, repair, scrub, and the object
//! metadata the S3 layer needs. Each part here is tested on its own.

mod blocks;
mod disk;
mod erasure;
mod placement;
mod policy;

pub use blocks::{BlockClient, BlockError, BlockService};
pub use disk::{BlockId, DiskError, DiskStore};
pub use erasure::{Codec, CodecError, Shard};
pub use placement::{DiskRef, PlacementError, ShardPlacement, SpreadPlacement};
pub use policy::{Policy, PolicyError, default_policy};
