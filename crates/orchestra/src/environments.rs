//! Environments: a blueprint's services turned into replicas, and where the
//! scheduler would put each one in the cloud as it is now.
//!
//! A replica is an ordinary container named `ENV-SERVICE-INDEX` whose
//! entry says which environment, service and index it is. Planning reads
//! the control plane and the peers' statuses, builds each replica's
//! container entry exactly as `coop container run` would (template
//! resolved and verified, size and limits applied), and places the
//! replicas one by one on a snapshot of the cloud, so each placement sees
//! the ones before it.

mod restart;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use coop_state::{ContainerEntry, PeerRecord, ReplicaOf};
use coop_types::{PeerId, PeerState};

use crate::blueprint::{self, Blueprint, Comparison, ServiceSpec, Spread};
use crate::error::ComputeError;
use crate::scheduler::{Constraint, Placement, Refusal, ReplicaRequest, Snapshot, Strategy};
use crate::service::Orchestra;
use crate::spec::RunSpec;

/// The container name of replica `index` of `service` in `env`.
pub fn replica_name(env: &str, service: &str, index: u32) -> String {
    format!("{env}-{service}-{index}")
}

/// Reads a blueprint sent by a client: `vars` are the values the client
/// resolved (its `--var`s, the `.env` beside the file and the variables of
/// its environment the blueprint refers to), `env_files` the texts of the
/// `env_file`s by the paths the blueprint gives.
pub fn read_blueprint(
    source: &str,
    vars: &BTreeMap<String, String>,
    env_files: &BTreeMap<String, String>,
) -> Result<Blueprint, ComputeError> {
    let variables = blueprint::Variables {
        cli: vars.clone(),
        ..Default::default()
    };
    let load = |path: &str| -> Result<String, String> {
        env_files
            .get(path)
            .cloned()
            .ok_or_else(|| format!("`{path}` was not sent with the blueprint"))
    };
    blueprint::parse(source, &variables, &load).map_err(|failure| {
        ComputeError::Invalid(format!("the blueprint cannot be used:\n{failure}"))
    })
}

/// Where one replica would go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedReplica {
    pub service: String,
    pub index: u32,
    /// Its container name.
    pub name: String,
    /// The chosen peer, if any fits.
    pub peer: Option<PeerId>,
    /// Where it runs now, if it already exists.
    pub current: Option<PeerId>,
    /// Why it fits nowhere, in a sentence (empty when placed).
    pub reason: String,
    /// Each ruled-out peer and why, when it fits nowhere.
    pub refusals: Vec<Refusal>,
    /// The entry it would be recorded with (peer and owner filled in when
    /// placed).
    #[serde(skip)]
    pub entry: Option<ContainerEntry>,
    /// What the scheduler was asked, to place it again if its peer refuses.
    #[serde(skip)]
    pub request: Option<ReplicaRequest>,
}

/// The command a service runs: Compose's `entrypoint` replaces the
/// template's, `command` follows it (or replaces the template's command
/// when no entrypoint is given).
fn argv_of(spec: &ServiceSpec) -> Vec<String> {
    match (&spec.entrypoint, &spec.command) {
        (Some(entrypoint), command) => entrypoint
            .iter()
            .chain(command.iter().flatten())
            .cloned()
            .collect(),
        (None, Some(command)) => command.clone(),
        (None, None) => Vec::new(),
    }
}

/// What `coop container run` would be given for one replica.
fn run_spec(name: &str, spec: &ServiceSpec) -> RunSpec {
    let restart = match spec.restart {
        blueprint::RestartPolicy::No => "no",
        blueprint::RestartPolicy::OnFailure { .. } => "on-failure",
        blueprint::RestartPolicy::Always | blueprint::RestartPolicy::UnlessStopped => "always",
    };
    RunSpec {
        template: spec.image.to_string(),
        name: Some(name.to_string()),
        size: spec.size.clone(),
        cpus: spec.limits.cpus_milli.map(|m| format!("{m}m")),
        memory: spec.limits.memory_bytes.map(|b| b.to_string()),
        disk: None,
        pids: spec.limits.pids.map(|p| p.to_string()),
        ports: spec
            .ports
            .iter()
            .map(|p| format!("{}:{}/{}", p.host, p.container, p.protocol))
            .collect(),
        env: spec
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        restart: Some(restart.to_string()),
        argv: argv_of(spec),
    }
}

