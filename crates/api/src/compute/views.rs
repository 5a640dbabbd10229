//! What the compute endpoints take and return.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use coop_compute::runtime::Stats;
use coop_orchestra::{CapacityReport, ContainerStatus, RunState, verify_template};
use coop_state::{DesiredState, TemplateEntry};
use coop_types::unix_now;

/// `GET /v1/compute`: whether this peer runs containers, what it lends
/// them and what its containers hold now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComputeView {
    /// This peer (full id).
    pub peer: String,
    /// Whether containers can run here.
    pub available: bool,
    /// Why not, when they cannot (not root, no cgroups, ...).
    pub reason: Option<String>,
    pub capacity_cpus_milli: u64,
    pub capacity_memory_bytes: u64,
    pub capacity_disk_bytes: u64,
    pub held_cpus_milli: u64,
    pub held_memory_bytes: u64,
    pub held_disk_bytes: u64,
    /// Containers placed on this peer.
    pub containers: usize,
}

impl ComputeView {
    pub(crate) fn of(report: &CapacityReport) -> Self {
        ComputeView {
            peer: report.peer.to_string(),
            available: report.unavailable.is_none(),
            reason: report.unavailable.clone(),
            capacity_cpus_milli: report.capacity.cpus_milli,
            capacity_memory_bytes: report.capacity.memory_bytes,
            capacity_disk_bytes: report.capacity.disk_bytes,
            held_cpus_milli: report.held.cpus_milli,
            held_memory_bytes: report.held.memory_bytes,
            held_disk_bytes: report.held.disk_bytes,
            containers: report.containers,
        }
    }
}

/// A template version as listed and shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub version: String,
    /// Hex BLAKE3 of the canonical blob.
    pub content_id: String,
    pub size_bytes: u64,
    /// The peer that imported and signed it.
    pub imported_by: String,
    /// Unix seconds.
    pub imported_at: u64,
    pub description: String,
    pub arch: String,
    pub entrypoint: Vec<String>,
    pub default_size: String,
    /// Whether the importer's signature and the content id check out.
    pub verified: bool,
    /// Why verification failed, when it did.
    pub error: Option<String>,
}

impl TemplateView {
    pub(crate) fn of(entry: &TemplateEntry) -> TemplateView {
        let mut view = TemplateView {
            name: entry.name.clone(),
            version: entry.version.clone(),
            content_id: entry.content_id.clone(),
            size_bytes: entry.size_bytes,
            imported_by: entry.imported_by.to_string(),
            imported_at: entry.imported_at,
            description: String::new(),
            arch: String::new(),
            entrypoint: Vec::new(),
            default_size: String::new(),
            verified: false,
            error: None,
        };
        match verify_template(entry) {
            Ok(record) => {
                view.description = record.manifest.description;
                view.arch = record.manifest.arch;
                view.entrypoint = record.manifest.entrypoint;
                view.default_size = record.manifest.default_size.to_string();
                view.verified = true;
            }
            Err(err) => view.error = Some(err),
        }
        view
    }
}

/// Body of `POST /v1/containers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// `NAME` or `NAME:VERSION`; without a version, `latest` or else the
    /// most recently imported version.
    pub template: String,
    /// Container name (1-63 of a-z, 0-9, `-`, `_`); generated when omitted.
    #[serde(default)]
    pub name: Option<String>,
    /// tiny, small, medium, large or huge; the template's default when omitted.
    #[serde(default)]
    pub size: Option<String>,
    /// CPUs (`0.5`, `2`, `500m`), overriding the size's.
    #[serde(default)]
    pub cpus: Option<String>,
    /// Memory (`512M`, `1G`), overriding the size's.
    #[serde(default)]
    pub memory: Option<String>,
    /// Disk (`4G`), overriding the size's.
    #[serde(default)]
    pub disk: Option<String>,
    /// Process limit, overriding the size's.
    #[serde(default)]
    pub pids: Option<String>,
    /// Published ports, `HOST:CONT[/tcp|udp]`.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Environment, `K=V`.
    #[serde(default)]
    pub env: Vec<String>,
    /// no, on-failure or always (default no).
    #[serde(default)]
    pub restart: Option<String>,
    /// Command and arguments; the template's entrypoint when empty.
    #[serde(default)]
    pub argv: Vec<String>,
    /// The peer to run on (name, id or unique id prefix); this peer when
    /// omitted. The target accepts only what fits in its free capacity.
    #[serde(default)]
    pub peer: Option<String>,
    /// Private networks to join: `NAME`, or `NAME:ADDRESS` for a fixed
    /// address.
    #[serde(default)]
    pub networks: Vec<String>,
}

