//! A running peer as a library: [`Node::start`] brings up the mesh, the
//! control plane, storage, compute, the API and S3, founds or joins a
//! cloud on first start (or comes back as the member its data dir is),
//! and keeps the peer in step with the cloud: join decisions, the cloud
//! key handed to new stewards, Raft membership, admission mirrored from
//! the peers table, and the view of the cloud's disks that storage
//! places shards on. The [`NodeHandle`] owns every task the node starts
//! and stops them all on [`NodeHandle::shutdown`].
//!
//! Not here: the CLI, settings files, logging setup (the `coop` binary).

mod bootstrap;
mod containers;
mod datadir;
mod error;
mod loops;
mod networks;
mod node;
mod protocol;
mod services;
mod settings;
mod status;
mod storage;

pub use datadir::{ApiInfo, DataDir, Membership, default_data_dir};
pub use error::NodeError;
pub use node::{Node, NodeHandle};
pub use protocol::{
    AgentReply, AgentRequest, AgentRpc, JoinProtocol, JoinReply, JoinRequest, RPC_ALPN,
};
pub use settings::{CapacitySettings, NodeSettings};
pub use status::memory;
