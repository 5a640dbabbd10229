//! `coop shim`: the short-lived and long-lived helper processes that run
//! containers and make their namespaces, so that no fork happens inside
//! the async agent.
//!
//! The agent's [`crate::runtime::Runtime`] starts the shim as a fresh
//! process (`coop shim start|exec|delete DIR ...` or `coop shim userns`),
//! always single-threaded, which is what libcontainer's clone-based process
//! setup and `unshare(CLONE_NEWUSER)` need. Four commands:
//!
//! - `start DIR`: forks a monitor and prints one JSON line on stdout once
//!   the container runs (`{"pid":N}`) or failed (`{"error":"..."}`), then
//!   exits. The monitor detaches (`setsid`), becomes a child subreaper,
//!   points its stdio at `container.log` (inherited by the container),
//!   creates and starts the container through the backend, writes
//!   `run.json`, and `waitpid`s until the container's init exits; then it
//!   records `exit.json` (code or signal, and whether the kernel OOM-killed
//!   anything in its cgroup) and exits. The monitor outlives the agent: an
//!   agent restart does not touch containers.
//! - `exec DIR EXEC_ID`: runs the process described by
//!   `exec/EXEC_ID.json` in the container, waits for it, writes
//!   `exec/EXEC_ID.status.json` and exits with its code. Without a tty the
//!   process inherits the shim's stdin/stdout/stderr (pipes from the
//!   runtime); with a tty, stdout must be a Unix socket, on which the shim
//!   passes the pty master (`SCM_RIGHTS`).
//! - `delete DIR`: removes the backend's state of the container (forcefully).
//! - `userns`: unshares a user namespace and a network namespace it owns,
//!   prints `ready` on stdout, and holds them until its stdin closes, while
//!   the runtime writes their id maps and binds them to files (see
//!   `shim/userns.rs` and `runtime/userns.rs`).

mod backend;
mod exec;
pub(crate) mod start;
pub(crate) mod userns;
mod userns_exec;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::runtime::RuntimeError;
use crate::runtime::state::{ContainerDir, ContainerRecord};
use crate::runtime::sys::read_json;

pub use exec::{ExecOutcome, ExecRequest};

/// The shim's exit code for its own failures (as `docker run` uses 125).
pub const SHIM_FAILURE: u8 = 125;

/// Something the shim could not do.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("usage: coop shim start DIR | exec DIR EXEC_ID | delete DIR | userns")]
    Usage,
    #[error(
        "the shim must start single-threaded (it forks), but this process has {0} threads; call coop_compute::shim::main before starting any thread"
    )]
    Threaded(usize),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Backend(String),
    #[error("{action} failed: {source}")]
    Sys {
        action: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// The shim's entry point: `args` are the arguments after `coop shim`.
/// Must be called before the process starts any thread.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["start", dir] => start::start(&ContainerDir::new(PathBuf::from(dir))),
        ["exec", dir, exec_id] => exec::exec(&ContainerDir::new(PathBuf::from(dir)), exec_id),
        ["delete", dir] => delete(&ContainerDir::new(PathBuf::from(dir))),
        ["userns"] => userns::userns(),
        _ => Err(ShimError::Usage),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "coop shim: {e}");
            ExitCode::from(SHIM_FAILURE)
        }
    }
}

fn delete(dir: &ContainerDir) -> Result<u8, ShimError> {
    let record = load_record(dir)?;
    oci_container(dir, &record).delete()?;
    Ok(0)
}

fn load_record(dir: &ContainerDir) -> Result<ContainerRecord, ShimError> {
    read_json::<ContainerRecord>(&dir.config())?.ok_or_else(|| {
        ShimError::Backend(format!(
            "no container record at {}; the container was deleted",
            dir.config().display()
        ))
    })
}

fn oci_container<'a>(dir: &ContainerDir, record: &'a ContainerRecord) -> backend::OciContainer<'a> {
    backend::OciContainer {
        backend: &record.backend,
        id: &record.spec.id,
        root: dir.oci_root(),
        user_namespace: record.id_shift != 0,
    }
}

/// Refuses to go on in a multi-threaded process: fork would copy one thread
/// and whatever locks the others held.
fn ensure_single_threaded() -> Result<(), ShimError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(1);
    if threads > 1 {
        return Err(ShimError::Threaded(threads));
    }
    Ok(())
}

fn sys(action: &'static str) -> impl Fn(nix::Error) -> ShimError {
    move |source| ShimError::Sys { action, source }
}
