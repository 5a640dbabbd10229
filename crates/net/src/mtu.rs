//! The MTU of a private network: the largest IP packet that, behind the
//! network's header, fits in one QUIC datagram on any path between peers.
//!
//! Every member of a network uses the same MTU (the TUN devices and the
//! containers' interfaces), fixed when the network is set up, while a
//! connection's datagram limit changes with its paths. So the MTU is the
//! limit on the worst path a connection may hold, not the one seen now.
//!
//! QUIC never sends less than 1,200 bytes of UDP payload, and iroh (noq)
//! starts every path there; path MTU discovery then raises it, up to
//! 1,452 bytes. With multipath a connection's datagram limit is the
//! smallest over its paths, so a path just opened (a hole punched, a relay
//! path kept as a fallback) pulls it back to the 1,200-byte floor until
//! its own discovery is done. Measured with iroh 1.4 on this machine
//! (`tests/relay.rs`, several runs): 1,162 bytes on a loopback connection
//! caught before discovery, 1,414 after it (QUIC's overhead is 38 bytes
//! with iroh's 8-byte connection ids); through a relay of the cloud, with
//! UDP blocked, 1,351 to 1,414 as discovery goes on over the relay path.
//! The floor is what a network can count on.

use crate::wire::HEADER_LEN;

/// The largest datagram a connection takes on a path at QUIC's minimum of
/// 1,200 bytes of UDP payload, whatever connection id the peer picked:
/// 1,200 less the short header (1 byte of flags, a connection id of up to
/// 20 bytes, 4 of packet number), the AEAD tag (16) and the datagram
/// frame's type and length (up to 9). iroh's 8-byte ids leave 1,162.
pub const DATAGRAM_FLOOR: usize = 1_200 - (1 + 20 + 4) - 16 - 9;

/// The MTU of every private network: [`DATAGRAM_FLOOR`] less the header,
/// 1,145 bytes (a TCP MSS of 1,105).
pub const NETWORK_MTU: u16 = (DATAGRAM_FLOOR - HEADER_LEN) as u16;

/// The MTU to give a network's TUN devices and its containers' interfaces,
/// so that TCP inside the network never needs fragmentation.
pub fn network_mtu() -> u16 {
    NETWORK_MTU
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mtu_leaves_room_for_the_header() {
        assert_eq!(DATAGRAM_FLOOR, 1_150);
        assert_eq!(usize::from(network_mtu()) + HEADER_LEN, DATAGRAM_FLOOR);
    }
}
