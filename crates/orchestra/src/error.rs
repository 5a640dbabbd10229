//! [`ComputeError`]: what can go wrong with containers and templates,
//! here or on another peer, as a type the API maps to a status once.

use serde::{Deserialize, Serialize};

use coop_compute::network::NetworkError;
use coop_compute::runtime::RuntimeError;
use coop_mesh::MeshError;
use coop_state::{CommandError, StoreError, WriteError};
use coop_types::PeerId;

/// Why a compute operation failed. It travels in `coop/compute/1` and
/// `coop/exec/1` replies, so a refusal reads the same whichever peer the
/// client asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ComputeError {
    /// No such container or template.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong (a bad name, size, port or spec).
    #[error("{0}")]
    Invalid(String),
    /// The request clashes with what exists (a name taken, a container
    /// running, a template replaced).
    #[error("{0}")]
    Conflict(String),
    /// The peer lacks the named resources for the lease; the message says
    /// which, how much is free and what was asked.
    #[error("{0}")]
    Short(String),
    /// Containers cannot run on the peer now, or the control plane cannot
    /// be written (no leader), or the store cannot be read.
    #[error("{0}")]
    Unavailable(String),
    /// The peer that should act cannot be reached.
    #[error("peer {} cannot be asked right now: {reason}", peer.short())]
    Unreachable { peer: PeerId, reason: String },
    /// The container runtime failed.
    #[error("{0}")]
    Runtime(String),
    /// Something that should not fail did (a file, an encoding).
    #[error("{0}")]
    Internal(String),
    /// Another peer refused, for its own reason (the message is the
    /// reason, unchanged).
    #[error("{error}")]
    Refused {
        peer: PeerId,
        error: Box<ComputeError>,
    },
}

impl ComputeError {
    /// The error behind any number of `Refused` wrappers.
    pub fn root(&self) -> &ComputeError {
        match self {
            ComputeError::Refused { error, .. } => error.root(),
            other => other,
        }
    }

    /// A failure of the mesh while asking `peer`.
    pub(crate) fn mesh(peer: PeerId, err: MeshError) -> ComputeError {
        ComputeError::Unreachable {
            peer,
            reason: err.to_string(),
        }
    }
}

/// How a runtime refusal or failure reads as a compute error.
pub fn runtime_error(err: RuntimeError) -> ComputeError {
    let message = err.to_string();
    match err {
        RuntimeError::NotRoot
        | RuntimeError::NoCgroups(_)
        | RuntimeError::MissingController(_)
        | RuntimeError::DiskQuotaUnsupported(_) => ComputeError::Unavailable(message),
        RuntimeError::Spec(_) | RuntimeError::BadSignal(_) => ComputeError::Invalid(message),
        RuntimeError::NotFound(_) => ComputeError::NotFound(message),
        RuntimeError::AlreadyExists(_)
        | RuntimeError::NotRunning(_)
        | RuntimeError::StillRunning(_)
        | RuntimeError::Network(NetworkError::PortBusy { .. })
        | RuntimeError::Network(NetworkError::SubnetFull(_)) => ComputeError::Conflict(message),
        _ => ComputeError::Runtime(message),
    }
}

impl From<StoreError> for ComputeError {
    fn from(err: StoreError) -> Self {
        ComputeError::Internal(format!("reading the control plane failed: {err}"))
    }
}

impl From<WriteError> for ComputeError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Rejected(cmd) => match cmd {
                CommandError::TemplateUnknown(_) | CommandError::ContainerUnknown(_) => {
                    ComputeError::NotFound(cmd.to_string())
                }
                CommandError::InvalidConfig(_) | CommandError::InvalidRecord(_) => {
                    ComputeError::Invalid(cmd.to_string())
                }
                _ => ComputeError::Conflict(cmd.to_string()),
            },
            WriteError::Unavailable { .. } => ComputeError::Unavailable(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_its_reason_and_keeps_its_kind() {
        let short = ComputeError::Short("160 MiB memory asked, 136 MiB of 200 MiB free".into());
        let refused = ComputeError::Refused {
            peer: PeerId([3; 32]),
            error: Box::new(short.clone()),
        };
        assert_eq!(refused.to_string(), short.to_string());
        assert_eq!(refused.root(), &short);
        let bytes = postcard::to_stdvec(&refused).unwrap();
        assert_eq!(
            postcard::from_bytes::<ComputeError>(&bytes).unwrap(),
            refused
        );
    }
}
