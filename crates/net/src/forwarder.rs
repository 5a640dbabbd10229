//! The forwarder: packets between a peer's TUN devices and the other
//! peers, one network at a time.
//!
//! Each network this peer carries has an id, a subnet, a TUN device and a
//! routing table (which peer hosts which address of the subnet, this peer
//! included), which the caller keeps up to date from the control plane.
//! A packet the kernel routes into a network's device goes, behind the
//! network's header, as one datagram to the peer hosting its destination.
//! A datagram from a peer is written to the device of the network it names
//! only when that network is carried here, both addresses lie in its
//! subnet, the table says the sender hosts the source and this peer the
//! destination. Anything else is dropped and counted by reason: a network's
//! packets never leave it, and only the peers hosting its members see them.
//!
//! There is no reliability layer: a lost datagram is TCP's to retransmit.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

use bytes::{Bytes, BytesMut};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use coop_mesh::{DatagramService, Mesh, MeshError};
use coop_types::{Ipv4Subnet, NetworkId, PeerId};

use crate::offload::{self, MAX_PACKET, Packets, VNET_HDR_LEN};
use crate::stats::{
    DropCounters, DropReason, ForwarderStats, NetworkCounters, TrafficCounters, unattributed,
};
use crate::tun::Tun;
use crate::wire::{HEADER_LEN, NetProtocol, NotIpv4, ipv4_ends, put_header, split_header};

/// How many packets to one peer may wait for its connection to be dialed;
/// more are dropped. A dial takes a round trip or two, and the first
/// packets of a flow (a SYN, a ping) are worth keeping; a peer that cannot
/// be reached should not pile up tasks.
const MAX_WAITING_FOR_DIAL: usize = 64;

/// Packets taken from a device per wake at most, and handed to the mesh
/// together: enough to fill a burst of UDP sends, few enough that other
/// networks' readers get their turn.
const READ_BURST: usize = 64;

/// A burst is handed to the mesh once it holds this many packets (a read
/// from a device with offloads may bring dozens).
const MAX_BURST: usize = 256;

/// Packets are read into chunks of this size and handed on as slices of
/// them, so a packet costs no allocation of its own.
const READ_CHUNK: usize = 256 << 10;

/// A network this peer carries: its id and its subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub id: NetworkId,
    pub subnet: Ipv4Subnet,
}

/// Why the forwarder refused a change.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("network {0} is already carried here; remove it first")]
    NetworkExists(NetworkId),
    #[error("network {0} is not carried here; add it with its TUN device first")]
    UnknownNetwork(NetworkId),
    #[error("network {network} has subnet {subnet}, which overlaps {other} of network {other_id}")]
    Overlap {
        network: NetworkId,
        subnet: Ipv4Subnet,
        other_id: NetworkId,
        other: Ipv4Subnet,
    },
    #[error("{addr} is outside subnet {subnet} of network {network}")]
    OutsideSubnet {
        network: NetworkId,
        addr: Ipv4Addr,
        subnet: Ipv4Subnet,
    },
    #[error("the forwarder has shut down")]
    Stopped,
}

/// One network's device, table and counters.
struct Plane {
    network: Network,
    tun: Tun,
    /// Which peer hosts which address (this peer's own members included).
    routes: RwLock<HashMap<Ipv4Addr, PeerId>>,
    counters: NetworkCounters,
    /// Ends this network's device reader.
    stop: CancellationToken,
}

impl Plane {
    fn host_of(&self, addr: Ipv4Addr) -> Option<PeerId> {
        self.routes.read().ok()?.get(&addr).copied()
    }

    /// Writes admitted packets from `from` to the device, in order: with
    /// offloads, runs of one TCP flow's segments as one packet each.
    fn write(&self, from: PeerId, packets: &[&[u8]]) {
        let traffic = self.counters.peer(from);
        let wrote = |result: std::io::Result<()>, run: &[&[u8]]| match result {
            Ok(()) => run.iter().for_each(|p| traffic.count_in(p.len())),
            Err(err) => {
                debug!(network = %self.network.id, %err, "the device did not take a packet");
                for _ in run {
                    self.counters.drops.count(DropReason::DeviceWrite);
                }
            }
        };
        if !self.tun.offloads() {
            for packet in packets {
                wrote(self.tun.send(packet), std::slice::from_ref(packet));
            }
            return;
        }
        for range in offload::plan(packets) {
            let run = &packets[range];
            if let [packet] = run {
                wrote(self.tun.send(packet), run);
                continue;
            }
            let (hdr, headers) = offload::merge_header(run);
            let mut parts: Vec<&[u8]> = Vec::with_capacity(run.len() + 2);
            parts.push(&hdr);
            parts.push(&headers);
            parts.extend(run.iter().map(|p| &p[headers.len()..]));
            wrote(self.tun.send_parts(&parts), run);
        }
    }
}

