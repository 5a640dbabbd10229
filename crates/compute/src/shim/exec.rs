//! `coop shim exec`: run one more process in a running container.

use std::fs;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::runtime::error::io_err;
use crate::runtime::oci;
use crate::runtime::state::{ContainerDir, ExitStatus};
use crate::runtime::sys::{read_json, write_json};
use crate::shim::start::wait_for;
use crate::shim::{ShimError, ensure_single_threaded, load_record, oci_container, sys};

/// What to run: written by the runtime to `exec/EXEC_ID.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Command and arguments.
    pub argv: Vec<String>,
    /// Extra environment on top of the container's.
    pub env: Vec<(String, String)>,
    /// Working directory; the container's if `None`.
    pub workdir: Option<String>,
    /// Give the process a pty (interactive use).
    pub tty: bool,
}

/// How an exec ended: written by the shim to `exec/EXEC_ID.status.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecOutcome {
    /// The process ran and ended so.
    Exited(ExitStatus),
    /// It could not be started.
    Failed(String),
}

pub(crate) fn exec(dir: &ContainerDir, exec_id: &str) -> Result<u8, ShimError> {
    ensure_single_threaded()?;
    let status_path = dir.exec_dir().join(format!("{exec_id}.status.json"));
    match run(dir, exec_id) {
        Ok(status) => {
            write_json(&status_path, &ExecOutcome::Exited(status))?;
            Ok(match status {
                ExitStatus::Code(code) => u8::try_from(code).unwrap_or(255),
                ExitStatus::Signal(signal) => u8::try_from(128 + signal).unwrap_or(255),
                ExitStatus::Unknown => 255,
            })
        }
        Err(e) => {
            write_json(&status_path, &ExecOutcome::Failed(e.to_string()))?;
            Err(e)
        }
    }
}

fn run(dir: &ContainerDir, exec_id: &str) -> Result<ExitStatus, ShimError> {
    let record = load_record(dir)?;
    let exec_dir = dir.exec_dir();
    let request: ExecRequest = read_json(&exec_dir.join(format!("{exec_id}.json")))?
        .ok_or_else(|| ShimError::Backend(format!("no exec request {exec_id}")))?;
    let mut process = oci::process(
        &record,
        &request.argv,
        &request.env,
        request.workdir.as_deref(),
        request.tty,
    );
    if record.id_shift != 0 && record.backend == crate::runtime::Backend::Libcontainer {
        // Enough to enter the user namespace; the executor drops them.
        for set in ["bounding", "effective", "permitted"] {
            if let Some(list) = process["capabilities"][set].as_array_mut() {
                list.extend(
                    super::userns_exec::extra_capabilities()
                        .iter()
                        .map(|c| serde_json::json!(c)),
                );
            }
        }
    }
    let process_path = exec_dir.join(format!("{exec_id}.process.json"));
    write_json(&process_path, &process)?;
    // runc exec --detach leaves its process to us as an orphan.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let socket_name = format!("{exec_id}.sock");
    let listener = if request.tty {
        // Bind relative to the exec dir: socket addresses are limited to
        // 108 bytes and the state root may be deep.
        std::env::set_current_dir(&exec_dir).map_err(io_err("enter", &exec_dir))?;
        let _ = fs::remove_file(&socket_name);
        Some(
            UnixListener::bind(&socket_name)
                .map_err(io_err("bind console socket", &socket_name))?,
        )
    } else {
        None
    };
    let container = oci_container(dir, &record);
    let console = listener
        .as_ref()
        .map(|_| (exec_dir.as_path(), socket_name.as_str()));
    let pid = container.exec(&process_path, console)?;
    // The caller kills the process by this pid when it overstays a
    // deadline (health checks); runc wrote it already, libcontainer not.
    let _ = fs::write(process_path.with_extension("pid"), pid.to_string());
    if let Some(listener) = listener {
        let master = receive_master(&listener)?;
        let _ = fs::remove_file(exec_dir.join(&socket_name));
        pass_to_caller(&master)?;
    }
    Ok(wait_for(pid))
}

/// Accepts the backend's connection on the console socket and takes the pty master from it.
fn receive_master(listener: &UnixListener) -> Result<OwnedFd, ShimError> {
    let (stream, _) = listener
        .accept()
        .map_err(io_err("accept on", "the console socket"))?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(sys("receive the pty master"))?;
    for cmsg in message.cmsgs().map_err(sys("read control messages"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(ShimError::Backend(
        "the backend connected to the console socket but sent no pty".into(),
    ))
}

/// Sends the pty master to the runtime over our stdout, a Unix socket.
fn pass_to_caller(master: &OwnedFd) -> Result<(), ShimError> {
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(b"pty")];
    sendmsg::<()>(
        1,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(sys(
        "pass the pty master to the runtime (stdout must be a Unix socket)",
    ))?;
    Ok(())
}
