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
//! Template blobs live in the cloud's store (see `blobs`): a peer fetches
//! one the first time it runs the template.

mod blobs;
pub(crate) mod containers;
mod host;
mod lease;
mod remote;
mod remote_exec;
pub(crate) mod stream;
pub(crate) mod templates;
mod views;

pub use blobs::Fetched;
pub use host::{ComputeHost, runtime_error, should_restart};
pub use lease::{Capacity, ComputeView};
pub use remote::{COMPUTE_ALPN, ComputeProtocol, PeerCall, PeerReply, serve_compute_calls};
pub use remote_exec::{EXEC_ALPN, ExecAnswer, ExecCall, ExecProtocol};
pub use stream::{
    ExecFrame, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_EOF, FRAME_STDOUT,
};
pub use views::{
    ContainerView, ExecExit, ExecQuery, RunRequest, StatsView, TemplateView, exit_code_of,
};
