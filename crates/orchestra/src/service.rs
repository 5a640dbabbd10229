//! [`Orchestra`]: the compute service of one peer. It runs leases on this
//! peer, acts on the containers it runs, and forwards the same calls to
//! the peer that runs a container (`coop/compute/1`, `coop/exec/1`), so
//! every caller (the API, the reconcile loop, later the scheduler) sees
//! one service whichever peer it asks.
//!
//! Desired state lives in the control plane; the runtime holds what a
//! container does now. Operations write the control plane first and then
//! act on the runtime, undoing the write when the runtime refuses, so
//! nothing is left half-created. Each container has a lock of its own,
//! taken after its template is fetched; leases are admitted one at a time
//! so two of them never both fit into the same free capacity.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;

use coop_compute::runtime::{
    Container, ContainerState, ExecHandle, ExecOptions, ExitStatus, Stats,
};
use coop_mesh::Mesh;
use coop_state::{Command, ContainerEntry, ControlPlane, DesiredState};
use coop_types::{EventLog, PeerId, PeerState, Resources};

use crate::error::{ComputeError, runtime_error};
use crate::exec::{ExecCall, RemoteSession};
use crate::host::{ComputeHost, should_restart};
use crate::lease::{LeasePolicy, held};
use crate::protocol::{self, Action, ComputeCall, ComputeReply, LOG_CHUNK};

/// How long `stop` waits after SIGTERM before SIGKILL: one constant for
/// the API, the protocol and the reconcile loop.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often a follower of a log on this peer looks for more output.
const LOCAL_LOG_POLL: Duration = Duration::from_millis(100);
/// How often a follower of a log on another peer asks for more.
const REMOTE_LOG_POLL: Duration = Duration::from_millis(500);

/// What the runtime of a container's peer reports about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Its address on the peer's container bridge.
    pub address: Ipv4Addr,
    /// Created, running or exited.
    pub state: RunState,
    /// What its health checks found, when its service has them.
    pub health: Option<crate::health::Health>,
    /// Where its setup steps stand, when its service has them.
    pub setup: Option<crate::setup::SetupState>,
}

/// Where a container is in its life, as the wire carries it (the
/// runtime's own records are JSON with tagged enums, which a compact
/// binary encoding cannot carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Prepared but never started.
    Created,
    /// Its process runs: host pid of its init, start time (unix seconds).
    Running { pid: i32, started_at: u64 },
    /// Its process ended: the code or the signal (neither when it died
    /// unwatched), whether the kernel OOM-killed a process of it, and when.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        oom_killed: bool,
        finished_at: u64,
    },
}

impl RunState {
    /// Whether the container's process runs.
    pub fn is_running(&self) -> bool {
        matches!(self, RunState::Running { .. })
    }
}

impl From<&ContainerState> for RunState {
    fn from(state: &ContainerState) -> Self {
        match state {
            ContainerState::Created => RunState::Created,
            ContainerState::Running { pid, started_at } => RunState::Running {
                pid: *pid,
                started_at: *started_at,
            },
            ContainerState::Exited(exit) => {
                let (code, signal) = match exit.status {
                    ExitStatus::Code(code) => (Some(code), None),
                    ExitStatus::Signal(signal) => (None, Some(signal)),
                    ExitStatus::Unknown => (None, None),
                };
                RunState::Exited {
                    code,
                    signal,
                    oom_killed: exit.oom_killed,
                    finished_at: exit.finished_at,
                }
            }
        }
    }
}

impl From<&Container> for Observed {
    fn from(container: &Container) -> Self {
        Observed {
            address: container.address,
            state: RunState::from(&container.state),
            health: None,
            setup: None,
        }
    }
}

/// Where a read of a container's log starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStart {
    /// At this byte of the log: 0 for its start, or just after the last
    /// byte a reader got, to resume a stream that ended.
    Offset(u64),
    /// At the output written at or after this time (unix seconds), in
    /// whole runs: the log has no times on its lines, so the run that was
    /// going then is read from its start.
    Since(u64),
}

/// A container: its recorded entry and what its peer's runtime says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub entry: ContainerEntry,
    /// `None` when the runtime has no such container, or could not be asked.
    pub actual: Option<Observed>,
    /// Whether its peer answered (false: the peer is down or silent, so
    /// the actual state is unknown).
    pub observed: bool,
}

