//! The cloud's side of compute: the compute service of each peer.
//!
//! [`Orchestra`] runs leases on this peer (admitted by a [`LeasePolicy`]
//! against what the peer lends), acts on the containers it runs, forwards
//! the same calls to the peer that runs a container over `coop/compute/1`
//! and `coop/exec/1` (each declared beside its messages here), keeps
//! template blobs in the cloud's store ([`blobs`]), and reconciles this
//! peer's containers with the desired state in the control plane.
//! [`scheduler`] decides where replicas go: a pure placement function over
//! a snapshot of the cloud. Failures are [`ComputeError`]s; the API maps them to HTTP once.
//!
//! [`blueprint`] reads the Compose files that describe environments.
//!
//! Not here: one host's runtime, templates and shim (`coop-compute`), and
//! anything HTTP (`coop-api`).

pub mod blobs;
pub mod blueprint;
pub mod environments;
mod error;
mod exec;
pub mod frames;
pub mod health;
mod host;
mod lease;
mod protocol;
mod reconcile;
pub mod scheduler;
mod service;
pub mod setup;
mod spec;
mod templates;

pub use blobs::{Fetched, store_blob};
pub use error::{ComputeError, runtime_error};
pub use exec::{EXEC_ALPN, ExecCall, ExecProtocol, RemoteSession};
pub use frames::{
    ExecExit, ExecFrame, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_EOF,
    FRAME_STDOUT,
};
pub use host::{ComputeHost, should_restart, verify_template};
pub use lease::{FitsInCapacity, LeasePolicy, held, shortfall};
pub use protocol::{
    Action, COMPUTE_ALPN, ComputeCall, ComputeProtocol, ComputeReply, LOG_CHUNK, OBSERVE_TIMEOUT,
};
pub use service::{
    CapacityReport, ContainerStatus, ExecSession, LogStart, Observed, Orchestra, RunState,
    STOP_GRACE,
};
pub use spec::RunSpec;
