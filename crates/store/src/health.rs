//! The health of stored data: each block by which holders of its shards
//! are up, each object as bad as its worst block.
//!
//! [`HealthBook`] keeps the counts: it follows the rows the state machine
//! changed (its change journal) and the peers whose state changed, and
//! rejudges only the blocks and objects those touch, so a report costs
//! what changed since the last one, not what the cloud stores.
//! [`scan_health`] judges everything from scratch; the book starts from
//! it and falls back to it when the journal resets.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use coop_state::{
    BlockId, ChangedRow, ObjectRecord, StateStore, StoreError, StripeRecord, object_row,
};
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
        *self.slot(health) += 1;
    }

    fn uncount(&mut self, health: Health) {
        let slot = self.slot(health);
        *slot = slot.saturating_sub(1);
    }

    fn slot(&mut self, health: Health) -> &mut u64 {
        match health {
            Health::Healthy => &mut self.healthy,
            Health::Degraded => &mut self.degraded,
            Health::Unavailable => &mut self.unavailable,
            Health::Lost => &mut self.lost,
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
        each_object(store, &bucket.name, |_, object| {
            report.object_count += 1;
            report.object_bytes += object.size;
            let worst = object
                .blocks
                .iter()
                .map(|b| health_of.get(&b.id).copied().unwrap_or(Health::Lost))
                .max()
                .unwrap_or(Health::Healthy);
            report.objects.count(worst);
        })?;
    }
    Ok(report)
}

/// Calls `visit` with every object of `bucket` (its key and record), in
/// key order, reading the local replica a page at a time.
fn each_object(
    store: &StateStore,
    bucket: &str,
    mut visit: impl FnMut(String, ObjectRecord),
) -> Result<(), StoreError> {
    let mut after: Option<String> = None;
    loop {
        let page = store.list_objects(bucket, "", after.as_deref(), 1000)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        for (key, object) in page {
            visit(key, object);
        }
    }
}

/// A block in use, as the book knows it.
struct BlockEntry {
    holders: Vec<PeerId>,
    needed: usize,
    health: Health,
}

/// An object, as the book knows it.
struct ObjectEntry {
    blocks: Vec<BlockId>,
    size: u64,
    health: Health,
}

/// The kept state behind the counts.
#[derive(Default)]
struct Book {
    blocks: HashMap<BlockId, BlockEntry>,
    /// Object row key to entry.
    objects: HashMap<String, ObjectEntry>,
    /// Which objects use a block.
    users: HashMap<BlockId, Vec<String>>,
    /// Which blocks have a shard on a peer.
    by_peer: HashMap<PeerId, HashSet<BlockId>>,
    /// Each holder's state when its blocks were last judged.
    peers: HashMap<PeerId, PeerState>,
    report: HealthReport,
}

/// Health counts kept up to date from the control plane's change journal
/// and the peers' states; see the module docs.
#[derive(Default)]
pub struct HealthBook {
    book: Mutex<Book>,
}

impl HealthBook {
    /// The health of everything stored, as of now: applies what changed
    /// since the last call and rejudges the blocks of peers whose state
    /// changed.
    pub fn report(
        &self,
        store: &StateStore,
        peer_state: impl Fn(&PeerId) -> PeerState,
    ) -> Result<HealthReport, StoreError> {
        let Ok(mut book) = self.book.lock() else {
            return scan_health(store, peer_state);
        };
        let changes = store.drain_changes();
        if changes.reset {
            *book = Book::build(store, &peer_state)?;
        } else {
            let mut objects = Vec::new();
            for row in changes.rows {
                match store.changed_row(&row)? {
                    ChangedRow::Stripe { id, record } => {
                        book.set_block(id, record.filter(|r| r.refs > 0), &peer_state)
                    }
                    ChangedRow::Object { record } => objects.push((row, record)),
                    ChangedRow::Other => {}
                }
            }
            // Objects after stripes: an object is judged by its blocks
            // as they are now.
            for (row, record) in objects {
                book.set_object(row, record);
            }
        }
        book.follow_peers(&peer_state);
        Ok(book.report.clone())
    }
}

impl Book {
    fn build(
        store: &StateStore,
        peer_state: &impl Fn(&PeerId) -> PeerState,
    ) -> Result<Book, StoreError> {
        let mut book = Book::default();
        for (id, stripe) in store.stripes()? {
            if stripe.refs > 0 {
                book.set_block(id, Some(stripe), peer_state);
            }
        }
        for bucket in store.buckets()? {
            each_object(store, &bucket.name, |key, object| {
                book.set_object(object_row(&bucket.name, &key), Some(object));
            })?;
        }
        Ok(book)
    }

