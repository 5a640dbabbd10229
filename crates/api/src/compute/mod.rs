//! Compute on this peer as the API serves it: templates (`/v1/templates`)
//! and containers (`/v1/containers`), backed by a [`ComputeHost`].
//!
//! The control plane holds desired state (which templates exist, which
//! containers should run where); the runtime of the peer that runs a
//! container holds what it is doing now. Handlers write the control plane
//! first and then act on the runtime, undoing the write when the runtime
//! refuses, so nothing is left half-created. The agent's reconcile loop
//! uses the same [`ComputeHost`] to apply restart policies.
//!
//! Not here yet: running on another peer (`--peer`), leases and capacity,
//! fetching template blobs from the importing peer. Every container entry
//! names its peer, so those slot in where the handlers check `entry.peer`.

pub(crate) mod containers;
mod host;
pub(crate) mod stream;
pub(crate) mod templates;
mod views;

pub use host::{ComputeHost, runtime_error};
pub use stream::{
    ExecFrame, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_EOF, FRAME_STDOUT,
};
pub use views::{
    ContainerView, ExecExit, ExecQuery, RunRequest, StatsView, TemplateView, exit_code_of,
};
