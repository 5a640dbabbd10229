//! Counters of the storage layer, exported on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters since the agent started.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Shards found failing their checksum (on read, scrub or serve).
    pub corrupt_shards: AtomicU64,
    /// Shards written again after being found missing or corrupt.
    pub rebuilt_shards: AtomicU64,
    /// Reads that had to skip a missing, corrupt or unreachable shard.
    pub degraded_reads: AtomicU64,
    /// Shards verified by the background scrub.
    pub scrubbed_shards: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Shards moved off peers that are gone for good.
    pub moved_shards: AtomicU64,
    /// Shards moved from fuller disks to emptier ones.
    pub rebalanced_shards: AtomicU64,
    /// Shard files deleted by garbage collection.
    pub collected_shards: AtomicU64,
    /// Repair passes completed.
    pub repair_passes: AtomicU64,
    /// Blocks the current repair pass still has to fix (a gauge).
    pub repair_pending: AtomicU64,
}

impl StoreMetrics {
    pub fn corrupt_shard(&self) {
        self.corrupt_shards.fetch_add(1, Ordering::Relaxed);
    }

    pub fn shard_rebuilt(&self) {
        self.rebuilt_shards.fetch_add(1, Ordering::Relaxed);
    }

    pub fn degraded_read(&self) {
        self.degraded_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn shard_scrubbed(&self) {
        self.scrubbed_shards.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// `(name, help, value)` of every counter, for an exporter.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            (
                "coop_store_corrupt_shards",
                "Shards found failing their checksum",
                get(&self.corrupt_shards),
            ),
            (
                "coop_store_rebuilt_shards",
                "Shards rebuilt after being found missing or corrupt",
                get(&self.rebuilt_shards),
            ),
            (
                "coop_store_degraded_reads",
                "Block reads that skipped a bad or unreachable shard",
                get(&self.degraded_reads),
            ),
            (
                "coop_store_scrubbed_shards",
                "Shards verified by the background scrub",
                get(&self.scrubbed_shards),
            ),
            (
                "coop_store_cache_hits",
                "Block reads answered by the read cache",
                get(&self.cache_hits),
            ),
            (
                "coop_store_cache_misses",
                "Block reads that missed the read cache",
                get(&self.cache_misses),
            ),
            (
                "coop_store_moved_shards",
                "Shards moved off peers gone for good or onto new peers",
                get(&self.moved_shards),
            ),
            (
                "coop_store_rebalanced_shards",
                "Shards moved from fuller disks to emptier ones",
                get(&self.rebalanced_shards),
            ),
            (
                "coop_store_collected_shards",
                "Shard files deleted by garbage collection",
                get(&self.collected_shards),
            ),
            (
                "coop_store_repair_passes",
                "Repair passes completed",
                get(&self.repair_passes),
            ),
        ]
    }
}
