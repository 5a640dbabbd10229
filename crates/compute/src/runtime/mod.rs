//! The container runtime of one peer: containers from cached template
//! rootfs, with quotas, their own network and published ports.
//!
//! [`Runtime`] is a synchronous library API (the agent calls it from
//! blocking tasks). It never forks a container itself: it prepares the
//! host side (disk image and overlay, network namespace, veth, nftables
//! map entries), writes the container's state directory (see [`state`])
//! and starts `coop shim` ([`crate::shim`]), which drives libcontainer or
//! runc. All state is in files under the state root, so a new `Runtime`
//! over the same root (after an agent restart) finds every container;
//! [`Runtime::recover`] also records containers that died unwatched.
//!
//! Not here: leases, placement, restart policies, the REST API.

pub(crate) mod cgroup;
mod config;
mod disk;
pub(crate) mod error;
mod exec;
mod lifecycle;
mod logs;
pub(crate) mod oci;
pub mod spec;
pub mod state;
pub(crate) mod sys;
mod user;
pub mod userns;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use cgroup::{CgroupLayout, CgroupStats};
pub use config::{Backend, RuntimeConfig, ShimCommand};
pub use error::RuntimeError;
pub use exec::{ExecHandle, ExecOptions, ExecOutput};
pub use logs::LogStream;
pub use spec::{ContainerSpec, NetworkAttach, PortMapping, Protocol, SpecError};
pub use state::{ExitRecord, ExitStatus};
pub use sys::{CommandError, ProcessIdentity};

use crate::network::{ContainerNetwork, NetworkError, check_host_port_free};
use crate::runtime::disk::Storage;
use crate::runtime::error::io_err;
use crate::runtime::state::{ContainerDir, ContainerRecord, RunRecord};
use crate::runtime::sys::{LockFile, boot_id, now_secs, read_json, write_json};

/// How long a state query waits for a live shim to record the exit of a
/// container whose init just died, before calling the exit unknown.
const EXIT_RECORD_WAIT: Duration = Duration::from_secs(2);

/// The container runtime over one state root.
#[derive(Debug)]
pub struct Runtime {
    root: PathBuf,
    config: RuntimeConfig,
    cgroups: CgroupLayout,
    /// Host id of containers' root; 0 without user namespaces.
    id_shift: u32,
    /// Why containers get no user namespace, when they do not.
    no_userns: Option<String>,
    /// The bridge and nft table were set up by this runtime (checked again
    /// when the bridge is gone or a start fails).
    host_network_ready: std::sync::atomic::AtomicBool,
}

/// A container as the runtime sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// Its id.
    pub id: String,
    /// What it was created from.
    pub spec: ContainerSpec,
    /// Its address on the bridge.
    pub address: Ipv4Addr,
    /// Created, running or exited.
    pub state: ContainerState,
    /// Creation time, seconds since the epoch.
    pub created_at: u64,
    /// Its state directory.
    pub dir: PathBuf,
}

/// Where a container is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Prepared (disk, bundle) but never started.
    Created,
    /// Its process runs.
    Running {
        /// Host pid of its init.
        pid: i32,
        /// Start time, seconds since the epoch.
        started_at: u64,
    },
    /// Its process ended.
    Exited(ExitRecord),
}

impl ContainerState {
    /// Whether the container's process runs.
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerState::Running { .. })
    }
}

/// A container's resource use now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// CPU time used since start, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use (without reclaimable cache).
    pub memory_bytes: u64,
    /// Memory limit enforced.
    pub memory_limit_bytes: u64,
    /// Processes and threads alive.
    pub pids: u64,
    /// Bytes the container received.
    pub net_rx_bytes: u64,
    /// Bytes the container sent.
    pub net_tx_bytes: u64,
    /// Bytes used on its disk.
    pub disk_used_bytes: u64,
}

