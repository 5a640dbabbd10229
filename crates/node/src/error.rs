//! [`NodeError`]: why a peer could not start (or its data dir be used).

use std::net::SocketAddr;

/// Why a peer could not start, or its data dir could not be used. Each
/// message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data dir cannot be used: unreadable, damaged, or another
    /// cloud's.
    #[error("{0}")]
    DataDir(String),
    /// An address is busy or not this machine's.
    #[error("cannot listen for {what} on {addr}: {reason}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    /// The invite cannot be used, or the cloud refused it.
    #[error("{0}")]
    Join(String),
    /// A part of the peer failed to start: the mesh, the control plane,
    /// storage or compute.
    #[error("cannot start {what}: {reason}")]
    Start { what: &'static str, reason: String },
}

impl NodeError {
    /// A failure to start `what`.
    pub(crate) fn start(what: &'static str) -> impl Fn(String) -> NodeError {
        move |reason| NodeError::Start { what, reason }
    }

    /// A data dir problem about `path`, from any error.
    pub(crate) fn data_dir(what: String) -> impl FnOnce(std::io::Error) -> NodeError {
        move |err| NodeError::DataDir(format!("{what}: {err}"))
    }
}

impl From<coop_identity::KeyError> for NodeError {
    fn from(err: coop_identity::KeyError) -> Self {
        NodeError::DataDir(err.to_string())
    }
}

impl From<coop_state::StoreError> for NodeError {
    fn from(err: coop_state::StoreError) -> Self {
        NodeError::Start {
            what: "the control plane",
            reason: format!("reading the control-plane state failed: {err}"),
        }
    }
}
