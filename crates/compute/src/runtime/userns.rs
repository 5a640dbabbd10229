//! User namespaces. Where the host supports them, a container's root is
//! host uid and gid [`ID_BASE`], and its ids 0..65536 map onto
//! `ID_BASE..ID_BASE + 65536`: a process that escapes its other namespaces
//! is nobody on the host. Every container shares this one range, so a
//! template is unpacked once with shifted owners and shared read-only.
//!
//! Each container has a user namespace of its own (all with the same
//! mapping), made by the runtime together with the network namespace it
//! owns, and joined by the container: a network namespace owned by the
//! host's user namespace could not be joined from inside a new one. The
//! two are made by a fresh process, `coop shim userns`, which unshares
//! them on itself and waits on its stdin while the runtime writes their id
//! maps and binds them to files (`/run/coop-userns/<netns>` and
//! `/run/netns/<netns>`), so they outlive it. The agent, multithreaded,
//! never forks to run code of its own in the child.
//!
//! The container's init resolves its rootfs and bind sources by path
//! before it pivots, as the mapped root, which has no privilege over
//! host-root directories. So the runtime's own directories (its state
//! root, that root's parent, the data dir, and each container directory)
//! are given group [`ID_BASE`] with group search permission, and every
//! directory above them must be searchable by others. Nobody else gains
//! access: only container roots have that group.

use std::ffi::CString;
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crate::network::NetworkError;
use crate::runtime::ShimCommand;
use crate::shim::userns::READY;

/// The host id of a container's root.
pub const ID_BASE: u32 = 1 << 30;
/// How many ids each container has.
pub const ID_COUNT: u32 = 65536;
/// Where containers' user namespaces are bound.
pub const USERNS_DIR: &str = "/run/coop-userns";
/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";
/// How long `coop shim userns` may take to start and unshare.
const HOLDER_READY: Duration = Duration::from_secs(10);

/// Why this host cannot give containers a user namespace, if it cannot.
pub(crate) fn host_support() -> Result<(), String> {
    if !Path::new("/proc/self/ns/user").exists() {
        return Err("the kernel has no user namespaces".into());
    }
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    if max == Some(0) {
        return Err("user.max_user_namespaces is 0".into());
    }
    Ok(())
}

/// Lets container roots search `dir`: group [`ID_BASE`] and `g+x`, unless
/// others may search it already.
pub(crate) fn open_for_containers(dir: &Path) -> Result<(), String> {
    let meta = fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o001 != 0 || (meta.gid() == ID_BASE && mode & 0o010 != 0) {
        return Ok(());
    }
    std::os::unix::fs::chown(dir, None, Some(ID_BASE))
        .map_err(|e| format!("cannot change the group of {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode((mode & 0o7777) | 0o010))
        .map_err(|e| format!("cannot change the mode of {}: {e}", dir.display()))
}

/// Opens the runtime's directories (`root`, its `containers` and the
/// parent of `root`) to container roots, and checks that every directory
/// above can be searched by them.
pub(crate) fn prepare(root: &Path) -> Result<(), String> {
    host_support()?;
    let containers = root.join("containers");
    for dir in [Some(containers.as_path()), Some(root), root.parent()]
        .into_iter()
        .flatten()
    {
        open_for_containers(dir)?;
    }
    let mut above = root.parent().and_then(Path::parent);
    while let Some(dir) = above {
        let meta = fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 && !(meta.gid() == ID_BASE && mode & 0o010 != 0) {
            return Err(format!(
                "{} may not be searched by others (mode {:o}), so a container's root could not reach its files; use a data dir outside it",
                dir.display(),
                mode & 0o7777
            ));
        }
        above = dir.parent();
    }
    Ok(())
}

/// Makes a user namespace whose ids 0..65536 are host ids `shift..`, and
/// a network namespace it owns; binds them at `userns_path` and
/// `/run/netns/<netns>`. The namespaces are made by `shim` as a fresh
/// process (`coop shim userns`), which holds them until its stdin closes:
/// the agent itself never forks into them. Nothing is left on failure.
pub(crate) fn create_namespaces(
    shim: &ShimCommand,
    userns_path: &Path,
    netns: &str,
    shift: u32,
) -> Result<(), NetworkError> {
    let failed = |what: String| NetworkError::Namespaces(what);
    fs::create_dir_all(USERNS_DIR)
        .map_err(|e| failed(format!("cannot create {USERNS_DIR}: {e}")))?;
    fs::write(userns_path, b"")
        .map_err(|e| failed(format!("cannot create {}: {e}", userns_path.display())))?;
    let mut holder = shim.command();
    holder
        .arg("userns")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match holder.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = fs::remove_file(userns_path);
            return Err(failed(format!("cannot run {holder:?}: {e}")));
        }
    };
    let pid = child.id();
    let net_path = Path::new(NETNS_DIR).join(netns);
    let ready = match child.stdout.as_mut() {
        Some(stdout) => read_ready(stdout, HOLDER_READY),
        None => Err("`shim userns` has no stdout".to_string()),
    };
    let bound = ready
        .clone()
        .and_then(|()| map_and_bind(pid, shift, userns_path, &net_path));
    // Closing its stdin ends the holder; on any failure it is killed instead.
    drop(child.stdin.take());
    if ready.is_err() || bound.is_err() {
        let _ = child.kill();
    }
    let output = child.wait_with_output();
    // What became of the holder, for messages: its status and stderr.
    let holder = || match &output {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = match stderr.trim() {
                "" => "nothing",
                text => text,
            };
            format!("{}; its stderr: {stderr}", out.status)
        }
        Err(e) => format!("cannot wait for it: {e}"),
    };
    let result = match (ready, bound) {
        (Err(what), _) => Err(format!("{what} ({})", holder())),
        (Ok(()), Err(what)) => Err(what),
        (Ok(()), Ok(())) => match &output {
            Ok(out) if out.status.success() => Ok(()),
            _ => Err(format!(
                "`shim userns` failed once the namespaces were bound ({})",
                holder()
            )),
        },
    };
    if result.is_err() {
        let _ = remove_namespace_file(userns_path);
        let _ = remove_namespace_file(&net_path);
    }
    result.map_err(failed)
}

