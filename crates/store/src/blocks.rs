//! `coop/blocks/1`: putting, getting and deleting shards on other peers.
//!
//! The serving side keeps shards on its local disks ([`DiskStore`]); the
//! calling side names the disk by the id placement chose. Only admitted
//! members reach this protocol (mesh admission), and every shard is checked
//! against its checksum on both ends, so a lying or broken peer can cause a
//! missing shard, never a wrong one.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use coop_mesh::{Mesh, MeshError, Protocol, Service};
use coop_types::PeerId;

use crate::disk::{BlockId, DiskError};
use crate::erasure::Shard;
use crate::local::{LocalDisk, LocalDisks};
use crate::metrics::StoreMetrics;

/// A shard of a 1 MiB block at 4+2 is 256 KiB; even on a slow link that
/// moves well within this.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// `coop/blocks/1`: shards put on, read from and deleted from other
/// peers' disks.
pub struct BlocksProtocol;

/// The ALPN of [`BlocksProtocol`].
pub const BLOCKS_ALPN: &[u8] = b"coop/blocks/1";

impl Protocol for BlocksProtocol {
    const ALPN: &'static [u8] = BLOCKS_ALPN;
    type Request = BlockRequest;
    type Response = BlockReply;
    fn timeout(_: &BlockRequest) -> Duration {
        BLOCK_TIMEOUT
    }
}

/// A request from the peer that writes or reads a stripe.
#[derive(Debug, Serialize, Deserialize)]
pub enum BlockRequest {
    /// Store a shard durably on the named disk.
    Put {
        disk: String,
        block: BlockId,
        shard: Shard,
    },
    /// Send a shard back, if the disk has it.
    Get {
        disk: String,
        block: BlockId,
        index: usize,
    },
    /// Forget a shard (the object was deleted or the shard moved).
    Delete {
        disk: String,
        block: BlockId,
        index: usize,
    },
    /// The repairer asks which of these shards the disk holds.
    Has {
        disk: String,
        shards: Vec<(BlockId, usize)>,
    },
}

/// The answer to a [`BlockRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum BlockReply {
    /// The shard of a `Put` is durable on the disk.
    Stored,
    /// The shard a `Get` asked for, or `None` without a good copy.
    Shard(Option<Shard>),
    /// The shard of a `Delete` is gone (or was never there).
    Deleted,
    /// One flag per shard asked about in `Has`.
    Present(Vec<bool>),
    /// The request could not be carried out (no such disk, a bad shard,
    /// a failed write), and why.
    Refused(String),
}

/// Why a remote shard operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Mesh(#[from] MeshError),
    #[error("peer {peer} refused: {reason}")]
    Refused { peer: PeerId, reason: String },
    #[error("peer {peer} sent a shard that fails its checksum")]
    BadShard { peer: PeerId },
    #[error("peer {peer} answered nonsense: {reason}")]
    Protocol { peer: PeerId, reason: String },
}

/// Serves shards from this peer's disks, by disk id.
#[derive(Clone)]
pub struct BlockService {
    disks: LocalDisks,
    metrics: Arc<StoreMetrics>,
}

impl BlockService {
    pub fn new(disks: LocalDisks, metrics: Arc<StoreMetrics>) -> Self {
        BlockService { disks, metrics }
    }

    /// Registers the service on the mesh.
    pub fn serve(self, mesh: &Mesh) {
        mesh.serve::<BlocksProtocol>(self);
    }

    fn disk(&self, id: &str) -> Result<&LocalDisk, String> {
        self.disks
            .get(id)
            .ok_or_else(|| format!("no disk `{id}` on this peer"))
    }

    fn carry_out(&self, request: BlockRequest) -> BlockReply {
        let outcome = match request {
            BlockRequest::Put { disk, block, shard } => self.disk(&disk).and_then(|d| {
                if !shard.verify() {
                    return Err("shard fails its checksum; not stored".into());
                }
                d.store.put(&block, &shard).map_err(|e| e.to_string())?;
                d.add_used(shard.bytes.len() as u64);
                Ok(BlockReply::Stored)
            }),
            // A corrupt shard on our disk is reported as missing: the reader
            // rebuilds from others and rewrites it here.
            BlockRequest::Get { disk, block, index } => {
                self.disk(&disk).map(|d| match d.store.get(&block, index) {
                    Ok(found) => BlockReply::Shard(found),
                    Err(DiskError::Corrupt { path, reason }) => {
                        self.metrics.corrupt_shard();
                        tracing::warn!(path = %path.display(), %reason, "corrupt shard");
                        BlockReply::Shard(None)
                    }
                    Err(_) => BlockReply::Shard(None),
                })
            }
            BlockRequest::Has { disk, shards } => self.disk(&disk).map(|d| {
                BlockReply::Present(shards.iter().map(|(b, i)| d.store.has(b, *i)).collect())
            }),
            BlockRequest::Delete { disk, block, index } => self.disk(&disk).and_then(|d| {
                d.remove(&block, index)
                    .map(|()| BlockReply::Deleted)
                    .map_err(|e| e.to_string())
            }),
        };
        outcome.unwrap_or_else(BlockReply::Refused)
    }
}

