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
mod health;
mod local;
mod metrics;
mod placement;
mod policy;
mod rebalance;
mod repair;
mod streams;
mod stripes;

pub use blocks::{
    BLOCKS_ALPN, BlockClient, BlockError, BlockReply, BlockRequest, BlockService, BlocksProtocol,
};
pub use disk::{BlockId, DiskError, DiskStore};
pub use erasure::{Codec, CodecError, Shard};
pub use health::{
    Health, HealthBook, HealthCounts, HealthReport, block_health, bucket_usage, scan_health,
};
pub use local::{DiskSpec, LocalDisk, LocalDiskError, LocalDisks, parse_size};
pub use metrics::StoreMetrics;
pub use placement::{DiskRef, PlacementError, ShardPlacement, SpreadPlacement};
pub use policy::{Policy, PolicyError, default_policy};
pub use repair::{RepairReport, UpkeepConfig, upkeep};
pub use streams::{BlockStreamError, BlockWriter, WRITES_IN_FLIGHT, WrittenBlocks, spans};
pub use stripes::{
    BLOCK_SIZE, ClusterDisk, ClusterView, StripeReadError, StripeWriteError, Stripes, code,
    layout_of,
};

/// Keeps freed shard and block buffers in the heap for reuse. By default
/// glibc hands out every allocation over 128 KiB as fresh pages from the
/// kernel and gives them back on free, so each 256 KiB shard is faulted in
/// page by page, which costs more than coding it (see BENCHMARKS.md).
/// Allocations up to 4 MiB then come from the heap, and up to 4 MiB of
/// free heap is kept before it is returned. Call once, early; does nothing
/// on other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; both are valid
    // options with in-range values.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}
