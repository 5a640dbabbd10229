//! Containers on this peer: the compute host the service runs on, and
//! what the peer lends to containers.

use std::sync::Arc;

use tracing::{info, warn};

use coop_orchestra::{ComputeHost, FitsInCapacity, Orchestra};
use coop_store::Stripes;
use coop_types::Resources;

use crate::error::NodeError;
use crate::node::Core;

/// Builds this peer's compute service, unless the settings turn
/// containers off. A host that cannot run containers (not root, no
/// cgroups) still serves templates, and the reason is logged once.
pub(crate) fn start(
    core: &Core,
    stripes: Stripes,
    events: Arc<coop_types::EventLog>,
) -> Result<Option<Orchestra>, NodeError> {
    let Some(config) = core.settings.containers.clone() else {
        return Ok(None);
    };
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
    let orchestra = Orchestra::new(
        core.control.clone(),
        core.mesh.clone(),
        Arc::new(host),
        Arc::new(FitsInCapacity),
        events,
    );
    orchestra.serve();
    Ok(Some(orchestra))
}

/// Memory kept for the host and the agent when no --capacity-memory is set.
const HOST_MEMORY_RESERVE: u64 = 512 << 20;

/// What this peer lends to containers: the `--capacity-*` settings, or the
/// machine's cores, its memory but a reserve, and 90% of the filesystem
/// that holds the data dir.
fn capacity(core: &Core) -> Resources {
    let set = core.settings.capacity;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let (memory_total, _) = crate::status::memory();
    let disk_total = coop_types::fs::usage(core.dir.root()).map_or(0, |sizes| sizes.total);
    Resources {
        cpus_milli: set.cpus_milli.map_or(cores * 1000, u64::from),
        memory_bytes: set.memory_bytes.unwrap_or_else(|| {
            memory_total.saturating_sub(HOST_MEMORY_RESERVE.min(memory_total / 2))
        }),
        disk_bytes: set.disk_bytes.unwrap_or(disk_total / 10 * 9),
    }
}