impl Service<BlocksProtocol> for BlockService {
    fn answer(&self, _from: PeerId, request: BlockRequest) -> BoxFuture<'static, BlockReply> {
        let this = self.clone();
        Box::pin(async move {
            // Disk I/O blocks (writes fsync), so it runs off the async
            // workers.
            tokio::task::spawn_blocking(move || this.carry_out(request))
                .await
                .unwrap_or_else(|e| BlockReply::Refused(format!("shard worker failed: {e}")))
        })
    }
}

/// Puts and gets shards on other peers.
#[derive(Clone, Debug)]
pub struct BlockClient {
    mesh: Mesh,
}

impl BlockClient {
    pub fn new(mesh: Mesh) -> Self {
        BlockClient { mesh }
    }

    async fn call(&self, peer: PeerId, request: &BlockRequest) -> Result<BlockReply, BlockError> {
        let reply = self.mesh.call::<BlocksProtocol>(peer, request).await?;
        if let BlockReply::Refused(reason) = reply {
            return Err(BlockError::Refused { peer, reason });
        }
        Ok(reply)
    }

    /// Stores `shard` on `disk` of `peer`; returns once it is durable there.
    pub async fn put(
        &self,
        peer: PeerId,
        disk: &str,
        block: &BlockId,
        shard: &Shard,
    ) -> Result<(), BlockError> {
        let request = BlockRequest::Put {
            disk: disk.to_string(),
            block: *block,
            shard: shard.clone(),
        };
        match self.call(peer, &request).await? {
            BlockReply::Stored => Ok(()),
            other => Err(BlockError::Protocol {
                peer,
                reason: format!("expected Stored, got {other:?}"),
            }),
        }
    }

    /// Fetches a shard; `Ok(None)` when the peer does not have a good copy.
    pub async fn get(
        &self,
        peer: PeerId,
        disk: &str,
        block: &BlockId,
        index: usize,
    ) -> Result<Option<Shard>, BlockError> {
        let request = BlockRequest::Get {
            disk: disk.to_string(),
            block: *block,
            index,
        };
        match self.call(peer, &request).await? {
            BlockReply::Shard(Some(shard)) if shard.index != index || !shard.verify() => {
                Err(BlockError::BadShard { peer })
            }
            BlockReply::Shard(found) => Ok(found),
            other => Err(BlockError::Protocol {
                peer,
                reason: format!("expected a shard, got {other:?}"),
            }),
        }
    }

    /// Which of `shards` the disk of `peer` holds, in order.
    pub async fn has(
        &self,
        peer: PeerId,
        disk: &str,
        shards: Vec<(BlockId, usize)>,
    ) -> Result<Vec<bool>, BlockError> {
        let asked = shards.len();
        let request = BlockRequest::Has {
            disk: disk.to_string(),
            shards,
        };
        match self.call(peer, &request).await? {
            BlockReply::Present(flags) if flags.len() == asked => Ok(flags),
            other => Err(BlockError::Protocol {
                peer,
                reason: format!("expected {asked} presence flags, got {other:?}"),
            }),
        }
    }

    /// Deletes a shard on a peer.
    pub async fn delete(
        &self,
        peer: PeerId,
        disk: &str,
        block: &BlockId,
        index: usize,
    ) -> Result<(), BlockError> {
        let request = BlockRequest::Delete {
            disk: disk.to_string(),
            block: *block,
            index,
        };
        match self.call(peer, &request).await? {
            BlockReply::Deleted => Ok(()),
            other => Err(BlockError::Protocol {
                peer,
                reason: format!("expected Deleted, got {other:?}"),
            }),
        }
    }
}
