//! The two OCI runtimes the shim can drive, behind one small interface:
//! youki's libcontainer (linked in) and an external runc.
//!
//! Both are used the same way: create the container detached, start it,
//! and exec processes detached, so every container process becomes a child
//! of the shim (directly, or through the shim being a child subreaper) and
//! the shim learns its exit status with `waitpid`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use crate::runtime::{Backend, oci};
use crate::shim::ShimError;
use crate::shim::userns_exec::JoinUserNamespace;

/// One container as the backend knows it.
pub(crate) struct OciContainer<'a> {
    pub backend: &'a Backend,
    pub id: &'a str,
    /// The backend's state root (`--root`).
    pub root: PathBuf,
    /// The container has a user namespace, which libcontainer's exec does
    /// not join by itself.
    pub user_namespace: bool,
}

impl OciContainer<'_> {
    /// Creates the container from `bundle` and starts its process; returns its host pid.
    /// The process inherits the shim's stdin, stdout and stderr.
    pub(crate) fn create_and_start(&self, bundle: &Path) -> Result<i32, ShimError> {
        match self.backend {
            Backend::Libcontainer => {
                let mut container = ContainerBuilder::new(self.id.to_string(), SyscallType::Linux)
                    .with_root_path(&self.root)
                    .and_then(|b| b.validate_id())
                    .map_err(lc("prepare"))?
                    .as_init(bundle)
                    .with_systemd(false)
                    .with_detach(true)
                    .build()
                    .map_err(lc("create"))?;
                let pid = container.pid().ok_or_else(|| {
                    ShimError::Backend("libcontainer created no init process".into())
                })?;
                container.start().map_err(lc("start"))?;
                Ok(pid.as_raw())
            }
            Backend::Runc { binary } => {
                let pid_file = self.root.join(format!("{}.pid", self.id));
                self.runc(binary)
                    .args(["create", "--bundle"])
                    .arg(bundle)
                    .arg("--pid-file")
                    .arg(&pid_file)
                    .arg(self.id)
                    .stdin(Stdio::inherit())
                    .stdout(Stdio::inherit())
                    .stderr(Stdio::inherit())
                    .status()
                    .map_err(runc_io)
                    .and_then(runc_ok("create"))?;
                let pid = read_pid(&pid_file)?;
                self.runc_quiet(binary, &["start", self.id])?;
                Ok(pid)
            }
        }
    }

    /// Starts `process.json` in the running container, detached; returns its host pid.
    /// With `console_socket`, the process gets a new pty whose master is sent there.
    pub(crate) fn exec(
        &self,
        process: &Path,
        console_socket: Option<(&Path, &str)>,
    ) -> Result<i32, ShimError> {
        match self.backend {
            Backend::Libcontainer => {
                let mut builder = ContainerBuilder::new(self.id.to_string(), SyscallType::Linux)
                    .with_root_path(&self.root)
                    .map_err(lc("prepare exec"))?
                    .with_console_socket(console_socket.map(|(dir, name)| dir.join(name)));
                if self.user_namespace {
                    builder = builder.with_executor(JoinUserNamespace {
                        keep: oci::CAPABILITIES.iter().map(|c| c.to_string()).collect(),
                    });
                }
                let pid = builder
                    .as_tenant()
                    .with_process(Some(process))
                    .with_detach(true)
                    .build()
                    .map_err(lc("exec"))?;
                Ok(pid.as_raw())
            }
            Backend::Runc { binary } => {
                let pid_file = process.with_extension("pid");
                let mut command = self.runc(binary);
                command
                    .args(["exec", "--detach", "--pid-file"])
                    .arg(&pid_file);
                command.arg("--process").arg(process);
                if let Some((dir, name)) = console_socket {
                    // runc dials the socket by path; relative to its cwd keeps it
                    // under the 108 bytes a socket address may have.
                    command
                        .current_dir(dir)
                        .args(["--tty", "--console-socket", name]);
                }
                command
                    .arg(self.id)
                    .status()
                    .map_err(runc_io)
                    .and_then(runc_ok("exec"))?;
                read_pid(&pid_file)
            }
        }
    }

    /// Deletes the backend's record of the container (and, forced, its
    /// processes and cgroups). A container the backend does not know is fine.
    pub(crate) fn delete(&self) -> Result<(), ShimError> {
        match self.backend {
            Backend::Libcontainer => {
                let dir = self.root.join(self.id);
                if !dir.exists() {
                    return Ok(());
                }
                let mut container = Container::load(dir).map_err(lc("load"))?;
                container.delete(true).map_err(lc("delete"))
            }
            Backend::Runc { binary } => {
                if !self.root.join(self.id).exists() {
                    return Ok(());
                }
                self.runc_quiet(binary, &["delete", "--force", self.id])
            }
        }
    }

    fn runc(&self, binary: &Path) -> Command {
        let mut command = Command::new(binary);
        command.arg("--root").arg(&self.root);
        command
    }

    fn runc_quiet(&self, binary: &Path, args: &[&str]) -> Result<(), ShimError> {
        let output = self
            .runc(binary)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(runc_io)?;
        if output.status.success() {
            return Ok(());
        }
        Err(ShimError::Backend(format!(
            "runc {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn lc(action: &'static str) -> impl Fn(libcontainer::error::LibcontainerError) -> ShimError {
    move |e| {
        ShimError::Backend(format!(
            "libcontainer could not {action} the container: {e}"
        ))
    }
}

fn runc_io(e: std::io::Error) -> ShimError {
    ShimError::Backend(format!(
        "cannot run runc: {e}; install Debian's `runc` package or use libcontainer"
    ))
}

fn runc_ok(action: &'static str) -> impl Fn(std::process::ExitStatus) -> Result<(), ShimError> {
    move |status| {
        if status.success() {
            Ok(())
        } else {
            Err(ShimError::Backend(format!(
                "runc {action} failed ({status}); its message is in the container log"
            )))
        }
    }
}

fn read_pid(path: &Path) -> Result<i32, ShimError> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| ShimError::Backend(format!("runc wrote no pid to {}", path.display())))
}
