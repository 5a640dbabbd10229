//! Reclaiming space: shards that no object needs any more.
//!
//! A shard file on this peer's disk is garbage when
//! - its block has no stripe record and the file is older than the grace
//!   (a write that died before it was recorded: a killed writer, a refused
//!   commit),
//! - its stripe has been dead (no object or part refers to it) for longer
//!   than the grace, so reads that began before the delete have finished,
//! - or the stripe records that shard somewhere else (repair moved it) and
//!   the file is older than the grace.
//!
//! The grace also covers a replica that lags behind: a shard written a
//! moment ago may belong to a stripe this peer has not applied yet. After
//! twice the grace the leader forgets dead stripe rows altogether.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{debug, info, warn};

use coop_state::{BlockId, Command, ControlPlane};
use coop_types::unix_now;

use crate::stripes::Stripes;

/// Stripe rows forgotten per control-plane write.
const FORGET_BATCH: usize = 500;

impl Stripes {
    /// One collection pass; returns how many shard files it deleted.
    pub async fn gc_pass(&self, control: &ControlPlane, grace: Duration) -> usize {
        let now = unix_now();
        let grace_secs = grace.as_secs();
        let mut deleted = 0;
        for disk in self.local.iter() {
            let listed = {
                let store = disk.store.clone();
                tokio::task::spawn_blocking(move || store.list()).await
            };
            let Ok(Ok(shards)) = listed else {
                warn!(disk = %disk.id, "garbage collection cannot list the disk");
                continue;
            };
            let mut by_block: BTreeMap<BlockId, Vec<usize>> = BTreeMap::new();
            for (block, index) in shards {
                by_block.entry(block).or_default().push(index);
            }
            for (block, indexes) in by_block {
                let stripe = match control.store().stripe(&block) {
                    Ok(stripe) => stripe,
                    Err(err) => {
                        warn!(%err, "garbage collection cannot read the stripe table");
                        return deleted;
                    }
                };
                for index in indexes {
                    let old = disk.store.age(&block, index).is_some_and(|age| age > grace);
                    let garbage = match &stripe {
                        None => old,
                        Some(s) if s.refs == 0 => s
                            .dead_since
                            .is_some_and(|t| now.saturating_sub(t) > grace_secs),
                        Some(s) => {
                            old && s
                                .shards
                                .get(index)
                                .is_none_or(|at| at.peer != self.me || at.disk != disk.id)
                        }
                    };
                    if garbage {
                        match disk.store.delete(&block, index) {
                            Ok(_) => deleted += 1,
                            Err(err) => warn!(%err, "cannot delete a garbage shard"),
                        }
                    }
                }
            }
            disk.recount();
        }
        if deleted > 0 {
            info!(
                shards = deleted,
                "garbage collection deleted shards no object needs"
            );
        }
        self.metrics
            .collected_shards
            .fetch_add(deleted as u64, std::sync::atomic::Ordering::Relaxed);
        if control.is_leader() {
            self.forget_dead_stripes(control, now.saturating_sub(2 * grace_secs))
                .await;
        }
        deleted
    }

    /// On the leader: drops stripe rows dead since before `dead_before`.
    async fn forget_dead_stripes(&self, control: &ControlPlane, dead_before: u64) {
        let Ok(all) = control.store().stripes() else {
            return;
        };
        let dead: Vec<BlockId> = all
            .into_iter()
            .filter(|(_, s)| s.refs == 0 && s.dead_since.is_some_and(|t| t < dead_before))
            .map(|(id, _)| id)
            .collect();
        for batch in dead.chunks(FORGET_BATCH) {
            let command = Command::ForgetStripes {
                blocks: batch.to_vec(),
                dead_before,
            };
            match control.write(command).await {
                Ok(()) => debug!(stripes = batch.len(), "forgot dead stripes"),
                Err(err) => {
                    warn!(%err, "cannot forget dead stripes");
                    return;
                }
            }
        }
    }
}
