//! TCP segmentation and coalescing for TUN devices with offloads.
//!
//! A device opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD(TUN_F_CSUM |
//! TUN_F_TSO4)` puts a 10-byte `virtio_net_hdr` in front of every packet
//! each way, and lets the kernel hand over TCP "super-packets" of up to
//! 64 KiB with the checksum left for the device to finish. That spares the
//! kernel its per-packet work on both ends (the sending TCP stack builds
//! one large segment, the receiving one takes one large segment), which is
//! where a userspace overlay spends most of its time otherwise.
//!
//! Outbound ([`read_packets`]): a super-packet is cut into segments of the
//! size the kernel asked for, each a whole IPv4 packet with its own
//! headers and checksums, so the wire carries only ordinary packets and a
//! peer without offloads takes them as they are. A single packet whose
//! checksum was left to the device gets it finished.
//!
//! Inbound ([`plan`], [`merge_header`]): consecutive segments of one TCP
//! flow, as they arrive in a batch of datagrams, are written back to the
//! device as one super-packet, the way the kernel's GRO merges segments
//! from a network card; anything else is written as it came.
//!
//! IPv4 only, as the private networks are.

use std::ops::Range;

/// Bytes of the `virtio_net_hdr` in front of each packet.
pub const VNET_HDR_LEN: usize = 10;
/// The largest packet a device hands over or takes: the IPv4 limit.
pub const MAX_PACKET: usize = u16::MAX as usize;
/// At most this many segments are merged into one packet.
const MAX_MERGED: usize = 64;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_ECN: u8 = 0x80;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// The header the kernel puts in front of each packet (fields in the
/// host's byte order, as the TUN driver uses without `TUNSETVNETLE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(bytes: &[u8]) -> Option<VnetHdr> {
        let b = bytes.get(..VNET_HDR_LEN)?;
        let word = |at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        })
    }

    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut out = [0u8; VNET_HDR_LEN];
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        out
    }
}

/// Adds `data`, as big-endian 16-bit words (an odd last byte padded with
/// zero), to a ones'-complement running sum.
fn add(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        acc += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for pair in &mut pairs {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a running sum to 16 bits.
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The sum of the IPv4 pseudo-header of a TCP or UDP packet.
fn pseudo(packet: &[u8], protocol: u8, length: usize) -> u64 {
    let acc = add(0, &packet[12..20]);
    acc + u64::from(protocol) + length as u64
}

/// Recomputes the header checksum of the IPv4 packet at the start of
/// `packet`, whose header is `ihl` bytes.
fn fix_ip_checksum(packet: &mut [u8], ihl: usize) {
    packet[10..12].copy_from_slice(&[0, 0]);
    let sum = !fold(add(0, &packet[..ihl]));
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Why a packet from the device cannot be sent on.
#[derive(Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// Shorter than its headers, or headers that do not add up.
    Malformed,
    /// An offload this code did not ask for (IPv6, UDP segmentation).
    Unsupported(u8),
}

/// What one read from an offloading device holds.
pub enum Packets<'a> {
    /// One whole IPv4 packet, checksum finished.
    One(&'a [u8]),
    /// A TCP super-packet, to cut into segments.
    Segments(Segmenter<'a>),
}

/// Takes one read from an offloading device (`virtio_net_hdr` and packet)
/// and makes it whole IPv4 packets: a checksum left to the device is
/// finished in place.
pub fn read_packets(read: &mut [u8]) -> Result<Packets<'_>, OffloadError> {
    let hdr = VnetHdr::parse(read).ok_or(OffloadError::Malformed)?;
    let packet = &mut read[VNET_HDR_LEN..];
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                finish_checksum(packet, &hdr)?;
            }
            Ok(Packets::One(packet))
        }
        GSO_TCPV4 => Ok(Packets::Segments(Segmenter::new(packet, hdr.gso_size)?)),
        other => Err(OffloadError::Unsupported(other)),
    }
}

/// Finishes a checksum the kernel left to the device: the ones'-complement
/// sum from `csum_start` to the end (the field holds the pseudo-header's
/// sum already) goes, complemented, at `csum_start + csum_offset`.
fn finish_checksum(packet: &mut [u8], hdr: &VnetHdr) -> Result<(), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > packet.len() {
        return Err(OffloadError::Malformed);
    }
    let mut sum = !fold(add(0, &packet[start..]));
    let udp = packet.len() > 9 && packet[9] == PROTO_UDP;
    if sum == 0 && udp {
        // Zero means "no checksum" in UDP; its complement is the same sum.
        sum = 0xffff;
    }
    packet[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Cuts a TCP super-packet into segments of `mss` payload bytes.
pub struct Segmenter<'a> {
    packet: &'a [u8],
    /// The IPv4 header's length.
    ihl: usize,
    /// The IPv4 and TCP headers' length.
    headers: usize,
    mss: usize,
    count: usize,
}