/// What the forwarder's tasks and the mesh's datagram service share.
struct Shared {
    mesh: Mesh,
    me: PeerId,
    planes: RwLock<HashMap<NetworkId, Arc<Plane>>>,
    /// Drops of datagrams that name no network carried here.
    unattributed: DropCounters,
    /// Packets waiting for a dial, by peer.
    waiting: RwLock<HashMap<PeerId, Arc<AtomicUsize>>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// The data plane of this peer's private networks. Cheap to clone; the
/// tasks it starts end at [`Forwarder::shutdown`].
#[derive(Clone)]
pub struct Forwarder(Arc<Shared>);

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forwarder({})", self.0.me.short())
    }
}

/// The mesh's datagram service: a weak handle, since the mesh holds it for
/// as long as it runs and the forwarder holds the mesh.
struct Inbound(Weak<Shared>);

impl DatagramService<NetProtocol> for Inbound {
    fn receive(&self, from: PeerId, datagram: Bytes) {
        self.receive_many(from, &mut [datagram]);
    }

    fn receive_many(&self, from: PeerId, datagrams: &mut [Bytes]) {
        if let Some(shared) = self.0.upgrade() {
            shared.receive_batch(from, datagrams);
        }
    }
}

impl Forwarder {
    /// Starts the data plane on `mesh`, which must list
    /// [`crate::NET_ALPN`] among its protocols; it carries no network until
    /// [`Forwarder::add_network`].
    pub fn start(mesh: Mesh) -> Forwarder {
        let shared = Arc::new(Shared {
            me: mesh.id(),
            mesh: mesh.clone(),
            planes: RwLock::default(),
            unattributed: DropCounters::default(),
            waiting: RwLock::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        });
        mesh.serve_datagrams::<NetProtocol>(Inbound(Arc::downgrade(&shared)));
        Forwarder(shared)
    }

    /// Carries `network` through `tun` from now on. The device should be up,
    /// with the MTU of [`crate::network_mtu`]; the routing table starts empty.
    pub fn add_network(&self, network: Network, tun: Tun) -> Result<(), ForwardError> {
        if self.0.stop.is_cancelled() {
            return Err(ForwardError::Stopped);
        }
        let plane = {
            let Ok(mut planes) = self.0.planes.write() else {
                return Err(ForwardError::Stopped);
            };
            if planes.contains_key(&network.id) {
                return Err(ForwardError::NetworkExists(network.id));
            }
            if let Some(other) = planes
                .values()
                .find(|p| p.network.subnet.overlaps(network.subnet))
            {
                return Err(ForwardError::Overlap {
                    network: network.id,
                    subnet: network.subnet,
                    other_id: other.network.id,
                    other: other.network.subnet,
                });
            }
            let plane = Arc::new(Plane {
                network,
                tun,
                routes: RwLock::default(),
                counters: NetworkCounters::default(),
                stop: self.0.stop.child_token(),
            });
            planes.insert(network.id, plane.clone());
            plane
        };
        let shared = self.0.clone();
        self.0.tasks.spawn(async move {
            let stop = plane.stop.clone();
            tokio::select! {
                () = shared.pump_out(plane) => {}
                () = stop.cancelled() => {}
            }
        });
        Ok(())
    }

    /// Stops carrying `network`; its device is closed (and so removed) once
    /// its reader has ended.
    pub fn remove_network(&self, network: NetworkId) -> Result<(), ForwardError> {
        let removed = self
            .0
            .planes
            .write()
            .ok()
            .and_then(|mut planes| planes.remove(&network));
        let plane = removed.ok_or(ForwardError::UnknownNetwork(network))?;
        plane.stop.cancel();
        Ok(())
    }

    /// Records that `peer` (this peer too) hosts `addr` on `network`.
    pub fn set_route(
        &self,
        network: NetworkId,
        addr: Ipv4Addr,
        peer: PeerId,
    ) -> Result<(), ForwardError> {
        let plane = self.plane(network)?;
        plane.check_inside(addr)?;
        if let Ok(mut routes) = plane.routes.write() {
            routes.insert(addr, peer);
        }
        Ok(())
    }

