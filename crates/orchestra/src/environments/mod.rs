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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use coop_state::{ContainerEntry, PeerRecord, ReplicaOf};
use coop_types::{PeerId, PeerState};

use crate::blueprint::{self, Blueprint, Comparison, ServiceSpec, Spread};
use crate::error::ComputeError;
use crate::scheduler::{Constraint, Placement, Refusal, ReplicaRequest, Snapshot, Strategy};
use crate::service::Orchestra;
use crate::spec::RunSpec;

/// The error for an environment that does not exist.
pub(crate) fn env_not_found(env: &str) -> ComputeError {
    ComputeError::NotFound(format!(
        "no environment `{env}`; list environments with `coop env ls`"
    ))
}

/// The error for a service `env` does not have.
pub(crate) fn no_such_service(
    env: &str,
    service: &str,
    record: &coop_state::EnvironmentRecord,
) -> ComputeError {
    let services: Vec<&str> = record.services.keys().map(String::as_str).collect();
    ComputeError::NotFound(format!(
        "environment `{env}` has no service `{service}` (it has {})",
        services.join(", ")
    ))
}

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
        networks: Vec::new(),
    }
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
                blueprint::Constraint::Peer(needle) => Constraint::Peer(
                    coop_state::find_peer(records, needle)
                        .map(PeerRecord::id)
                        .map_err(|err| {
                            ComputeError::Invalid(format!("services.{service}.x-coop.peer: {err}"))
                        })?,
                ),
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
                            digest: definition_digest(spec),
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

/// The digest of a service's definition, whatever its replica count.
pub fn definition_digest(spec: &ServiceSpec) -> [u8; 32] {
    let mut unscaled = spec.clone();
    unscaled.replicas = 0;
    unscaled.digest()
}

/// The services of `blueprint` in an order that starts every dependency
/// before the services that depend on it (the reader refused cycles), by
/// name among equals.
pub fn start_order(blueprint: &Blueprint) -> Vec<String> {
    start_order_of(&blueprint.services)
}

/// [`start_order`] of services by name.
pub fn start_order_of(services: &BTreeMap<String, ServiceSpec>) -> Vec<String> {
    let mut left: BTreeMap<&String, Vec<&String>> = services
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
    /// Replicas the environment should have and has no container for, with
    /// where they would go now or why they fit nowhere.
    pub pending: Vec<PlannedReplica>,
    pub events: Vec<coop_state::EnvEvent>,
}

mod heal;
mod lifecycle;
mod restart;
mod update;

pub use heal::{RESCHEDULE_AFTER, SCALE_WAIT};
pub use update::UPDATE_STALE;
