//! How a [`crate::runtime::Runtime`] is set up: which shim to start, which
//! OCI runtime the shim uses, the network and where cgroups go.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::network::NetworkConfig;

/// The OCI runtime the shim drives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Backend {
    /// youki's libcontainer, linked into the shim (the default).
    #[default]
    Libcontainer,
    /// An external `runc` binary (Debian's `runc` package), the fallback.
    Runc {
        /// Path or name of the runc binary.
        binary: PathBuf,
    },
}

/// How to start `coop shim`: normally the agent's own binary with `shim`.
///
/// The shim runs as `PROGRAM ARGS... start|exec|delete|userns ...`; the program
/// must call [`crate::shim::main`] with the arguments after `ARGS` before it
/// starts any thread (libcontainer forks, which is only safe while single-threaded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the shim's own (`["shim"]` for the coop binary).
    pub args: Vec<OsString>,
}

impl ShimCommand {
    /// This very executable with the hidden `shim` subcommand: what the agent uses.
    pub fn current_exe() -> std::io::Result<ShimCommand> {
        Ok(ShimCommand {
            program: std::env::current_exe()?,
            args: vec!["shim".into()],
        })
    }

    /// `PROGRAM ARGS...`, to which the caller adds the shim's own arguments.
    pub(crate) fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        command.args(&self.args);
        command
    }
}

/// Everything a runtime needs besides its state directory.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// How to start the shim.
    pub shim: ShimCommand,
    /// libcontainer or runc.
    pub backend: Backend,
    /// Bridge, subnet, nft table and naming.
    pub network: NetworkConfig,
    /// Parent cgroup of every container (`coop` → `/coop/<id>`).
    pub cgroup_parent: String,
    /// Give containers a user namespace where the host supports it.
    pub user_namespaces: bool,
}

impl RuntimeConfig {
    /// The defaults of a real agent: libcontainer, bridge `coop0` on
    /// 10.88.0.0/16, nft table `coop`, cgroups under `/coop`.
    pub fn new(shim: ShimCommand) -> RuntimeConfig {
        RuntimeConfig {
            shim,
            backend: Backend::Libcontainer,
            network: NetworkConfig::default(),
            cgroup_parent: "coop".into(),
            user_namespaces: true,
        }
    }
}