impl Runtime {
    /// A runtime keeping its state under `state_root` (created if missing).
    /// Refuses to run without root or without the cgroup controllers quotas need.
    pub fn new(
        state_root: impl Into<PathBuf>,
        config: RuntimeConfig,
    ) -> Result<Runtime, RuntimeError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(RuntimeError::NotRoot);
        }
        let cgroups = CgroupLayout::detect()?;
        config.network.validate()?;
        if !spec::valid_id(&config.cgroup_parent) {
            return Err(RuntimeError::NoCgroups(format!(
                "cgroup parent `{}` must be a plain name like `coop`",
                config.cgroup_parent
            )));
        }
        let root: PathBuf = state_root.into();
        let containers = root.join("containers");
        fs::create_dir_all(&containers).map_err(io_err("create", &containers))?;
        let root = fs::canonicalize(&root).map_err(io_err("resolve", &root))?;
        if !spec::overlay_safe(&root) {
            return Err(SpecError::UnsafePath(root.display().to_string()).into());
        }
        let (id_shift, no_userns) = if !config.user_namespaces {
            (0, Some("turned off in the configuration".to_string()))
        } else {
            match userns::prepare(&root) {
                Ok(()) => (userns::ID_BASE, None),
                Err(reason) => (0, Some(reason)),
            }
        };
        if let Some(reason) = &no_userns {
            tracing::warn!(%reason, "containers run without a user namespace: their root is host root");
        }
        Ok(Runtime {
            root,
            config,
            cgroups,
            id_shift,
            no_userns,
            host_network_ready: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sets up the bridge and nft table unless this runtime did already
    /// and the bridge is still there: each check starts `ip` or `nft`,
    /// which a container start should not pay for every time.
    pub(crate) fn ensure_host_network(&self) -> Result<(), RuntimeError> {
        use std::sync::atomic::Ordering;
        let bridge = Path::new("/sys/class/net").join(&self.config.network.bridge);
        if self.host_network_ready.load(Ordering::Relaxed) && bridge.exists() {
            return Ok(());
        }
        crate::network::HostNetwork::ensure(&self.config.network)?;
        self.host_network_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the next start check the host network again.
    pub(crate) fn host_network_doubtful(&self) {
        self.host_network_ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// The host id of containers' root (their ids map onto
    /// `id_shift..id_shift + 65536`), or 0 when they get no user namespace.
    /// Templates are unpacked with owners shifted by it.
    pub fn id_shift(&self) -> u32 {
        self.id_shift
    }

    /// Why containers get no user namespace here, when they do not.
    pub fn no_user_namespace(&self) -> Option<&str> {
        self.no_userns.as_deref()
    }

    /// The configuration this runtime was made with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The cgroup hierarchies found on this host.
    pub fn cgroups(&self) -> &CgroupLayout {
        &self.cgroups
    }

    fn dir(&self, id: &str) -> ContainerDir {
        ContainerDir::new(self.container_path(id))
    }

    /// The directory that holds container `id`'s state while it exists:
    /// `<state root>/containers/<id>`, removed with the container.
    pub fn container_path(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    fn lock(&self) -> Result<LockFile, RuntimeError> {
        LockFile::acquire(&self.root.join("lock"))
    }

    fn record(&self, id: &str) -> Result<(ContainerDir, ContainerRecord), RuntimeError> {
        if !spec::valid_id(id) {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let dir = self.dir(id);
        let record = read_json::<ContainerRecord>(&dir.config())?
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        Ok((dir, record))
    }

    fn records(&self) -> Result<Vec<(ContainerDir, ContainerRecord)>, RuntimeError> {
        let containers = self.root.join("containers");
        let mut out = Vec::new();
        for entry in fs::read_dir(&containers).map_err(io_err("list", &containers))? {
            let entry = entry.map_err(io_err("list", &containers))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A directory without a record is a create that failed midway; skip it.
            if let Ok(found) = self.record(&name) {
                out.push(found);
            }
        }
        out.sort_by(|a, b| a.1.spec.id.cmp(&b.1.spec.id));
        Ok(out)
    }

    /// Prepares a container: checks the spec, reserves an address and the
    /// published ports, resolves the user, creates its disk and writes its
    /// bundle. Nothing runs yet. On failure nothing is left behind.
    pub fn create(&self, spec: ContainerSpec) -> Result<Container, RuntimeError> {
        spec.validate()?;
        let _lock = self.lock()?;
        let dir = self.dir(&spec.id);
        if dir.path().exists() {
            return Err(RuntimeError::AlreadyExists(spec.id));
        }
        let others = self.records()?;
        for port in &spec.ports {
            if let Some((_, other)) = others.iter().find(|(_, r)| {
                r.spec
                    .ports
                    .iter()
                    .any(|p| p.host_port == port.host_port && p.protocol == port.protocol)
            }) {
                return Err(NetworkError::PortBusy {
                    port: port.host_port,
                    protocol: port.protocol.name(),
                    reason: format!("container `{}` publishes it", other.spec.id),
                }
                .into());
            }
            check_host_port_free(port)?;
        }
        let taken: Vec<Ipv4Addr> = others.iter().map(|(_, r)| r.network.address).collect();
        let network = ContainerNetwork::allocate(&self.config.network, &spec, &taken)?;
        let (uid, gid) = user::resolve_user(&spec.rootfs_lower, spec.user.as_deref())?;
        let record = ContainerRecord {
            cgroup_path: format!("/{}/{}", self.config.cgroup_parent, spec.id),
            network,
            backend: self.config.backend.clone(),
            uid,
            gid,
            created_at: now_secs(),
            id_shift: self.id_shift,
            spec,
        };
        fs::create_dir_all(dir.path()).map_err(io_err("create", dir.path()))?;
        if self.id_shift != 0
            && let Err(reason) = userns::open_for_containers(dir.path())
        {
            let _ = fs::remove_dir_all(dir.path());
            return Err(io_err("open to the container's root", dir.path())(
                std::io::Error::other(reason),
            ));
        }
        if let Err(e) = self.write_container(&dir, &record) {
            let storage = Storage::in_dir(dir.path());
            let _ = storage.unmount();
            if !sys::is_mounted(&storage.rootfs) && !sys::is_mounted(&storage.disk) {
                let _ = fs::remove_dir_all(dir.path());
            }
            return Err(e);
        }
        self.container(&dir, record)
    }

    fn write_container(
        &self,
        dir: &ContainerDir,
        record: &ContainerRecord,
    ) -> Result<(), RuntimeError> {
        for sub in [dir.bundle(), dir.exec_dir(), dir.oci_root()] {
            fs::create_dir_all(&sub).map_err(io_err("create", &sub))?;
        }
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let files = [
            (
                dir.etc_file("resolv.conf"),
                oci::resolv_conf(
                    &host_resolv,
                    record.spec.networks.first().map(|n| n.subnet.gateway()),
                ),
            ),
            (dir.etc_file("hosts"), oci::hosts_file(record)),
        ];
        for (path, text) in files {
            fs::write(&path, text).map_err(io_err("write", &path))?;
        }
        let bundle = oci::bundle_spec(record, dir, self.cgroups.accounts_swap());
        write_json(&dir.bundle().join("config.json"), &bundle)?;
        Storage::in_dir(dir.path()).prepare(
            &record.spec.rootfs_lower,
            record.spec.resources.disk_bytes,
            record.id_shift,
        )?;
        // The record last: a directory with a record is a complete container.
        write_json(&dir.config(), record)
    }

    /// The container `id` as it is now.
    pub fn get(&self, id: &str) -> Result<Container, RuntimeError> {
        let (dir, record) = self.record(id)?;
        self.container(&dir, record)
    }

    /// Every container on this peer, by id.
    pub fn list(&self) -> Result<Vec<Container>, RuntimeError> {
        self.records()?
            .into_iter()
            .map(|(dir, record)| self.container(&dir, record))
            .collect()
    }

    fn container(
        &self,
        dir: &ContainerDir,
        record: ContainerRecord,
    ) -> Result<Container, RuntimeError> {
        let state = self.state(dir, &record)?;
        Ok(Container {
            id: record.spec.id.clone(),
            address: record.network.address,
            created_at: record.created_at,
            dir: dir.path().to_path_buf(),
            spec: record.spec,
            state,
        })
    }

    /// Works out the state from the files; records an unknown exit for a
    /// container whose process died while no shim watched it.
    fn state(
        &self,
        dir: &ContainerDir,
        record: &ContainerRecord,
    ) -> Result<ContainerState, RuntimeError> {
        if let Some(exit) = read_json::<ExitRecord>(&dir.exit())? {
            return Ok(ContainerState::Exited(exit));
        }
        let Some(run) = read_json::<RunRecord>(&dir.run())? else {
            return Ok(ContainerState::Created);
        };
        let this_boot = run.boot_id == boot_id();
        if this_boot && run.init.is_alive() {
            return Ok(ContainerState::Running {
                pid: run.init.pid,
                started_at: run.started_at,
            });
        }
        let shim_alive = this_boot && run.shim.is_alive();
        if shim_alive {
            let deadline = Instant::now() + EXIT_RECORD_WAIT;
            while Instant::now() < deadline {
                if let Some(exit) = read_json::<ExitRecord>(&dir.exit())? {
                    return Ok(ContainerState::Exited(exit));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let exit = ExitRecord {
            status: ExitStatus::Unknown,
            oom_killed: self.cgroups.oom_kills(&record.cgroup_path) > 0,
            finished_at: now_secs(),
        };
        // A shim that still lives (slow on a loaded host) will record how
        // the init ended: only a gone shim makes "unknown" final.
        if !shim_alive {
            write_json(&dir.exit(), &exit)?;
        }
        Ok(ContainerState::Exited(exit))
    }

    /// The state root.
    pub fn state_root(&self) -> &Path {
        &self.root
    }
}
