//! [`RuntimeError`]: everything the container runtime can refuse or fail at.

use std::io;

use crate::network::NetworkError;
use crate::runtime::spec::SpecError;

/// A runtime operation that failed: what, with which container or file, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the container runtime must run as root (it mounts filesystems, creates cgroups and network namespaces); start the agent as root"
    )]
    NotRoot,
    #[error(
        "cgroups are not usable on this host: {0}; mount cgroup v1 controllers or cgroup2 at /sys/fs/cgroup"
    )]
    NoCgroups(String),
    #[error(
        "cgroup controller `{0}` is not mounted; this host cannot enforce container quotas without it"
    )]
    MissingController(&'static str),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("container `{0}` already exists on this peer; pick another name or delete it first")]
    AlreadyExists(String),
    #[error("no container `{0}` on this peer")]
    NotFound(String),
    #[error("container `{0}` is not running; start it first")]
    NotRunning(String),
    #[error("container `{0}` is running; stop it first or delete it with force")]
    StillRunning(String),
    #[error(
        "disk quotas cannot be enforced on this host: {0}; a container without an enforced disk size is refused"
    )]
    DiskQuotaUnsupported(String),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Command(#[from] crate::runtime::sys::CommandError),
    #[error(
        "state file {path} is unreadable: {reason}; delete the container with force to clean it up"
    )]
    CorruptState { path: String, reason: String },
    #[error("the shim for container `{id}` failed: {message}")]
    Shim { id: String, message: String },
    #[error(
        "container `{id}` did not stop within {seconds} s after SIGKILL; its processes may be stuck in the kernel (D state)"
    )]
    StopTimeout { id: String, seconds: u64 },
    #[error("signal {0} is not a valid signal number")]
    BadSignal(i32),
}

/// A `map_err` helper: an I/O error while doing `action` on `path`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl AsRef<std::path::Path>,
) -> impl FnOnce(io::Error) -> RuntimeError {
    let path = path.as_ref().display().to_string();
    move |source| RuntimeError::Io {
        action,
        path,
        source,
    }
}
