//! [`NodeSettings`]: everything a peer needs to start, resolved (the CLI
//! reads flags, environment and `coop.toml` into it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use coop_compute::runtime::RuntimeConfig;
use coop_store::DiskSpec;

/// What a peer lends to containers, where set; unset parts come from the
/// machine (all cores, all memory but 512 MiB, 90% of the data dir's
/// filesystem).
#[derive(Debug, Clone, Copy, Default)]
pub struct CapacitySettings {
    pub cpus_milli: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
}

/// The settings of one peer.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub data_dir: PathBuf,
    pub name: String,
    pub zone: String,
    /// Labels for placement constraints (`zone` and `hostname` are built in).
    pub labels: std::collections::BTreeMap<String, String>,
    /// REST API address (port 0: any free port).
    pub api: SocketAddr,
    /// S3 endpoint address (port 0: any free port).
    pub s3: SocketAddr,
    /// Mesh UDP address (port 0: any free port).
    pub listen: SocketAddr,
    /// An invite token to redeem on first start.
    pub join: Option<String>,
    pub relay: bool,
    pub mdns: bool,
    /// Seconds of silence after which a peer counts as down.
    pub down_after: u64,
    /// Seconds a replica's peer may be silent before the replica is placed
    /// on another peer.
    pub reschedule_after: u64,
    pub disks: Vec<DiskSpec>,
    pub cache_bytes: u64,
    pub s3_domains: Vec<String>,
    pub s3_max_body: u64,
    /// The container runtime's settings; `None` runs no containers on this
    /// peer (templates and containers answer "unavailable").
    pub containers: Option<RuntimeConfig>,
    pub repair_interval: u64,
    pub scrub_interval: u64,
    pub gc_grace: u64,
    pub upload_expiry: u64,
    pub capacity: CapacitySettings,
}

impl NodeSettings {
    /// Settings for a peer of a test or an embedding program: everything
    /// on loopback at free ports, data in `data_dir`, one disk inside it,
    /// no mDNS and no containers.
    pub fn local(data_dir: PathBuf, name: &str) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        NodeSettings {
            disks: vec![DiskSpec {
                path: data_dir.join("disk"),
                capacity: None,
            }],
            data_dir,
            name: name.to_string(),
            zone: "default".into(),
            labels: Default::default(),
            api: any,
            s3: any,
            listen: any,
            join: None,
            relay: false,
            mdns: false,
            down_after: 60,
            reschedule_after: 10,
            cache_bytes: 16 << 20,
            s3_domains: vec!["localhost".into()],
            s3_max_body: 5 << 30,
            containers: None,
            repair_interval: 30,
            scrub_interval: 86_400,
            gc_grace: 3600,
            upload_expiry: 604_800,
            capacity: CapacitySettings::default(),
        }
    }

    /// The liveness grace as a duration (at least 4 s, so a peer is never
    /// down before it could be unreachable).
    pub(crate) fn down_after(&self) -> Duration {
        Duration::from_secs(self.down_after.max(4))
    }
}
