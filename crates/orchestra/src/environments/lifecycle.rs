//! Creating and removing environments, and starting one replica.

use std::collections::BTreeMap;

use coop_state::ContainerEntry;

use super::{EnvironmentStatus, ReplicaStatus, start_order};
use crate::blueprint::Blueprint;
use crate::error::ComputeError;
use crate::scheduler::{Placement, ReplicaRequest};
use crate::service::Orchestra;

impl Orchestra {
    /// Notes an event of `env`; a failure to note it is logged, not fatal.
    pub(crate) async fn note(
        &self,
        env: &str,
        service: Option<&str>,
        replica: Option<&str>,
        kind: &str,
        message: String,
    ) {
        let event = coop_state::EnvEvent {
            at: coop_types::unix_now(),
            service: service.map(String::from),
            replica: replica.map(String::from),
            kind: kind.to_string(),
            message,
        };
        let command = coop_state::Command::RecordEnvEvent {
            env: env.to_string(),
            event,
        };
        if let Err(err) = self.control().write(command).await {
            tracing::warn!(env, %err, "could not note an environment event");
        }
    }

    /// Creates environment `env` from `blueprint` (its text `source`, filled
    /// in with `vars`): records it, then runs every replica where the
    /// scheduler places it, dependencies first. Every replica must fit
    /// before anything is created; a lease a peer refuses is placed again
    /// elsewhere; if a replica cannot be started at all, what was created
    /// is removed again and the error says which replica failed and why.
    pub async fn create_environment(
        &self,
        env: &str,
        source: &str,
        vars: &BTreeMap<String, String>,
        blueprint: &Blueprint,
    ) -> Result<EnvironmentStatus, ComputeError> {
        let store = self.control().store();
        if store.environment(env)?.is_some() {
            return Err(ComputeError::Conflict(format!(
                "environment `{env}` already exists; take it down with `coop env down {env}` first"
            )));
        }
        let plan = self.plan_environment(env, blueprint)?;
        if let Some(stuck) = plan.iter().find(|p| p.peer.is_none()) {
            return Err(ComputeError::Short(format!(
                "replica {} fits nowhere: {}; nothing was created",
                stuck.name, stuck.reason
            )));
        }
        let services = encode_services(blueprint)?;
        self.create_env_network(env).await?;
        let now = coop_types::unix_now();
        let record = coop_state::EnvironmentRecord {
            name: env.to_string(),
            source: source.to_string(),
            vars: vars.clone(),
            services,
            generation: 0,
            phase: coop_state::EnvPhase::Creating,
            created_at: now,
            updated_at: now,
            previous: None,
        };
        self.control()
            .write(coop_state::Command::PutEnvironment {
                record: record.clone(),
                expected_generation: 0,
            })
            .await?;
        let mut started: Vec<String> = Vec::new();
        for service in start_order(blueprint) {
            let waited = self
                .wait_for_dependencies(env, &service, &blueprint.services)
                .await;
            for planned in plan.iter().filter(|p| p.service == service) {
                let (Some(mut entry), Some(request)) =
                    (planned.entry.clone(), planned.request.clone())
                else {
                    continue;
                };
                self.join_env_network(&mut entry, env, None);
                let started_one = match &waited {
                    Ok(()) => self.start_replica(env, entry, request).await,
                    Err(err) => Err(err.clone()),
                };
                match started_one {
                    Ok(name) => started.push(name),
                    Err(err) => {
                        for name in started.iter().rev() {
                            let _ = self.act(name, crate::Action::Remove { force: true }).await;
                        }
                        let _ = self
                            .control()
                            .write(coop_state::Command::DeleteEnvironment {
                                name: env.to_string(),
                            })
                            .await;
                        self.remove_env_network(env).await;
                        return Err(ComputeError::Conflict(format!(
                            "replica {} of environment `{env}` could not start, so the environment was removed again: {err}",
                            planned.name
                        )));
                    }
                }
            }
        }
        self.set_phase(env, coop_state::EnvPhase::Ready).await?;
        self.environment_status(env).await
    }

    /// Moves `env` to `phase`, keeping everything else of its record.
    pub(crate) async fn set_phase(
        &self,
        env: &str,
        phase: coop_state::EnvPhase,
    ) -> Result<(), ComputeError> {
        self.rewrite_env(env, |record| {
            record.phase = phase;
            Ok(())
        })
        .await
    }

    /// Applies `change` to the record of `env` and writes it back (with a
    /// new `updated_at`), unless another write came first.
    pub(crate) async fn rewrite_env(
        &self,
        env: &str,
        change: impl FnOnce(&mut coop_state::EnvironmentRecord) -> Result<(), ComputeError>,
    ) -> Result<(), ComputeError> {
        let Some(mut record) = self.control().store().environment(env)? else {
            return Err(super::env_not_found(env));
        };
        change(&mut record)?;
        let expected_generation = record.generation;
        record.updated_at = coop_types::unix_now();
        self.control()
            .write(coop_state::Command::PutEnvironment {
                record,
                expected_generation,
            })
            .await?;
        Ok(())
    }

