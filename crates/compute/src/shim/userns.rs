//! `coop shim userns`: holds a fresh user namespace and the network
//! namespace it owns while the runtime maps its ids and binds both to files
//! (see `crate::runtime::userns::create_namespaces`). The shim unshares
//! them on itself (`unshare(CLONE_NEWUSER | CLONE_NEWNET)`, which needs a
//! single-threaded process), prints [`READY`] on stdout, then reads its
//! stdin until end of file and exits 0. The namespaces outlive it through
//! the bind mounts; if the runtime goes away first, its end of stdin closes
//! and the shim ends with it.

use std::io::{Read, Write};

use crate::shim::{ShimError, ensure_single_threaded, sys};

/// The line the shim prints once it is in its new namespaces.
pub(crate) const READY: &str = "ready";

pub(crate) fn userns() -> Result<u8, ShimError> {
    ensure_single_threaded()?;
    // SAFETY: a plain system call on constant flags; this process has one thread.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(sys("unshare a user and a network namespace")(
            nix::Error::last(),
        ));
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY}")
        .and_then(|()| stdout.flush())
        .map_err(|e| ShimError::Backend(format!("cannot report readiness on stdout: {e}")))?;
    let mut buf = [0u8; 512];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => return Ok(0),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ShimError::Backend(format!(
                    "cannot read stdin until it closes: {e}"
                )));
            }
        }
    }
}
