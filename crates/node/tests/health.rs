//! The storage health counts kept by `HealthBook` always equal a full scan
//! of the control plane: after object writes, overwrites that share
//! blocks, deletes, shard moves and forgotten stripes, and after holders
//! change state (judged here through a peer-state function, so peers can be
//! "down" or "revoked" without killing anything). In-process, no root.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use coop_state::{
    BlockId, BlockRef, BucketRecord, Command, NewStripe, ObjectRecord, ShardLocation, StateStore,
    StripeLayout, StripeRecord,
};
use coop_store::{HealthBook, HealthReport, scan_health};
use coop_testkit::local::LocalCloud;
use coop_types::{PeerId, PeerState};

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

/// A 1+2 stripe on three of the five fake peers, starting at `first`.
fn stripe(id: u8, first: u8) -> NewStripe {
    NewStripe {
        id: [id; 32],
        stripe: StripeRecord {
            layout: StripeLayout::Erasure { data: 1, parity: 2 },
            len: 10,
            shard_len: 10,
            shards: (0..3)
                .map(|i| ShardLocation {
                    peer: peer(1 + (first + i) % 5),
                    disk: "d".into(),
                    checksum: [0; 32],
                })
                .collect(),
            refs: 0,
            dead_since: None,
        },
    }
}

fn object(blocks: &[u8]) -> ObjectRecord {
    ObjectRecord {
        size: 10 * blocks.len() as u64,
        etag: "e".into(),
        content_type: None,
        metadata: BTreeMap::new(),
        modified_ms: 0,
        blocks: blocks
            .iter()
            .map(|b| BlockRef {
                id: [*b; 32],
                len: 10,
            })
            .collect(),
        parts: Vec::new(),
    }
}

fn same(
    book: &HealthBook,
    store: &StateStore,
    states: &HashMap<PeerId, PeerState>,
) -> Result<HealthReport> {
    let judge = |p: &PeerId| states.get(p).copied().unwrap_or(PeerState::Up);
    let kept = book.report(store, judge)?;
    let scanned = scan_health(store, judge)?;
    assert_eq!(kept, scanned);
    Ok(kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_counts_equal_a_full_scan() -> Result<()> {
    let cloud = LocalCloud::found("node-health").await?;
    let control = cloud.peers[0].control().clone();
    let store = control.store().clone();
    let book = HealthBook::default();
    let mut states: HashMap<PeerId, PeerState> = HashMap::new();

    control
        .write(Command::CreateBucket(BucketRecord {
            name: "bench".into(),
            created_at: 0,
            policy: None,
            zone_spread: false,
            grants: BTreeMap::new(),
            quota: None,
        }))
        .await?;
    let put = |key: &str, blocks: &[u8], stripes: Vec<NewStripe>| Command::PutObject {
        bucket: "bench".into(),
        key: key.into(),
        object: object(blocks),
        stripes,
        now: 1,
    };
    // Built from scratch at first, then followed.
    same(&book, &store, &states)?;
    for i in 0..20u8 {
        control
            .write(put(&format!("o{i}"), &[100 + i], vec![stripe(100 + i, i)]))
            .await?;
    }
    let report = same(&book, &store, &states)?;
    assert_eq!(report.object_count, 20);
    assert_eq!(report.blocks.healthy, 20);

    // A copy shares a block; an overwrite drops its old block.
    control.write(put("copy", &[100, 101], vec![])).await?;
    control
        .write(put("o2", &[200], vec![stripe(200, 3)]))
        .await?;
    same(&book, &store, &states)?;

    // Holders go down, unreachable and revoked: degraded, unavailable, lost.
    states.insert(peer(1), PeerState::Down);
    let report = same(&book, &store, &states)?;
    assert!(report.objects.degraded > 0, "{report:?}");
    states.insert(peer(2), PeerState::Unreachable);
    states.insert(peer(3), PeerState::Down);
    let report = same(&book, &store, &states)?;
    assert!(report.objects.unavailable > 0, "{report:?}");
    states.insert(peer(2), PeerState::Revoked);
    states.insert(peer(3), PeerState::Revoked);
    states.insert(peer(1), PeerState::Revoked);
    let report = same(&book, &store, &states)?;
    assert!(report.objects.lost > 0, "{report:?}");

    // Repair moves shards off the revoked peers; deletes and forgotten
    // stripes take blocks away.
    let moved: BlockId = [100; 32];
    control
        .write(Command::MoveShards {
            block: moved,
            moves: (0..3)
                .map(|i| {
                    (
                        i,
                        ShardLocation {
                            peer: peer(4 + i as u8 % 2),
                            disk: "d".into(),
                            checksum: [0; 32],
                        },
                    )
                })
                .collect(),
        })
        .await?;
    same(&book, &store, &states)?;
    control
        .write(Command::DeleteObjects {
            bucket: "bench".into(),
            keys: vec!["o5".into(), "o6".into(), "missing".into()],
            now: 5,
        })
        .await?;
    control
        .write(Command::ForgetStripes {
            blocks: vec![[105; 32], [106; 32]],
            dead_before: 10,
        })
        .await?;
    let report = same(&book, &store, &states)?;
    assert_eq!(report.object_count, 19);

    // Everyone back: all healthy again.
    states.clear();
    let report = same(&book, &store, &states)?;
    assert_eq!(report.objects.healthy, 19, "{report:?}");
    cloud.shutdown().await;
    Ok(())
}
