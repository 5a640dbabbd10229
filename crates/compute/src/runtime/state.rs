//! The state directory of one container and the records kept in it.
//!
//! ```text
//! <state root>/containers/<id>/
//!   config.json     ContainerRecord: the spec plus what create decided (address, user, backend)
//!   bundle/         the OCI bundle (config.json) the backend runs
//!   disk.img        sparse ext4 image: the writable disk
//!   disk/ rootfs/   its mount point, and the overlay mount the container runs in
//!   container.log   the container's stdout and stderr (appended, followable)
//!   runs.log        one line per run: its start time and where its output begins in container.log
//!   shim.log        the shim's own messages
//!   run.json        RunRecord: pids of the container's init and its shim, written at start
//!   exit.json       ExitRecord: how it ended, written by the shim (or by recovery)
//!   oci/            the backend's own state (libcontainer or runc `--root`)
//!   exec/           per-exec requests, statuses and console sockets
//! ```
//!
//! The runtime writes `config.json` and the bundle; the shim writes
//! `run.json`, `exit.json` and the logs. Every record write is atomic, so a
//! crash leaves either the old or the new record; `runs.log` is appended.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::network::ContainerNetwork;
use crate::runtime::config::Backend;
use crate::runtime::spec::ContainerSpec;
use crate::runtime::sys::{ProcessIdentity, boot_id, read_json};

/// What `create` decided for a container; read by the shim and by recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The spec as given.
    pub spec: ContainerSpec,
    /// Address and network names.
    pub network: ContainerNetwork,
    /// The OCI runtime the shim uses for this container.
    pub backend: Backend,
    /// OCI `cgroupsPath` (`/coop/<id>`).
    pub cgroup_path: String,
    /// The user the process runs as, resolved from the spec.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// Creation time, seconds since the epoch.
    pub created_at: u64,
    /// Host id of the container's root in its user namespace; 0 when it
    /// has none (records written before user namespaces have none).
    #[serde(default)]
    pub id_shift: u32,
}

/// Written by the shim once the container's process runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The container's init process on the host.
    pub init: ProcessIdentity,
    /// The shim watching it.
    pub shim: ProcessIdentity,
    /// Boot the processes belong to; after a reboot they are gone whatever the pids say.
    pub boot_id: String,
    /// Start time, seconds since the epoch.
    pub started_at: u64,
}

/// How a container's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// It died while no shim watched it (shim killed, machine rebooted):
    /// how is not known.
    Unknown,
}

/// Written when the container's process has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Code, signal or unknown.
    pub status: ExitStatus,
    /// Whether the kernel OOM-killed a process of the container (any of
    /// them: with `sh -c 'a | b'` the killed one may not be init).
    pub oom_killed: bool,
    /// When the exit was noticed, seconds since the epoch.
    pub finished_at: u64,
}

/// Paths inside one container's state directory.
#[derive(Clone, Debug)]
pub struct ContainerDir {
    /// `<state root>/containers/<id>`.
    pub path: PathBuf,
}

impl ContainerDir {
    pub(crate) fn new(path: impl Into<PathBuf>) -> ContainerDir {
        ContainerDir { path: path.into() }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `config.json`: the [`ContainerRecord`].
    pub fn config(&self) -> PathBuf {
        self.file("config.json")
    }
    /// `run.json`: the [`RunRecord`].
    pub fn run(&self) -> PathBuf {
        self.file("run.json")
    }
    /// `exit.json`: the [`ExitRecord`].
    pub fn exit(&self) -> PathBuf {
        self.file("exit.json")
    }
    /// The container's stdout and stderr.
    pub fn log(&self) -> PathBuf {
        self.file("container.log")
    }
    /// Where each run's output begins in the log: lines of
    /// `STARTED_AT OFFSET` (unix seconds, bytes), oldest first. The log
    /// itself has no times on its lines (the container writes it
    /// directly), so this is what `--since` can go by.
    pub fn runs(&self) -> PathBuf {
        self.file("runs.log")
    }
    /// The shim's diagnostics.
    pub fn shim_log(&self) -> PathBuf {
        self.file("shim.log")
    }
    /// The OCI bundle directory.
    pub fn bundle(&self) -> PathBuf {
        self.file("bundle")
    }
    /// The backend's state root.
    pub fn oci_root(&self) -> PathBuf {
        self.file("oci")
    }
    /// Exec requests, statuses and console sockets.
    pub fn exec_dir(&self) -> PathBuf {
        self.file("exec")
    }
    /// Generated `/etc/resolv.conf` and `/etc/hosts` for the container.
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.file(name)
    }

    /// Whether the container's init or its shim still runs (no exit recorded yet).
    pub(crate) fn may_be_running(&self) -> bool {
        if self.exit().exists() {
            return false;
        }
        match read_json::<RunRecord>(&self.run()) {
            Ok(Some(run)) => {
                run.boot_id == boot_id() && (run.init.is_alive() || run.shim.is_alive())
            }
            _ => false,
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
