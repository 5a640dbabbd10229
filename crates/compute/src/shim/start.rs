//! `coop shim start`: create and start a container, then watch it until it exits.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, dup2, fork, pipe2, setsid};
use serde::{Deserialize, Serialize};

use crate::runtime::cgroup::CgroupLayout;
use crate::runtime::state::{ContainerDir, ContainerRecord, ExitRecord, ExitStatus, RunRecord};
use crate::runtime::sys::{ProcessIdentity, boot_id, now_secs, remove_file_if_exists, write_json};
use crate::shim::{ShimError, ensure_single_threaded, load_record, oci_container, sys};

/// The one line `coop shim start` prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartReport {
    /// The container runs; its init's host pid.
    Pid(i32),
    /// It could not be started, and why.
    Error(String),
}

pub(crate) fn start(dir: &ContainerDir) -> Result<u8, ShimError> {
    ensure_single_threaded()?;
    let record = load_record(dir)?;
    let (ready_read, ready_write) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: the process is single-threaded (checked above), so the child
    // may run arbitrary code after fork.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { .. } => {
            drop(ready_write);
            let mut message = String::new();
            let _ = File::from(ready_read).read_to_string(&mut message);
            let report = serde_json::from_str::<StartReport>(message.trim()).unwrap_or_else(|_| {
                StartReport::Error(format!(
                    "the shim's monitor exited before the container started; see {}",
                    dir.shim_log().display()
                ))
            });
            // An empty line would read as "no report" to the runtime; a
            // report that cannot be encoded is said as an error instead.
            let line = serde_json::to_string(&report).unwrap_or_else(|e| {
                let why = e.to_string().replace(['"', '\\'], "'");
                format!(r#"{{"error":"the shim cannot encode its report: {why}"}}"#)
            });
            let _ = writeln!(std::io::stdout(), "{line}");
            Ok(match report {
                StartReport::Pid(_) => 0,
                StartReport::Error(_) => 1,
            })
        }
        ForkResult::Child => {
            drop(ready_read);
            let code = monitor(dir, &record, ready_write);
            std::process::exit(code);
        }
    }
}

/// The long-lived half: runs the container and records how it ends.
fn monitor(dir: &ContainerDir, record: &ContainerRecord, ready: OwnedFd) -> i32 {
    let mut shim_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.shim_log())
        .ok();
    let mut note = |text: &str| {
        if let Some(log) = shim_log.as_mut() {
            let _ = writeln!(log, "{} {text}", now_secs());
        }
    };
    let mut ready = Some(File::from(ready));
    let mut report = |report: StartReport| {
        if let Some(mut pipe) = ready.take() {
            let _ = pipe.write_all(
                serde_json::to_string(&report)
                    .unwrap_or_default()
                    .as_bytes(),
            );
        }
    };
    let pid = match launch(dir, record) {
        Ok(pid) => pid,
        Err(e) => {
            note(&format!("start failed: {e}"));
            let _ = oci_container(dir, record).delete();
            report(StartReport::Error(e.to_string()));
            return 1;
        }
    };
    note(&format!("container init is pid {pid}"));
    report(StartReport::Pid(pid));
    let status = wait_for(pid);
    let layout = CgroupLayout::detect().ok();
    let oom_killed = layout.is_some_and(|l| l.oom_kills(&record.cgroup_path) > 0);
    let exit = ExitRecord {
        status,
        oom_killed,
        finished_at: now_secs(),
    };
    note(&format!("container exited: {exit:?}"));
    if let Err(e) = write_json(&dir.exit(), &exit) {
        note(&format!("cannot record the exit: {e}"));
        return 1;
    }
    0
}

/// Detaches, wires stdio to the log and starts the container; returns its init pid.
fn launch(dir: &ContainerDir, record: &ContainerRecord) -> Result<i32, ShimError> {
    setsid().map_err(sys("setsid"))?;
    // Orphans of the container (runc's init after `runc create` exits)
    // become our children, so waitpid sees their exit.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(ShimError::Sys {
            action: "become a child subreaper",
            source: nix::Error::last(),
        });
    }
    let _ = std::env::set_current_dir("/");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(dir.log())
        .map_err(crate::runtime::error::io_err("open", dir.log()))?;
    let null =
        File::open("/dev/null").map_err(crate::runtime::error::io_err("open", "/dev/null"))?;
    dup2(null.as_fd().as_raw_fd(), 0).map_err(sys("redirect stdin"))?;
    dup2(log.as_raw_fd(), 1).map_err(sys("redirect stdout"))?;
    dup2(log.as_raw_fd(), 2).map_err(sys("redirect stderr"))?;
    for stale in [dir.run(), dir.exit()] {
        remove_file_if_exists(&stale)?;
    }
    // The log is only appended to, so its length now is where this run's
    // output begins.
    let output_starts = log.metadata().map(|m| m.len()).unwrap_or(0);
    let container = oci_container(dir, record);
    // A container started before keeps the backend's old record; start afresh.
    container.delete()?;
    fs::create_dir_all(dir.oci_root())
        .map_err(crate::runtime::error::io_err("create", dir.oci_root()))?;
    let pid = container.create_and_start(&dir.bundle())?;
    let init = ProcessIdentity::of(pid).ok_or_else(|| {
        ShimError::Backend(format!(
            "the container's init (pid {pid}) exited at once; see {}",
            dir.log().display()
        ))
    })?;
    let shim = ProcessIdentity::of(std::process::id() as i32)
        .ok_or_else(|| ShimError::Backend("cannot read the shim's own /proc entry".into()))?;
    let started_at = now_secs();
    write_json(
        &dir.run(),
        &RunRecord {
            init,
            shim,
            boot_id: boot_id(),
            started_at,
        },
    )?;
    // Without this line `--since` reads this run as part of the one before:
    // less precise, nothing lost, so a failure does not stop the container.
    let _ = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(dir.runs())
        .and_then(|mut runs| writeln!(runs, "{started_at} {output_starts}"));
    Ok(pid)
}

/// Reaps children until `pid` exits; returns how it ended.
pub(crate) fn wait_for(pid: i32) -> ExitStatus {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return ExitStatus::Code(code),
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid => {
                return ExitStatus::Signal(signal as i32);
            }
            Ok(_) | Err(nix::Error::EINTR) => continue,
            // No children left, yet `pid` was not seen: it was never ours.
            Err(_) => return ExitStatus::Unknown,
        }
    }
}