    /// Forgets who hosts `addr` on `network`; its packets are dropped.
    pub fn remove_route(&self, network: NetworkId, addr: Ipv4Addr) -> Result<(), ForwardError> {
        let plane = self.plane(network)?;
        if let Ok(mut routes) = plane.routes.write() {
            routes.remove(&addr);
        }
        Ok(())
    }

    /// Replaces the whole routing table of `network` at once (a fresh read
    /// of the control plane). Refused, unchanged, if any address lies
    /// outside the subnet.
    pub fn replace_routes(
        &self,
        network: NetworkId,
        routes: impl IntoIterator<Item = (Ipv4Addr, PeerId)>,
    ) -> Result<(), ForwardError> {
        let plane = self.plane(network)?;
        let routes: HashMap<Ipv4Addr, PeerId> = routes.into_iter().collect();
        for addr in routes.keys() {
            plane.check_inside(*addr)?;
        }
        if let Ok(mut table) = plane.routes.write() {
            *table = routes;
        }
        Ok(())
    }

    /// The networks carried here.
    pub fn networks(&self) -> Vec<Network> {
        let mut networks: Vec<Network> = self
            .0
            .planes
            .read()
            .map(|p| p.values().map(|plane| plane.network).collect())
            .unwrap_or_default();
        networks.sort_by_key(|n| n.id);
        networks
    }

    /// A copy of every counter.
    pub fn stats(&self) -> ForwarderStats {
        let planes: Vec<Arc<Plane>> = self
            .0
            .planes
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        let mut networks: Vec<_> = planes
            .iter()
            .map(|p| p.counters.snapshot(p.network.id))
            .collect();
        networks.sort_by_key(|n| n.network);
        ForwarderStats {
            networks,
            unattributed: unattributed(&self.0.unattributed),
        }
    }

    /// Stops every network's reader and the dials packets wait for, and
    /// closes the devices. Datagrams that still arrive are dropped.
    pub async fn shutdown(&self) {
        self.0.stop.cancel();
        if let Ok(mut planes) = self.0.planes.write() {
            planes.clear();
        }
        self.0.tasks.close();
        self.0.tasks.wait().await;
    }

    fn plane(&self, network: NetworkId) -> Result<Arc<Plane>, ForwardError> {
        self.0
            .plane(network)
            .ok_or(ForwardError::UnknownNetwork(network))
    }
}

impl Plane {
    fn check_inside(&self, addr: Ipv4Addr) -> Result<(), ForwardError> {
        if self.network.subnet.contains(addr) {
            Ok(())
        } else {
            Err(ForwardError::OutsideSubnet {
                network: self.network.id,
                addr,
                subnet: self.network.subnet,
            })
        }
    }
}

impl Shared {
    fn plane(&self, network: NetworkId) -> Option<Arc<Plane>> {
        self.planes.read().ok()?.get(&network).cloned()
    }

