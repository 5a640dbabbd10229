//! Exec into a container that has a user namespace, with libcontainer.
//!
//! libcontainer's tenant (its `exec`) joins the container's mount, pid,
//! network, ipc and uts namespaces but not its user namespace, so the
//! process would be host root in there. This executor finishes the job at
//! the last step before `execve`: it enters the user namespace of the
//! container's init (pid 1 of the pid namespace it is now in), takes the
//! process's user and groups inside it, and cuts its capabilities back to
//! the container's set. To be allowed to enter, the tenant is given
//! `CAP_SYS_ADMIN` and `CAP_SYS_PTRACE` on top of that set (see
//! [`extra_capabilities`]); they are gone before the command runs.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability};
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

/// Capabilities the tenant needs only to enter the user namespace.
pub(crate) fn extra_capabilities() -> [&'static str; 2] {
    ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]
}

/// The executor of exec'd processes in containers with a user namespace.
#[derive(Clone)]
pub(crate) struct JoinUserNamespace {
    /// The capabilities the process keeps (the container's set).
    pub keep: Vec<String>,
}

fn failed(what: &str, err: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Execution(format!("cannot {what}: {err}").into())
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl Executor for JoinUserNamespace {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let user = spec
            .process()
            .as_ref()
            .map(|p| (p.user().uid(), p.user().gid()))
            .ok_or(ExecutorError::InvalidArg)?;
        let ns = std::fs::File::open("/proc/1/ns/user")
            .map_err(|e| failed("open the container's user namespace", e))?;
        // SAFETY: plain system calls on a valid descriptor and integers; this
        // process is single-threaded (a fresh child of the shim).
        unsafe {
            use std::os::fd::AsRawFd;
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) != 0 {
                return Err(failed("enter the container's user namespace", errno()));
            }
            drop(ns);
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(failed("clear supplementary groups", errno()));
            }
            if libc::setresgid(user.1, user.1, user.1) != 0 {
                return Err(failed("set the group", errno()));
            }
            if libc::setresuid(user.0, user.0, user.0) != 0 {
                return Err(failed("set the user", errno()));
            }
        }
        let keep: HashSet<Capability> = self
            .keep
            .iter()
            .filter_map(|name| Capability::from_str(name).ok())
            .collect();
        for cap in caps::all() {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| failed("drop a capability", e))?;
            }
        }
        for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
            caps::set(None, set, &keep).map_err(|e| failed("set capabilities", e))?;
        }
        caps::clear(None, CapSet::Ambient).map_err(|e| failed("clear ambient capabilities", e))?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
