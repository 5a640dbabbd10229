//! The health of stored data: each block by which holders of its shards
//! are up, each object as bad as its worst block.
//!
//! Today this is a scan of every stripe and object record of the local
//! replica ([`scan_health`]); keeping the counts as writes, repairs and
//! liveness changes happen, so that reading them costs nothing, is the
//! next step (tracked in the refactoring issue).

use std::collections::HashMap;

use coop_state::{StateStore, StoreError};
use coop_types::{PeerId, PeerState};

/// How bad one block (or object) is, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Every shard's holder is up.
    Healthy,
    /// Readable, but some shards are on peers that are not up (repair
    /// restores them).
    Degraded,
    /// Fewer shards on live peers than a read needs; readable again when
    /// enough of the missing holders come back.
    Unavailable,
    /// Fewer shards than a read needs even counting holders that are only
    /// unreachable or down: too many holders are revoked. Lost for good.
    Lost,
}

/// How many blocks (or objects) are in each [`Health`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthCounts {
    pub healthy: u64,
    pub degraded: u64,
    pub unavailable: u64,
    pub lost: u64,
}

impl HealthCounts {
    fn count(&mut self, health: Health) {
        match health {
            Health::Healthy => self.healthy += 1,
            Health::Degraded => self.degraded += 1,
            Health::Unavailable => self.unavailable += 1,
            Health::Lost => self.lost += 1,
        }
    }
}

/// The health of everything the cloud stores, as one replica sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// Blocks in use (referenced by an object, a part or a template).
    pub blocks: HealthCounts,
    /// Objects by the health of their worst block.
    pub objects: HealthCounts,
    pub object_count: u64,
    pub object_bytes: u64,
}

/// The health of a block whose shards sit on peers in `states`, of which
/// a read needs `needed`.
pub fn block_health(states: &[PeerState], needed: usize) -> Health {
    let up = states.iter().filter(|s| **s == PeerState::Up).count();
    let kept = states.iter().filter(|s| **s != PeerState::Revoked).count();
    if up == states.len() {
        Health::Healthy
    } else if up >= needed {
        Health::Degraded
    } else if kept >= needed {
        Health::Unavailable
    } else {
        Health::Lost
    }
}

/// Reads every stripe and object record of `store` and judges each by
/// `peer_state`.
pub fn scan_health(
    store: &StateStore,
    peer_state: impl Fn(&PeerId) -> PeerState,
) -> Result<HealthReport, StoreError> {
    let mut report = HealthReport::default();
    let mut health_of = HashMap::new();
    for (id, stripe) in store.stripes()? {
        if stripe.refs == 0 {
            continue;
        }
        let states: Vec<PeerState> = stripe.shards.iter().map(|s| peer_state(&s.peer)).collect();
        let health = block_health(&states, stripe.layout.needed());
        report.blocks.count(health);
        health_of.insert(id, health);
    }
    for bucket in store.buckets()? {
        let mut after: Option<String> = None;
        loop {
            let page = store.list_objects(&bucket.name, "", after.as_deref(), 1000)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, object) in &page {
                report.object_count += 1;
                report.object_bytes += object.size;
                let worst = object
                    .blocks
                    .iter()
                    .map(|b| health_of.get(&b.id).copied().unwrap_or(Health::Lost))
                    .max()
                    .unwrap_or(Health::Healthy);
                report.objects.count(worst);
            }
        }
    }
    Ok(report)
}

/// Objects and bytes in `bucket`, counted from the local replica.
pub fn bucket_usage(store: &StateStore, bucket: &str) -> Result<(u64, u64), StoreError> {
    let (mut objects, mut bytes) = (0u64, 0u64);
    let mut after: Option<String> = None;
    loop {
        let page = store.list_objects(bucket, "", after.as_deref(), 1000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        objects += page.len() as u64;
        bytes += page.iter().map(|(_, o)| o.size).sum::<u64>();
    }
    Ok((objects, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerState::{Down, Revoked, Unreachable, Up};

    #[test]
    fn blocks_are_judged_by_their_holders() {
        // 1+2: a read needs one shard.
        assert_eq!(block_health(&[Up, Up, Up], 1), Health::Healthy);
        assert_eq!(block_health(&[Up, Down, Unreachable], 1), Health::Degraded);
        assert_eq!(
            block_health(&[Down, Down, Unreachable], 1),
            Health::Unavailable
        );
        assert_eq!(block_health(&[Revoked, Revoked, Revoked], 1), Health::Lost);
        // 4+2: a read needs four.
        assert_eq!(
            block_health(&[Up, Up, Up, Down, Revoked, Revoked], 4),
            Health::Unavailable
        );
        assert_eq!(
            block_health(&[Up, Up, Up, Revoked, Revoked, Revoked], 4),
            Health::Lost
        );
    }
}