/// The peer `needle` names: its full id, a unique id prefix or its name.
fn peer_named(records: &[PeerRecord], needle: &str) -> Option<PeerId> {
    if let Ok(id) = needle.parse::<PeerId>() {
        return records.iter().map(PeerRecord::id).find(|p| *p == id);
    }
    let by_name: Vec<PeerId> = records
        .iter()
        .filter(|r| r.cert.body.name == needle)
        .map(PeerRecord::id)
        .collect();
    if by_name.len() == 1 {
        return by_name.first().copied();
    }
    let by_prefix: Vec<PeerId> = records
        .iter()
        .map(PeerRecord::id)
        .filter(|id| needle.len() >= 4 && id.to_string().starts_with(needle))
        .collect();
    (by_prefix.len() == 1).then(|| by_prefix[0])
}

/// The scheduler's rules for a service's placement.
fn constraints_of(
    service: &str,
    spec: &ServiceSpec,
    records: &[PeerRecord],
) -> Result<Vec<Constraint>, ComputeError> {
    spec.placement
        .constraints
        .iter()
        .map(|constraint| {
            Ok(match constraint {
                blueprint::Constraint::Label {
                    key,
                    comparison: Comparison::Equal,
                    value,
                } => Constraint::LabelIs {
                    key: key.clone(),
                    value: value.clone(),
                },
                blueprint::Constraint::Label {
                    key,
                    comparison: Comparison::NotEqual,
                    value,
                } => Constraint::LabelIsNot {
                    key: key.clone(),
                    value: value.clone(),
                },
                blueprint::Constraint::Hostname {
                    comparison: Comparison::Equal,
                    value,
                } => Constraint::HostnameIs(value.clone()),
                blueprint::Constraint::Hostname {
                    comparison: Comparison::NotEqual,
                    value,
                } => Constraint::HostnameIsNot(value.clone()),
                blueprint::Constraint::Zone(zone) => Constraint::LabelIs {
                    key: "zone".into(),
                    value: zone.clone(),
                },
                blueprint::Constraint::Peer(needle) => {
                    Constraint::Peer(peer_named(records, needle).ok_or_else(|| {
                        ComputeError::Invalid(format!(
                            "services.{service}.x-coop.peer: `{needle}` names no peer of this cloud (or several); see `coop peers`"
                        ))
                    })?)
                }
            })
        })
        .collect()
}

/// What the scheduler is asked for one replica of `service`.
fn request_for(
    env: &str,
    service: &str,
    spec: &ServiceSpec,
    entry: &ContainerEntry,
    constraints: Vec<Constraint>,
    current: Option<PeerId>,
) -> ReplicaRequest {
    ReplicaRequest {
        service: format!("{env}/{service}"),
        resources: entry.limits.resources(),
        pids: u64::from(entry.limits.pids),
        constraints,
        strategy: strategy_of(spec),
        near: spec.placement.near.clone(),
        arch: None,
        ports: spec
            .ports
            .iter()
            .map(|p| (p.host, p.protocol.to_string()))
            .collect(),
        current,
        refused_by: Default::default(),
    }
}

fn strategy_of(spec: &ServiceSpec) -> Strategy {
    if spec.placement.binpack {
        return Strategy::Binpack;
    }
    match spec.placement.spread.first() {
        None | Some(Spread::Zone) => Strategy::default(),
        Some(Spread::Peer) => Strategy::SpreadPeers,
        Some(Spread::Label(key)) => Strategy::Spread { label: key.clone() },
    }
}

impl Orchestra {
    /// The cloud as the scheduler sees it now; with `without`, as if that
    /// environment's replicas were not there (they are being placed again).
    pub fn snapshot(&self, without: Option<&str>) -> Result<Snapshot, ComputeError> {
        let store = self.control().store();
        let records = store.peers()?;
        let containers: Vec<ContainerEntry> = store
            .containers()?
            .into_iter()
            .filter(|c| without.is_none_or(|env| c.owner.as_ref().is_none_or(|o| o.env != env)))
            .collect();
        let me = self.peer();
        let mesh = self.mesh();
        Ok(Snapshot::of_cloud(&records, &containers, |id| {
            let status = mesh.liveness().status(id).map(|(status, _)| status);
            let state = if *id == me {
                PeerState::Up
            } else {
                mesh.peer_state(id)
            };
            (status, state)
        }))
    }

