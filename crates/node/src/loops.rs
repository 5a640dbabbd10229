//! The node's background loops: mirror the control plane into the mesh,
//! keep the Raft membership in shape, and report our addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, error, warn};

use coop_state::{Command, PeerNode, StewardCandidate, WriteError, ZoneSpread};
use coop_types::{PeerId, PeerState};

use crate::node::Core;

/// How often the leader checks learners and stewards. Cheap (local reads),
/// and a second is well inside the time a join or failover may take.
const MEMBERSHIP_INTERVAL: Duration = Duration::from_secs(1);

/// Applies every change of the peers table to the mesh: admits members,
/// learns their addresses, and cuts off revoked peers at once.
pub(crate) async fn store_sync(core: Arc<Core>) {
    {
        let mut changes = core.control.store().subscribe();
        let mut told_revoked = false;
        loop {
            match core.control.store().peers() {
                Ok(peers) => {
                    for rec in peers {
                        let id = rec.id();
                        if rec.revoked_at.is_some() {
                            if id == core.key.id() {
                                if !told_revoked {
                                    error!(
                                        "this peer was revoked from the cloud; other peers refuse it now"
                                    );
                                    told_revoked = true;
                                }
                            } else {
                                core.mesh.admission().revoke(id);
                            }
                            continue;
                        }
                        if id != core.key.id() {
                            if let Err(err) = core.mesh.admission().admit(id, &rec.cert) {
                                warn!(peer = %id, %err, "control plane lists a peer whose certificate does not verify");
                            }
                            if !core.mesh.knows_addrs_of(&id) {
                                core.mesh.add_peer_addrs(id, &rec.addrs);
                            }
                        }
                    }
                }
                Err(err) => warn!(%err, "cannot read peers from the control plane"),
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// On the leader: learners for new peers, revoked peers out, stewards
/// chosen by [`ZoneSpread`].
pub(crate) async fn membership(core: Arc<Core>) {
    {
        let mut tick = tokio::time::interval(MEMBERSHIP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !core.control.is_leader() {
                continue;
            }
            let Ok(records) = core.control.store().peers() else {
                continue;
            };
            let live = core.mesh.liveness();
            let mut nodes = BTreeMap::new();
            let mut revoked = BTreeSet::new();
            let mut candidates = Vec::new();
            for rec in &records {
                let id = rec.id();
                if rec.revoked_at.is_some() {
                    revoked.insert(id);
                    continue;
                }
                let state = live.state(&id);
                let addrs = live
                    .status(&id)
                    .map(|(s, _)| s.addrs)
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| rec.addrs.clone());
                nodes.insert(
                    id,
                    PeerNode {
                        name: rec.cert.body.name.clone(),
                        addrs,
                    },
                );
                candidates.push(StewardCandidate {
                    id,
                    zone: rec.cert.body.zone.clone(),
                    up: state == PeerState::Up,
                    down: state == PeerState::Down,
                });
            }
            let prepare_core = core.clone();
            let prepare = move |peer: PeerId| {
                let core = prepare_core.clone();
                Box::pin(async move { core.send_cloud_key(peer).await })
                    as futures::future::BoxFuture<'static, Result<(), String>>
            };
            core.control
                .reconcile_membership(&nodes, &revoked, &candidates, &ZoneSpread, &prepare)
                .await;
        }
    }
}

/// Records this peer's current mesh addresses in the control plane when
/// they differ from what it holds (first start, new port, new network).
pub(crate) async fn addr_report(core: Arc<Core>) {
    {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let own = core.key.id();
            let addrs = core.mesh.local_addrs();
            let recorded = match core.control.store().peer(&own) {
                Ok(Some(rec)) => rec.addrs,
                // Not replicated here yet: try again later.
                _ => continue,
            };
            if recorded == addrs {
                continue;
            }
            match core
                .control
                .write(Command::UpdatePeerAddrs { peer: own, addrs })
                .await
            {
                Ok(()) => debug!("recorded this peer's addresses"),
                Err(WriteError::Rejected(err)) => warn!(%err, "addresses not recorded"),
                Err(err) => debug!(%err, "addresses not recorded yet"),
            }
        }
    }
}
