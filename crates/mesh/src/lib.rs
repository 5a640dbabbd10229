//! The peer mesh: one iroh QUIC endpoint per peer, and the protocols on it.
//!
//! Every protocol has its own ALPN. Two are open to anyone: `coop/hello/1`,
//! where two peers show each other their certificates, and `coop/join/1`,
//! where a new machine redeems an invite. Every other protocol is admitted
//! by [`Admission`] only for peers that proved a valid, unrevoked
//! certificate of this cloud. The mesh runs hello and gossip itself; every
//! other protocol is typed ([`Protocol`], [`StreamProtocol`],
//! [`DatagramProtocol`]) and declared
//! beside its messages in the crate that serves it (`coop/raft/1` in
//! `state`, `coop/blocks/1` in `store`, ...).
//!
//! Nothing here contacts a third-party relay or discovery service: peers are
//! found through the addresses the cloud itself knows (invites, the control
//! plane, status gossip).

mod admission;
mod datagram;
mod hello;
mod liveness;
mod mesh;
mod paths;
mod protocol;
mod relay;
mod relay_tls;
mod request;

pub use admission::{Admission, PathInfo};
pub use datagram::{DatagramProtocol, DatagramService};
pub use iroh::endpoint::{RecvStream, SendStream};
pub use liveness::{Liveness, LivenessConfig, StatusSource};
pub(crate) use mesh::WeakMesh;
pub use mesh::{Mesh, MeshConfig, MeshError};
pub use paths::{
    MAX_SPEED_BYTES, PATHS_ALPN, PathsProtocol, PathsReply, PathsRequest, SPEED_ALPN, SpeedOpen,
    SpeedProtocol, SpeedReply,
};
pub use protocol::{Protocol, Service, Session, StreamProtocol, StreamService};
pub use request::MAX_MESSAGE_BYTES;

/// Certificates are exchanged here; open to any peer.
pub const HELLO_ALPN: &[u8] = b"coop/hello/1";
/// New machines redeem invites here; open to any peer.
pub const JOIN_ALPN: &[u8] = b"coop/join/1";
/// An idle connection kept to every live peer, so each pair has a path of
/// its own to report (kind and RTT) whatever else flows between them.
pub(crate) const PATH_ALPN: &[u8] = b"coop/path/1";
/// Status gossip (iroh-gossip under a coop-specific ALPN).
pub const GOSSIP_ALPN: &[u8] = b"coop/gossip/1";

/// Peers of a friend cloud store and fetch their backups here; open at the
/// transport, and the service admits each call by the caller's certificate
/// from a cloud this one keeps backups for (to that cloud's bucket only).
pub const FRIEND_ALPN: &[u8] = b"coop/friend/1";

/// ALPNs a peer may open without a certificate of this cloud.
pub(crate) fn is_open_alpn(alpn: &[u8]) -> bool {
    alpn == HELLO_ALPN || alpn == JOIN_ALPN || alpn == FRIEND_ALPN
}
