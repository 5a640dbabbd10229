//! Background upkeep of stored blocks: repair restores full redundancy,
//! scrub finds rot in data nobody reads.
//!
//! Repair: every pass, each peer looks after the stripes it coordinates (the
//! live holder with the smallest peer id, so exactly one live peer acts on
//! each stripe). It asks the holders which shards they still have, rebuilds
//! missing ones in place, and moves shards whose holder is gone for good
//! (down past the grace, or revoked) to another disk, recording the move in
//! the control plane. It also moves a few shards from disks fuller than the
//! cloud's mean onto emptier ones (see `rebalance`), so capacity that joins
//! takes its share of existing data. Work is throttled between stripes.
//!
//! Scrub: every pass, each peer reads every shard on its own disks and
//! checks its checksum; a corrupt shard is deleted, which the next repair
//! pass sees as missing and rebuilds from the other shards.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info, warn};

use coop_state::{BlockId, Command, ControlPlane, ShardLocation, StripeRecord};
use coop_types::{EventLog, EventView, PeerId};

use crate::disk::DiskError;
use crate::placement::DiskRef;
use crate::rebalance;
use crate::stripes::{ClusterDisk, Stripes, code};

/// Most shards one peer moves for balance in one repair pass.
const REBALANCE_PER_PASS: usize = 32;

