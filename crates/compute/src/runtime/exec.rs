//! [`ExecHandle`]: a process started in a running container by `coop shim exec`.

use std::fs::{self, File};
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde::{Deserialize, Serialize};

use crate::runtime::error::RuntimeError;
use crate::runtime::state::ExitStatus;
use crate::runtime::sys::read_json;
use crate::shim::ExecOutcome;

/// What to run with [`crate::runtime::Runtime::exec`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOptions {
    /// Command and arguments.
    pub argv: Vec<String>,
    /// Environment on top of the container's.
    pub env: Vec<(String, String)>,
    /// Working directory; the container's if `None`.
    pub workdir: Option<String>,
    /// Give the process a pty (for `exec -it`): its stdin, stdout and stderr
    /// are then all [`ExecHandle::pty`].
    pub tty: bool,
}

impl ExecOptions {
    /// Runs `argv` without a tty.
    pub fn command(argv: &[&str]) -> ExecOptions {
        ExecOptions {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            ..ExecOptions::default()
        }
    }
}

/// A running exec. Without a tty, talk to it through `stdin`, `stdout` and
/// `stderr`; with one, read and write [`ExecHandle::pty`]. Then [`ExecHandle::wait`].
/// Dropped without waiting, a thread reaps the shim when the process ends.
#[derive(Debug)]
pub struct ExecHandle {
    pub(crate) child: Option<Child>,
    /// The process's stdin (no tty).
    pub stdin: Option<ChildStdin>,
    /// The process's stdout (no tty).
    pub stdout: Option<ChildStdout>,
    /// The process's stderr (no tty); also carries the shim's own error if it fails to start.
    pub stderr: Option<ChildStderr>,
    /// The pty master (tty): read the process's output, write its input.
    pub pty: Option<File>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) status_path: PathBuf,
    pub(crate) container: String,
}

/// Everything an exec printed, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// How the process ended.
    pub status: ExitStatus,
    /// Its stdout (or the pty's output).
    pub stdout: Vec<u8>,
    /// Its stderr (empty with a tty).
    pub stderr: Vec<u8>,
}

impl ExecHandle {
    /// Waits for the process to end and returns how it did.
    pub fn wait(mut self) -> Result<ExitStatus, RuntimeError> {
        let Some(mut child) = self.child.take() else {
            return Err(RuntimeError::Shim {
                id: self.container.clone(),
                message: "the exec was already waited for".into(),
            });
        };
        let shim = child.wait().map_err(|e| RuntimeError::Shim {
            id: self.container.clone(),
            message: format!("lost the exec shim: {e}"),
        })?;
        let outcome = read_json::<ExecOutcome>(&self.status_path);
        for file in self.files.iter().chain([&self.status_path]) {
            let _ = fs::remove_file(file);
        }
        match outcome? {
            Some(ExecOutcome::Exited(status)) => Ok(status),
            Some(ExecOutcome::Failed(message)) => Err(RuntimeError::Shim {
                id: self.container.clone(),
                message,
            }),
            None => Err(RuntimeError::Shim {
                id: self.container.clone(),
                message: format!("the exec shim ended ({shim}) without recording an outcome"),
            }),
        }
    }

    /// Closes stdin, collects all output and waits.
    pub fn output(mut self) -> Result<ExecOutput, RuntimeError> {
        drop(self.stdin.take());
        let stderr = self.stderr.take();
        // Read stderr on a thread so neither pipe can fill and block the process.
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.read_to_end(&mut buf);
            }
            buf
        });
        let mut stdout = Vec::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_end(&mut stdout);
        } else if let Some(mut pty) = self.pty.take() {
            // A pty reads EIO once the process side is closed.
            let _ = pty.read_to_end(&mut stdout);
        }
        let stderr = stderr_reader.join().unwrap_or_default();
        let status = self.wait()?;
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
        })
    }

    /// Like [`ExecHandle::output`], but a process still running after
    /// `limit` is killed (SIGKILL), and the flag says so. Output is kept up
    /// to 64 KiB per stream; what a process left running in the background
    /// writes later is not waited for.
    pub fn output_within(
        mut self,
        limit: std::time::Duration,
    ) -> Result<(ExecOutput, bool), RuntimeError> {
        drop(self.stdin.take());
        let stdout = match (self.stdout.take(), self.pty.take()) {
            (Some(pipe), _) => Collector::start(pipe),
            (None, Some(pty)) => Collector::start(pty),
            (None, None) => Collector::start(std::io::empty()),
        };
        let stderr = match self.stderr.take() {
            Some(pipe) => Collector::start(pipe),
            None => Collector::start(std::io::empty()),
        };
        let deadline = std::time::Instant::now() + limit;
        let mut killed = false;
        while let Some(child) = self.child.as_mut() {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(None) => {
                    // The shim has not reaped the process (it still waits
                    // for it), so this pid is still the process's own.
                    if let Some(pid) = self.process_pid() {
                        // SAFETY: kill with plain integer arguments.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    killed = true;
                    break;
                }
            }
        }
        let status = self.wait()?;
        Ok((
            ExecOutput {
                status,
                stdout: stdout.finish(),
                stderr: stderr.finish(),
            },
            killed,
        ))
    }

    /// The host pid of the exec's process, once the shim has started it.
    fn process_pid(&self) -> Option<i32> {
        let path = self
            .files
            .iter()
            .find(|f| f.to_str().is_some_and(|s| s.ends_with(".process.pid")))?;
        fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Sets the pty's window size (no-op without a tty).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        let Some(pty) = &self.pty else {
            return Ok(());
        };
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that outlives the call.
        if unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
            return Err(RuntimeError::Io {
                action: "resize",
                path: "the exec's pty".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

impl Drop for ExecHandle {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Not waited for: reap the shim when it ends, so the agent
            // collects no zombies.
            let files: Vec<PathBuf> = self
                .files
                .drain(..)
                .chain([self.status_path.clone()])
                .collect();
            std::thread::spawn(move || {
                let _ = child.wait();
                for file in files {
                    let _ = fs::remove_file(file);
                }
            });
        }
    }
}

/// Reads a stream on a thread of its own into a bounded buffer.
struct Collector {
    buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Collector {
    /// The most kept of one stream.
    const LIMIT: usize = 64 * 1024;

    fn start(mut stream: impl Read + Send + 'static) -> Collector {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                let room = Collector::LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        });
        Collector { buffer, reader }
    }

    /// What was read, after giving the reader a moment to see the end of
    /// the stream (a background process may hold it open much longer).
    fn finish(self) -> Vec<u8> {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
        while !self.reader.is_finished() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Receives the pty master the exec shim sends over `socket`; `None` if it
/// closed the socket first (it failed; its stderr and status say why).
pub(crate) fn receive_pty(socket: &OwnedFd) -> Option<File> {
    let mut buf = [0u8; 16];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .ok()?;
    for cmsg in message.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us.
            return Some(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    None
}