impl<'a> Segmenter<'a> {
    fn new(packet: &'a [u8], mss: u16) -> Result<Segmenter<'a>, OffloadError> {
        let bad = OffloadError::Malformed;
        if packet.len() < 20 || packet[0] >> 4 != 4 || packet[9] != PROTO_TCP {
            return Err(bad);
        }
        let ihl = usize::from(packet[0] & 0xf) * 4;
        if ihl < 20 || packet.len() < ihl + 20 {
            return Err(bad);
        }
        let headers = ihl + usize::from(packet[ihl + 12] >> 4) * 4;
        let mss = usize::from(mss);
        if headers < ihl + 20 || packet.len() < headers || mss == 0 {
            return Err(bad);
        }
        let payload = packet.len() - headers;
        Ok(Segmenter {
            packet,
            ihl,
            headers,
            mss,
            count: payload.div_ceil(mss).max(1),
        })
    }

    /// How many segments the packet makes.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The length of every segment at most.
    pub fn max_len(&self) -> usize {
        self.headers + self.mss
    }

    /// Writes segment `index` (a whole IPv4 packet) into `out`, which holds
    /// [`Segmenter::max_len`] bytes at least; returns its length.
    pub fn write(&self, index: usize, out: &mut [u8]) -> usize {
        let (ihl, headers) = (self.ihl, self.headers);
        let payload = &self.packet[headers..];
        let start = index * self.mss;
        let end = (start + self.mss).min(payload.len());
        let len = headers + end - start;
        out[..headers].copy_from_slice(&self.packet[..headers]);
        out[headers..len].copy_from_slice(&payload[start..end]);
        let packet = &mut out[..len];
        packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        // Each segment its own id, as the kernel's segmentation gives.
        let id = u16::from_be_bytes([packet[4], packet[5]]).wrapping_add(index as u16);
        packet[4..6].copy_from_slice(&id.to_be_bytes());
        fix_ip_checksum(packet, ihl);
        let tcp = ihl;
        let seq = u32::from_be_bytes([
            packet[tcp + 4],
            packet[tcp + 5],
            packet[tcp + 6],
            packet[tcp + 7],
        ])
        .wrapping_add(start as u32);
        packet[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = packet[tcp + 13];
        if index + 1 != self.count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if index != 0 {
            flags &= !TCP_CWR;
        }
        packet[tcp + 13] = flags;
        packet[tcp + 16..tcp + 18].copy_from_slice(&[0, 0]);
        let sum = !fold(add(pseudo(packet, PROTO_TCP, len - ihl), &packet[tcp..]));
        packet[tcp + 16..tcp + 18].copy_from_slice(&sum.to_be_bytes());
        len
    }
}

/// What merging looks at in a TCP segment.
#[derive(Debug)]
struct Segment<'a> {
    packet: &'a [u8],
    headers: usize,
    seq: u32,
    flags: u8,
}

impl<'a> Segment<'a> {
    /// A segment that may be merged: IPv4 without options or fragments,
    /// TCP with data and no flags but ACK (and PSH).
    fn of(packet: &'a [u8]) -> Option<Segment<'a>> {
        if packet.len() < 40 || packet[0] != 0x45 || packet[9] != PROTO_TCP {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        // More fragments, or an offset: not a whole packet.
        let fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0;
        if total != packet.len() || fragment {
            return None;
        }
        let headers = 20 + usize::from(packet[32] >> 4) * 4;
        let flags = packet[33];
        if headers < 40 || headers >= packet.len() || flags & !(TCP_ACK | TCP_PSH) != 0 {
            return None;
        }
        if flags & TCP_ACK == 0 {
            return None;
        }
        let seq = u32::from_be_bytes([packet[24], packet[25], packet[26], packet[27]]);
        Some(Segment {
            packet,
            headers,
            seq,
            flags,
        })
    }

    fn payload(&self) -> usize {
        self.packet.len() - self.headers
    }

    /// Whether `next` continues this flow right after `self`: same
    /// addresses, TOS, TTL, DF, ports, ack, window and options.
    fn followed_by(&self, next: &Segment<'_>) -> bool {
        let (a, b) = (self.packet, next.packet);
        self.headers == next.headers
            && a[1] == b[1]
            && a[6] & 0x40 == b[6] & 0x40
            && a[8] == b[8]
            && a[12..20] == b[12..20]
            && a[20..24] == b[20..24]
            && a[28..32] == b[28..32]
            && a[34..36] == b[34..36]
            && a[40..self.headers] == b[40..next.headers]
            && next.seq == self.seq.wrapping_add(self.payload() as u32)
    }
}

/// Splits a batch of whole IPv4 packets into runs, in order: each run is
/// one packet, or consecutive segments of one TCP flow that merge into
/// one (every one but the last a full segment of the first's size, only
/// the last with PSH, at most 64 KiB together).
pub fn plan(packets: &[&[u8]]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut at = 0;
    while at < packets.len() {
        let mut end = at + 1;
        if let Some(first) = Segment::of(packets[at]) {
            let mss = first.payload();
            let mut last = first;
            let mut total = last.packet.len();
            while end < packets.len() && end - at < MAX_MERGED {
                if last.flags & TCP_PSH != 0 || last.payload() != mss {
                    break;
                }
                let Some(next) = Segment::of(packets[end]) else {
                    break;
                };
                if next.payload() > mss
                    || total + next.payload() > MAX_PACKET
                    || !last.followed_by(&next)
                {
                    break;
                }
                total += next.payload();
                last = next;
                end += 1;
            }
        }
        runs.push(at..end);
        at = end;
    }
    runs
}

/// For a run of two or more segments from [`plan`]: the `virtio_net_hdr`
/// and the merged packet's headers (the first segment's, with the total
/// length, PSH of the last, and the pseudo-header sum the device
/// expects in the checksum field). The payloads follow them as they are.
pub fn merge_header(run: &[&[u8]]) -> ([u8; VNET_HDR_LEN], Vec<u8>) {
    let first = run[0];
    let headers = 20 + usize::from(first[32] >> 4) * 4;
    let payload: usize = run.iter().map(|p| p.len() - headers).sum();
    let total = headers + payload;
    let mut merged = first[..headers].to_vec();
    merged[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    fix_ip_checksum(&mut merged, 20);
    if let Some(last) = run.last() {
        merged[33] |= last[33] & TCP_PSH;
    }
    let sum = fold(pseudo(&merged, PROTO_TCP, total - 20));
    merged[36..38].copy_from_slice(&sum.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: headers as u16,
        gso_size: (first.len() - headers) as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr.encode(), merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP super-packet as the kernel hands it over: 10.0.0.1:4000 to
    /// 10.0.0.2:80, timestamps option, PSH, `payload` bytes, the checksum
    /// field holding the pseudo-header sum.
    fn super_packet(payload: usize) -> Vec<u8> {
        let headers = 20 + 32;
        let mut p = vec![0u8; headers + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((headers + payload).min(65535) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&4000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..28].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        p[28..32].copy_from_slice(&77u32.to_be_bytes());
        p[32] = 8 << 4;
        p[33] = TCP_ACK | TCP_PSH;
        p[34..36].copy_from_slice(&502u16.to_be_bytes());
        p[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
        for (i, byte) in p[headers..].iter_mut().enumerate() {
            *byte = (i * 7 % 251) as u8;
        }
        let partial = fold(pseudo(&p, PROTO_TCP, headers + payload - 20));
        p[36..38].copy_from_slice(&partial.to_be_bytes());
        fix_ip_checksum(&mut p, 20);
        p
    }

    fn with_hdr(hdr: VnetHdr, packet: &[u8]) -> Vec<u8> {
        let mut out = hdr.encode().to_vec();
        out.extend_from_slice(packet);
        out
    }

    fn ip_valid(p: &[u8]) -> bool {
        fold(add(0, &p[..20])) == 0xffff
    }

    fn l4_valid(p: &[u8]) -> bool {
        fold(add(pseudo(p, p[9], p.len() - 20), &p[20..])) == 0xffff
    }

    fn segments_of(read: &mut [u8]) -> Vec<Vec<u8>> {
        match read_packets(read).unwrap() {
            Packets::Segments(s) => (0..s.count())
                .map(|i| {
                    let mut out = vec![0u8; s.max_len()];
                    let len = s.write(i, &mut out);
                    out.truncate(len);
                    out
                })
                .collect(),
            Packets::One(_) => panic!("a super-packet"),
        }
    }

    fn tso_hdr(mss: u16) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: mss,
            csum_start: 20,
            csum_offset: 16,
        }
    }

    #[test]
    fn a_super_packet_becomes_whole_segments() {
        let original = super_packet(5000);
        let mut read = with_hdr(tso_hdr(1093), &original);
        let segments = segments_of(&mut read);
        assert_eq!(segments.len(), 5);
        let mut payload = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            assert!(ip_valid(s), "IP checksum of segment {i}");
            assert!(l4_valid(s), "TCP checksum of segment {i}");
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0x1234 + i as u16);
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 0xffff_ff00u32.wrapping_add(i as u32 * 1093));
            assert_eq!(s[33] & TCP_PSH != 0, i == 4, "PSH only on the last");
            assert_eq!(s[40..52], original[40..52], "options kept");
            payload.extend_from_slice(&s[52..]);
        }
        assert_eq!(payload, original[52..]);
        assert_eq!(segments[4].len(), 52 + 5000 - 4 * 1093);
    }

    #[test]
    fn segments_merge_back_into_the_super_packet() {
        let original = super_packet(5000);
        let segments = segments_of(&mut with_hdr(tso_hdr(1093), &original));
        let refs: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
        assert_eq!(plan(&refs), vec![0..5]);
        let (hdr, headers) = merge_header(&refs);
        let hdr = VnetHdr::parse(&hdr).unwrap();
        assert_eq!(hdr, tso_hdr(1093));
        let mut merged = headers.clone();
        for s in &segments {
            merged.extend_from_slice(&s[52..]);
        }
        assert!(ip_valid(&merged));
        assert_eq!(merged[33], TCP_ACK | TCP_PSH);
        // The same packet the kernel handed over, pseudo-header sum and
        // all: cut again, it gives the same segments.
        assert_eq!(merged, original);
        assert_eq!(segments_of(&mut with_hdr(hdr, &merged)), segments);
    }

    #[test]
    fn only_consecutive_segments_of_one_flow_merge() {
        let segments = segments_of(&mut with_hdr(tso_hdr(1000), &super_packet(4000)));
        let refs = |v: &[Vec<u8>]| v.iter().map(|s| s.to_vec()).collect::<Vec<_>>();
        // A gap in the sequence, another flow, a SYN: each ends a run.
        let mut gap = refs(&segments);
        gap.remove(1);
        let mut other = refs(&segments);
        other[2][22..24].copy_from_slice(&81u16.to_be_bytes());
        let mut syn = refs(&segments);
        syn[1][33] |= 0x02;
        let mut short = refs(&segments);
        let shorter = short[1].len() - 1;
        short[1].truncate(shorter);
        short[1][2..4].copy_from_slice(&(shorter as u16).to_be_bytes());
        for (case, want) in [
            (gap, vec![0..1, 1..3]),
            (other, vec![0..2, 2..3, 3..4]),
            (syn, vec![0..1, 1..2, 2..4]),
            (short, vec![0..2, 2..4]),
        ] {
            let r: Vec<&[u8]> = case.iter().map(Vec::as_slice).collect();
            assert_eq!(plan(&r), want);
        }
        let udp: &[u8] = &[0x45, 0, 0, 28, 0, 0, 0, 0, 64, PROTO_UDP];
        assert_eq!(plan(&[udp, udp]), vec![0..1, 1..2]);
    }

    #[test]
    fn a_checksum_left_to_the_device_is_finished() {
        // UDP 10.0.0.1:53 -> 10.0.0.2:9999, 5 bytes, field = pseudo sum.
        let mut p = vec![0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, PROTO_UDP, 0, 0];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&[0, 53, 0x27, 0x0f, 0, 13, 0, 0, b'h', b'e', b'l', b'l', b'o']);
        let partial = fold(pseudo(&p, PROTO_UDP, 13));
        p[26..28].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let mut read = with_hdr(hdr, &p);
        let Ok(Packets::One(done)) = read_packets(&mut read) else {
            panic!("one packet")
        };
        assert!(l4_valid(done));
        let mut bad = with_hdr(
            VnetHdr {
                csum_offset: 60,
                ..hdr
            },
            &p,
        );
        assert!(matches!(
            read_packets(&mut bad),
            Err(OffloadError::Malformed)
        ));
        let udp_gso = VnetHdr { gso_type: 5, ..hdr };
        assert!(matches!(
            read_packets(&mut with_hdr(udp_gso, &p)),
            Err(OffloadError::Unsupported(5))
        ));
    }
}
