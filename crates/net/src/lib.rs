//! The data plane of coop's private networks: packets of a network's
//! members carried between peers as QUIC datagrams on the mesh.
//!
//! On each peer, a network has a TUN device ([`Tun`]) that the host routes
//! the network's remote addresses into, and the [`Forwarder`] sends each
//! packet read from it, behind a small header naming the network
//! ([`wire`]), to the peer hosting its destination over `coop/net/1`
//! ([`NetProtocol`]). Datagrams arriving from peers are checked against the
//! network's routing table and written to its device. The MTU every member
//! uses is [`network_mtu`].
//!
//! Names: a resolver on each network's gateway address ([`dns`]).
//!
//! Not here: network records and address management (the control plane),
//! per-network bridges and containers' interfaces (compute).

pub mod dns;
mod forwarder;
mod mtu;
pub mod offload;
mod stats;
mod sys;
mod tun;
pub mod wire;

pub use forwarder::{ForwardError, Forwarder, Network};
pub use mtu::{DATAGRAM_FLOOR, NETWORK_MTU, network_mtu};
pub use stats::{DropReason, Drops, ForwarderStats, NetworkStats, PeerTraffic};
pub use sys::{CommandError, run as run_command};
pub use tun::{Tun, TunError};
pub use wire::{HEADER_LEN, NET_ALPN, NetProtocol};
