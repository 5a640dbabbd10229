//! The peer mesh: one iroh QUIC endpoint per peer, and the protocols on it.
//!
//! Every protocol has its own ALPN. Two are open to anyone: `coop/hello/1`,
//! where two peers show each other their certificates, and `coop/join/1`,
//! where a new machine redeems an invite. Every other protocol
//! (`coop/rpc/1`, `coop/raft/1`, gossip) is admitted by [`Admission`] only
//! for peers that proved a valid, unrevoked certificate of this cloud.
//!
//! Nothing here contacts a third-party relay or discovery service: peers are
//! found through the addresses the cloud itself knows (invites, the control
//! plane, status gossip).

mod admission;
mod hello;
mod liveness;
mod mesh;
mod relay;
mod relay_tls;
mod request;

pub use admission::{Admission, PathInfo};
pub use iroh::endpoint::{RecvStream, SendStream};
pub use liveness::{Liveness, LivenessConfig, StatusSource};
pub use mesh::{Mesh, MeshConfig, MeshError};
pub use request::{RequestHandler, StreamHandler};

/// Certificates are exchanged here; open to any peer.
pub const HELLO_ALPN: &[u8] = b"coop/hello/1";
/// New machines redeem invites here; open to any peer.
pub const JOIN_ALPN: &[u8] = b"coop/join/1";
/// Agent-to-agent requests (forwarded writes, joins, steward keys).
pub const RPC_ALPN: &[u8] = b"coop/rpc/1";
/// Raft consensus messages between control-plane replicas.
pub const RAFT_ALPN: &[u8] = b"coop/raft/1";
/// Shards of bulk data between peers (`store`).
pub const BLOCKS_ALPN: &[u8] = b"coop/blocks/1";
/// Container leases and operations on another peer's containers.
pub const COMPUTE_ALPN: &[u8] = b"coop/compute/1";
/// An exec session into a container on another peer (a stream protocol).
pub const EXEC_ALPN: &[u8] = b"coop/exec/1";
/// Status gossip (iroh-gossip under a coop-specific ALPN).
pub const GOSSIP_ALPN: &[u8] = b"coop/gossip/1";

/// ALPNs a peer may open without a certificate.
pub(crate) fn is_open_alpn(alpn: &[u8]) -> bool {
    alpn == HELLO_ALPN || alpn == JOIN_ALPN
}
