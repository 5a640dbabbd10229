//! Compute as the API serves it: templates (`/v1/templates`),
//! containers (`/v1/containers`) and environments (`/v1/environments`), thin handlers over the compute service
//! ([`coop_orchestra::Orchestra`]), which runs, forwards and reconciles.

pub(crate) mod containers;
pub(crate) mod environments;
pub(crate) mod templates;
mod views;

pub use containers::LOG_OFFSET_HEADER;
pub use coop_orchestra::{
    ExecExit, ExecFrame, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_EOF,
    FRAME_STDOUT,
};
pub use environments::{
    EnvEventView, EnvPlanView, EnvRequest, EnvServiceView, EnvView, ReplicaPlanView,
};
pub use views::{
    ComputeView, ContainerView, ExecQuery, OwnerView, RunRequest, StatsView, TemplateView,
    exit_code_of,
};
