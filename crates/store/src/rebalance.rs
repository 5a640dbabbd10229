//! Evening out disk fill. When capacity joins a cloud whose stripes already
//! have one shard per peer, repair has nothing to do, yet the new disks
//! sit empty while the old ones fill up. Each repair pass therefore also
//! plans a few moves: a shard on a disk fuller than the cloud's mean goes
//! to a disk emptier than the mean, as long as the two differ by more than
//! [`TOLERANCE`] of the mean and the move does not turn them around.
//!
//! A move never weakens the stripe: the new disk is on a peer that holds
//! no other shard of it (or, in a one-box cloud, the same peer, on a disk
//! without one), and in a zone that then holds no more of the stripe than
//! the zone it leaves. Planned moves update the fill figures at once, so a
//! pass does not overshoot; a few moves per pass keep it gentle.

use std::collections::HashMap;

use coop_state::{BlockId, StripeRecord};
use coop_types::PeerId;

use crate::stripes::ClusterDisk;

/// How far from the mean fill a disk may be before shards move.
pub const TOLERANCE: f64 = 0.10;
/// Below this much stored data in the whole cloud nothing moves.
pub const MIN_STORED_BYTES: u64 = 8 << 20;

/// One planned move: shard `index` of block `block` to `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Move {
    pub block: BlockId,
    pub index: usize,
    pub target: ClusterDisk,
}

type DiskKey = (PeerId, String);