    /// Where every replica of `blueprint`, deployed as environment `env`,
    /// would go in the cloud as it is now. Replicas that already run stay
    /// where they are when their peer still qualifies.
    pub fn plan_environment(
        &self,
        env: &str,
        blueprint: &Blueprint,
    ) -> Result<Vec<PlannedReplica>, ComputeError> {
        if !coop_state::valid_env_name(env) {
            return Err(ComputeError::Invalid(format!(
                "environment name `{env}`: use 1-63 characters of a-z, 0-9 and `-`, starting with a letter"
            )));
        }
        let store = self.control().store();
        let records = store.peers()?;
        let current: BTreeMap<String, PeerId> = store
            .env_replicas(env)?
            .into_iter()
            .map(|c| (c.name, c.peer))
            .collect();
        let mut snapshot = self.snapshot(Some(env))?;
        let mut plan = Vec::new();
        for (service, spec) in &blueprint.services {
            let constraints = constraints_of(service, spec, &records)?;
            for index in 0..spec.replicas {
                let name = replica_name(env, service, index);
                // The peer is set once the replica is placed.
                let mut entry = self.entry_for(self.peer(), run_spec(&name, spec))?;
                let here = current.get(&name).copied();
                let request = request_for(env, service, spec, &entry, constraints.clone(), here);
                let mut planned = PlannedReplica {
                    service: service.clone(),
                    index,
                    name,
                    peer: None,
                    current: here,
                    reason: String::new(),
                    refusals: Vec::new(),
                    entry: None,
                    request: None,
                };
                match snapshot.place(&request) {
                    Placement::Placed(peer) => {
                        entry.peer = peer;
                        entry.owner = Some(ReplicaOf {
                            env: env.to_string(),
                            service: service.clone(),
                            index,
                            epoch: 1,
                        });
                        planned.peer = Some(peer);
                        planned.entry = Some(entry);
                        planned.request = Some(request);
                    }
                    Placement::Unplaceable(refusals) => {
                        planned.reason = Placement::summary(&refusals);
                        planned.refusals = refusals;
                    }
                }
                plan.push(planned);
            }
        }
        Ok(plan)
    }
}

/// The services of `blueprint` in an order that starts every dependency
/// before the services that depend on it (the reader refused cycles), by
/// name among equals.
pub fn start_order(blueprint: &Blueprint) -> Vec<String> {
    let mut left: BTreeMap<&String, Vec<&String>> = blueprint
        .services
        .iter()
        .map(|(name, spec)| (name, spec.depends_on.keys().collect()))
        .collect();
    let mut order: Vec<String> = Vec::new();
    while !left.is_empty() {
        let ready: Vec<&String> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| order.contains(d)))
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            // Only a cycle gets here, and the reader refuses those; start
            // the rest in name order rather than loop.
            order.extend(left.keys().map(|n| (*n).clone()));
            break;
        }
        for name in ready {
            left.remove(name);
            order.push(name.clone());
        }
    }
    order
}

/// One replica of an environment as it is now.
#[derive(Clone, Debug)]
pub struct ReplicaStatus {
    pub service: String,
    pub index: u32,
    pub status: crate::ContainerStatus,
}

/// An environment as it is now.
#[derive(Clone, Debug)]
pub struct EnvironmentStatus {
    pub record: coop_state::EnvironmentRecord,
    pub replicas: Vec<ReplicaStatus>,
    pub events: Vec<coop_state::EnvEvent>,
}

