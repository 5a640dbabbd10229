//! Containers on this peer: the [`ComputeHost`] the API serves, recovery
//! after an agent restart, and the reconcile loop that applies restart
//! policies and the desired state recorded in the control plane.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use coop_api::ComputeHost;
use coop_api::compute::{Capacity, should_restart};
use coop_compute::runtime::{ContainerState, ShimCommand};
use coop_state::{ContainerEntry, DesiredState};
use coop_store::Stripes;
use coop_types::unix_now;

use super::Core;

/// How often the loop compares desired and actual state. A restart policy
/// reacts within this; each pass reads local files only.
const RECONCILE_INTERVAL: Duration = Duration::from_millis(1500);
/// A runtime container without a control-plane entry is removed only
/// after this long: a `run` on a peer whose replica lags may have created
/// it before its entry is applied here.
const ORPHAN_GRACE_SECS: u64 = 60;
/// How long a pass waits for this replica to catch up with the leader.
const BARRIER_WAIT: Duration = Duration::from_secs(1);
/// Longest wait between attempts to start a container that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Builds the compute host. Bad container settings stop `coop up`; a
/// host that cannot run containers (not root, no cgroups) still serves
/// templates, and the reason is logged once.
pub(crate) fn start(core: &Core, stripes: Stripes) -> anyhow::Result<Arc<ComputeHost>> {
    let shim = ShimCommand::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find this executable to run `coop shim`: {e}"))?;
    let config = core.settings.containers.runtime_config(shim)?;
    let capacity = capacity(core);
    info!(
        cpus = capacity.cpus_milli as f64 / 1000.0,
        memory_mib = capacity.memory_bytes >> 20,
        disk_gib = capacity.disk_bytes >> 30,
        "capacity lent to containers"
    );
    let host = ComputeHost::new(core.dir.root(), core.key.clone(), config, stripes, capacity);
    if let Some(reason) = host.unavailable_reason() {
        warn!(%reason, "containers cannot run on this peer; templates and everything else still work");
    }
    Ok(Arc::new(host))
}

/// Memory kept for the host and the agent when no --capacity-memory is set.
const HOST_MEMORY_RESERVE: u64 = 512 << 20;

/// What this peer lends to containers: the `--capacity-*` settings, or the
/// machine's cores, its memory but a reserve, and 90% of the filesystem
/// that holds the data dir.
fn capacity(core: &Core) -> Capacity {
    let set = core.settings.capacity;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let (memory_total, _) = super::status::memory();
    let disk_total = coop_store::filesystem(core.dir.root()).map_or(0, |(total, _)| total);
    Capacity {
        cpus_milli: set.cpus_milli.map_or(cores * 1000, u64::from),
        memory_bytes: set.memory_bytes.unwrap_or_else(|| {
            memory_total.saturating_sub(HOST_MEMORY_RESERVE.min(memory_total / 2))
        }),
        disk_bytes: set.disk_bytes.unwrap_or(disk_total / 10 * 9),
    }
}

/// Recovers the runtime's containers, then keeps them as the control
/// plane says until the agent stops.
pub(crate) fn spawn_reconcile(core: Arc<Core>, host: Arc<ComputeHost>) -> JoinHandle<()> {
    tokio::spawn(async move {
        if host.runtime().is_err() {
            return;
        }
        let recovering = host.clone();
        match tokio::task::spawn_blocking(move || recovering.runtime().map(|r| r.recover())).await {
            Ok(Ok(Ok(containers))) => info!(count = containers.len(), "recovered containers"),
            Ok(Ok(Err(err))) => warn!(%err, "container recovery failed"),
            _ => warn!("container recovery did not run"),
        }
        let mut first_pass = true;
        let mut backoff: HashMap<String, (Duration, Instant)> = HashMap::new();
        let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(entries) = core.control.store().containers() else {
                continue;
            };
            // Blobs of templates about to start come from the store first.
            for entry in entries
                .iter()
                .filter(|e| e.peer == host.peer() && e.desired == DesiredState::Running)
            {
                if let Err(err) = host.ensure_template(core.control.store(), entry).await {
                    warn!(container = %entry.name, %err, "cannot fetch the container's template");
                }
            }
            let _guard = host.lock().await;
            // Read again under the lock: an `rm` or `stop` that held it may
            // have changed the entries since, and acting on the old ones
            // would start again what was just removed. The barrier waits
            // for this replica to catch up with the leader, briefly: cut
            // off from the leader, the loop goes on with what it has.
            let _ = tokio::time::timeout(BARRIER_WAIT, core.control.read_barrier()).await;
            let Ok(entries) = core.control.store().containers() else {
                continue;
            };
            let worker = host.clone();
            let due: BTreeSet<String> = entries
                .iter()
                .filter(|e| {
                    backoff
                        .get(&e.name)
                        .is_none_or(|(_, at)| Instant::now() >= *at)
                })
                .map(|e| e.name.clone())
                .collect();
            let was_first = first_pass;
            let outcomes = tokio::task::spawn_blocking(move || {
                reconcile_pass(&worker, &entries, &due, was_first)
            })
            .await
            .unwrap_or_default();
            first_pass = false;
            for (name, ok) in outcomes {
                if ok {
                    backoff.remove(&name);
                } else {
                    let wait = backoff
                        .get(&name)
                        .map(|(d, _)| (*d * 2).min(MAX_BACKOFF))
                        .unwrap_or(RECONCILE_INTERVAL);
                    backoff.insert(name, (wait, Instant::now() + wait));
                }
            }
        }
    })
}

/// One pass: start what should run, stop what should not, remove
/// orphans. Returns `(container, succeeded)` for every start attempted.
fn reconcile_pass(
    host: &ComputeHost,
    entries: &[ContainerEntry],
    due: &BTreeSet<String>,
    first_pass: bool,
) -> Vec<(String, bool)> {
    let Ok(runtime) = host.runtime() else {
        return Vec::new();
    };
    let me = host.peer();
    let mut attempts = Vec::new();
    for entry in entries.iter().filter(|e| e.peer == me) {
        let actual = host.observe(&entry.name).map(|c| c.state);
        let start = match (entry.desired, &actual) {
            (DesiredState::Running, None | Some(ContainerState::Created)) => true,
            (DesiredState::Running, Some(ContainerState::Exited(exit))) => {
                should_restart(entry.restart, exit.status, first_pass)
            }
            (DesiredState::Stopped, Some(ContainerState::Running { .. })) => {
                if let Err(err) = runtime.stop(&entry.name, Duration::from_secs(10)) {
                    warn!(container = %entry.name, %err, "cannot stop a container that should be stopped");
                }
                false
            }
            _ => false,
        };
        if !start || !due.contains(&entry.name) {
            continue;
        }
        match host.launch(entry) {
            Ok(_) => {
                info!(container = %entry.name, policy = entry.restart.name(), "started container");
                attempts.push((entry.name.clone(), true));
            }
            Err(err) => {
                warn!(container = %entry.name, %err, "cannot start container");
                attempts.push((entry.name.clone(), false));
            }
        }
    }
    let known: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    for orphan in runtime.list().unwrap_or_default() {
        if known.contains(orphan.id.as_str())
            || unix_now().saturating_sub(orphan.created_at) < ORPHAN_GRACE_SECS
        {
            continue;
        }
        match runtime.delete(&orphan.id, true) {
            Ok(()) => {
                info!(container = %orphan.id, "removed a container the cloud no longer knows")
            }
            Err(err) => warn!(container = %orphan.id, %err, "cannot remove an orphaned container"),
        }
    }
    attempts
}
