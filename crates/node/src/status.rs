//! This machine's resources, published in its status once a second.

use coop_mesh::{Mesh, StatusSource};
use coop_store::LocalDisks;
use coop_types::{PeerId, PeerStatus};

/// Reads CPU, memory, load and disk figures from the host.
pub struct HostStatus {
    pub id: PeerId,
    pub name: String,
    pub zone: String,
    pub boot: u64,
    pub relay: bool,
    pub disks: LocalDisks,
    pub mesh: Mesh,
    pub labels: std::collections::BTreeMap<String, String>,
    /// What this peer lends to containers, if it runs them.
    pub lent: Option<coop_types::Resources>,
}

impl StatusSource for HostStatus {
    fn status(&self) -> PeerStatus {
        let (memory_bytes, memory_free_bytes) = memory();
        PeerStatus {
            peer: self.id,
            seq: 0,
            boot: self.boot,
            name: self.name.clone(),
            zone: self.zone.clone(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_bytes,
            memory_free_bytes,
            load_centi: load_centi(),
            arch: std::env::consts::ARCH.to_string(),
            disks: self.disks.statuses(),
            addrs: self.mesh.local_addrs(),
            relay: self.relay,
            labels: self.labels.clone(),
            lent: self.lent,
            rtts: self.rtts(),
        }
    }
}

impl HostStatus {
    /// The RTT to each peer this one has a path to, nearest first.
    fn rtts(&self) -> Vec<(PeerId, u32)> {
        let mut rtts: Vec<(PeerId, u32)> = self
            .mesh
            .liveness()
            .statuses()
            .into_iter()
            .filter_map(|(status, _)| {
                let rtt = self.mesh.path_to(&status.peer)?.rtt?;
                Some((
                    status.peer,
                    rtt.as_micros().min(u128::from(u32::MAX)) as u32,
                ))
            })
            .collect();
        rtts.sort_by_key(|(_, us)| *us);
        rtts.truncate(coop_types::MAX_STATUS_RTTS);
        rtts
    }
}

/// Total and available memory from /proc/meminfo, in bytes.
pub fn memory() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return (0, 0);
    };
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// One-minute load average times 100.
fn load_centi() -> u32 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|l| (l * 100.0) as u32)
        .unwrap_or(0)
}