    /// Reads the packets the kernel routes into `plane`'s device and sends
    /// each to the peer hosting its destination, until the device fails.
    /// After each wait it drains what else is queued (up to [`READ_BURST`]
    /// reads) and hands each peer's share to the mesh at once. From a
    /// device with offloads, a TCP super-packet is cut into segments here.
    async fn pump_out(self: Arc<Self>, plane: Arc<Plane>) {
        let network = plane.network;
        let offload = plane.tun.offloads();
        // Room for the largest packet a device can hand over; the MTU is
        // smaller, but a read must never cut a packet short unnoticed.
        let most = HEADER_LEN + MAX_PACKET;
        let mut chunk = BytesMut::zeroed(READ_CHUNK);
        // With offloads, reads land here first (header and super-packet).
        let mut scratch = vec![
            0u8;
            if offload {
                VNET_HDR_LEN + MAX_PACKET
            } else {
                0
            }
        ];
        let mut burst: Vec<(PeerId, Bytes)> = Vec::with_capacity(READ_BURST);
        let mut group: Vec<Bytes> = Vec::with_capacity(READ_BURST);
        loop {
            let mut failed = None;
            for read in 0..READ_BURST {
                if chunk.len() < most {
                    chunk = BytesMut::zeroed(READ_CHUNK);
                }
                let room = if offload {
                    &mut scratch[..]
                } else {
                    &mut chunk[HEADER_LEN..most]
                };
                let len = if read == 0 {
                    plane.tun.recv(room).await
                } else {
                    plane.tun.try_recv(room)
                };
                match len {
                    Ok(len) if offload => {
                        self.take_offloaded(&plane, &mut scratch[..len], &mut chunk, &mut burst);
                    }
                    Ok(len) => self.take(&plane, len, &mut chunk, &mut burst),
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
                if burst.len() >= MAX_BURST {
                    break;
                }
            }
            self.send_burst(&plane, &mut burst, &mut group);
            if let Some(err) = failed {
                warn!(network = %network.id, device = plane.tun.name(), %err,
                    "the network's device failed; its packets stop here");
                return;
            }
        }
    }

    /// Takes the packet of `len` bytes behind the header room at the
    /// start of `chunk` into `burst`, if it goes anywhere.
    fn take(
        &self,
        plane: &Plane,
        len: usize,
        chunk: &mut BytesMut,
        burst: &mut Vec<(PeerId, Bytes)>,
    ) {
        put_header(&mut chunk[..HEADER_LEN], plane.network.id);
        let datagram = chunk.split_to(HEADER_LEN + len).freeze();
        if let Some(peer) = self.route_out(plane, &datagram[HEADER_LEN..]) {
            burst.push((peer, datagram));
        }
    }

    /// Takes one read from a device with offloads: its packet, or the
    /// segments of its super-packet, each with a checksum of its own.
    fn take_offloaded(
        &self,
        plane: &Plane,
        read: &mut [u8],
        chunk: &mut BytesMut,
        burst: &mut Vec<(PeerId, Bytes)>,
    ) {
        let room = |chunk: &mut BytesMut, len: usize| {
            if chunk.len() < HEADER_LEN + len {
                *chunk = BytesMut::zeroed(READ_CHUNK);
            }
        };
        match offload::read_packets(read) {
            Ok(Packets::One(packet)) => {
                room(chunk, packet.len());
                chunk[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(packet);
                self.take(plane, packet.len(), chunk, burst);
            }
            Ok(Packets::Segments(segments)) => {
                for index in 0..segments.count() {
                    room(chunk, segments.max_len());
                    let len = segments.write(index, &mut chunk[HEADER_LEN..]);
                    self.take(plane, len, chunk, burst);
                }
            }
            Err(err) => {
                debug!(network = %plane.network.id, ?err, "a packet from the device cannot be sent on");
                plane.counters.drops.count(DropReason::Malformed);
            }
        }
    }

    /// The peer hosting the destination of `packet`, read from `plane`'s
    /// device; `None` (and a drop counted) when it goes nowhere.
    fn route_out(&self, plane: &Plane, packet: &[u8]) -> Option<PeerId> {
        let drops = &plane.counters.drops;
        let ends = match ipv4_ends(packet) {
            Ok(ends) => ends,
            Err(NotIpv4::Version | NotIpv4::Truncated) => {
                drops.count(DropReason::Malformed);
                return None;
            }
        };
        if !plane.network.subnet.contains(ends.destination) {
            drops.count(DropReason::OutsideNetwork);
            return None;
        }
        let Some(peer) = plane.host_of(ends.destination) else {
            drops.count(DropReason::NoRoute);
            return None;
        };
        if peer == self.me {
            drops.count(DropReason::Loop);
            return None;
        }
        Some(peer)
    }

    /// Sends a burst of (peer, datagram), each run of one peer's at once.
    fn send_burst(
        self: &Arc<Self>,
        plane: &Arc<Plane>,
        burst: &mut Vec<(PeerId, Bytes)>,
        group: &mut Vec<Bytes>,
    ) {
        let mut rest = &burst[..];
        while let Some((peer, _)) = rest.first() {
            let peer = *peer;
            let run = rest.iter().take_while(|(p, _)| *p == peer).count();
            group.clear();
            group.extend(rest[..run].iter().map(|(_, d)| d.clone()));
            self.send_to(plane, peer, group);
            rest = &rest[run..];
        }
        burst.clear();
        group.clear();
    }

    /// Sends datagrams (header and packet) to `peer`.
    fn send_to(self: &Arc<Self>, plane: &Arc<Plane>, peer: PeerId, datagrams: &[Bytes]) {
        let traffic = plane.counters.peer(peer);
        let packet_len = |d: &Bytes| d.len() - HEADER_LEN;
        match self.mesh.try_send_datagrams::<NetProtocol>(peer, datagrams) {
            Ok(_) => datagrams
                .iter()
                .for_each(|d| traffic.count_out(packet_len(d))),
            Err(MeshError::NotConnected { .. }) => {
                for datagram in datagrams {
                    self.send_after_dial(plane, peer, datagram.clone(), traffic.clone());
                }
            }
            // One of them is too large: the others may go on their own.
            Err(MeshError::DatagramTooLarge { .. }) => {
                for datagram in datagrams {
                    let sent = self
                        .mesh
                        .try_send_datagram::<NetProtocol>(peer, datagram.clone());
                    match sent {
                        Ok(()) => traffic.count_out(packet_len(datagram)),
                        Err(err) => self.count_send_failure(plane, peer, &err),
                    }
                }
            }
            Err(err) => {
                for _ in datagrams {
                    self.count_send_failure(plane, peer, &err);
                }
            }
        }
    }

    /// Sends `datagram` once a connection to `peer` is dialed, unless too
    /// many packets already wait for it.
    fn send_after_dial(
        self: &Arc<Self>,
        plane: &Arc<Plane>,
        peer: PeerId,
        datagram: Bytes,
        traffic: Arc<TrafficCounters>,
    ) {
        let waiting = self.waiting_for(peer);
        if waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING_FOR_DIAL {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return plane.counters.drops.count(DropReason::Unreachable);
        }
        let shared = self.clone();
        let plane = plane.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let bytes = datagram.len() - HEADER_LEN;
            let sent = tokio::select! {
                sent = shared.mesh.send_datagram::<NetProtocol>(peer, datagram) => sent,
                () = stop.cancelled() => Ok(()),
            };
            waiting.fetch_sub(1, Ordering::AcqRel);
            match sent {
                Ok(()) => traffic.count_out(bytes),
                Err(err) => shared.count_send_failure(&plane, peer, &err),
            }
        });
    }

