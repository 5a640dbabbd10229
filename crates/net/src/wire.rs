//! `coop/net/1`: a private network's packets between peers, one IP packet
//! per QUIC datagram behind a five-byte header.
//!
//! ```text
//!  0        1                 5
//!  +--------+-----------------+---------------------------+
//!  | version| network id (BE) | IPv4 packet, as it left    |
//!  |   = 1  |      u32        | the sender's TUN device    |
//!  +--------+-----------------+---------------------------+
//! ```
//!
//! The header carries no addresses or lengths: the packet has its own, and
//! the QUIC connection already says which peer sent it (its TLS-proven key).
//! A receiver checks the rest against its routing table
//! ([`crate::Forwarder`]).

use std::net::Ipv4Addr;

use coop_mesh::DatagramProtocol;
use coop_types::NetworkId;

/// The ALPN of [`NetProtocol`].
pub const NET_ALPN: &[u8] = b"coop/net/1";

/// The header's first byte. A receiver drops datagrams of other versions.
pub const WIRE_VERSION: u8 = 1;

/// Bytes in front of each packet: the version and the network id.
pub const HEADER_LEN: usize = 5;

/// The smallest IPv4 header (no options).
const MIN_IPV4_HEADER: usize = 20;

/// Private networks' packets as datagrams on the mesh.
pub struct NetProtocol;

impl DatagramProtocol for NetProtocol {
    const ALPN: &'static [u8] = NET_ALPN;
}

/// Writes the header for `network` into the first [`HEADER_LEN`] bytes.
pub(crate) fn put_header(out: &mut [u8], network: NetworkId) {
    out[0] = WIRE_VERSION;
    out[1..HEADER_LEN].copy_from_slice(&network.0.to_be_bytes());
}

/// The network a datagram names and the packet behind the header; `None`
/// when it is too short or of another version.
pub(crate) fn split_header(datagram: &[u8]) -> Option<(NetworkId, &[u8])> {
    if datagram.len() < HEADER_LEN || datagram[0] != WIRE_VERSION {
        return None;
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&datagram[1..HEADER_LEN]);
    Some((NetworkId(u32::from_be_bytes(id)), &datagram[HEADER_LEN..]))
}

/// The addresses of an IPv4 packet, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ipv4Ends {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
}

/// Why a packet is not one the forwarder carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotIpv4 {
    /// Another IP version (IPv6 from the kernel's own address setup, say).
    Version,
    /// Shorter than its header says, or a header that cannot be.
    Truncated,
}

/// Reads the ends of an IPv4 packet, checking that the buffer holds the
/// whole header and the length the header gives.
pub(crate) fn ipv4_ends(packet: &[u8]) -> Result<Ipv4Ends, NotIpv4> {
    let first = *packet.first().ok_or(NotIpv4::Truncated)?;
    if first >> 4 != 4 {
        return Err(NotIpv4::Version);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < MIN_IPV4_HEADER || packet.len() < header_len {
        return Err(NotIpv4::Truncated);
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total < header_len || total > packet.len() {
        return Err(NotIpv4::Truncated);
    }
    let addr =
        |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    Ok(Ipv4Ends {
        source: addr(12),
        destination: addr(16),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal IPv4 header (20 bytes) with `payload` bytes of zeroes.
    pub(crate) fn packet(source: Ipv4Addr, destination: Ipv4Addr, payload: usize) -> Vec<u8> {
        let total = (MIN_IPV4_HEADER + payload) as u16;
        let mut p = vec![0u8; usize::from(total)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&source.octets());
        p[16..20].copy_from_slice(&destination.octets());
        p
    }

    #[test]
    fn headers_round_trip_and_refuse_other_versions() {
        let mut d = vec![0u8; HEADER_LEN + 3];
        put_header(&mut d, NetworkId(0x0102_0304));
        d[HEADER_LEN..].copy_from_slice(b"abc");
        assert_eq!(d[..HEADER_LEN], [1, 1, 2, 3, 4]);
        assert_eq!(
            split_header(&d),
            Some((NetworkId(0x0102_0304), &b"abc"[..]))
        );
        d[0] = 2;
        assert_eq!(split_header(&d), None);
        assert_eq!(split_header(&[1, 0, 0]), None);
    }

    #[test]
    fn ipv4_ends_are_read_and_bad_packets_refused() {
        let a = Ipv4Addr::new(198, 19, 1, 1);
        let b = Ipv4Addr::new(198, 19, 1, 2);
        let p = packet(a, b, 8);
        assert_eq!(
            ipv4_ends(&p),
            Ok(Ipv4Ends {
                source: a,
                destination: b
            })
        );
        assert_eq!(ipv4_ends(&p[..27]), Err(NotIpv4::Truncated));
        assert_eq!(ipv4_ends(&p[..10]), Err(NotIpv4::Truncated));
        assert_eq!(ipv4_ends(&[]), Err(NotIpv4::Truncated));
        let mut v6 = p.clone();
        v6[0] = 0x60;
        assert_eq!(ipv4_ends(&v6), Err(NotIpv4::Version));
        let mut short_ihl = p;
        short_ihl[0] = 0x44;
        assert_eq!(ipv4_ends(&short_ihl), Err(NotIpv4::Truncated));
    }
}
