//! The control plane as the rest of the agent uses it: start, write, ask
//! who leads, and keep the voter set in shape.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tracing::{info, warn};

use coop_mesh::Mesh;
use coop_types::PeerId;

use crate::network::{self, MeshNetwork, RaftAnswer, RaftMessage};
use crate::stewards::{StewardCandidate, StewardPolicy};
use crate::{Command, CommandError, PeerNode, Raft, StateStore};

/// How long a write waits for a leader and its commit before giving up.
/// An election takes 1-2 s here; 10 s covers a couple of failed ones.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Raft timing. Heartbeats every 200 ms and elections after 0.8-1.6 s of
/// silence. A failover takes about two election timeouts (followers keep
/// the dead leader's lease for one); with 1-2 s timeouts it measured up to
/// 5.0 s, too close to the 5 s the product promises. Four missed
/// heartbeats before an election keeps a loaded 2-core machine from
/// calling spurious ones.
fn raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "coop".into(),
        heartbeat_interval: 200,
        election_timeout_min: 800,
        election_timeout_max: 1600,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 200,
        ..Default::default()
    }
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Rejected(#[from] CommandError),
    #[error("no control-plane leader could be reached within {secs} s: {detail}")]
    Unavailable { secs: u64, detail: String },
}

/// This peer's replica of the control plane.
#[derive(Clone)]
pub struct ControlPlane {
    id: PeerId,
    raft: Raft,
    store: StateStore,
    mesh: Mesh,
}

