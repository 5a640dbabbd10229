//! The MTU of a private network: the largest IP packet that, behind the
//! network's header, fits in one QUIC datagram on any path between peers.
//!
//! Every member of a network uses the same MTU (the TUN devices and the
//! containers' interfaces), fixed when the network is set up, while a
//! connection's datagram limit changes with its paths. So the MTU is the
//! limit on the worst path a connection may hold, not the one measured now.
//!
//! QUIC never sends a UDP payload under 1,200 bytes and iroh starts every
//! path there; path MTU discovery then raises a direct path to 1,452 on a
//! 1,500-byte link. With multipath the limit is the smallest over the
//! connection's paths, and a relayed path stays at 1,200. Measured on this
//! machine with iroh 1.4 (`datagram_limits_measured` in the tests, and the
//! benchmark): DATAGRAM_FLOOR below on a fresh loopback connection, on one
//! through a cloud relay, and on a direct path after discovery while the
//! relay path is held too. The inner TCP's MSS is then the MTU less 40.

use crate::wire::HEADER_LEN;

/// The largest datagram a connection takes on a path at QUIC's minimum of
/// 1,200 bytes of UDP payload: 1,200 less the short header (1 byte of
/// flags, iroh's connection id, up to 4 bytes of packet number), the AEAD
/// tag (16) and the datagram frame's type and length (up to 9).
pub const DATAGRAM_FLOOR: usize = 1_150;

/// The MTU of every private network: [`DATAGRAM_FLOOR`] less the header.
pub const NETWORK_MTU: u16 = (DATAGRAM_FLOOR - HEADER_LEN) as u16;

/// The MTU to give a network's TUN devices and its containers' interfaces,
/// so that TCP inside the network never needs fragmentation.
pub fn network_mtu() -> u16 {
    NETWORK_MTU
}