    /// Runs one replica's lease; when its peer refuses, places it again
    /// without that peer (at most once per peer of the cloud).
    pub(crate) async fn start_replica(
        &self,
        env: &str,
        mut entry: ContainerEntry,
        mut request: ReplicaRequest,
    ) -> Result<String, ComputeError> {
        let service = entry
            .owner
            .as_ref()
            .map(|o| o.service.clone())
            .unwrap_or_default();
        loop {
            let peer = entry.peer;
            match self.run(entry.clone()).await {
                Ok(_) => {
                    self.note(
                        env,
                        Some(&service),
                        Some(&entry.name),
                        "started",
                        format!("{} runs on {}", entry.name, peer.short()),
                    )
                    .await;
                    return Ok(entry.name);
                }
                Err(err) if matches!(err.root(), ComputeError::Conflict(_)) => return Err(err),
                Err(
                    err @ (ComputeError::Short(_)
                    | ComputeError::Refused { .. }
                    | ComputeError::Unreachable { .. }),
                ) => {
                    self.note(
                        env,
                        Some(&service),
                        Some(&entry.name),
                        "refused",
                        format!("{} refused by {}: {err}", entry.name, peer.short()),
                    )
                    .await;
                    request.refused_by.insert(peer);
                    let mut snapshot = self.snapshot(None)?;
                    match snapshot.place(&request) {
                        Placement::Placed(next) => entry.peer = next,
                        Placement::Unplaceable(_) => return Err(err),
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// An environment, its replicas as their peers report them, and its
    /// events.
    pub async fn environment_status(&self, env: &str) -> Result<EnvironmentStatus, ComputeError> {
        let store = self.control().store();
        let record = store
            .environment(env)?
            .ok_or_else(|| super::env_not_found(env))?;
        let entries = store.env_replicas(env)?;
        let statuses = self.statuses(entries).await?;
        // Definitions with setup steps, by digest: a running replica of one
        // whose setup has not begun is waiting for it.
        let with_setup: std::collections::BTreeSet<[u8; 32]> = record
            .services
            .values()
            .chain(record.previous.iter().flat_map(|p| p.services.values()))
            .filter(|stored| {
                postcard::from_bytes::<crate::blueprint::ServiceSpec>(&stored.spec)
                    .is_ok_and(|spec| !spec.setup.is_empty())
            })
            .map(|stored| stored.digest)
            .collect();
        let replicas: Vec<ReplicaStatus> = statuses
            .into_iter()
            .filter_map(|mut status| {
                let owner = status.entry.owner.clone()?;
                if let Some(actual) = status.actual.as_mut()
                    && actual.state.is_running()
                    && actual.setup.is_none()
                    && with_setup.contains(&owner.digest)
                {
                    actual.setup = Some(crate::setup::SetupState::Pending);
                }
                Some(ReplicaStatus {
                    service: owner.service,
                    index: owner.index,
                    status,
                })
            })
            .collect();
        let pending = self.pending_replicas(&record, &replicas)?;
        Ok(EnvironmentStatus {
            record,
            replicas,
            pending,
            events: store.env_events(env)?,
        })
    }

    /// The replicas `record` asks for that have no container, each with
    /// where it would be placed now, or why it fits nowhere.
    fn pending_replicas(
        &self,
        record: &coop_state::EnvironmentRecord,
        replicas: &[ReplicaStatus],
    ) -> Result<Vec<super::PlannedReplica>, ComputeError> {
        let mut pending = Vec::new();
        let mut snapshot = None;
        let records = self.control().store().peers()?;
        for (service, stored) in &record.services {
            let missing: Vec<u32> = (0..stored.replicas)
                .filter(|i| {
                    !replicas
                        .iter()
                        .any(|r| r.service == *service && r.index == *i)
                })
                .collect();
            if missing.is_empty() {
                continue;
            }
            let Ok(spec) = postcard::from_bytes::<crate::blueprint::ServiceSpec>(&stored.spec)
            else {
                continue;
            };
            let constraints = super::constraints_of(service, &spec, &records)?;
            for index in missing {
                let name = super::replica_name(&record.name, service, index);
                let entry = self.entry_for(self.peer(), super::run_spec(&name, &spec))?;
                let request = super::request_for(
                    &record.name,
                    service,
                    &spec,
                    &entry,
                    constraints.clone(),
                    None,
                );
                let snapshot = match &mut snapshot {
                    Some(snapshot) => snapshot,
                    None => snapshot.insert(self.snapshot(None)?),
                };
                let (peer, reason, refusals) = match snapshot.place(&request) {
                    Placement::Placed(peer) => (
                        Some(peer),
                        "not started yet; the leader places it".to_string(),
                        Vec::new(),
                    ),
                    Placement::Unplaceable(refusals) => {
                        (None, Placement::summary(&refusals), refusals)
                    }
                };
                pending.push(super::PlannedReplica {
                    service: service.clone(),
                    index,
                    name,
                    peer,
                    current: None,
                    reason,
                    refusals,
                    entry: None,
                    request: None,
                });
            }
        }
        Ok(pending)
    }

    /// Removes every replica of `env`, then the environment. The replicas
    /// are stopped all at once first: SIGTERM, then SIGKILL after `grace`.
    pub async fn remove_environment(
        &self,
        env: &str,
        grace: std::time::Duration,
    ) -> Result<usize, ComputeError> {
        let store = self.control().store();
        if store.environment(env)?.is_none() {
            return Err(super::env_not_found(env));
        }
        // The leader stops healing it first, so nothing comes back.
        self.set_phase(env, coop_state::EnvPhase::Removing).await?;
        let replicas = store.env_replicas(env)?;
        let count = replicas.len();
        let grace_secs = Some(grace.as_secs().min(u64::from(u32::MAX)) as u32);
        let stops = replicas
            .iter()
            .map(|r| self.act(&r.name, crate::Action::Stop { grace_secs }));
        for (replica, stopped) in replicas.iter().zip(futures::future::join_all(stops).await) {
            if let Err(err) = stopped {
                // Removal kills what did not stop; a silent peer removes
                // its copy when it hears the entry is gone.
                tracing::debug!(replica = %replica.name, %err, "a replica did not stop before removal");
            }
        }
        for replica in replicas {
            self.act(&replica.name, crate::Action::Remove { force: true })
                .await?;
        }
        self.control()
            .write(coop_state::Command::DeleteEnvironment {
                name: env.to_string(),
            })
            .await?;
        self.remove_env_network(env).await;
        Ok(count)
    }

    /// Creates environment `env`'s own private network (named after it),
    /// unless it has one; refused when a network of that name belongs to
    /// someone else.
    async fn create_env_network(&self, env: &str) -> Result<(), ComputeError> {
        if let Some(network) = self.control().store().network(env)? {
            if network.env.as_deref() == Some(env) {
                return Ok(());
            }
            return Err(ComputeError::Conflict(format!(
                "a network named `{env}` exists and is not this environment's; an environment's network bears its name, so pick another environment name"
            )));
        }
        let mut avoid = coop_compute::network::host_routes();
        if let Ok(runtime) = self.host().runtime() {
            avoid.push(runtime.config().network.subnet);
        }
        self.control()
            .write(coop_state::Command::CreateNetwork {
                name: env.to_string(),
                subnet: None,
                avoid,
                env: Some(env.to_string()),
                now: coop_types::unix_now(),
            })
            .await?;
        Ok(())
    }

    /// Removes environment `env`'s own network; one still in use stays (a
    /// warning says so).
    async fn remove_env_network(&self, env: &str) {
        let owned = self
            .control()
            .store()
            .network(env)
            .ok()
            .flatten()
            .is_some_and(|n| n.env.as_deref() == Some(env));
        if !owned {
            return;
        }
        let command = coop_state::Command::DeleteNetwork {
            name: env.to_string(),
        };
        if let Err(err) = self.control().write(command).await {
            tracing::warn!(env, %err, "cannot remove the environment's network");
        }
    }

    /// Puts replica `entry` on environment `env`'s own network, at the
    /// address `was` (an earlier container of the same replica) had there,
    /// or any free one.
    pub(crate) fn join_env_network(
        &self,
        entry: &mut ContainerEntry,
        env: &str,
        was: Option<&ContainerEntry>,
    ) {
        let owned = self
            .control()
            .store()
            .network(env)
            .ok()
            .flatten()
            .is_some_and(|n| n.env.as_deref() == Some(env));
        if !owned || entry.networks.iter().any(|a| a.network == env) {
            return;
        }
        let address = was
            .and_then(|w| w.networks.iter().find(|a| a.network == env))
            .map_or(coop_state::Attachment::ANY, |a| a.address);
        entry.networks.push(coop_state::Attachment {
            network: env.to_string(),
            address,
        });
    }
}

/// The services of `blueprint` as the control plane keeps them.
pub(crate) fn encode_services(
    blueprint: &Blueprint,
) -> Result<BTreeMap<String, coop_state::ServiceEntry>, ComputeError> {
    blueprint
        .services
        .iter()
        .map(|(name, spec)| {
            let encoded = postcard::to_stdvec(spec).map_err(|e| {
                ComputeError::Internal(format!("cannot encode service {name}: {e}"))
            })?;
            Ok((
                name.clone(),
                coop_state::ServiceEntry {
                    spec: encoded,
                    digest: super::definition_digest(spec),
                    replicas: spec.replicas,
                },
            ))
        })
        .collect()
}