/// How often and how gently the upkeep loops run.
#[derive(Clone, Copy, Debug)]
pub struct UpkeepConfig {
    /// Time between the starts of two repair passes.
    pub repair_interval: Duration,
    /// Pause after each stripe repaired, so repair never crowds out
    /// clients: at 20 ms a peer rebuilds at most 50 blocks a second.
    pub repair_pause: Duration,
    /// Time between two scrub passes over this peer's disks.
    pub scrub_interval: Duration,
    /// How old an unneeded shard must be before garbage collection deletes
    /// it; collection runs every quarter of it (at most every 10 minutes).
    pub gc_grace: Duration,
    /// Pause after each shard scrubbed.
    pub scrub_pause: Duration,
    /// Multipart uploads neither completed nor aborted for this long are
    /// aborted by the leader, and their parts' blocks collected.
    pub upload_expiry: Duration,
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        UpkeepConfig {
            repair_interval: Duration::from_secs(30),
            repair_pause: Duration::from_millis(20),
            scrub_interval: Duration::from_secs(24 * 3600),
            gc_grace: Duration::from_secs(3600),
            scrub_pause: Duration::from_millis(2),
            upload_expiry: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What one stripe needs.
struct Needs {
    id: BlockId,
    stripe: StripeRecord,
    /// Shards whose live holder no longer has them.
    missing: Vec<usize>,
    /// Shards whose holder is gone for good.
    homeless: Vec<usize>,
    /// A shard sharing its peer with another shard of the stripe while
    /// some live peer holds none: moved there to spread the stripe.
    crowded: Option<usize>,
    /// A shard on a disk fuller than the mean, and the emptier disk it
    /// moves to.
    rebalance: Option<(usize, ClusterDisk)>,
}

impl Stripes {
    /// The peer that repairs `stripe`: its live holder with the smallest id.
    fn coordinator(&self, stripe: &StripeRecord) -> Option<PeerId> {
        stripe
            .shards
            .iter()
            .map(|s| s.peer)
            .filter(|p| *p == self.me || self.view.is_up(p))
            .min()
    }

    /// Asks every live holder which shards of `stripes` it still has.
    async fn presence(
        &self,
        stripes: &[(BlockId, StripeRecord)],
    ) -> BTreeMap<(BlockId, usize), bool> {
        let mut asks: BTreeMap<(PeerId, String), Vec<(BlockId, usize)>> = BTreeMap::new();
        for (id, stripe) in stripes {
            for (index, at) in stripe.shards.iter().enumerate() {
                if at.peer == self.me || self.view.is_up(&at.peer) {
                    asks.entry((at.peer, at.disk.clone()))
                        .or_default()
                        .push((*id, index));
                }
            }
        }
        let mut found = BTreeMap::new();
        for ((peer, disk), shards) in asks {
            let flags = if peer == self.me {
                let local = self.local.clone();
                let asked = shards.clone();
                tokio::task::spawn_blocking(move || match local.get(&disk) {
                    Some(d) => asked.iter().map(|(b, i)| d.store.has(b, *i)).collect(),
                    None => vec![false; asked.len()],
                })
                .await
                .ok()
            } else {
                match self.client.has(peer, &disk, shards.clone()).await {
                    Ok(flags) => Some(flags),
                    Err(err) => {
                        debug!(peer = %peer.short(), %err, "cannot ask a holder for its shards");
                        None
                    }
                }
            };
            // A holder that cannot be asked is left alone this pass.
            if let Some(flags) = flags {
                for (shard, present) in shards.into_iter().zip(flags) {
                    found.insert(shard, present);
                }
            }
        }
        found
    }

    /// One repair pass over the stripes this peer coordinates.
    pub async fn repair_pass(&self, control: &ControlPlane, pause: Duration) -> RepairReport {
        let mut report = RepairReport::default();
        let all = match control.store().stripes() {
            Ok(all) => all,
            Err(err) => {
                warn!(%err, "repair cannot read the stripe table");
                return report;
            }
        };
        let mine: Vec<(BlockId, StripeRecord)> = all
            .into_iter()
            .filter(|(_, s)| s.refs > 0 && self.coordinator(s) == Some(self.me))
            .collect();
        let present = self.presence(&mine).await;
        let live_peers: HashSet<PeerId> = self
            .view
            .disks()
            .into_iter()
            .filter(|d| d.free_bytes > 0)
            .map(|d| d.peer)
            .collect();
        let mut needs = Vec::new();
        let mut calm = Vec::new();
        for (id, stripe) in mine {
            let mut missing = Vec::new();
            let mut homeless = Vec::new();
            for (index, at) in stripe.shards.iter().enumerate() {
                if at.peer != self.me && self.view.is_gone(&at.peer) {
                    homeless.push(index);
                } else if present.get(&(id, index)) == Some(&false) {
                    missing.push(index);
                }
            }
            let crowded = if missing.is_empty() && homeless.is_empty() {
                crowded_shard(&stripe, &live_peers)
            } else {
                None
            };
            if !missing.is_empty() || !homeless.is_empty() || crowded.is_some() {
                needs.push(Needs {
                    id,
                    stripe,
                    missing,
                    homeless,
                    crowded,
                    rebalance: None,
                });
            } else {
                calm.push((id, stripe));
            }
        }
        let calm_refs: Vec<(BlockId, &StripeRecord)> =
            calm.iter().map(|(id, s)| (*id, s)).collect();
        let moves = rebalance::plan(&calm_refs, &self.view.disks(), REBALANCE_PER_PASS);
        if !moves.is_empty() {
            info!(
                shards = moves.len(),
                "moving shards from fuller disks to emptier ones"
            );
        }
        for mv in moves {
            if let Some((_, stripe)) = calm.iter().find(|(id, _)| *id == mv.block) {
                needs.push(Needs {
                    id: mv.block,
                    stripe: stripe.clone(),
                    missing: Vec::new(),
                    homeless: Vec::new(),
                    crowded: None,
                    rebalance: Some((mv.index, mv.target)),
                });
            }
        }
        self.metrics
            .repair_pending
            .store(needs.len() as u64, Ordering::Relaxed);
        let repairs = needs.iter().filter(|n| n.rebalance.is_none()).count();
        if repairs > 0 {
            info!(stripes = repairs, "repairing blocks that lost shards");
        }
        for need in needs {
            let balance = need.rebalance.is_some();
            if !balance {
                report.blocks += 1;
            }
            match self.repair_stripe(control, &need).await {
                Ok(n) if balance => report.rebalanced += n,
                Ok(n) => report.shards += n,
                Err(err) => {
                    warn!(%err, "could not repair a block; will retry next pass");
                    report.failed += 1;
                }
            }
            self.metrics.repair_pending.fetch_sub(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
        }
        self.metrics.repair_passes.fetch_add(1, Ordering::Relaxed);
        report
    }

    async fn repair_stripe(&self, control: &ControlPlane, need: &Needs) -> Result<usize, String> {
        let block = self
            .read_shards(&need.id, &need.stripe)
            .await
            .map_err(|e| e.to_string())?;
        let layout = need.stripe.layout;
        let shards = tokio::task::spawn_blocking(move || code(layout, &block))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut fixed = 0;
        for &index in &need.missing {
            let at = &need.stripe.shards[index];
            let shard = shards.get(index).ok_or("re-coding gave too few shards")?;
            if shard.checksum != at.checksum {
                return Err(format!("re-coded shard {index} differs from its record"));
            }
            self.put_shard(at.peer, at.disk.clone(), need.id, shard.clone())
                .await?;
            self.metrics.shard_rebuilt();
            fixed += 1;
        }
        if let Some((index, target)) = &need.rebalance {
            let shard = shards.get(*index).ok_or("re-coding gave too few shards")?;
            self.relocate(control, need, *index, target, shard.clone())
                .await?;
            self.metrics
                .rebalanced_shards
                .fetch_add(1, Ordering::Relaxed);
            return Ok(fixed + 1);
        }
        let moving: Vec<usize> = need.homeless.iter().copied().chain(need.crowded).collect();
        if moving.is_empty() {
            return Ok(fixed);
        }
        // New homes: disks that hold no other shard of this stripe, spread
        // like a fresh placement would. A crowded shard moves only to a
        // peer that holds none of the stripe yet.
        let kept: Vec<&ShardLocation> = need
            .stripe
            .shards
            .iter()
            .enumerate()
            .filter(|(i, _)| !moving.contains(i))
            .map(|(_, s)| s)
            .collect();
        let disks = self.view.disks();
        let candidates: Vec<ClusterDisk> = disks
            .iter()
            .filter(|d| d.free_bytes > 0)
            .filter(|d| !kept.iter().any(|k| k.peer == d.peer && k.disk == d.disk))
            .filter(|d| {
                need.crowded.is_none() || !need.stripe.shards.iter().any(|s| s.peer == d.peer)
            })
            .cloned()
            .collect();
        let candidates = least_shared(&kept, &disks, candidates, moving.len());
        let refs: Vec<DiskRef> = candidates
            .iter()
            .map(|d| DiskRef {
                id: format!("{}/{}", d.peer, d.disk),
                peer: d.peer.to_string(),
                zone: d.zone.clone(),
                free_bytes: d.free_bytes,
            })
            .collect();
        let Ok(homes) = self.placement.place_stripe(&need.id, moving.len(), &refs) else {
            return Err(format!(
                "no disk left to move {} shard(s) of a block to; it stays as it is",
                moving.len()
            ));
        };
        let mut moves = Vec::new();
        for (&index, home) in moving.iter().zip(homes) {
            let disk = &candidates[home];
            let shard = shards.get(index).ok_or("re-coding gave too few shards")?;
            self.put_shard(disk.peer, disk.disk.clone(), need.id, shard.clone())
                .await?;
            moves.push((
                index as u32,
                ShardLocation {
                    peer: disk.peer,
                    disk: disk.disk.clone(),
                    checksum: shard.checksum,
                },
            ));
        }
        let moved = moves.len();
        control
            .write(Command::MoveShards {
                block: need.id,
                moves,
            })
            .await
            .map_err(|e| e.to_string())?;
        self.metrics
            .moved_shards
            .fetch_add(moved as u64, Ordering::Relaxed);
        // The crowded shard's old copy is garbage now; its holder is alive,
        // so delete it at once (collection would, later).
        if let Some(index) = need.crowded {
            let old = &need.stripe.shards[index];
            if let Err(err) = self.delete_shard(old.peer, &old.disk, need.id, index).await {
                debug!(%err, "could not delete a moved shard; garbage collection will");
            }
        }
        Ok(fixed + moved)
    }

    /// Puts shard `index` of a healthy stripe on `target`, records the
    /// move, and deletes the old copy.
    async fn relocate(
        &self,
        control: &ControlPlane,
        need: &Needs,
        index: usize,
        target: &ClusterDisk,
        shard: crate::erasure::Shard,
    ) -> Result<(), String> {
        let checksum = shard.checksum;
        if checksum != need.stripe.shards[index].checksum {
            return Err(format!("re-coded shard {index} differs from its record"));
        }
        self.put_shard(target.peer, target.disk.clone(), need.id, shard)
            .await?;
        let home = ShardLocation {
            peer: target.peer,
            disk: target.disk.clone(),
            checksum,
        };
        control
            .write(Command::MoveShards {
                block: need.id,
                moves: vec![(index as u32, home)],
            })
            .await
            .map_err(|e| e.to_string())?;
        let old = &need.stripe.shards[index];
        if let Err(err) = self.delete_shard(old.peer, &old.disk, need.id, index).await {
            debug!(%err, "could not delete a rebalanced shard; garbage collection will");
        }
        Ok(())
    }

    /// One scrub pass over this peer's disks: every shard read and checked;
    /// corrupt ones are deleted for repair to rebuild. Returns how many
    /// corrupt shards it found.
    pub async fn scrub_pass(&self, pause: Duration) -> usize {
        let mut corrupt = 0;
        for disk in self.local.iter() {
            let listed = {
                let store = disk.store.clone();
                tokio::task::spawn_blocking(move || store.list()).await
            };
            let Ok(Ok(shards)) = listed else {
                warn!(disk = %disk.id, "scrub cannot list the disk");
                continue;
            };
            for (block, index) in shards {
                let store = disk.store.clone();
                let checked = tokio::task::spawn_blocking(move || match store.get(&block, index) {
                    Err(DiskError::Corrupt { path, reason }) => {
                        warn!(path = %path.display(), %reason, "scrub found a corrupt shard; deleting it for repair");
                        let _ = store.delete(&block, index);
                        true
                    }
                    _ => false,
                })
                .await;
                self.metrics.shard_scrubbed();
                if checked.unwrap_or(false) {
                    self.metrics.corrupt_shard();
                    corrupt += 1;
                }
                tokio::time::sleep(pause).await;
            }
            disk.recount();
        }
        corrupt
    }
}

/// What one repair pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Blocks that had lost shards, or had some on a gone or crowded peer.
    pub blocks: usize,
    /// Shards rebuilt or moved for them.
    pub shards: usize,
    /// Shards moved from fuller disks to emptier ones.
    pub rebalanced: usize,
    /// Blocks that could not be repaired or moved this pass.
    pub failed: usize,
}

impl RepairReport {
    /// The events a pass is worth: none when it had nothing to do.
    fn events(&self, peer: &str) -> Vec<EventView> {
        let mut events = Vec::new();
        if self.blocks > 0 {
            let mut message = format!(
                "{peer} rebuilt or moved {} shard(s) of {} block(s) that had lost redundancy",
                self.shards, self.blocks
            );
            if self.failed > 0 {
                message.push_str(&format!("; {} will be tried again", self.failed));
            }
            events.push(EventView::now("repaired", peer, message));
        }
        if self.rebalanced > 0 {
            events.push(EventView::now(
                "rebalanced",
                peer,
                format!(
                    "{peer} moved {} shard(s) from fuller disks to emptier ones",
                    self.rebalanced
                ),
            ));
        }
        events
    }
}

/// This peer's name in the control plane, or its short id.
fn name_of(control: &ControlPlane, me: PeerId) -> String {
    control
        .store()
        .peer(&me)
        .ok()
        .flatten()
        .map_or_else(|| me.short(), |p| p.cert.body.name.clone())
}

/// The candidates a moved shard may go to, keeping the stripe spread: those
/// on peers without a kept shard of it first, then those in zones with the
/// fewest kept shards; as few as still leave `needed` disks to choose from.
fn least_shared(
    kept: &[&ShardLocation],
    disks: &[ClusterDisk],
    mut candidates: Vec<ClusterDisk>,
    needed: usize,
) -> Vec<ClusterDisk> {
    let zone_of = |peer: &PeerId| {
        disks
            .iter()
            .find(|d| d.peer == *peer)
            .map(|d| d.zone.clone())
    };
    let kept_zones: Vec<Option<String>> = kept.iter().map(|k| zone_of(&k.peer)).collect();
    let cost = |d: &ClusterDisk| {
        let on_peer = kept.iter().filter(|k| k.peer == d.peer).count();
        let in_zone = kept_zones
            .iter()
            .filter(|z| z.as_deref() == Some(d.zone.as_str()))
            .count();
        (on_peer, in_zone)
    };
    candidates.sort_by_key(&cost);
    let Some(bar) = candidates.get(needed.max(1) - 1).map(&cost) else {
        return candidates;
    };
    candidates.retain(|d| cost(d) <= bar);
    candidates
}

/// A shard to move so the stripe spreads over more peers: one from a peer
/// holding several, when a live peer holds none.
fn crowded_shard(stripe: &StripeRecord, live_peers: &HashSet<PeerId>) -> Option<usize> {
    let spare = live_peers
        .iter()
        .any(|p| !stripe.shards.iter().any(|s| s.peer == *p));
    if !spare {
        return None;
    }
    let mut seen = HashSet::new();
    stripe
        .shards
        .iter()
        .enumerate()
        .find(|(_, s)| !seen.insert(s.peer))
        .map(|(index, _)| index)
}

/// On the leader: aborts multipart uploads started more than `expiry` ago,
/// so abandoned parts do not hold disk space forever.
async fn expire_uploads(control: &ControlPlane, expiry: Duration) {
    let Ok(uploads) = control.store().all_uploads() else {
        return;
    };
    let now_ms = coop_types::unix_now_ms();
    let cutoff = now_ms.saturating_sub(expiry.as_millis() as u64);
    for upload in uploads.into_iter().filter(|u| u.initiated_ms < cutoff) {
        let command = coop_state::Command::AbortUpload {
            upload: upload.id.clone(),
            now: now_ms / 1000,
        };
        match control.write(command).await {
            Ok(()) => tracing::info!(
                bucket = %upload.bucket,
                key = %upload.key,
                upload = %upload.id,
                "aborted a multipart upload left unfinished past the expiry"
            ),
            Err(err) => {
                tracing::warn!(%err, "cannot abort an expired multipart upload");
                return;
            }
        }
    }
}

/// Runs repair and scrub passes until the task is aborted.
pub async fn upkeep(
    stripes: Stripes,
    control: ControlPlane,
    config: UpkeepConfig,
    events: Arc<EventLog>,
) {
    {
        let mut repair = tokio::time::interval(config.repair_interval);
        let mut scrub = tokio::time::interval(config.scrub_interval);
        let gc_every =
            (config.gc_grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
        let mut gc = tokio::time::interval(gc_every);
        repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        scrub.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first scrub waits a whole interval: a restart is no reason to
        // read every disk again.
        scrub.tick().await;
        loop {
            tokio::select! {
                _ = repair.tick() => {
                    let report = stripes.repair_pass(&control, config.repair_pause).await;
                    for event in report.events(&name_of(&control, stripes.me)) {
                        events.note(event);
                    }
                }
                _ = scrub.tick() => {
                    let corrupt = stripes.scrub_pass(config.scrub_pause).await;
                    if corrupt > 0 {
                        let peer = name_of(&control, stripes.me);
                        events.note(EventView::now(
                            "corrupt",
                            peer.clone(),
                            format!("{peer}'s scrub found {corrupt} corrupt shard(s) and deleted them; repair rebuilds them"),
                        ));
                    }
                }
                _ = gc.tick() => {
                    stripes.gc_pass(&control, config.gc_grace).await;
                    if control.is_leader() {
                        expire_uploads(&control, config.upload_expiry).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(peer: u8, zone: &str) -> ClusterDisk {
        ClusterDisk {
            peer: PeerId([peer; 32]),
            zone: zone.into(),
            disk: "d".into(),
            free_bytes: 1 << 30,
            used_bytes: 0,
            total_bytes: 1 << 30,
        }
    }

    fn at(peer: u8) -> ShardLocation {
        ShardLocation {
            peer: PeerId([peer; 32]),
            disk: "d".into(),
            checksum: [0; 32],
        }
    }

    #[test]
    fn moved_shards_go_where_the_stripe_is_thinnest() {
        // Kept shards on peers 1 (zone a) and 2 (zone a); candidates in
        // zone a (peer 3) and zone b (peers 4, 5).
        let disks = vec![
            disk(1, "a"),
            disk(2, "a"),
            disk(3, "a"),
            disk(4, "b"),
            disk(5, "b"),
        ];
        let (k1, k2) = (at(1), at(2));
        let kept = vec![&k1, &k2];
        let candidates = vec![disk(3, "a"), disk(4, "b"), disk(5, "b")];
        let one = least_shared(&kept, &disks, candidates.clone(), 1);
        assert!(one.iter().all(|d| d.zone == "b"), "{one:?}");
        assert_eq!(one.len(), 2);
        // Three shards to place: zone a must be used too.
        let three = least_shared(&kept, &disks, candidates.clone(), 3);
        assert_eq!(three.len(), 3);
        // A peer already holding a shard comes last.
        let with_holder = vec![disk(1, "b"), disk(3, "a")];
        let picked = least_shared(&kept, &disks, with_holder, 1);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].peer, PeerId([3; 32]));
    }
}
