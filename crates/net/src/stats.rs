//! What the forwarder counts: packets and bytes each way per network and
//! peer, and the packets it dropped, by reason.
//!
//! Counters are atomics bumped on the packet path; [`crate::Forwarder::stats`]
//! copies them into plain values for the API and metrics to show.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use coop_types::{NetworkId, PeerId};

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Outbound: no peer is known to host the destination address.
    NoRoute,
    /// Outbound: the routing table says this peer hosts the destination,
    /// yet the kernel sent the packet into the device.
    Loop,
    /// A destination (or, inbound, a source) outside the network's subnet:
    /// a packet trying to cross into another network.
    OutsideNetwork,
    /// Inbound: the sender is not the peer the routing table says hosts
    /// the packet's source address (spoofed, or a table out of date).
    Spoofed,
    /// Inbound: the destination is not hosted by this peer.
    NotHere,
    /// Inbound: the datagram names a network this peer does not carry.
    UnknownNetwork,
    /// Not an IPv4 packet the forwarder carries (IPv6, truncated, a
    /// header of another version).
    Malformed,
    /// Outbound: bigger than the connection's datagram limit (the TUN's
    /// MTU is larger than [`crate::network_mtu`]).
    TooLarge,
    /// Outbound: no connection to the hosting peer could be had, or too
    /// many packets already wait for one.
    Unreachable,
    /// Inbound: the kernel did not take the packet from the device.
    DeviceWrite,
}

impl DropReason {
    /// Every reason, in the order of the counters.
    pub const ALL: [DropReason; 10] = [
        DropReason::NoRoute,
        DropReason::Loop,
        DropReason::OutsideNetwork,
        DropReason::Spoofed,
        DropReason::NotHere,
        DropReason::UnknownNetwork,
        DropReason::Malformed,
        DropReason::TooLarge,
        DropReason::Unreachable,
        DropReason::DeviceWrite,
    ];

    /// A short name for tables and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no_route",
            DropReason::Loop => "loop",
            DropReason::OutsideNetwork => "outside_network",
            DropReason::Spoofed => "spoofed",
            DropReason::NotHere => "not_here",
            DropReason::UnknownNetwork => "unknown_network",
            DropReason::Malformed => "malformed",
            DropReason::TooLarge => "too_large",
            DropReason::Unreachable => "unreachable",
            DropReason::DeviceWrite => "device_write",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Drop counts by reason.
#[derive(Default)]
pub(crate) struct DropCounters([AtomicU64; DropReason::ALL.len()]);

impl DropCounters {
    pub(crate) fn count(&self, reason: DropReason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Drops {
        Drops(
            DropReason::ALL
                .iter()
                .map(|r| (*r, self.0[r.index()].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
}

/// Traffic with one peer on one network.
#[derive(Default)]
pub(crate) struct TrafficCounters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
}

impl TrafficCounters {
    pub(crate) fn count_in(&self, bytes: usize) {
        self.packets_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_out(&self, bytes: usize) {
        self.packets_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// The counters of one network.
#[derive(Default)]
pub(crate) struct NetworkCounters {
    peers: RwLock<HashMap<PeerId, Arc<TrafficCounters>>>,
    pub(crate) drops: DropCounters,
}

impl NetworkCounters {
    /// The traffic counters with `peer`, made on first use.
    pub(crate) fn peer(&self, peer: PeerId) -> Arc<TrafficCounters> {
        if let Some(found) = self.peers.read().ok().and_then(|p| p.get(&peer).cloned()) {
            return found;
        }
        match self.peers.write() {
            Ok(mut peers) => peers.entry(peer).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    pub(crate) fn snapshot(&self, network: NetworkId) -> NetworkStats {
        let mut peers: Vec<PeerTraffic> = self
            .peers
            .read()
            .map(|p| {
                p.iter()
                    .map(|(peer, t)| PeerTraffic {
                        peer: *peer,
                        packets_in: t.packets_in.load(Ordering::Relaxed),
                        bytes_in: t.bytes_in.load(Ordering::Relaxed),
                        packets_out: t.packets_out.load(Ordering::Relaxed),
                        bytes_out: t.bytes_out.load(Ordering::Relaxed),
                    })
                    .collect()
            })
            .unwrap_or_default();
        peers.sort_by_key(|p| p.peer);
        NetworkStats {
            network,
            peers,
            drops: self.drops.snapshot(),
        }
    }
}

/// Drop counts by reason; reasons never seen are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drops(pub Vec<(DropReason, u64)>);

impl Drops {
    /// How many packets were dropped for `reason`.
    pub fn of(&self, reason: DropReason) -> u64 {
        self.0
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

/// Traffic with one peer on one network since the network was added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTraffic {
    pub peer: PeerId,
    /// Packets from the peer written to the device, and their bytes.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Packets from the device sent to the peer, and their bytes (IP
    /// packets, without the header or QUIC's overhead).
    pub packets_out: u64,
    pub bytes_out: u64,
}

/// The counters of one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkStats {
    pub network: NetworkId,
    /// Traffic by peer, in peer order.
    pub peers: Vec<PeerTraffic>,
    pub drops: Drops,
}

impl NetworkStats {
    /// The traffic with `peer`, if any passed.
    pub fn peer(&self, peer: &PeerId) -> Option<&PeerTraffic> {
        self.peers.iter().find(|p| p.peer == *peer)
    }
}

/// Everything the forwarder counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    /// By network, in id order.
    pub networks: Vec<NetworkStats>,
    /// Datagrams that named no network this peer carries, or had no
    /// header of this version.
    pub unattributed: Drops,
}

impl ForwarderStats {
    /// The counters of `network`, if this peer carries it.
    pub fn network(&self, network: NetworkId) -> Option<&NetworkStats> {
        self.networks.iter().find(|n| n.network == network)
    }
}

pub(crate) fn unattributed(counters: &DropCounters) -> Drops {
    counters.snapshot()
}