impl ControlPlane {
    /// Starts the local replica and serves Raft messages on the mesh.
    pub async fn start(mesh: Mesh, store: StateStore) -> Result<Self, StartError> {
        let id = mesh.id();
        let config = raft_config()
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let raft = Raft::new(
            id,
            Arc::new(config),
            MeshNetwork { mesh: mesh.clone() },
            store.log_store(),
            store.state_machine(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        network::serve(&mesh, &raft);
        Ok(ControlPlane {
            id,
            raft,
            store,
            mesh,
        })
    }

    /// Makes this peer the single voter of a new cloud.
    pub async fn initialize(&self, node: PeerNode) -> Result<(), StartError> {
        let members = BTreeMap::from([(self.id, node)]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The leader this replica currently knows of.
    pub fn leader(&self) -> Option<PeerId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The voting members (stewards).
    pub fn voters(&self) -> BTreeSet<PeerId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Every member, voter or learner, with its node record.
    pub fn members(&self) -> BTreeMap<PeerId, PeerNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    }

    /// The current Raft term and last applied index, for status pages.
    pub fn term_and_applied(&self) -> (u64, Option<u64>) {
        let m = self.raft.metrics().borrow().clone();
        (m.current_term, m.last_applied.map(|l| l.index))
    }

    /// Waits until some leader is known, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<PeerId> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = metrics.borrow().current_leader {
                return Some(leader);
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    /// Writes `command` through the leader, wherever it is, and waits until
    /// it is committed and applied there. Follows leader changes until
    /// [`WRITE_TIMEOUT`].
    pub async fn write(&self, command: Command) -> Result<(), WriteError> {
        // One id for every attempt of this write: a retry after a lost
        // answer returns the first outcome instead of applying it again.
        let command = Command::Once {
            id: rand::random(),
            command: Box::new(command),
        };
        let started = Instant::now();
        let mut detail = String::from("no leader elected");
        while started.elapsed() < WRITE_TIMEOUT {
            let remaining = WRITE_TIMEOUT.saturating_sub(started.elapsed());
            let Some(leader) = self.wait_for_leader(remaining).await else {
                break;
            };
            if leader == self.id {
                match self.raft.client_write(command.clone()).await {
                    Ok(resp) => return resp.data.map_err(WriteError::Rejected),
                    Err(err) => detail = err.to_string(),
                }
            } else {
                let message = RaftMessage::ClientWrite(command.clone());
                match network::call(&self.mesh, leader, &message, remaining).await {
                    Ok(RaftAnswer::ClientWrite(Ok(outcome))) => {
                        return outcome.map_err(WriteError::Rejected);
                    }
                    Ok(RaftAnswer::ClientWrite(Err(RaftError::APIError(
                        ClientWriteError::ForwardToLeader(_),
                    )))) => detail = format!("peer {} is no longer the leader", leader.short()),
                    Ok(other) => detail = format!("unexpected answer {other:?}"),
                    Err(err) => detail = err.to_string(),
                }
            }
            // The leader we knew failed us; give the election a moment.
            let mut metrics = self.raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(200), metrics.changed()).await;
        }
        Err(WriteError::Unavailable {
            secs: WRITE_TIMEOUT.as_secs(),
            detail,
        })
    }

    /// Waits until this replica has applied every write committed before
    /// the call, so a read that follows sees them (a linearizable read).
    /// Asks the leader for its commit index, which it confirms with a
    /// heartbeat round, then waits for the local state machine to catch up.
    pub async fn read_barrier(&self) -> Result<(), WriteError> {
        let started = Instant::now();
        let mut detail = String::from("no leader elected");
        while started.elapsed() < WRITE_TIMEOUT {
            let remaining = WRITE_TIMEOUT.saturating_sub(started.elapsed());
            let Some(leader) = self.wait_for_leader(remaining).await else {
                break;
            };
            let index = if leader == self.id {
                self.raft
                    .get_read_log_id()
                    .await
                    .map(|(read, _)| read.map(|id| id.index))
                    .map_err(|e| e.to_string())
            } else {
                match network::call(&self.mesh, leader, &RaftMessage::ReadIndex, remaining).await {
                    Ok(RaftAnswer::ReadIndex(answer)) => answer,
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(err) => Err(err.to_string()),
                }
            };
            match index {
                Ok(None) => return Ok(()),
                Ok(Some(index)) => {
                    let remaining = WRITE_TIMEOUT.saturating_sub(started.elapsed());
                    return self
                        .raft
                        .wait(Some(remaining))
                        .applied_index_at_least(Some(index), "read barrier")
                        .await
                        .map(|_| ())
                        .map_err(|e| WriteError::Unavailable {
                            secs: WRITE_TIMEOUT.as_secs(),
                            detail: format!("this replica did not catch up: {e}"),
                        });
                }
                Err(err) => detail = err,
            }
            let mut metrics = self.raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(200), metrics.changed()).await;
        }
        Err(WriteError::Unavailable {
            secs: WRITE_TIMEOUT.as_secs(),
            detail,
        })
    }

    /// On the leader, keeps the membership in shape: every known peer a
    /// learner, revoked peers out, and voters as `policy` wants them.
    /// `prepare_steward` runs before a peer becomes a voter (to hand it the
    /// cloud key); a peer it fails for is not promoted this round.
    pub async fn reconcile_membership(
        &self,
        peers: &BTreeMap<PeerId, PeerNode>,
        revoked: &BTreeSet<PeerId>,
        candidates: &[StewardCandidate],
        policy: &dyn StewardPolicy,
        prepare_steward: &(dyn Fn(PeerId) -> BoxFuture<'static, Result<(), String>> + Send + Sync),
    ) {
        if !self.is_leader() {
            return;
        }
        let members = self.members();
        let voters = self.voters();
        let gone: BTreeSet<PeerId> = revoked
            .iter()
            .filter(|id| members.contains_key(id) && **id != self.id)
            .copied()
            .collect();
        if !gone.is_empty() {
            let remaining: BTreeSet<PeerId> = voters.difference(&gone).copied().collect();
            if remaining != voters && !remaining.is_empty() {
                info!(?gone, "removing revoked peers from the voters");
                if let Err(err) = self.raft.change_membership(remaining, false).await {
                    warn!(%err, "could not remove revoked voters");
                    return;
                }
            }
            if let Err(err) = self
                .raft
                .change_membership(ChangeMembers::RemoveNodes(gone), false)
                .await
            {
                warn!(%err, "could not remove revoked peers");
            }
            return;
        }
        for (id, node) in peers {
            if revoked.contains(id) || *id == self.id {
                continue;
            }
            match members.get(id) {
                None => {
                    info!(peer = %id.short(), "adding peer as a control-plane learner");
                    if let Err(err) = self.raft.add_learner(*id, node.clone(), false).await {
                        warn!(peer = %id.short(), %err, "could not add learner");
                    }
                }
                Some(known) if known.addrs != node.addrs && !node.addrs.is_empty() => {
                    let update = BTreeMap::from([(*id, node.clone())]);
                    if let Err(err) = self
                        .raft
                        .change_membership(ChangeMembers::SetNodes(update), false)
                        .await
                    {
                        warn!(peer = %id.short(), %err, "could not update peer addresses");
                    }
                }
                Some(_) => {}
            }
        }
        let mut desired = policy.choose_stewards(candidates, &voters);
        // Only learners can become voters.
        let members = self.members();
        desired.retain(|id| members.contains_key(id));
        if desired == voters || desired.is_empty() {
            return;
        }
        for new in desired.clone().difference(&voters) {
            if let Err(err) = prepare_steward(*new).await {
                warn!(peer = %new.short(), %err, "cannot make peer a steward yet");
                desired.remove(new);
            }
        }
        if desired == voters || desired.is_empty() {
            return;
        }
        info!(stewards = ?desired, "changing the stewards");
        if let Err(err) = self.raft.change_membership(desired, true).await {
            warn!(%err, "could not change the stewards");
        }
    }

    /// Stops the local replica.
    pub async fn shutdown(&self) {
        if let Err(err) = self.raft.shutdown().await {
            warn!(%err, "raft shutdown failed");
        }
    }
}