/// What this peer lends to containers and what they hold now.
#[derive(Clone, Debug)]
pub struct CapacityReport {
    pub peer: PeerId,
    /// Why containers cannot run here, when they cannot.
    pub unavailable: Option<String>,
    pub capacity: Resources,
    pub held: Resources,
    /// Containers placed on this peer.
    pub containers: usize,
}

/// An exec started in a container, here or on another peer, ready to be
/// joined to the client's byte stream.
pub enum ExecSession {
    Local(ExecHandle),
    Remote(RemoteSession),
}

impl ExecSession {
    /// Carries the session's frames over `io` until the process ends.
    pub async fn serve<S>(self, io: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        match self {
            ExecSession::Local(handle) => crate::frames::serve_exec(io, handle).await,
            ExecSession::Remote(session) => session.pipe(io).await,
        }
    }
}

/// Locks by key (a container name, a template's content id), made on
/// first use and dropped when nobody holds them.
#[derive(Debug, Default)]
pub(crate) struct KeyedLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    pub(crate) async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        self.slot(key).lock_owned().await
    }

    /// The lock if nobody holds it now.
    pub(crate) fn try_lock(&self, key: &str) -> Option<OwnedMutexGuard<()>> {
        self.slot(key).try_lock_owned().ok()
    }

    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut map) = self.0.lock() else {
            // A poisoned map only loses sharing: a fresh lock still works.
            return Arc::default();
        };
        // Forget locks nobody holds, so the map stays as small as the set
        // of containers being worked on.
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(key.to_string()).or_default().clone()
    }
}

struct Inner {
    control: ControlPlane,
    mesh: Mesh,
    host: Arc<ComputeHost>,
    policy: Arc<dyn LeasePolicy>,
    containers: KeyedLocks,
    /// Held from a lease's admission check until its entry is written.
    admitting: tokio::sync::Mutex<()>,
    /// What the health checks of this peer's replicas found.
    health: Mutex<HashMap<String, crate::health::Tracked>>,
    /// Setups of this peer's replicas, by name: the run they are for and
    /// where they stand.
    setup: Mutex<HashMap<String, (u64, crate::setup::SetupState)>>,
    /// Held by the leader while it moves or creates replicas of
    /// environments, so two of its tasks never race for one replica.
    healing: tokio::sync::Mutex<()>,
    /// What this peer did that the cloud's events show (restarts).
    events: Arc<EventLog>,
}

/// The compute service of this peer; cheap to clone.
#[derive(Clone)]
pub struct Orchestra(Arc<Inner>);

impl Orchestra {
    /// The service over this peer's `host`, admitting leases with `policy`
    /// and noting what it does on its own (restarts) in `events`.
    pub fn new(
        control: ControlPlane,
        mesh: Mesh,
        host: Arc<ComputeHost>,
        policy: Arc<dyn LeasePolicy>,
        events: Arc<EventLog>,
    ) -> Self {
        Orchestra(Arc::new(Inner {
            control,
            mesh,
            host,
            policy,
            containers: KeyedLocks::default(),
            admitting: tokio::sync::Mutex::new(()),
            health: Mutex::default(),
            setup: Mutex::default(),
            healing: tokio::sync::Mutex::new(()),
            events,
        }))
    }

    /// Starts answering other peers' compute calls and exec sessions.
    pub fn serve(&self) {
        self.0
            .mesh
            .serve::<protocol::ComputeProtocol>(protocol::ComputeService(self.clone()));
        self.0
            .mesh
            .serve_streams::<crate::exec::ExecProtocol>(crate::exec::ExecService(self.clone()));
    }

    /// This peer's compute host (templates, runtime, blobs).
    pub fn host(&self) -> &Arc<ComputeHost> {
        &self.0.host
    }

    pub(crate) fn control(&self) -> &ControlPlane {
        &self.0.control
    }

    pub(crate) fn mesh(&self) -> &Mesh {
        &self.0.mesh
    }

    pub(crate) fn events(&self) -> &EventLog {
        &self.0.events
    }

    pub(crate) fn locks(&self) -> &KeyedLocks {
        &self.0.containers
    }

    pub(crate) fn health_table(&self) -> &Mutex<HashMap<String, crate::health::Tracked>> {
        &self.0.health
    }

    pub(crate) fn setup_table(&self) -> &Mutex<HashMap<String, (u64, crate::setup::SetupState)>> {
        &self.0.setup
    }

