//! Where the shards of a stripe go.
//!
//! Every shard of a stripe lands on a different disk, and the stripe is
//! spread as widely as the cloud allows: over zones first, then peers, then
//! disks. So a home box with six disks survives two dead disks, and six
//! peers in three villages survive two dead peers or a whole village with
//! `ec:4+2` laid out two shards per village.
//!
//! Among equally spread choices, rendezvous hashing of the block id picks
//! the disks, which balances load without any shared counter and moves few
//! shards when a disk joins or leaves.

use std::collections::HashMap;

use crate::disk::BlockId;

/// A disk some peer offers, as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskRef {
    /// Unique id of the disk in the cloud (e.g. `<peer>/<path>`).
    pub id: String,
    pub peer: String,
    pub zone: String,
    /// Disks that are full or failing are left out by the caller.
    pub free_bytes: u64,
}

/// Why a stripe cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "a stripe of {width} shards needs {width} distinct disks, but only {available} are usable"
    )]
    NotEnoughDisks { width: usize, available: usize },
}

/// Decides which disks hold the shards of one stripe.
pub trait ShardPlacement: Send + Sync {
    /// Indexes into `disks` for shards `0..width`, all distinct.
    fn place_stripe(
        &self,
        block: &BlockId,
        width: usize,
        disks: &[DiskRef],
    ) -> Result<Vec<usize>, PlacementError>;
}

/// The default: zones, then peers, then disks, rendezvous-hashed.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpreadPlacement;

fn rendezvous(block: &BlockId, disk: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(block);
    h.update(disk.as_bytes());
    *h.finalize().as_bytes()
}

impl ShardPlacement for SpreadPlacement {
    fn place_stripe(
        &self,
        block: &BlockId,
        width: usize,
        disks: &[DiskRef],
    ) -> Result<Vec<usize>, PlacementError> {
        let usable: Vec<usize> = (0..disks.len())
            .filter(|i| disks[*i].free_bytes > 0)
            .collect();
        if usable.len() < width {
            return Err(PlacementError::NotEnoughDisks {
                width,
                available: usable.len(),
            });
        }
        let scores: HashMap<usize, [u8; 32]> = usable
            .iter()
            .map(|i| (*i, rendezvous(block, &disks[*i].id)))
            .collect();
        let mut per_zone: HashMap<&str, usize> = HashMap::new();
        let mut per_peer: HashMap<&str, usize> = HashMap::new();
        let mut chosen: Vec<usize> = Vec::with_capacity(width);
        for _ in 0..width {
            let next = usable
                .iter()
                .filter(|i| !chosen.contains(i))
                .min_by_key(|i| {
                    let d = &disks[**i];
                    (
                        per_zone.get(d.zone.as_str()).copied().unwrap_or(0),
                        per_peer.get(d.peer.as_str()).copied().unwrap_or(0),
                        std::cmp::Reverse(scores[*i]),
                    )
                })
                .copied();
            let Some(i) = next else { break };
            *per_zone.entry(disks[i].zone.as_str()).or_default() += 1;
            *per_peer.entry(disks[i].peer.as_str()).or_default() += 1;
            chosen.push(i);
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn disk(peer: &str, zone: &str, n: usize) -> DiskRef {
        DiskRef {
            id: format!("{peer}/d{n}"),
            peer: peer.into(),
            zone: zone.into(),
            free_bytes: 1 << 30,
        }
    }

    fn block(n: u32) -> BlockId {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    #[test]
    fn spreads_over_zones_then_peers_then_disks() {
        let p = SpreadPlacement;
        // Six peers in three villages: two shards per village, one per peer.
        let disks: Vec<DiskRef> = (0..6)
            .map(|i| disk(&format!("p{i}"), &format!("village{}", i / 2), 0))
            .collect();
        for b in 0..50 {
            let chosen = p.place_stripe(&block(b), 6, &disks).unwrap();
            let peers: HashSet<_> = chosen.iter().map(|i| &disks[*i].peer).collect();
            assert_eq!(peers.len(), 6);
        }
        // ec:1+2 over three villages: one shard per village.
        let chosen = p.place_stripe(&block(7), 3, &disks).unwrap();
        let zones: HashSet<_> = chosen.iter().map(|i| &disks[*i].zone).collect();
        assert_eq!(zones.len(), 3);
        // One box with six disks: six distinct disks.
        let box6: Vec<DiskRef> = (0..6).map(|n| disk("box", "home", n)).collect();
        let chosen = p.place_stripe(&block(1), 6, &box6).unwrap();
        assert_eq!(chosen.iter().collect::<HashSet<_>>().len(), 6);
        // Two peers with three disks each: three shards on each peer.
        let two: Vec<DiskRef> = (0..6)
            .map(|n| disk(&format!("p{}", n % 2), "home", n))
            .collect();
        let chosen = p.place_stripe(&block(2), 6, &two).unwrap();
        let on_p0 = chosen.iter().filter(|i| two[**i].peer == "p0").count();
        assert_eq!(on_p0, 3);
    }

    #[test]
    fn balances_and_refuses_what_cannot_fit() {
        let p = SpreadPlacement;
        let disks: Vec<DiskRef> = (0..10).map(|i| disk(&format!("p{i}"), "z", 0)).collect();
        let mut load = vec![0usize; 10];
        for b in 0..1000 {
            for i in p.place_stripe(&block(b), 3, &disks).unwrap() {
                load[i] += 1;
            }
        }
        // 3000 shards over 10 disks: each near 300.
        assert!(load.iter().all(|l| (200..400).contains(l)), "{load:?}");
        let mut full = disks[..4].to_vec();
        full[0].free_bytes = 0;
        assert_eq!(
            p.place_stripe(&block(0), 4, &full),
            Err(PlacementError::NotEnoughDisks {
                width: 4,
                available: 3
            })
        );
    }
}