/// A container: desired state from the control plane, actual state from
/// the runtime of its peer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContainerView {
    pub name: String,
    /// The peer that runs it (full id).
    pub peer: String,
    /// `NAME:VERSION`.
    pub template: String,
    pub size: String,
    pub cpus_milli: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub pids_limit: u32,
    pub ports: Vec<String>,
    pub argv: Vec<String>,
    /// no, on-failure or always.
    pub restart: String,
    /// running or stopped.
    pub desired: String,
    /// created, running, exited, missing (not in the runtime) or unknown
    /// (on another peer, not visible from here).
    pub state: String,
    /// Its address on the peer's container bridge.
    pub address: Option<String>,
    pub pid: Option<i32>,
    /// Unix seconds of the current run's start.
    pub started_at: Option<u64>,
    pub uptime_secs: Option<u64>,
    /// Exit code of the last run.
    pub exit_code: Option<i32>,
    /// Signal that ended the last run.
    pub exit_signal: Option<i32>,
    /// The last run died while nothing watched it (how is not known).
    pub exit_unknown: bool,
    /// The kernel OOM-killed a process of the last run.
    pub oom_killed: bool,
    pub finished_at: Option<u64>,
    pub created_at: u64,
    /// starting, healthy or unhealthy, when its service has a health check
    /// (environment replicas only).
    pub health: Option<String>,
    /// The last health check's output, or why it failed.
    pub health_output: Option<String>,
    /// Health checks failed in a row.
    pub health_failing: Option<u32>,
    /// running, done or failed, when its service has setup steps and they
    /// have begun.
    pub setup: Option<String>,
    /// Why its setup failed.
    pub setup_error: Option<String>,
    /// The environment replica it is, if it is one.
    pub owner: Option<OwnerView>,
    /// The private networks it is on, with its address on each.
    pub networks: Vec<NetworkAddressView>,
}

/// A container's address on a private network.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkAddressView {
    pub network: String,
    pub address: String,
}

/// Which replica of which environment a container is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OwnerView {
    pub environment: String,
    pub service: String,
    /// 0-based, part of the container's name, kept when it moves.
    pub index: u32,
    /// Bumped each time the replica is placed on a peer.
    pub epoch: u64,
}

impl ContainerView {
    pub(crate) fn of(status: &ContainerStatus) -> Self {
        let entry = &status.entry;
        let mut view = ContainerView {
            name: entry.name.clone(),
            peer: entry.peer.to_string(),
            template: format!("{}:{}", entry.template, entry.version),
            size: entry.size.clone(),
            cpus_milli: entry.limits.cpus_milli,
            memory_bytes: entry.limits.memory_bytes,
            disk_bytes: entry.limits.disk_bytes,
            pids_limit: entry.limits.pids,
            ports: entry.ports.clone(),
            argv: entry.argv.clone(),
            restart: entry.restart.name().to_string(),
            desired: match entry.desired {
                DesiredState::Running => "running",
                DesiredState::Stopped => "stopped",
            }
            .to_string(),
            state: if status.observed {
                "missing"
            } else {
                "unknown"
            }
            .to_string(),
            address: None,
            pid: None,
            started_at: None,
            uptime_secs: None,
            exit_code: None,
            exit_signal: None,
            exit_unknown: false,
            oom_killed: false,
            finished_at: None,
            created_at: entry.created_at,
            health: None,
            health_output: None,
            health_failing: None,
            setup: None,
            setup_error: None,
            networks: entry
                .networks
                .iter()
                .map(|a| NetworkAddressView {
                    network: a.network.clone(),
                    address: a.address.to_string(),
                })
                .collect(),
            owner: entry.owner.as_ref().map(|o| OwnerView {
                environment: o.env.clone(),
                service: o.service.clone(),
                index: o.index,
                epoch: o.epoch,
            }),
        };
        let Some(container) = &status.actual else {
            return view;
        };
        view.address = Some(container.address.to_string());
        if let Some(setup) = &container.setup {
            view.setup = Some(setup.name().to_string());
            if let coop_orchestra::setup::SetupState::Failed(why) = setup {
                view.setup_error = Some(why.clone());
            }
        }
        if let Some(health) = &container.health {
            view.health = Some(health.status.name().to_string());
            view.health_output = Some(health.last_output.clone());
            view.health_failing = Some(health.failing);
        }
        match container.state {
            RunState::Created => view.state = "created".into(),
            RunState::Running { pid, started_at } => {
                view.state = "running".into();
                view.pid = Some(pid);
                view.started_at = Some(started_at);
                view.uptime_secs = Some(unix_now().saturating_sub(started_at));
            }
            RunState::Exited {
                code,
                signal,
                oom_killed,
                finished_at,
            } => {
                view.state = "exited".into();
                view.oom_killed = oom_killed;
                view.finished_at = Some(finished_at);
                view.exit_code = code;
                view.exit_signal = signal;
                view.exit_unknown = code.is_none() && signal.is_none();
            }
        }
        view
    }
}

/// The process exit code a CLI should end with for a container or exec
/// that ended like this: the code, 128 + a signal, or 255 when unknown.
pub fn exit_code_of(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 255,
    }
}

/// `GET /v1/containers/{name}/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub name: String,
    /// CPU time used since start, nanoseconds.
    pub cpu_usage_ns: u64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub pids: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub disk_used_bytes: u64,
}

impl StatsView {
    pub(crate) fn of(name: &str, stats: &Stats) -> Self {
        StatsView {
            name: name.to_string(),
            cpu_usage_ns: stats.cpu_usage_ns,
            memory_bytes: stats.memory_bytes,
            memory_limit_bytes: stats.memory_limit_bytes,
            pids: stats.pids,
            net_rx_bytes: stats.net_rx_bytes,
            net_tx_bytes: stats.net_tx_bytes,
            disk_used_bytes: stats.disk_used_bytes,
        }
    }
}

/// Query of `POST /v1/containers/{name}/exec` (an HTTP upgrade to `coop-exec`).
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
pub struct ExecQuery {
    /// The command as a JSON array of strings.
    pub argv: String,
    /// Give the process a pty.
    #[serde(default)]
    pub tty: bool,
    /// Initial pty rows.
    #[serde(default)]
    pub rows: Option<u16>,
    /// Initial pty columns.
    #[serde(default)]
    pub cols: Option<u16>,
}