impl Orchestra {
    /// Notes an event of `env`; a failure to note it is logged, not fatal.
    async fn note(
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
        let services = blueprint
            .services
            .iter()
            .map(|(name, spec)| {
                let encoded = postcard::to_stdvec(spec).map_err(|e| {
                    ComputeError::Internal(format!("cannot encode service {name}: {e}"))
                })?;
                let mut unscaled = spec.clone();
                unscaled.replicas = 0;
                Ok((
                    name.clone(),
                    coop_state::ServiceEntry {
                        spec: encoded,
                        digest: unscaled.digest(),
                        replicas: spec.replicas,
                    },
                ))
            })
            .collect::<Result<BTreeMap<_, _>, ComputeError>>()?;
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
        };
        self.control()
            .write(coop_state::Command::PutEnvironment {
                record: record.clone(),
                expected_generation: 0,
            })
            .await?;
        let mut started: Vec<String> = Vec::new();
        for service in start_order(blueprint) {
            for planned in plan.iter().filter(|p| p.service == service) {
                let (Some(entry), Some(request)) = (planned.entry.clone(), planned.request.clone())
                else {
                    continue;
                };
                match self.start_replica(env, entry, request).await {
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
    async fn set_phase(&self, env: &str, phase: coop_state::EnvPhase) -> Result<(), ComputeError> {
        let Some(mut record) = self.control().store().environment(env)? else {
            return Err(ComputeError::NotFound(format!("no environment `{env}`")));
        };
        let expected_generation = record.generation;
        record.phase = phase;
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
    async fn start_replica(
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
        let record = store.environment(env)?.ok_or_else(|| {
            ComputeError::NotFound(format!(
                "no environment `{env}`; list environments with `coop env ls`"
            ))
        })?;
        let entries = store.env_replicas(env)?;
        let statuses = self.statuses(entries).await?;
        let replicas = statuses
            .into_iter()
            .filter_map(|status| {
                let owner = status.entry.owner.clone()?;
                Some(ReplicaStatus {
                    service: owner.service,
                    index: owner.index,
                    status,
                })
            })
            .collect();
        Ok(EnvironmentStatus {
            record,
            replicas,
            events: store.env_events(env)?,
        })
    }

    /// Removes every replica of `env`, then the environment.
    pub async fn remove_environment(&self, env: &str) -> Result<usize, ComputeError> {
        let store = self.control().store();
        if store.environment(env)?.is_none() {
            return Err(ComputeError::NotFound(format!(
                "no environment `{env}`; list environments with `coop env ls`"
            )));
        }
        // The leader stops healing it first, so nothing comes back.
        self.set_phase(env, coop_state::EnvPhase::Removing).await?;
        let replicas = store.env_replicas(env)?;
        let count = replicas.len();
        for replica in replicas {
            self.act(&replica.name, crate::Action::Remove { force: true })
                .await?;
        }
        self.control()
            .write(coop_state::Command::DeleteEnvironment {
                name: env.to_string(),
            })
            .await?;
        Ok(count)
    }
}

/// How long a replica's peer may be silent before the replica is placed
/// on another peer, unless set otherwise (`coop up --reschedule-after`).
pub const RESCHEDULE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `scale` waits for new replicas to run before it answers.
pub const SCALE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
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
        loop {
            tick.tick().await;
            if !self.control().is_leader() {
                continue;
            }
            if let Err(err) = self.heal_pass(reschedule_after).await {
                tracing::warn!(%err, "environment healing pass failed");
            }
        }
    }

    async fn heal_pass(&self, reschedule_after: std::time::Duration) -> Result<(), ComputeError> {
        let store = self.control().store();
        let me = self.peer();
        for env in store.environments()? {
            if env.phase != coop_state::EnvPhase::Ready {
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
                if gone && let Err(err) = self.move_replica(&env, entry.clone(), silent).await {
                    tracing::warn!(replica = %entry.name, %err, "cannot move a replica off a silent peer");
                }
            }
            if let Err(err) = self.replace_missing(&env).await {
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
                let Placement::Placed(peer) = self.snapshot(None)?.place(&request) else {
                    continue;
                };
                entry.peer = peer;
                entry.owner = Some(ReplicaOf {
                    env: env.name.clone(),
                    service: service.clone(),
                    index,
                    epoch: 1,
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
            return Err(ComputeError::NotFound(format!(
                "no environment `{env}`; list environments with `coop env ls`"
            )));
        };
        if record.phase != coop_state::EnvPhase::Ready {
            return Err(ComputeError::Conflict(format!(
                "environment `{env}` is {:?}; scale it once that is done",
                record.phase
            )));
        }
        for (service, count) in counts {
            let Some(entry) = record.services.get_mut(service) else {
                return Err(ComputeError::NotFound(format!(
                    "environment `{env}` has no service `{service}` (it has {})",
                    record
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
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
            if running >= wanted || std::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }

    /// Places `entry` (a replica of `env` on a silent peer) elsewhere and
    /// starts it there with the next lease epoch.
    async fn move_replica(
        &self,
        env: &coop_state::EnvironmentRecord,
        entry: ContainerEntry,
        silent: std::time::Duration,
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
                "{} moves from {} (silent for {} s) to {}",
                moved.name,
                from.short(),
                silent.as_secs(),
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
