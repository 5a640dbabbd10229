//! Bulk data storage, the parts built so far: Reed-Solomon coding of blocks
//! into `k + m` checksummed shards, durable shard files on a local disk,
//! the placement of a stripe's shards over zones, peers and disks, and the
//! redundancy policies buckets choose from.
//!
//! On top of those, [`Stripes`] writes a block durably over the cloud's live
//! disks and reads it back nearest shards first, decoding only when a shard
//! is missing or corrupt and rewriting the damaged shard. The metadata of
//! stripes lives in the control plane (`coop-state`); the S3 layer above
//! turns objects into blocks.

mod blocks;
mod cache;
mod disk;
mod erasure;
mod gc;
mod local;
mod metrics;
mod placement;
mod policy;
mod rebalance;
mod repair;
mod stripes;

pub use blocks::{BlockClient, BlockError, BlockService};
pub use disk::{BlockId, DiskError, DiskStore};
pub use erasure::{Codec, CodecError, Shard};
pub use local::{DiskSpec, LocalDisk, LocalDiskError, LocalDisks, filesystem, parse_size};
pub use metrics::StoreMetrics;
pub use placement::{DiskRef, PlacementError, ShardPlacement, SpreadPlacement};
pub use policy::{Policy, PolicyError, default_policy};
pub use repair::{UpkeepConfig, spawn_upkeep};
pub use stripes::{
    BLOCK_SIZE, ClusterDisk, ClusterView, StripeReadError, StripeWriteError, Stripes, code,
    layout_of,
};
