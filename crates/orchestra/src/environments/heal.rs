//! Keeping environments whole: the leader's healing pass (replicas of
//! silent peers move, missing ones come back), scaling, and moving a
//! replica its host gave up on.

use std::collections::BTreeMap;

use coop_state::{ContainerEntry, ReplicaOf};
use coop_types::PeerState;

use super::{EnvironmentStatus, constraints_of, replica_name, request_for, run_spec};
use crate::blueprint::ServiceSpec;
use crate::error::ComputeError;
use crate::scheduler::Placement;
use crate::service::Orchestra;

/// How long a replica's peer may be silent before the replica is placed
/// on another peer, unless set otherwise (`coop up --reschedule-after`).
pub const RESCHEDULE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `scale` waits for new replicas to run before it answers.
pub const SCALE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Replicas the leader could not place, and why it last said.
type Unplaced = BTreeMap<String, String>;

/// How often the leader looks for replicas to move.
const HEAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Orchestra {
    /// Keeps environments whole: while this peer leads the control plane,
    /// every replica whose peer has been silent for `reschedule_after` is
    /// placed on another peer and started there (a new lease epoch). The
    /// silent peer, when it returns, removes its old copy before anything
    /// else (see the reconcile loop). Runs until the future is dropped.
    pub async fn heal_environments(self, reschedule_after: std::time::Duration) {
        let mut tick = tokio::time::interval(HEAL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Why each replica that fits nowhere does not, as last told.
        let mut unplaced: Unplaced = BTreeMap::new();
        loop {
            tick.tick().await;
            if !self.control().is_leader() {
                continue;
            }
            if let Err(err) = self.heal_pass(reschedule_after, &mut unplaced).await {
                tracing::warn!(%err, "environment healing pass failed");
            }
        }
    }

    async fn heal_pass(
        &self,
        reschedule_after: std::time::Duration,
        unplaced: &mut Unplaced,
    ) -> Result<(), ComputeError> {
        let _healing = self.healing().await;
        let store = self.control().store();
        let me = self.peer();
        for env in store.environments()? {
            let stale = coop_types::unix_now().saturating_sub(env.updated_at)
                > super::UPDATE_STALE.as_secs();
            let healed = match env.phase {
                coop_state::EnvPhase::Ready => true,
                // Its updater died with its peer: heal it as it is.
                coop_state::EnvPhase::Updating => stale,
                _ => false,
            };
            if !healed {
                continue;
            }
            for entry in store.env_replicas(&env.name)? {
                if entry.peer == me {
                    continue;
                }
                let state = self.mesh().peer_state(&entry.peer);
                let silent = self
                    .mesh()
                    .liveness()
                    .status(&entry.peer)
                    .map_or(std::time::Duration::MAX, |(_, age)| age);
                let gone = state == PeerState::Revoked
                    || (state != PeerState::Up && silent >= reschedule_after);
                if !gone {
                    continue;
                }
                let why = match silent {
                    std::time::Duration::MAX => {
                        format!("{} was never heard from", entry.peer.short())
                    }
                    _ => format!(
                        "{} was silent for {} s",
                        entry.peer.short(),
                        silent.as_secs()
                    ),
                };
                match self.move_replica(&env, entry.clone(), &why).await {
                    Ok(()) => {
                        unplaced.remove(&entry.name);
                    }
                    Err(err) => {
                        tracing::warn!(replica = %entry.name, %err, "cannot move a replica off a silent peer");
                        let reason = err.to_string();
                        self.tell_unplaced(&env.name, &entry, reason, unplaced)
                            .await;
                    }
                }
            }
            if let Err(err) = self.replace_missing(&env, unplaced).await {
                tracing::warn!(env = %env.name, %err, "cannot bring back a missing replica");
            }
        }
        Ok(())
    }

    /// Places and starts every replica `env` should have and has no entry
    /// for (a move whose start failed, a replica removed by hand).
    async fn replace_missing(
        &self,
        env: &coop_state::EnvironmentRecord,
        unplaced: &mut Unplaced,
    ) -> Result<(), ComputeError> {
        let store = self.control().store();
        let existing: std::collections::BTreeSet<String> = store
            .env_replicas(&env.name)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        let records = store.peers()?;
        for (service, stored) in &env.services {
            let missing: Vec<u32> = (0..stored.replicas)
                .filter(|i| !existing.contains(&replica_name(&env.name, service, *i)))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let spec: ServiceSpec = postcard::from_bytes(&stored.spec).map_err(|e| {
                ComputeError::Internal(format!("the stored spec of {service} does not decode: {e}"))
            })?;
            let constraints = constraints_of(service, &spec, &records)?;
            for index in missing {
                let name = replica_name(&env.name, service, index);
                let mut entry = self.entry_for(self.peer(), run_spec(&name, &spec))?;
                let request =
                    request_for(&env.name, service, &spec, &entry, constraints.clone(), None);
                let peer = match self.snapshot(None)?.place(&request) {
                    Placement::Placed(peer) => peer,
                    Placement::Unplaceable(refusals) => {
                        let reason =
                            format!("{name} fits nowhere: {}", Placement::summary(&refusals));
                        self.tell_unplaced(&env.name, &entry, reason, unplaced)
                            .await;
                        continue;
                    }
                };
                unplaced.remove(&name);
                entry.peer = peer;
                self.join_env_network(&mut entry, &env.name, None);
                entry.owner = Some(ReplicaOf {
                    env: env.name.clone(),
                    service: service.clone(),
                    index,
                    epoch: 1,
                    digest: stored.digest,
                });
                self.note(
                    &env.name,
                    Some(service),
                    Some(&name),
                    "placed",
                    format!("{name} was missing and is placed on {}", peer.short()),
                )
                .await;
                match self.start_replica(&env.name, entry, request).await {
                    // Made meanwhile by someone else: nothing is missing.
                    Err(err) if matches!(err.root(), ComputeError::Conflict(_)) => {}
                    other => {
                        other?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets how many replicas services of `env` run (`counts`: service to
    /// count): replicas past the new count are removed, the highest index
    /// first. Missing ones are placed and started by the control-plane
    /// leader's healing pass (one creator, so two never race for a name);
    /// this waits up to [`SCALE_WAIT`] for them to run.
    pub async fn scale_environment(
        &self,
        env: &str,
        counts: &BTreeMap<String, u32>,
    ) -> Result<EnvironmentStatus, ComputeError> {
        let store = self.control().store();
        let Some(mut record) = store.environment(env)? else {
            return Err(super::env_not_found(env));
        };
        if record.phase != coop_state::EnvPhase::Ready {
            return Err(ComputeError::Conflict(format!(
                "environment `{env}` is {:?}; scale it once that is done",
                record.phase
            )));
        }
        for (service, count) in counts {
            let Some(entry) = record.services.get_mut(service) else {
                return Err(super::no_such_service(env, service, &record));
            };
            if *count > 1000 {
                return Err(ComputeError::Invalid(format!(
                    "{service}={count}: at most 1000 replicas per service"
                )));
            }
            entry.replicas = *count;
        }
        let expected_generation = record.generation;
        record.updated_at = coop_types::unix_now();
        let updated = record.clone();
        self.control()
            .write(coop_state::Command::PutEnvironment {
                record,
                expected_generation,
            })
            .await?;
        let mut excess: Vec<ContainerEntry> = store
            .env_replicas(env)?
            .into_iter()
            .filter(|c| {
                c.owner
                    .as_ref()
                    .is_some_and(|o| counts.get(&o.service).is_some_and(|n| o.index >= *n))
            })
            .collect();
        excess.sort_by_key(|c| std::cmp::Reverse(c.owner.as_ref().map_or(0, |o| o.index)));
        for replica in excess {
            self.act(&replica.name, crate::Action::Remove { force: true })
                .await?;
        }
        for (service, count) in counts {
            self.note(
                env,
                Some(service),
                None,
                "scaled",
                format!("{service} scaled to {count} replica(s)"),
            )
            .await;
        }
        let wanted: u32 = updated
            .services
            .iter()
            .filter(|(name, _)| counts.contains_key(*name))
            .map(|(_, s)| s.replicas)
            .sum();
        let deadline = std::time::Instant::now() + SCALE_WAIT;
        loop {
            let status = self.environment_status(env).await?;
            let running = status
                .replicas
                .iter()
                .filter(|r| counts.contains_key(&r.service))
                .filter(|r| {
                    matches!(
                        r.status.actual.as_ref().map(|c| &c.state),
                        Some(crate::RunState::Running { .. })
                    )
                })
                .count() as u32;
            // Waiting does not help what fits nowhere: `env show` says why.
            let hopeless = !status.pending.is_empty()
                && status
                    .pending
                    .iter()
                    .filter(|p| counts.contains_key(&p.service))
                    .all(|p| p.peer.is_none());
            if running >= wanted || hopeless || std::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }

    /// Notes an event when replica `entry` of `env` cannot be placed, once
    /// per reason.
    async fn tell_unplaced(
        &self,
        env: &str,
        entry: &ContainerEntry,
        reason: String,
        unplaced: &mut Unplaced,
    ) {
        if unplaced.get(&entry.name) == Some(&reason) {
            return;
        }
        let service = entry.owner.as_ref().map(|o| o.service.clone()).or_else(|| {
            entry
                .name
                .strip_prefix(&format!("{env}-"))
                .and_then(|r| r.rsplit_once('-'))
                .map(|(s, _)| s.to_string())
        });
        self.note(
            env,
            service.as_deref(),
            Some(&entry.name),
            "refused",
            reason.clone(),
        )
        .await;
        unplaced.insert(entry.name.clone(), reason);
    }

    /// Moves replica `name` off peer `from`, which asked for it (`why`:
    /// its reason). Only the control-plane leader moves replicas.
    pub(crate) async fn relocate_replica(
        &self,
        name: &str,
        from: coop_types::PeerId,
        why: &str,
    ) -> Result<(), ComputeError> {
        if !self.control().is_leader() {
            return Err(ComputeError::Unavailable(
                "this peer no longer leads the control plane; ask again".into(),
            ));
        }
        let _healing = self.healing().await;
        let store = self.control().store();
        let entry = self.entry(name)?;
        let Some(owner) = entry.owner.clone() else {
            return Err(ComputeError::Invalid(format!(
                "`{name}` is no environment's replica; only replicas move"
            )));
        };
        if entry.peer != from {
            return Err(ComputeError::Conflict(format!(
                "`{name}` runs on {}, not on the peer that asked to move it",
                entry.peer.short()
            )));
        }
        let env = store
            .environment(&owner.env)?
            .filter(|e| e.phase == coop_state::EnvPhase::Ready)
            .ok_or_else(|| {
                ComputeError::Conflict(format!(
                    "environment `{}` is not ready (being created, updated or removed)",
                    owner.env
                ))
            })?;
        self.move_replica(&env, entry, why).await
    }

    /// Places `entry` (a replica of `env`) on another peer than its own
    /// and starts it there with the next lease epoch; `why` says why.
    async fn move_replica(
        &self,
        env: &coop_state::EnvironmentRecord,
        entry: ContainerEntry,
        why: &str,
    ) -> Result<(), ComputeError> {
        let Some(owner) = entry.owner.clone() else {
            return Ok(());
        };
        let Some(service) = env.services.get(&owner.service) else {
            return Ok(());
        };
        let spec: ServiceSpec = postcard::from_bytes(&service.spec).map_err(|e| {
            ComputeError::Internal(format!(
                "the stored spec of {} does not decode: {e}",
                owner.service
            ))
        })?;
        let records = self.control().store().peers()?;
        let constraints = constraints_of(&owner.service, &spec, &records)?;
        let mut request = request_for(&env.name, &owner.service, &spec, &entry, constraints, None);
        request.refused_by.insert(entry.peer);
        let mut snapshot = self.snapshot(None)?;
        let from = entry.peer;
        let next = match snapshot.place(&request) {
            Placement::Placed(peer) => peer,
            Placement::Unplaceable(refusals) => {
                return Err(ComputeError::Short(format!(
                    "{} has nowhere to go: {}",
                    entry.name,
                    Placement::summary(&refusals)
                )));
            }
        };
        self.control()
            .write(coop_state::Command::DeleteContainer {
                name: entry.name.clone(),
            })
            .await?;
        let mut moved = entry;
        moved.peer = next;
        moved.created_at = coop_types::unix_now();
        moved.owner = Some(ReplicaOf {
            epoch: owner.epoch + 1,
            ..owner.clone()
        });
        self.note(
            &env.name,
            Some(&owner.service),
            Some(&moved.name),
            "moved",
            format!(
                "{} moves from {} to {}: {why}",
                moved.name,
                from.short(),
                next.short()
            ),
        )
        .await;
        let name = moved.name.clone();
        if let Err(err) = self.start_replica(&env.name, moved, request).await {
            // The entry is gone from the old peer; the next pass cannot
            // see this replica any more, so say so loudly.
            tracing::error!(replica = %name, %err, "a moved replica could not start anywhere");
            self.note(
                &env.name,
                Some(&owner.service),
                Some(&name),
                "failed",
                format!("{name} could not start after its move: {err}"),
            )
            .await;
            return Err(err);
        }
        Ok(())
    }
}