/// Maps ids 0..65536 of the holder `pid`'s user namespace onto `shift..`
/// and binds its user namespace at `userns_path` and its network
/// namespace at `net_path`.
fn map_and_bind(pid: u32, shift: u32, userns_path: &Path, net_path: &Path) -> Result<(), String> {
    let map = format!("0 {shift} {ID_COUNT}\n");
    for file in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{pid}/{file}"), &map)
            .map_err(|e| format!("cannot write {file}: {e}"))?;
    }
    bind(&format!("/proc/{pid}/ns/user"), userns_path)?;
    // What `ip netns attach` does, without starting it.
    fs::create_dir_all(NETNS_DIR)
        .and_then(|()| fs::write(net_path, b""))
        .map_err(|e| format!("cannot create {}: {e}", net_path.display()))?;
    bind(&format!("/proc/{pid}/ns/net"), net_path)
}

/// Reads the first line `coop shim userns` prints on `stdout`, for at most
/// `within`, and expects [`READY`].
fn read_ready(stdout: &mut ChildStdout, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "`shim userns` did not report {READY:?} within {} s",
                within.as_secs()
            ));
        }
        let mut poll = libc::pollfd {
            fd: stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: one valid pollfd, owned by this frame, for the call.
        let rc = unsafe { libc::poll(&mut poll, 1, millis) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("cannot wait for `shim userns`: {e}"));
        }
        if rc == 0 {
            continue;
        }
        let n = match stdout.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read from `shim userns`: {e}")),
        };
        if n == 0 {
            return Err(if line.is_empty() {
                format!("`shim userns` ended without reporting {READY:?}")
            } else {
                format!(
                    "`shim userns` said {:?} instead of {READY:?}",
                    String::from_utf8_lossy(&line)
                )
            });
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            let said = &line[..end];
            if said == READY.as_bytes() {
                return Ok(());
            }
            return Err(format!(
                "`shim userns` said {:?} instead of {READY:?}",
                String::from_utf8_lossy(said)
            ));
        }
        if line.len() > 256 {
            return Err(format!(
                "`shim userns` said {:?}... instead of {READY:?}",
                String::from_utf8_lossy(&line[..64])
            ));
        }
    }
}

/// Bind-mounts `source` onto the existing file `target`.
fn bind(source: &str, target: &Path) -> Result<(), String> {
    let c = |text: &[u8]| CString::new(text).map_err(|e| e.to_string());
    let (src, dst) = (c(source.as_bytes())?, c(target.as_os_str().as_bytes())?);
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot bind {source} to {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Unbinds and removes a user namespace file, if it is there.
pub(crate) fn remove_namespace_file(path: &Path) -> Result<(), NetworkError> {
    if !path.exists() {
        return Ok(());
    }
    let target = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| NetworkError::Namespaces(e.to_string()))?;
    // SAFETY: target is NUL-terminated. Not mounted (EINVAL) is fine.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    fs::remove_file(path)
        .map_err(|e| NetworkError::Namespaces(format!("cannot remove {}: {e}", path.display())))
}

/// An id as the host sees it when `shift` maps container ids: ids beyond
/// the range become the range's `nobody` (65534).
pub fn shifted(id: u32, shift: u32) -> u32 {
    if shift == 0 {
        id
    } else if id < ID_COUNT {
        shift + id
    } else {
        shift + 65534
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_shift_into_the_range() {
        assert_eq!(shifted(0, 0), 0);
        assert_eq!(shifted(1000, 0), 1000);
        assert_eq!(shifted(0, ID_BASE), ID_BASE);
        assert_eq!(shifted(33, ID_BASE), ID_BASE + 33);
        assert_eq!(shifted(70_000, ID_BASE), ID_BASE + 65534);
    }

    /// A holder that fails or says something other than `ready` fails the
    /// creation with what it printed on stderr, and leaves no file behind.
    #[test]
    fn a_failing_holder_is_reported_and_leaves_nothing() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: creating {USERNS_DIR} needs root");
            return;
        }
        let cases = [
            (
                "echo broken >&2; exit 3",
                "ended without reporting",
                "broken",
            ),
            ("echo what >&2; echo hello; cat", "said \"hello\"", "what"),
        ];
        for (script, expected, stderr) in cases {
            let shim = ShimCommand {
                program: "sh".into(),
                args: vec!["-c".into(), script.into(), "sh".into()],
            };
            let netns = format!("coop-unit-{}", std::process::id());
            let path = Path::new(USERNS_DIR).join(&netns);
            let err = create_namespaces(&shim, &path, &netns, ID_BASE)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains(stderr), "{err}");
            assert!(!path.exists());
            assert!(!Path::new(NETNS_DIR).join(&netns).exists());
        }
    }
}
