//! Writing and reading whole blocks as stripes of shards spread over the
//! cloud's disks.
//!
//! A write codes the block, places its shards on distinct disks, stores them
//! (local disks directly, other peers' over `coop/blocks/1`) and returns only
//! when every shard is durable, moving a shard to another disk if its first
//! target fails. A read takes the data shards nearest first and decodes only
//! when one of them is missing or corrupt; a shard found corrupt or missing
//! on a live peer is written again from the decoded block.
//!
//! What the cloud looks like (which disks are up, how far each peer is)
//! comes from a [`ClusterView`], so this module knows nothing of gossip.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use tracing::{debug, warn};

use coop_state::{BlockId, BucketRecord, NewStripe, ShardLocation, StripeLayout, StripeRecord};
use coop_types::PeerId;

use crate::blocks::{BlockClient, BlockError};
use crate::cache::ReadCache;
use crate::disk::DiskError;
use crate::erasure::{Codec, CodecError, Shard};
use crate::local::LocalDisks;
use crate::metrics::StoreMetrics;
use crate::placement::{DiskRef, ShardPlacement};
use crate::policy::{Policy, default_policy};

/// The most object bytes in one block. 1 MiB keeps a stripe's buffers small
/// (4+2 shards of 256 KiB) while a block is still large enough that
/// per-request costs vanish next to the copying.
pub const BLOCK_SIZE: usize = 1 << 20;

/// How many times a write looks for another disk after a shard's target
/// failed, before it gives up.
const WRITE_ATTEMPTS: usize = 3;

/// A disk some live peer offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDisk {
    pub peer: PeerId,
    pub zone: String,
    /// The disk's id on its peer.
    pub disk: String,
    pub free_bytes: u64,
    /// Bytes of shards the disk holds.
    pub used_bytes: u64,
    /// What the disk offers in all.
    pub total_bytes: u64,
}

/// What the store needs to know about the rest of the cloud.
pub trait ClusterView: Send + Sync + 'static {
    /// The disks of every peer that is up now (this one included).
    fn disks(&self) -> Vec<ClusterDisk>;
    /// Round-trip time to `peer`, when known; zero for this peer.
    fn rtt(&self, peer: &PeerId) -> Option<Duration>;
    /// Whether `peer` is up now (its status is fresh).
    fn is_up(&self, peer: &PeerId) -> bool;
    /// Whether `peer` is gone for good (down past the grace, or revoked):
    /// its shards must be rebuilt elsewhere.
    fn is_gone(&self, peer: &PeerId) -> bool;
}

/// Why a block could not be written durably.
#[derive(Debug, thiserror::Error)]
pub enum StripeWriteError {
    #[error(
        "not enough disks to store a {layout} stripe durably: {available} usable disks on live peers, {width} needed"
    )]
    NotEnoughDisks {
        layout: StripeLayout,
        width: usize,
        available: usize,
    },
    #[error(
        "the bucket keeps stripes spread over zones, but a {layout} stripe would put {worst} shards in zone `{zone}`, more than the {tolerates} it can lose; add peers in other zones or use a narrower policy"
    )]
    ZonesTooFew {
        layout: StripeLayout,
        zone: String,
        worst: usize,
        tolerates: usize,
    },
    #[error("could not store shard {index} of a block on any disk: {last}")]
    ShardFailed { index: usize, last: String },
    #[error("coding failed: {0}")]
    Codec(#[from] CodecError),
    #[error("the write task failed: {0}")]
    Task(String),
}

/// Why a block could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StripeReadError {
    #[error(
        "block {block} is unreadable right now: {good} good shards of the {needed} needed ({detail})"
    )]
    Unavailable {
        block: String,
        good: usize,
        needed: usize,
        detail: String,
    },
    #[error("coding failed: {0}")]
    Codec(#[from] CodecError),
}

/// What happened to one shard fetch.
enum Fetched {
    Good(Shard),
    /// The holder is reachable but the shard is gone or damaged there: it
    /// can be written again in place.
    Damaged(String),
    /// The holder could not be asked.
    Unreachable(String),
}