    /// Held while environment replicas are moved or created by the leader.
    pub(crate) async fn healing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.healing.lock().await
    }

    /// A container's observed state, with what its health checks found.
    fn observed(&self, container: Option<Container>) -> Option<Observed> {
        let container = container?;
        let mut observed = Observed::from(&container);
        if let RunState::Running { started_at, .. } = observed.state {
            observed.health = self.health_of(&container.id, started_at);
            observed.setup = self.setup_of(&container.id, started_at);
        }
        Some(observed)
    }

    /// This peer.
    pub fn peer(&self) -> PeerId {
        self.0.host.peer()
    }

    /// Runs blocking work on the host off the async workers.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&ComputeHost) -> Result<T, ComputeError> + Send + 'static,
    ) -> Result<T, ComputeError> {
        let host = self.0.host.clone();
        tokio::task::spawn_blocking(move || work(&host))
            .await
            .map_err(|e| ComputeError::Internal(format!("a runtime task failed: {e}")))?
    }

    /// The recorded entry of `name`.
    pub fn entry(&self, name: &str) -> Result<ContainerEntry, ComputeError> {
        self.0.control.store().container(name)?.ok_or_else(|| {
            ComputeError::NotFound(format!(
                "no container named `{name}`; list containers with `coop container ls --all`"
            ))
        })
    }

    /// The entry of a container this peer runs, or an error saying where
    /// it runs.
    fn local_entry(&self, name: &str) -> Result<ContainerEntry, ComputeError> {
        let entry = self.entry(name)?;
        if entry.peer != self.peer() {
            return Err(ComputeError::Invalid(format!(
                "container `{name}` runs on peer {}, not on this one",
                self.peer_label(entry.peer)
            )));
        }
        Ok(entry)
    }

    /// A peer's name and short id, for messages.
    fn peer_label(&self, peer: PeerId) -> String {
        let name = self
            .0
            .control
            .store()
            .peers()
            .ok()
            .and_then(|peers| peers.into_iter().find(|r| r.id() == peer))
            .map(|r| r.cert.body.name);
        match name {
            Some(name) => format!("{name} ({})", peer.short()),
            None => peer.short(),
        }
    }

    /// The status of a container of this peer, as its runtime sees it.
    async fn status_here(&self, entry: ContainerEntry) -> Result<ContainerStatus, ComputeError> {
        let name = entry.name.clone();
        let container = self.blocking(move |host| Ok(host.observe(&name))).await?;
        Ok(ContainerStatus {
            entry,
            actual: self.observed(container),
            observed: true,
        })
    }

    /// Runs `entry` on its peer: here, or as a lease the other peer
    /// decides on.
    pub async fn run(&self, entry: ContainerEntry) -> Result<ContainerStatus, ComputeError> {
        if entry.peer == self.peer() {
            return self.lease_local(entry).await;
        }
        let peer = entry.peer;
        match protocol::call(self, peer, ComputeCall::Lease(Box::new(entry))).await? {
            ComputeReply::Status(status) => Ok(*status),
            other => Err(protocol::unexpected(peer, &other)),
        }
    }

    /// Runs `entry` on this peer, as its lease: checks that it fits in
    /// what the peer offers, records it, fetches its template on first use
    /// and starts it. A failure at any step leaves nothing behind.
    pub(crate) async fn lease_local(
        &self,
        entry: ContainerEntry,
    ) -> Result<ContainerStatus, ComputeError> {
        self.0.host.runtime()?;
        let check = entry.clone();
        self.blocking(move |host| {
            host.spec(&check, std::path::PathBuf::from("/"), &[])
                .map(|_| ())
        })
        .await?;
        let _container = self.0.containers.lock(&entry.name).await;
        {
            let _admitting = self.0.admitting.lock().await;
            // Caught up with the leader first: the caller may have just
            // removed an older container of this name (an update, a move).
            self.0.control.read_barrier().await?;
            if self.0.control.store().container(&entry.name)?.is_some() {
                return Err(ComputeError::Conflict(format!(
                    "a container named `{}` already exists; pick another --name or remove it",
                    entry.name
                )));
            }
            self.admit(&entry).await?;
            self.0
                .control
                .write(Command::PutContainer(entry.clone()))
                .await?;
        }
        // The state machine gave it its network addresses: read it back.
        let entry = if entry.networks.is_empty() {
            entry
        } else {
            self.0.control.read_barrier().await?;
            self.0
                .control
                .store()
                .container(&entry.name)?
                .ok_or_else(|| {
                    ComputeError::Conflict(format!(
                        "container `{}` was removed meanwhile",
                        entry.name
                    ))
                })?
        };
        if let Err(err) = self.launch(&entry).await {
            // Nothing half-created: the runtime's container and the record go.
            let name = entry.name.clone();
            let _ = self
                .blocking(move |host| host.runtime()?.delete(&name, true).map_err(runtime_error))
                .await;
            let _ = self
                .0
                .control
                .write(Command::DeleteContainer {
                    name: entry.name.clone(),
                })
                .await;
            return Err(err);
        }
        self.status_here(entry).await
    }

    /// Refuses `entry` when the lease policy says it does not fit next to
    /// this peer's other containers. Reads the control plane after a
    /// barrier, so a lease just granted through another peer's write is
    /// counted.
    async fn admit(&self, entry: &ContainerEntry) -> Result<(), ComputeError> {
        self.0.control.read_barrier().await?;
        let entries = self.0.control.store().containers()?;
        let finished = self.finished(&entries).await?;
        self.0.policy.admit(
            &self.0.host.capacity(),
            &entries,
            &finished,
            self.peer(),
            entry,
        )
    }

    /// The containers of `entries` on this peer that exited for good:
    /// their restart policy will not start them again.
    async fn finished(&self, entries: &[ContainerEntry]) -> Result<Vec<String>, ComputeError> {
        let me = self.peer();
        let mine: Vec<ContainerEntry> = entries.iter().filter(|e| e.peer == me).cloned().collect();
        self.blocking(move |host| {
            Ok(mine
                .iter()
                .filter(|e| {
                    host.observe(&e.name).is_some_and(|c| match c.state {
                        ContainerState::Exited(exit) => {
                            !should_restart(e.restart, exit.status, false)
                        }
                        _ => false,
                    })
                })
                .map(|e| e.name.clone())
                .collect::<Vec<_>>())
        })
        .await
    }

    /// What this peer lends to containers and what they hold now.
    pub async fn capacity_report(&self) -> Result<CapacityReport, ComputeError> {
        let entries = self.0.control.store().containers()?;
        let finished = self.finished(&entries).await?;
        let me = self.peer();
        Ok(CapacityReport {
            peer: me,
            unavailable: self.0.host.unavailable_reason().map(str::to_string),
            capacity: self.0.host.capacity(),
            held: held(&entries, me, "", &finished),
            containers: entries.iter().filter(|e| e.peer == me).count(),
        })
    }

    /// Fetches the template if this peer lacks it, then creates and
    /// starts the container.
    async fn launch(&self, entry: &ContainerEntry) -> Result<(), ComputeError> {
        self.0
            .host
            .ensure_template(self.0.control.store(), entry)
            .await?;
        let launched = entry.clone();
        let networks = self.network_attaches(entry)?;
        self.blocking(move |host| host.launch(&launched, &networks).map(|_| ()))
            .await
    }

    /// The private networks `entry` joins, as its runtime spec names them.
    pub(crate) fn network_attaches(
        &self,
        entry: &ContainerEntry,
    ) -> Result<Vec<coop_compute::runtime::NetworkAttach>, ComputeError> {
        let store = self.0.control.store();
        entry
            .networks
            .iter()
            .map(|joined| {
                let network = store.network(&joined.network)?.ok_or_else(|| {
                    ComputeError::NotFound(format!("no network named `{}`", joined.network))
                })?;
                if joined.address == coop_state::Attachment::ANY {
                    return Err(ComputeError::Internal(format!(
                        "container `{}` has no address on network `{}` yet",
                        entry.name, joined.network
                    )));
                }
                Ok(coop_compute::runtime::NetworkAttach {
                    id: network.id,
                    subnet: network.subnet,
                    address: joined.address,
                    mtu: coop_net::network_mtu(),
                })
            })
            .collect()
    }

    async fn set_desired(&self, name: &str, desired: DesiredState) -> Result<(), ComputeError> {
        self.0
            .control
            .write(Command::SetContainerDesired {
                name: name.to_string(),
                desired,
            })
            .await?;
        Ok(())
    }

    /// Acts on `name` wherever it runs: here, or through its peer.
    pub async fn act(&self, name: &str, action: Action) -> Result<ContainerStatus, ComputeError> {
        let entry = self.entry(name)?;
        if entry.peer == self.peer() {
            return self.act_local(name, action).await;
        }
        let call = ComputeCall::Act {
            name: name.to_string(),
            action,
        };
        match protocol::call(self, entry.peer, call).await? {
            ComputeReply::Status(status) => Ok(*status),
            other => Err(protocol::unexpected(entry.peer, &other)),
        }
    }

    /// Starts, stops, restarts or removes a container this peer runs.
    pub(crate) async fn act_local(
        &self,
        name: &str,
        action: Action,
    ) -> Result<ContainerStatus, ComputeError> {
        self.0.host.runtime()?;
        if matches!(action, Action::Start | Action::Restart) {
            // The template first, outside the container's lock: a slow
            // fetch holds up nothing but this call.
            let entry = self.local_entry(name)?;
            self.0
                .host
                .ensure_template(self.0.control.store(), &entry)
                .await?;
        }
        let _container = self.0.containers.lock(name).await;
        let mut entry = self.local_entry(name)?;
        match action {
            Action::Start | Action::Restart => {
                {
                    let _admitting = self.0.admitting.lock().await;
                    self.admit(&entry).await?;
                    self.set_desired(name, DesiredState::Running).await?;
                }
                entry.desired = DesiredState::Running;
                let launched = entry.clone();
                let restart = matches!(action, Action::Restart);
                let networks = self.network_attaches(&entry)?;
                self.blocking(move |host| {
                    if restart {
                        match host.runtime()?.stop(&launched.name, STOP_GRACE) {
                            Ok(_) | Err(coop_compute::runtime::RuntimeError::NotFound(_)) => {}
                            Err(e) => return Err(runtime_error(e)),
                        }
                    }
                    host.launch(&launched, &networks).map(|_| ())
                })
                .await?;
            }
            Action::Stop { grace_secs } => {
                self.set_desired(name, DesiredState::Stopped).await?;
                entry.desired = DesiredState::Stopped;
                let id = name.to_string();
                let grace = grace_secs.map_or(STOP_GRACE, |s| Duration::from_secs(s.into()));
                self.blocking(move |host| {
                    host.runtime()?
                        .stop(&id, grace)
                        .map(|_| ())
                        .map_err(runtime_error)
                })
                .await?;
            }
            Action::Remove { force } => {
                let status = self.status_here(entry).await?;
                let running = status.actual.as_ref().is_some_and(|a| a.state.is_running());
                if running && !force {
                    return Err(ComputeError::Conflict(format!(
                        "container `{name}` is running; stop it first or remove it with -f"
                    )));
                }
                let id = name.to_string();
                self.blocking(move |host| host.runtime()?.delete(&id, true).map_err(runtime_error))
                    .await?;
                self.0
                    .control
                    .write(Command::DeleteContainer {
                        name: name.to_string(),
                    })
                    .await?;
                return Ok(status);
            }
        }
        self.status_here(entry).await
    }

    /// What this peer's runtime says about `names` (those it runs).
    pub(crate) async fn observe_local(
        &self,
        names: Vec<String>,
    ) -> Result<Vec<ContainerStatus>, ComputeError> {
        let me = self.peer();
        let entries: Vec<ContainerEntry> = names
            .iter()
            .filter_map(|n| self.0.control.store().container(n).ok().flatten())
            .filter(|e| e.peer == me)
            .collect();
        let observed = self
            .blocking(move |host| {
                Ok(entries
                    .into_iter()
                    .map(|entry| (host.observe(&entry.name), entry))
                    .collect::<Vec<_>>())
            })
            .await?;
        Ok(observed
            .into_iter()
            .map(|(container, entry)| ContainerStatus {
                actual: self.observed(container),
                entry,
                observed: true,
            })
            .collect())
    }

    /// The status of each of `entries`, asking each other peer about its
    /// own (at most [`protocol::OBSERVE_TIMEOUT`]; an unreachable peer's
    /// containers stay unobserved).
    pub async fn statuses(
        &self,
        entries: Vec<ContainerEntry>,
    ) -> Result<Vec<ContainerStatus>, ComputeError> {
        let me = self.peer();
        let mut by_peer: BTreeMap<PeerId, Vec<String>> = BTreeMap::new();
        // Peers known to be down are not asked: their containers show as
        // unknown at once instead of after a timeout.
        let up = |peer: &PeerId| {
            !matches!(
                self.0.mesh.peer_state(peer),
                PeerState::Down | PeerState::Revoked
            )
        };
        for entry in entries.iter().filter(|e| e.peer != me && up(&e.peer)) {
            by_peer
                .entry(entry.peer)
                .or_default()
                .push(entry.name.clone());
        }
        let asked = futures::future::join_all(
            by_peer
                .into_iter()
                .map(|(peer, names)| protocol::call(self, peer, ComputeCall::Observe { names })),
        )
        .await;
        let mut remote: BTreeMap<String, ContainerStatus> = BTreeMap::new();
        for reply in asked.into_iter().flatten() {
            if let ComputeReply::Statuses(statuses) = reply {
                remote.extend(statuses.into_iter().map(|s| (s.entry.name.clone(), s)));
            }
        }
        let mine: Vec<ContainerEntry> = entries.iter().filter(|e| e.peer == me).cloned().collect();
        let mut here: BTreeMap<String, ContainerStatus> = self
            .observe_local(mine.iter().map(|e| e.name.clone()).collect())
            .await?
            .into_iter()
            .map(|s| (s.entry.name.clone(), s))
            .collect();
        Ok(entries
            .into_iter()
            .map(|entry| {
                let found = here
                    .remove(&entry.name)
                    .or_else(|| remote.remove(&entry.name));
                found.unwrap_or(ContainerStatus {
                    entry,
                    actual: None,
                    observed: false,
                })
            })
            .collect())
    }

    /// Resource use of `name` now, wherever it runs.
    pub async fn stats(&self, name: &str) -> Result<Stats, ComputeError> {
        let entry = self.entry(name)?;
        if entry.peer == self.peer() {
            return self.stats_local(name).await;
        }
        let call = ComputeCall::Stats {
            name: name.to_string(),
        };
        match protocol::call(self, entry.peer, call).await? {
            ComputeReply::Stats(stats) => Ok(stats),
            other => Err(protocol::unexpected(entry.peer, &other)),
        }
    }

    /// Resource use of every container running on this peer now (for
    /// metrics); empty where containers cannot run.
    pub async fn running_stats(&self) -> Vec<(String, Stats)> {
        self.blocking(|host| {
            let runtime = host.runtime()?;
            Ok(runtime
                .list()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.state.is_running())
                .filter_map(|c| runtime.stats(&c.id).ok().map(|s| (c.id, s)))
                .collect())
        })
        .await
        .unwrap_or_default()
    }

    pub(crate) async fn stats_local(&self, name: &str) -> Result<Stats, ComputeError> {
        self.local_entry(name)?;
        let name = name.to_string();
        self.blocking(move |host| host.runtime()?.stats(&name).map_err(runtime_error))
            .await
    }

    /// Up to [`LOG_CHUNK`] bytes of the log of a container this peer runs,
    /// from `offset`, and whether it still runs. Whether it runs is read
    /// before the log, so a container seen stopped has all its output in
    /// the bytes returned.
    pub(crate) async fn log_chunk(
        &self,
        name: &str,
        offset: u64,
    ) -> Result<(Vec<u8>, bool), ComputeError> {
        use std::io::Read;
        self.local_entry(name)?;
        let name = name.to_string();
        self.blocking(move |host| {
            let runtime = host.runtime()?;
            let running = host.observe(&name).is_some_and(|c| c.state.is_running());
            let stream = runtime
                .logs_from(&name, offset, false)
                .map_err(runtime_error)?;
            let mut bytes = Vec::new();
            stream
                .take(LOG_CHUNK as u64)
                .read_to_end(&mut bytes)
                .map_err(|e| {
                    ComputeError::Internal(format!("cannot read the log of `{name}`: {e}"))
                })?;
            Ok((bytes, running))
        })
        .await
    }

    /// One chunk of `name`'s log from `offset`, wherever it runs.
    async fn log_chunk_anywhere(
        &self,
        peer: PeerId,
        name: &str,
        offset: u64,
    ) -> Result<(Vec<u8>, bool), ComputeError> {
        if peer == self.peer() {
            return self.log_chunk(name, offset).await;
        }
        let call = ComputeCall::Logs {
            name: name.to_string(),
            offset,
        };
        match protocol::call(self, peer, call).await? {
            ComputeReply::Logs { bytes, running } => Ok((bytes, running)),
            other => Err(protocol::unexpected(peer, &other)),
        }
    }

    /// Where the output of `name` written at or after `since` (unix
    /// seconds) begins in its log on this peer, in whole runs.
    pub(crate) async fn log_offset_since(
        &self,
        name: &str,
        since: u64,
    ) -> Result<u64, ComputeError> {
        self.local_entry(name)?;
        let name = name.to_string();
        self.blocking(move |host| {
            host.runtime()?
                .log_offset_since(&name, since)
                .map_err(runtime_error)
        })
        .await
    }

    /// [`Self::log_offset_since`] of `name`, wherever it runs.
    async fn log_offset_anywhere(
        &self,
        peer: PeerId,
        name: &str,
        since: u64,
    ) -> Result<u64, ComputeError> {
        if peer == self.peer() {
            return self.log_offset_since(name, since).await;
        }
        let call = ComputeCall::LogOffset {
            name: name.to_string(),
            since,
        };
        match protocol::call(self, peer, call).await? {
            ComputeReply::LogOffset(offset) => Ok(offset),
            other => Err(protocol::unexpected(peer, &other)),
        }
    }

    /// The log of `name` (stdout and stderr) from `start`, read by offset
    /// in chunks wherever it runs; with `follow`, until the container
    /// stops and its log is drained. Answers the byte of the log the
    /// stream starts at (a client that resumes later asks for the byte
    /// after its last one) and the stream. Dropping the stream stops the
    /// reading: nothing is left polling for a client that went away.
    pub async fn logs(
        &self,
        name: &str,
        follow: bool,
        start: LogStart,
    ) -> Result<
        (
            u64,
            impl futures::Stream<Item = Result<Vec<u8>, ComputeError>> + Send + 'static,
        ),
        ComputeError,
    > {
        let entry = self.entry(name)?;
        let peer = entry.peer;
        let first = match start {
            LogStart::Offset(offset) => offset,
            LogStart::Since(since) => self.log_offset_anywhere(peer, name, since).await?,
        };
        let poll = if peer == self.peer() {
            LOCAL_LOG_POLL
        } else {
            REMOTE_LOG_POLL
        };
        let this = self.clone();
        let name = name.to_string();
        let chunks = futures::stream::unfold(Some(first), move |offset| {
            let this = this.clone();
            let name = name.clone();
            async move {
                let mut offset = offset?;
                loop {
                    match this.log_chunk_anywhere(peer, &name, offset).await {
                        Ok((bytes, running)) => {
                            if !bytes.is_empty() {
                                offset += bytes.len() as u64;
                                return Some((Ok(bytes), Some(offset)));
                            }
                            if !follow || !running {
                                return None;
                            }
                            tokio::time::sleep(poll).await;
                        }
                        Err(err) => return Some((Err(err), None)),
                    }
                }
            }
        });
        Ok((first, chunks))
    }

    /// Starts `call` in its container, wherever it runs.
    pub async fn exec(&self, call: ExecCall) -> Result<ExecSession, ComputeError> {
        let entry = self.entry(&call.name)?;
        if entry.peer == self.peer() {
            return self.start_exec(call).await.map(ExecSession::Local);
        }
        crate::exec::open(self, entry.peer, &call)
            .await
            .map(ExecSession::Remote)
    }

    /// Starts `call` in a container this peer runs.
    pub(crate) async fn start_exec(&self, call: ExecCall) -> Result<ExecHandle, ComputeError> {
        self.local_entry(&call.name)?;
        let options = ExecOptions {
            argv: call.argv,
            tty: call.tty,
            ..ExecOptions::default()
        };
        let (name, rows, cols) = (call.name, call.rows, call.cols);
        self.blocking(move |host| {
            let handle = host
                .runtime()?
                .exec(&name, options)
                .map_err(runtime_error)?;
            if let (Some(rows), Some(cols)) = (rows, cols) {
                let _ = handle.resize(rows, cols);
            }
            Ok(handle)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coop_compute::runtime::ExitRecord;

    #[test]
    fn observed_states_survive_the_wire() {
        for status in [
            ExitStatus::Code(3),
            ExitStatus::Signal(9),
            ExitStatus::Unknown,
        ] {
            let observed = Observed {
                address: Ipv4Addr::new(10, 1, 2, 3),
                state: RunState::from(&ContainerState::Exited(ExitRecord {
                    status,
                    oom_killed: false,
                    finished_at: 7,
                })),
                health: None,
                setup: None,
            };
            let bytes = postcard::to_stdvec(&observed).unwrap();
            assert_eq!(postcard::from_bytes::<Observed>(&bytes).unwrap(), observed);
        }
    }
}
