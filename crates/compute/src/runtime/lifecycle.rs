//! Starting, stopping, signalling, deleting, exec, logs, stats and recovery.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::network::{HostNetwork, check_host_port_free};
use crate::runtime::disk::Storage;
use crate::runtime::error::{RuntimeError, io_err};
use crate::runtime::exec::{ExecHandle, ExecOptions, receive_pty};
use crate::runtime::logs::{LogStream, since_offset};
use crate::runtime::state::{ContainerDir, ContainerRecord};
use crate::runtime::sys::{is_mounted, now_secs, write_json};
use crate::runtime::{Container, ContainerState, Runtime, Stats};
use crate::shim::ExecRequest;

/// After SIGKILL a container's processes are gone within milliseconds
/// unless stuck in uninterruptible sleep; past this, stop reports it.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often stop looks whether the process has exited.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Makes exec ids unique within this process; the time makes them unique across restarts.
static EXEC_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Runtime {
    /// Starts a created or exited container: (re)mounts its disk, sets up its
    /// network namespace, veth and published ports, and has the shim start
    /// it. Returns once its process runs. A running container is returned as is.
    pub fn start(&self, id: &str) -> Result<Container, RuntimeError> {
        let _lock = self.lock()?;
        let (dir, record) = self.record(id)?;
        if self.state(&dir, &record)?.is_running() {
            return self.container(&dir, record);
        }
        let net = &self.config.network;
        self.ensure_host_network()?;
        Storage::in_dir(dir.path()).prepare(
            &record.spec.rootfs_lower,
            record.spec.resources.disk_bytes,
            record.id_shift,
        )?;
        // Entries left by an earlier run (agent crash) go; publish adds them afresh.
        record.network.unpublish(net, &record.spec.ports)?;
        for port in &record.spec.ports {
            check_host_port_free(port)?;
        }
        record
            .network
            .setup(net, record.id_shift, &self.config.shim)?;
        let started = record
            .network
            .publish(net, &record.spec.ports)
            .map_err(RuntimeError::from)
            .and_then(|()| self.run_shim_start(&dir, &record));
        if let Err(e) = started {
            let _ = record.network.unpublish(net, &record.spec.ports);
            let _ = record.network.teardown();
            // Someone may have removed the nft table or the bridge's address.
            self.host_network_doubtful();
            return Err(e);
        }
        self.container(&dir, record)
    }

    /// Creates and starts in one call. If the start fails the container
    /// stays created (complete, not running), as `docker run` leaves it;
    /// delete it or start it again.
    pub fn run(&self, spec: crate::runtime::ContainerSpec) -> Result<Container, RuntimeError> {
        let id = spec.id.clone();
        self.create(spec)?;
        self.start(&id)
    }

    fn shim(&self) -> Command {
        self.config.shim.command()
    }

    fn run_shim_start(
        &self,
        dir: &ContainerDir,
        record: &ContainerRecord,
    ) -> Result<(), RuntimeError> {
        let id = &record.spec.id;
        let output = self
            .shim()
            .arg("start")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| RuntimeError::Shim {
                id: id.clone(),
                message: format!("cannot run {}: {e}", self.config.shim.program.display()),
            })?;
        let line = String::from_utf8_lossy(&output.stdout);
        match serde_json::from_str::<crate::shim::start::StartReport>(line.trim()) {
            Ok(crate::shim::start::StartReport::Pid(_)) => Ok(()),
            Ok(crate::shim::start::StartReport::Error(message)) => Err(RuntimeError::Shim {
                id: id.clone(),
                message,
            }),
            Err(_) => Err(RuntimeError::Shim {
                id: id.clone(),
                message: format!(
                    "exited with {} and no report: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            }),
        }
    }

    /// Stops a container: SIGTERM to its init, SIGKILL after `grace`, then
    /// removes its veth, namespace and published ports (its disk stays for a
    /// restart). A container that is not running is returned as is.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<Container, RuntimeError> {
        let (dir, record) = self.record(id)?;
        if let ContainerState::Running { pid, .. } = self.state(&dir, &record)? {
            signal(pid, libc::SIGTERM);
            if !self.wait_stopped(&dir, &record, grace)? {
                signal(pid, libc::SIGKILL);
                if !self.wait_stopped(&dir, &record, KILL_WAIT)? {
                    return Err(RuntimeError::StopTimeout {
                        id: id.to_string(),
                        seconds: KILL_WAIT.as_secs(),
                    });
                }
            }
        }
        let net = &self.config.network;
        record.network.unpublish(net, &record.spec.ports)?;
        record.network.teardown()?;
        self.container(&dir, record)
    }

    fn wait_stopped(
        &self,
        dir: &ContainerDir,
        record: &ContainerRecord,
        within: Duration,
    ) -> Result<bool, RuntimeError> {
        let deadline = Instant::now() + within;
        loop {
            if !self.state(dir, record)?.is_running() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(STOP_POLL);
        }
    }

    /// Sends `signal` to the container's init (SIGKILL ends the whole container).
    pub fn kill(&self, id: &str, signal_number: i32) -> Result<(), RuntimeError> {
        if !(1..=64).contains(&signal_number) {
            return Err(RuntimeError::BadSignal(signal_number));
        }
        let (dir, record) = self.record(id)?;
        match self.state(&dir, &record)? {
            ContainerState::Running { pid, .. } => {
                signal(pid, signal_number);
                Ok(())
            }
            _ => Err(RuntimeError::NotRunning(id.to_string())),
        }
    }

    /// Deletes a container and everything it holds on the host: backend
    /// state, cgroups, overlay and loop mounts, veth, namespace, nft
    /// entries, state directory. A running container needs `force` (it is
    /// killed). Deleting a container that does not exist succeeds.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let (dir, record) = match self.record(id) {
            Ok(found) => found,
            Err(RuntimeError::NotFound(_)) if !crate::runtime::spec::valid_id(id) => return Ok(()),
            Err(RuntimeError::NotFound(_) | RuntimeError::CorruptState { .. }) => {
                return self.delete_unrecorded(id);
            }
            Err(e) => return Err(e),
        };
        if let ContainerState::Running { pid, .. } = self.state(&dir, &record)? {
            if !force {
                return Err(RuntimeError::StillRunning(id.to_string()));
            }
            signal(pid, libc::SIGKILL);
            if !self.wait_stopped(&dir, &record, KILL_WAIT)? {
                return Err(RuntimeError::StopTimeout {
                    id: id.to_string(),
                    seconds: KILL_WAIT.as_secs(),
                });
            }
        }
        let _lock = self.lock()?;
        let backend = self
            .shim()
            .arg("delete")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        let backend = match backend {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(RuntimeError::Shim {
                id: id.to_string(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }),
            Err(e) => Err(RuntimeError::Shim {
                id: id.to_string(),
                message: format!("cannot run {}: {e}", self.config.shim.program.display()),
            }),
        };
        // Our own cleanup runs whatever the backend said, so a broken
        // backend state never pins mounts or addresses.
        self.cgroups.remove(&record.cgroup_path)?;
        let storage = Storage::in_dir(dir.path());
        storage.unmount()?;
        let net = &self.config.network;
        record.network.unpublish(net, &record.spec.ports)?;
        record.network.teardown()?;
        if is_mounted(&storage.rootfs) || is_mounted(&storage.disk) {
            return Err(RuntimeError::Io {
                action: "unmount",
                path: dir.path().display().to_string(),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        fs::remove_dir_all(dir.path())
            .map_err(crate::runtime::error::io_err("remove", dir.path()))?;
        backend
    }

    /// Cleans up after a container whose record is missing or unreadable (a
    /// create interrupted by a crash, a damaged file): everything that can
    /// be found by its id alone. Its network namespace goes, and with it
    /// the veth pair; published ports are unknown without the record.
    fn delete_unrecorded(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if !dir.path().exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        self.cgroups
            .remove(&format!("/{}/{id}", self.config.cgroup_parent))?;
        let storage = Storage::in_dir(dir.path());
        storage.unmount()?;
        let netns = format!("{}{id}", self.config.network.netns_prefix);
        if std::path::Path::new("/run/netns").join(&netns).exists() {
            crate::runtime::sys::run("ip", &["netns", "del", &netns])?;
        }
        if is_mounted(&storage.rootfs) || is_mounted(&storage.disk) {
            return Err(RuntimeError::Io {
                action: "unmount",
                path: dir.path().display().to_string(),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        fs::remove_dir_all(dir.path()).map_err(crate::runtime::error::io_err("remove", dir.path()))
    }

    /// Starts `options.argv` in the running container `id`.
    pub fn exec(&self, id: &str, options: ExecOptions) -> Result<ExecHandle, RuntimeError> {
        let (dir, record) = self.record(id)?;
        if !self.state(&dir, &record)?.is_running() {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let probe = crate::runtime::ContainerSpec {
            argv: options.argv.clone(),
            env: options.env.clone(),
            workdir: options.workdir.clone(),
            ..record.spec.clone()
        };
        probe.validate()?;
        let exec_id = format!(
            "{}-{}",
            now_secs(),
            EXEC_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let exec_dir = dir.exec_dir();
        let request_path = exec_dir.join(format!("{exec_id}.json"));
        write_json(
            &request_path,
            &ExecRequest {
                argv: options.argv,
                env: options.env,
                workdir: options.workdir,
                tty: options.tty,
            },
        )?;
        let mut command = self.shim();
        command.arg("exec").arg(dir.path()).arg(&exec_id);
        let files = vec![
            request_path,
            exec_dir.join(format!("{exec_id}.process.json")),
            exec_dir.join(format!("{exec_id}.process.pid")),
        ];
        let status_path = exec_dir.join(format!("{exec_id}.status.json"));
        let spawn_err = |e: std::io::Error| RuntimeError::Shim {
            id: id.to_string(),
            message: format!("cannot run {}: {e}", self.config.shim.program.display()),
        };
        if options.tty {
            let (ours, theirs) = UnixStream::pair().map_err(spawn_err)?;
            let spawned = command
                .stdin(Stdio::null())
                .stdout(Stdio::from(OwnedFd::from(theirs)))
                .stderr(Stdio::piped())
                .spawn();
            // The command holds our copy of the shim's end; drop it so a
            // shim that dies without sending ends our wait with EOF.
            drop(command);
            let mut child = spawned.map_err(spawn_err)?;
            let pty = receive_pty(&OwnedFd::from(ours));
            let stderr = child.stderr.take();
            let handle = ExecHandle {
                child: Some(child),
                stdin: None,
                stdout: None,
                stderr,
                pty,
                files,
                status_path,
                container: id.to_string(),
            };
            if handle.pty.is_none() {
                // The shim failed before the process started; wait() says why.
                return match handle.wait() {
                    Err(e) => Err(e),
                    Ok(status) => Err(RuntimeError::Shim {
                        id: id.to_string(),
                        message: format!("the exec ended ({status:?}) before passing its pty"),
                    }),
                };
            }
            return Ok(handle);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        Ok(ExecHandle {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child: Some(child),
            pty: None,
            files,
            status_path,
            container: id.to_string(),
        })
    }

    /// The container's log (stdout and stderr), from the start; with
    /// `follow`, reads wait for more output until the container exits.
    pub fn logs(&self, id: &str, follow: bool) -> Result<LogStream, RuntimeError> {
        self.logs_from(id, 0, follow)
    }

    /// The container's log from byte `offset` on (a seek, not a re-read:
    /// a follower polling by offset costs what is new, not the whole log).
    pub fn logs_from(
        &self,
        id: &str,
        offset: u64,
        follow: bool,
    ) -> Result<LogStream, RuntimeError> {
        let (dir, _) = self.record(id)?;
        Ok(LogStream {
            file: None,
            dir,
            follow,
            start: offset,
        })
    }

    /// Where the output written at or after `since` (unix seconds) begins
    /// in the container's log, in whole runs (a run is read whole): the
    /// log has no times on its lines.
    pub fn log_offset_since(&self, id: &str, since: u64) -> Result<u64, RuntimeError> {
        let (dir, record) = self.record(id)?;
        let runs = match fs::read_to_string(dir.runs()) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err("read", dir.runs())(e)),
        };
        let finished = match self.state(&dir, &record)? {
            ContainerState::Exited(exit) => Some(exit.finished_at),
            ContainerState::Created | ContainerState::Running { .. } => None,
        };
        let log_len = match fs::metadata(dir.log()) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err("stat", dir.log())(e)),
        };
        Ok(since_offset(&runs, finished, since, log_len))
    }

    /// CPU, memory, processes, network and disk use of the container now.
    pub fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        let (dir, record) = self.record(id)?;
        let cgroup = self.cgroups.stats(&record.cgroup_path);
        let (net_rx_bytes, net_tx_bytes) = record.network.counters();
        Ok(Stats {
            cpu_usage_ns: cgroup.cpu_usage_ns,
            memory_bytes: cgroup.memory_bytes,
            memory_limit_bytes: cgroup.memory_limit_bytes,
            pids: cgroup.pids,
            net_rx_bytes,
            net_tx_bytes,
            disk_used_bytes: Storage::in_dir(dir.path()).used_bytes(),
        })
    }

    /// After an agent restart: finds every container, records the exit of
    /// those that died unwatched (status unknown), and makes sure the
    /// bridge, the nft table and the port entries of running containers
    /// are in place. Returns all containers.
    pub fn recover(&self) -> Result<Vec<Container>, RuntimeError> {
        let containers = self.list()?;
        if containers.iter().any(|c| c.state.is_running()) {
            HostNetwork::ensure(&self.config.network)?;
        }
        for container in &containers {
            let (_, record) = self.record(&container.id)?;
            if container.state.is_running() {
                record
                    .network
                    .publish(&self.config.network, &record.spec.ports)?;
            }
        }
        Ok(containers)
    }

    /// Removes the bridge, the nft table and the parent cgroup of this
    /// runtime's configuration. For uninstalling and tests; containers
    /// should be deleted first.
    pub fn teardown_host(&self) -> Result<(), RuntimeError> {
        self.host_network_doubtful();
        HostNetwork::teardown(&self.config.network)?;
        self.cgroups
            .remove_parent_if_empty(&format!("/{}", self.config.cgroup_parent));
        Ok(())
    }
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2); the pid was just checked to be the container's init
    // (start time matched), and a race with its exit only yields ESRCH.
    unsafe { libc::kill(pid, signal) };
}