/// Reads and writes stripes.
#[derive(Clone)]
pub struct Stripes {
    pub(crate) me: PeerId,
    pub(crate) local: LocalDisks,
    pub(crate) client: BlockClient,
    pub(crate) view: Arc<dyn ClusterView>,
    pub(crate) placement: Arc<dyn ShardPlacement>,
    cache: ReadCache,
    pub(crate) metrics: Arc<StoreMetrics>,
}

impl std::fmt::Debug for Stripes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripes")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Stripes {
    pub fn new(
        me: PeerId,
        local: LocalDisks,
        client: BlockClient,
        view: Arc<dyn ClusterView>,
        placement: Arc<dyn ShardPlacement>,
        cache_bytes: u64,
        metrics: Arc<StoreMetrics>,
    ) -> Self {
        Stripes {
            me,
            local,
            client,
            view,
            placement,
            cache: ReadCache::new(cache_bytes),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }

    /// Bytes held by the read cache now.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    /// The failure domains a default layout can count on now: peers when
    /// more than one live peer offers disks, else the disks of the only one.
    pub fn domains(&self) -> usize {
        let disks: Vec<ClusterDisk> = self
            .view
            .disks()
            .into_iter()
            .filter(|d| d.free_bytes > 0)
            .collect();
        let peers: HashSet<PeerId> = disks.iter().map(|d| d.peer).collect();
        if peers.len() > 1 {
            peers.len()
        } else {
            disks.len()
        }
    }

    /// The layout new blocks get under `policy`, or under the cloud's
    /// current default (the widest `ec:K+2` the live domains allow).
    pub fn layout_for(&self, policy: Option<Policy>) -> StripeLayout {
        let policy = policy.unwrap_or_else(|| default_policy(self.domains()));
        layout_of(policy)
    }

    /// The layout new blocks of `bucket` get now: its own policy's, or the
    /// cloud's current default. Fails only on a stored policy that no
    /// longer parses.
    pub fn layout_for_bucket(
        &self,
        bucket: &BucketRecord,
    ) -> Result<StripeLayout, crate::policy::PolicyError> {
        let policy = match &bucket.policy {
            Some(text) => Some(text.parse::<Policy>()?),
            None => None,
        };
        Ok(self.layout_for(policy))
    }

    /// Codes `data` (at most [`BLOCK_SIZE`] bytes) into a new block and
    /// stores every shard durably. With `zone_spread`, refuses a layout
    /// that would put more shards in one zone than the stripe can lose.
    pub async fn write(
        &self,
        data: Bytes,
        layout: StripeLayout,
        zone_spread: bool,
    ) -> Result<NewStripe, StripeWriteError> {
        let id: BlockId = rand::random();
        let len = data.len();
        let shards = tokio::task::spawn_blocking(move || code(layout, &data))
            .await
            .map_err(|e| StripeWriteError::Task(e.to_string()))??;
        let shard_len = shards.first().map_or(0, |s| s.bytes.len());

        let disks: Vec<ClusterDisk> = self.view.disks();
        let refs: Vec<DiskRef> = disks
            .iter()
            .map(|d| DiskRef {
                id: format!("{}/{}", d.peer, d.disk),
                peer: d.peer.to_string(),
                zone: d.zone.clone(),
                free_bytes: d.free_bytes,
            })
            .collect();
        let width = layout.width();
        let chosen = self
            .placement
            .place_stripe(&id, width, &refs)
            .map_err(|_| StripeWriteError::NotEnoughDisks {
                layout,
                width,
                available: refs.iter().filter(|r| r.free_bytes > 0).count(),
            })?;

        if zone_spread {
            let mut per_zone: HashMap<&str, usize> = HashMap::new();
            for &i in &chosen {
                *per_zone.entry(disks[i].zone.as_str()).or_default() += 1;
            }
            if let Some((zone, worst)) = per_zone.into_iter().max_by_key(|(_, n)| *n)
                && worst > layout.tolerates()
            {
                return Err(StripeWriteError::ZonesTooFew {
                    layout,
                    zone: zone.to_owned(),
                    worst,
                    tolerates: layout.tolerates(),
                });
            }
        }
        let mut used: HashSet<usize> = chosen.iter().copied().collect();
        let mut targets: Vec<usize> = chosen;
        let mut pending: Vec<usize> = (0..width).collect();
        let mut failures: HashMap<usize, String> = HashMap::new();
        for _ in 0..WRITE_ATTEMPTS {
            let results = join_all(pending.iter().map(|&index| {
                let disk = &disks[targets[index]];
                self.put_shard(disk.peer, disk.disk.clone(), id, shards[index].clone())
            }))
            .await;
            let mut failed = Vec::new();
            for (index, result) in pending.iter().zip(results) {
                if let Err(err) = result {
                    let disk = &disks[targets[*index]];
                    warn!(peer = %disk.peer.short(), disk = %disk.disk, %err, "shard write failed; trying another disk");
                    failures.insert(*index, err);
                    failed.push(*index);
                }
            }
            if failed.is_empty() {
                pending.clear();
                break;
            }
            // Move each failed shard to a disk not yet used by this stripe,
            // preferring peers the stripe does not use yet.
            for index in &failed {
                let peers_used: HashSet<PeerId> = targets.iter().map(|&t| disks[t].peer).collect();
                let spare = (0..disks.len())
                    .filter(|i| !used.contains(i) && disks[*i].free_bytes > 0)
                    .min_by_key(|i| peers_used.contains(&disks[*i].peer));
                match spare {
                    Some(spare) => {
                        used.insert(spare);
                        targets[*index] = spare;
                    }
                    None => {
                        return Err(StripeWriteError::ShardFailed {
                            index: *index,
                            last: failures.remove(index).unwrap_or_default(),
                        });
                    }
                }
            }
            pending = failed;
        }
        if let Some(&index) = pending.first() {
            return Err(StripeWriteError::ShardFailed {
                index,
                last: failures.remove(&index).unwrap_or_default(),
            });
        }
        let shard_locations = (0..width)
            .map(|i| ShardLocation {
                peer: disks[targets[i]].peer,
                disk: disks[targets[i]].disk.clone(),
                checksum: shards[i].checksum,
            })
            .collect();
        Ok(NewStripe {
            id,
            stripe: StripeRecord {
                layout,
                len: len as u32,
                shard_len: shard_len as u32,
                shards: shard_locations,
                refs: 0,
                dead_since: None,
            },
        })
    }

    /// Stores one shard on a disk of `peer` (this one or another).
    pub(crate) async fn put_shard(
        &self,
        peer: PeerId,
        disk: String,
        block: BlockId,
        shard: Shard,
    ) -> Result<(), String> {
        if peer == self.me {
            let local = self.local.clone();
            let bytes = shard.bytes.len() as u64;
            return tokio::task::spawn_blocking(move || {
                let disk = local
                    .get(&disk)
                    .ok_or_else(|| format!("no local disk {disk}"))?;
                disk.store.put(&block, &shard).map_err(|e| e.to_string())?;
                disk.add_used(bytes);
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())?;
        }
        self.client
            .put(peer, &disk, &block, &shard)
            .await
            .map_err(|e| e.to_string())
    }

    /// Deletes one shard on a disk of `peer` (this one or another).
    pub(crate) async fn delete_shard(
        &self,
        peer: PeerId,
        disk: &str,
        block: BlockId,
        index: usize,
    ) -> Result<(), String> {
        if peer == self.me {
            let local = self.local.clone();
            let disk = disk.to_owned();
            return tokio::task::spawn_blocking(move || match local.get(&disk) {
                Some(d) => d.remove(&block, index).map_err(|e| e.to_string()),
                None => Err(format!("no local disk {disk}")),
            })
            .await
            .map_err(|e| e.to_string())?;
        }
        self.client
            .delete(peer, disk, &block, index)
            .await
            .map_err(|e| e.to_string())
    }

    /// Fetches one shard and checks it against the checksum the metadata
    /// holds, so a peer cannot pass off a self-consistent wrong shard.
    async fn fetch(&self, block: BlockId, index: usize, at: &ShardLocation) -> Fetched {
        let found: Result<Option<Shard>, Fetched> = if at.peer == self.me {
            let local = self.local.clone();
            let disk = at.disk.clone();
            let read = tokio::task::spawn_blocking(move || match local.get(&disk) {
                Some(d) => d.store.get(&block, index),
                None => Ok(None),
            })
            .await;
            match read {
                Ok(Ok(found)) => Ok(found),
                Ok(Err(err @ DiskError::Corrupt { .. })) => {
                    self.metrics.corrupt_shard();
                    Err(Fetched::Damaged(err.to_string()))
                }
                Ok(Err(err)) => Err(Fetched::Damaged(err.to_string())),
                Err(err) => Err(Fetched::Unreachable(err.to_string())),
            }
        } else {
            match self.client.get(at.peer, &at.disk, &block, index).await {
                Ok(found) => Ok(found),
                Err(err @ BlockError::BadShard { .. }) => {
                    self.metrics.corrupt_shard();
                    Err(Fetched::Damaged(err.to_string()))
                }
                Err(err @ BlockError::Refused { .. }) => Err(Fetched::Damaged(err.to_string())),
                Err(err) => Err(Fetched::Unreachable(err.to_string())),
            }
        };
        match found {
            Ok(Some(shard)) if shard.checksum == at.checksum => Fetched::Good(shard),
            Ok(Some(_)) => {
                self.metrics.corrupt_shard();
                Fetched::Damaged(format!(
                    "shard {index} on peer {} does not match its recorded checksum",
                    at.peer.short()
                ))
            }
            Ok(None) => Fetched::Damaged(format!(
                "shard {index} is missing on peer {}",
                at.peer.short()
            )),
            Err(fetched) => fetched,
        }
    }

    /// The order in which to try a stripe's shards: shards on peers that
    /// are down go last; then, for erasure coding, the data shards (no
    /// decoding needed) before parity; within each group, nearest first
    /// (this peer, then by RTT, unknown RTTs last).
    fn read_order(&self, stripe: &StripeRecord) -> Vec<usize> {
        let data = match stripe.layout {
            StripeLayout::Erasure { data, .. } => usize::from(data),
            StripeLayout::Replicas { .. } => 0,
        };
        let mut order: Vec<usize> = (0..stripe.shards.len()).collect();
        order.sort_by_key(|&i| {
            let peer = &stripe.shards[i].peer;
            let distance = if *peer == self.me {
                Duration::ZERO
            } else {
                self.view.rtt(peer).unwrap_or(Duration::from_secs(3600))
            };
            let up = *peer == self.me || self.view.is_up(peer);
            (!up, i >= data, distance)
        });
        order
    }

    /// Reads block `id` past the cache, and leaves the cache as it was:
    /// for bulk reads that happen once (a template fetched by a peer).
    pub async fn read_uncached(
        &self,
        id: &BlockId,
        stripe: &StripeRecord,
    ) -> Result<Bytes, StripeReadError> {
        self.read_shards(id, stripe).await
    }

    /// Reads block `id`. Served from the cache when it is there.
    pub async fn read(
        &self,
        id: &BlockId,
        stripe: &StripeRecord,
    ) -> Result<Bytes, StripeReadError> {
        if let Some(bytes) = self.cache.get(id) {
            self.metrics.cache_hit();
            return Ok(bytes);
        }
        self.metrics.cache_miss();
        let block = self.read_shards(id, stripe).await?;
        self.cache.insert(*id, block.clone());
        Ok(block)
    }

    /// Reads block `id` from its shards, healing damaged ones it meets.
    pub(crate) async fn read_shards(
        &self,
        id: &BlockId,
        stripe: &StripeRecord,
    ) -> Result<Bytes, StripeReadError> {
        let needed = stripe.layout.needed();
        let width = stripe.layout.width();
        if stripe.shards.len() != width {
            return Err(StripeReadError::Unavailable {
                block: hex(id),
                good: 0,
                needed,
                detail: format!(
                    "the stripe record lists {} shards for a {} layout",
                    stripe.shards.len(),
                    stripe.layout
                ),
            });
        }
        let mut good: Vec<Shard> = Vec::with_capacity(width);
        let mut damaged: Vec<usize> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        let mut candidates = self.read_order(stripe).into_iter();
        loop {
            let round: Vec<usize> = candidates.by_ref().take(needed - good.len()).collect();
            if round.is_empty() {
                return Err(StripeReadError::Unavailable {
                    block: hex(id),
                    good: good.len(),
                    needed,
                    detail: problems.join("; "),
                });
            }
            let fetched =
                join_all(round.iter().map(|&i| self.fetch(*id, i, &stripe.shards[i]))).await;
            for (&index, outcome) in round.iter().zip(fetched) {
                match outcome {
                    Fetched::Good(shard) => good.push(shard),
                    Fetched::Damaged(why) => {
                        damaged.push(index);
                        problems.push(why);
                    }
                    Fetched::Unreachable(why) => problems.push(why),
                }
            }
            if good.len() >= needed {
                break;
            }
        }
        if !problems.is_empty() {
            self.metrics.degraded_read();
            debug!(block = %hex(id), problems = %problems.join("; "), "degraded read");
        }
        let len = stripe.len as usize;
        let block: Bytes = match stripe.layout {
            StripeLayout::Replicas { .. } => {
                let mut bytes = good.swap_remove(0).bytes;
                bytes.truncate(len);
                Bytes::from(bytes)
            }
            StripeLayout::Erasure { data, parity } => {
                let codec = Codec::new(usize::from(data), usize::from(parity))?;
                Bytes::from(codec.decode(&good, len)?)
            }
        };
        if !damaged.is_empty() {
            self.heal(*id, stripe.clone(), block.clone(), damaged);
        }
        Ok(block)
    }

    /// Writes shards found missing or corrupt again, in place, from the
    /// block just read. Runs in the background; a failure is left to the
    /// repair loop.
    fn heal(&self, id: BlockId, stripe: StripeRecord, block: Bytes, damaged: Vec<usize>) {
        let this = self.clone();
        tokio::spawn(async move {
            let layout = stripe.layout;
            let shards = match tokio::task::spawn_blocking(move || code(layout, &block)).await {
                Ok(Ok(shards)) => shards,
                _ => return,
            };
            for index in damaged {
                let at = &stripe.shards[index];
                let Some(shard) = shards.get(index) else {
                    continue;
                };
                if shard.checksum != at.checksum {
                    warn!(block = %hex(&id), index, "re-coded shard differs from its record; not healing");
                    continue;
                }
                match this
                    .put_shard(at.peer, at.disk.clone(), id, shard.clone())
                    .await
                {
                    Ok(()) => {
                        this.metrics.shard_rebuilt();
                        debug!(block = %hex(&id), index, peer = %at.peer.short(), "rebuilt a damaged shard");
                    }
                    Err(err) => {
                        warn!(block = %hex(&id), index, %err, "could not rebuild a damaged shard")
                    }
                }
            }
        });
    }
}

/// The stripe layout a policy gives.
pub fn layout_of(policy: Policy) -> StripeLayout {
    match policy {
        Policy::Erasure { k, m } => StripeLayout::Erasure {
            data: k as u16,
            parity: m as u16,
        },
        Policy::Replicas(n) => StripeLayout::Replicas { copies: n as u16 },
    }
}

/// Codes one block into the shards of `layout`.
pub fn code(layout: StripeLayout, data: &[u8]) -> Result<Vec<Shard>, CodecError> {
    match layout {
        StripeLayout::Erasure { data: k, parity: m } => {
            Codec::new(usize::from(k), usize::from(m))?.encode(data)
        }
        StripeLayout::Replicas { copies } => {
            let checksum = *blake3::hash(data).as_bytes();
            Ok((0..usize::from(copies))
                .map(|index| Shard {
                    index,
                    bytes: data.to_vec(),
                    checksum,
                })
                .collect())
        }
    }
}

fn hex(id: &BlockId) -> String {
    data_encoding::HEXLOWER.encode(&id[..8])
}