    /// Records (or, with `None`, forgets) a block in use.
    fn set_block(
        &mut self,
        id: BlockId,
        stripe: Option<StripeRecord>,
        peer_state: &impl Fn(&PeerId) -> PeerState,
    ) {
        if let Some(old) = self.blocks.remove(&id) {
            self.report.blocks.uncount(old.health);
            for peer in &old.holders {
                if let Some(set) = self.by_peer.get_mut(peer) {
                    set.remove(&id);
                }
            }
        }
        if let Some(stripe) = stripe {
            let holders: Vec<PeerId> = stripe.shards.iter().map(|s| s.peer).collect();
            let states: Vec<PeerState> = holders
                .iter()
                .map(|p| {
                    let state = peer_state(p);
                    self.peers.insert(*p, state);
                    state
                })
                .collect();
            let health = block_health(&states, stripe.layout.needed());
            for peer in &holders {
                self.by_peer.entry(*peer).or_default().insert(id);
            }
            self.report.blocks.count(health);
            self.blocks.insert(
                id,
                BlockEntry {
                    holders,
                    needed: stripe.layout.needed(),
                    health,
                },
            );
        }
        self.rejudge_users(&id);
    }

    /// Records (or, with `None`, forgets) the object at `row`.
    fn set_object(&mut self, row: String, object: Option<ObjectRecord>) {
        if let Some(old) = self.objects.remove(&row) {
            self.report.objects.uncount(old.health);
            self.report.object_count = self.report.object_count.saturating_sub(1);
            self.report.object_bytes = self.report.object_bytes.saturating_sub(old.size);
            for block in &old.blocks {
                if let Some(users) = self.users.get_mut(block) {
                    users.retain(|u| *u != row);
                    if users.is_empty() {
                        self.users.remove(block);
                    }
                }
            }
        }
        let Some(object) = object else { return };
        let blocks: Vec<BlockId> = object.blocks.iter().map(|b| b.id).collect();
        let health = self.worst(&blocks);
        for block in &blocks {
            self.users.entry(*block).or_default().push(row.clone());
        }
        self.report.objects.count(health);
        self.report.object_count += 1;
        self.report.object_bytes += object.size;
        self.objects.insert(
            row,
            ObjectEntry {
                blocks,
                size: object.size,
                health,
            },
        );
    }

    /// The health of an object made of `blocks`: its worst block's, and a
    /// block the book does not know is lost.
    fn worst(&self, blocks: &[BlockId]) -> Health {
        blocks
            .iter()
            .map(|b| self.blocks.get(b).map_or(Health::Lost, |e| e.health))
            .max()
            .unwrap_or(Health::Healthy)
    }

    /// Judges again the objects that use `block`.
    fn rejudge_users(&mut self, block: &BlockId) {
        let Some(users) = self.users.get(block).cloned() else {
            return;
        };
        for row in users {
            let Some(blocks) = self.objects.get(&row).map(|o| o.blocks.clone()) else {
                continue;
            };
            let health = self.worst(&blocks);
            if let Some(entry) = self.objects.get_mut(&row)
                && entry.health != health
            {
                let old = std::mem::replace(&mut entry.health, health);
                self.report.objects.uncount(old);
                self.report.objects.count(health);
            }
        }
    }

    /// Rejudges the blocks of every holder whose state changed since its
    /// blocks were last judged.
    fn follow_peers(&mut self, peer_state: &impl Fn(&PeerId) -> PeerState) {
        let changed: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(peer, was)| peer_state(peer) != **was)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in changed {
            self.peers.insert(peer, peer_state(&peer));
            let blocks: Vec<BlockId> = self
                .by_peer
                .get(&peer)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for id in blocks {
                let Some(entry) = self.blocks.get(&id) else {
                    continue;
                };
                let states: Vec<PeerState> = entry.holders.iter().map(peer_state).collect();
                let health = block_health(&states, entry.needed);
                if health == entry.health {
                    continue;
                }
                self.report.blocks.uncount(entry.health);
                self.report.blocks.count(health);
                if let Some(entry) = self.blocks.get_mut(&id) {
                    entry.health = health;
                }
                self.rejudge_users(&id);
            }
        }
    }
}

/// Objects and bytes in `bucket`, counted from the local replica.
pub fn bucket_usage(store: &StateStore, bucket: &str) -> Result<(u64, u64), StoreError> {
    let (mut objects, mut bytes) = (0u64, 0u64);
    each_object(store, bucket, |_, object| {
        objects += 1;
        bytes += object.size;
    })?;
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