    fn waiting_for(&self, peer: PeerId) -> Arc<AtomicUsize> {
        if let Some(found) = self.waiting.read().ok().and_then(|w| w.get(&peer).cloned()) {
            return found;
        }
        match self.waiting.write() {
            Ok(mut waiting) => waiting.entry(peer).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    fn count_send_failure(&self, plane: &Plane, peer: PeerId, err: &MeshError) {
        let reason = match err {
            MeshError::DatagramTooLarge { .. } => DropReason::TooLarge,
            _ => DropReason::Unreachable,
        };
        debug!(network = %plane.network.id, peer = %peer.short(), %err, "packet not sent");
        plane.counters.drops.count(reason);
    }

    /// Checks a batch of datagrams from `from` and writes the packets of
    /// each network to its device, consecutive segments of a TCP flow
    /// merged into one where the device takes offloads.
    fn receive_batch(&self, from: PeerId, datagrams: &[Bytes]) {
        let mut at = 0;
        while at < datagrams.len() {
            let Some((network, _)) = split_header(&datagrams[at]) else {
                self.unattributed.count(DropReason::Malformed);
                at += 1;
                continue;
            };
            // The run of datagrams for the same network.
            let end = at
                + datagrams[at..]
                    .iter()
                    .take_while(|d| split_header(d).is_some_and(|(n, _)| n == network))
                    .count();
            let Some(plane) = self.plane(network) else {
                for _ in at..end {
                    self.unattributed.count(DropReason::UnknownNetwork);
                }
                at = end;
                continue;
            };
            let packets: Vec<&[u8]> = datagrams[at..end]
                .iter()
                .filter_map(|d| split_header(d).map(|(_, p)| p))
                .filter(|packet| self.admit(&plane, from, packet))
                .collect();
            plane.write(from, &packets);
            at = end;
        }
    }

    /// Whether a packet `from` sent on `plane`'s network may go to its
    /// device; a drop is counted when not.
    fn admit(&self, plane: &Plane, from: PeerId, packet: &[u8]) -> bool {
        let drops = &plane.counters.drops;
        let Ok(ends) = ipv4_ends(packet) else {
            drops.count(DropReason::Malformed);
            return false;
        };
        let subnet = plane.network.subnet;
        if !subnet.contains(ends.source) || !subnet.contains(ends.destination) {
            drops.count(DropReason::OutsideNetwork);
            return false;
        }
        if plane.host_of(ends.source) != Some(from) {
            drops.count(DropReason::Spoofed);
            return false;
        }
        if plane.host_of(ends.destination) != Some(self.me) {
            drops.count(DropReason::NotHere);
            return false;
        }
        true
    }
}
