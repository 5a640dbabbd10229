//! User namespaces. Where the host supports them, a container's root is
//! host uid and gid [`ID_BASE`], and its ids 0..65536 map onto
//! `ID_BASE..ID_BASE + 65536`: a process that escapes its other namespaces
//! is nobody on the host. Every container shares this one range, so a
//! template is unpacked once with shifted owners and shared read-only.
//!
//! Each container has a user namespace of its own (all with the same
//! mapping), made by the runtime together with the network namespace it
//! owns, and joined by the container: a network namespace owned by the
//! host's user namespace could not be joined from inside a new one. Both
//! are bound to files (`/run/coop-userns/<netns>` and `/run/netns/<netns>`)
//! so they outlive the helper process that made them.
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
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::network::NetworkError;

/// The host id of a container's root.
pub const ID_BASE: u32 = 1 << 30;
/// How many ids each container has.
pub const ID_COUNT: u32 = 65536;
/// Where containers' user namespaces are bound.
pub const USERNS_DIR: &str = "/run/coop-userns";
/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

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
/// `/run/netns/<netns>`. A helper process (`cat`, waiting on its stdin)
/// holds them while they are bound, then ends. Nothing is left on failure.
pub(crate) fn create_namespaces(
    userns_path: &Path,
    netns: &str,
    shift: u32,
) -> Result<(), NetworkError> {
    let failed = |what: String| NetworkError::Namespaces(what);
    fs::create_dir_all(USERNS_DIR)
        .map_err(|e| failed(format!("cannot create {USERNS_DIR}: {e}")))?;
    fs::write(userns_path, b"")
        .map_err(|e| failed(format!("cannot create {}: {e}", userns_path.display())))?;
    let mut holder = Command::new("cat");
    holder
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the child only makes one system call,
    // which is async-signal-safe.
    unsafe {
        holder.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match holder.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = fs::remove_file(userns_path);
            return Err(failed(format!("cannot start the namespace holder: {e}")));
        }
    };
    let pid = child.id();
    let net_path = Path::new(NETNS_DIR).join(netns);
    let bound = (|| {
        let map = format!("0 {shift} {ID_COUNT}\n");
        for file in ["uid_map", "gid_map"] {
            fs::write(format!("/proc/{pid}/{file}"), &map)
                .map_err(|e| failed(format!("cannot write {file}: {e}")))?;
        }
        bind(&format!("/proc/{pid}/ns/user"), userns_path).map_err(failed)?;
        // What `ip netns attach` does, without starting it.
        fs::create_dir_all(NETNS_DIR)
            .and_then(|()| fs::write(&net_path, b""))
            .map_err(|e| failed(format!("cannot create {}: {e}", net_path.display())))?;
        bind(&format!("/proc/{pid}/ns/net"), &net_path).map_err(failed)?;
        Ok(())
    })();
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.flush();
    }
    let _ = child.kill();
    let _ = child.wait();
    if bound.is_err() {
        let _ = remove_namespace_file(userns_path);
        let _ = remove_namespace_file(&net_path);
    }
    bound
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
}