/// Plans at most `limit` moves over `stripes`, against the fill of `disks`.
pub(crate) fn plan(
    stripes: &[(BlockId, &StripeRecord)],
    disks: &[ClusterDisk],
    limit: usize,
) -> Vec<Move> {
    let usable: Vec<&ClusterDisk> = disks.iter().filter(|d| d.total_bytes > 0).collect();
    let total: u64 = usable.iter().map(|d| d.total_bytes).sum();
    let stored: u64 = usable.iter().map(|d| d.used_bytes).sum();
    if total == 0 || stored < MIN_STORED_BYTES || limit == 0 {
        return Vec::new();
    }
    let mean = stored as f64 / total as f64;
    let gap = mean * TOLERANCE;
    let mut used: HashMap<DiskKey, (u64, u64)> = usable
        .iter()
        .map(|d| ((d.peer, d.disk.clone()), (d.used_bytes, d.total_bytes)))
        .collect();
    let fill = |used: &HashMap<DiskKey, (u64, u64)>, key: &DiskKey| {
        used.get(key)
            .map(|(u, t)| *u as f64 / *t as f64)
            .unwrap_or(f64::NAN)
    };
    let mut moves = Vec::new();
    for (block, stripe) in stripes {
        if moves.len() >= limit {
            break;
        }
        let size = u64::from(stripe.shard_len);
        // The fullest holder that is over the line.
        let from = stripe
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| (i, (s.peer, s.disk.clone())))
            .filter(|(_, key)| fill(&used, key) > mean)
            .max_by(|a, b| fill(&used, &a.1).total_cmp(&fill(&used, &b.1)));
        let Some((index, from_key)) = from else {
            continue;
        };
        let zone_of = |peer: &PeerId| {
            usable
                .iter()
                .find(|d| d.peer == *peer)
                .map(|d| d.zone.as_str())
        };
        let from_zone = zone_of(&from_key.0);
        let in_zone = |zone: Option<&str>| {
            stripe
                .shards
                .iter()
                .enumerate()
                .filter(|(i, s)| *i != index && zone_of(&s.peer) == zone)
                .count()
        };
        let target = usable
            .iter()
            .filter(|d| fill(&used, &(d.peer, d.disk.clone())) < mean && d.free_bytes > size)
            .filter(|d| {
                let holds_peer = stripe
                    .shards
                    .iter()
                    .enumerate()
                    .any(|(i, s)| i != index && s.peer == d.peer);
                let holds_disk = stripe
                    .shards
                    .iter()
                    .any(|s| s.peer == d.peer && s.disk == d.disk);
                !holds_disk && (!holds_peer || d.peer == from_key.0)
            })
            .filter(|d| {
                let zone = Some(d.zone.as_str());
                zone == from_zone || in_zone(zone) < in_zone(from_zone)
            })
            .min_by(|a, b| {
                fill(&used, &(a.peer, a.disk.clone()))
                    .total_cmp(&fill(&used, &(b.peer, b.disk.clone())))
            });
        let Some(target) = target else {
            continue;
        };
        let target_key = (target.peer, target.disk.clone());
        let (from_fill, to_fill) = (fill(&used, &from_key), fill(&used, &target_key));
        let shift_of = |key: &DiskKey| used.get(key).map_or(0.0, |(_, t)| size as f64 / *t as f64);
        if from_fill - to_fill <= gap
            || from_fill - shift_of(&from_key) < to_fill + shift_of(&target_key)
        {
            continue;
        }
        if let Some(entry) = used.get_mut(&from_key) {
            entry.0 = entry.0.saturating_sub(size);
        }
        if let Some(entry) = used.get_mut(&(target.peer, target.disk.clone())) {
            entry.0 += size;
        }
        moves.push(Move {
            block: *block,
            index,
            target: (*target).clone(),
        });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use coop_state::{ShardLocation, StripeLayout};

    fn disk(peer: u8, zone: &str, used_mib: u64) -> ClusterDisk {
        ClusterDisk {
            peer: PeerId([peer; 32]),
            zone: zone.into(),
            disk: "d".into(),
            free_bytes: 1 << 40,
            used_bytes: used_mib << 20,
            total_bytes: 1 << 30,
        }
    }

    fn stripe(peers: &[u8]) -> StripeRecord {
        StripeRecord {
            layout: StripeLayout::Erasure {
                data: 1,
                parity: (peers.len() - 1) as u16,
            },
            len: 1 << 20,
            shard_len: 1 << 20,
            shards: peers
                .iter()
                .map(|p| ShardLocation {
                    peer: PeerId([*p; 32]),
                    disk: "d".into(),
                    checksum: [0; 32],
                })
                .collect(),
            refs: 1,
            dead_since: None,
        }
    }

    #[test]
    fn a_new_peer_gets_shards_until_fill_evens_out() {
        // Three peers with 32 MiB each, a fourth empty one.
        let disks = vec![
            disk(1, "a", 32),
            disk(2, "a", 32),
            disk(3, "a", 32),
            disk(4, "a", 0),
        ];
        let records: Vec<StripeRecord> = (0..32).map(|_| stripe(&[1, 2, 3])).collect();
        let stripes: Vec<(BlockId, &StripeRecord)> = records
            .iter()
            .enumerate()
            .map(|(i, s)| ([i as u8; 32], s))
            .collect();
        let moves = plan(&stripes, &disks, 1000);
        // Mean 24 MiB: moves go on while the fullest and the emptiest
        // differ by more than 2.4 MiB.
        assert!((21..=24).contains(&moves.len()), "{}", moves.len());
        assert!(moves.iter().all(|m| m.target.peer == PeerId([4; 32])));
        // Never two shards of one stripe moved in a pass.
        let mut blocks: Vec<BlockId> = moves.iter().map(|m| m.block).collect();
        blocks.dedup();
        assert_eq!(blocks.len(), moves.len());
        // The old peers give evenly: none is left over the high line by much.
        for peer in 1..=3u8 {
            let given = moves
                .iter()
                .filter(|m| records[0].shards[m.index].peer == PeerId([peer; 32]))
                .count();
            assert!((6..=9).contains(&given), "peer {peer} gave {given}");
        }
        // The limit holds.
        assert_eq!(plan(&stripes, &disks, 5).len(), 5);
    }

    #[test]
    fn balanced_or_tiny_clouds_move_nothing() {
        let even = vec![disk(1, "a", 30), disk(2, "a", 31), disk(3, "a", 29)];
        let record = stripe(&[1, 2, 3]);
        assert!(plan(&[([0; 32], &record)], &even, 10).is_empty());
        let tiny = vec![disk(1, "a", 3), disk(2, "a", 0), disk(3, "a", 0)];
        let record = stripe(&[1]);
        assert!(plan(&[([0; 32], &record)], &tiny, 10).is_empty());
    }

    #[test]
    fn moves_keep_peers_distinct_and_zones_no_more_crowded() {
        // Peer 4 is the only disk under the mean, but it already holds a
        // shard of this stripe.
        let disks = vec![disk(1, "a", 40), disk(2, "b", 40), disk(4, "c", 0)];
        let record = stripe(&[1, 4]);
        assert!(plan(&[([0; 32], &record)], &disks, 10).is_empty());
        // Peer 4 is in zone `a`, which already holds another shard of the
        // stripe (on peer 5), while the shard leaves zone `b`, which holds
        // none besides it: refused.
        let disks = vec![
            disk(2, "b", 40),
            disk(5, "a", 10),
            disk(6, "c", 10),
            disk(4, "a", 0),
        ];
        let record = stripe(&[2, 5]);
        assert!(plan(&[([0; 32], &record)], &disks, 10).is_empty());
        // Into its own zone is fine.
        let disks = vec![
            disk(2, "b", 40),
            disk(5, "a", 10),
            disk(6, "c", 10),
            disk(4, "b", 0),
        ];
        let moves = plan(&[([0; 32], &record)], &disks, 10);
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].target.peer, PeerId([4; 32]));
    }
}
