//! The data plane between two real peers over loopback QUIC: each peer's
//! TUN device sits in a namespace of its own, as a member of the network,
//! and packets cross as datagrams on `coop/net/1`. Needs root.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::Bytes;

use coop_net::wire::WIRE_VERSION;
use coop_net::{DATAGRAM_FLOOR, DropReason, HEADER_LEN, NetProtocol, network_mtu};
use coop_types::NetworkId;

use common::{attach, attach_with, eventually, network, require_root, route_both, two_peers};

const A1: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
const B1: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 1);
const B2: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 2);
const NOBODY: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 9);
const WAIT: Duration = Duration::from_secs(5);

/// A datagram as a (misbehaving) peer would craft it: the header for
/// `network` and a UDP packet from `source` to `destination`.
fn crafted(network: u32, source: Ipv4Addr, destination: Ipv4Addr) -> Bytes {
    let total: u16 = 28;
    let mut d = vec![0u8; HEADER_LEN + usize::from(total)];
    d[0] = WIRE_VERSION;
    d[1..HEADER_LEN].copy_from_slice(&network.to_be_bytes());
    let p = &mut d[HEADER_LEN..];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&source.octets());
    p[16..20].copy_from_slice(&destination.octets());
    Bytes::from(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_a_tcp_transfer_cross_between_peers() {
    require_root();
    // Devices with offloads on both sides (TCP cut into segments on the
    // way out, merged on the way in), and with a plain device on either
    // side: the wire carries ordinary packets, so each takes the other's.
    for (offload_a, offload_b) in [(true, true), (true, false), (false, true)] {
        eprintln!("offloads at a: {offload_a}, at b: {offload_b}");
        transfer_between(offload_a, offload_b).await;
    }
}

async fn transfer_between(offload_a: bool, offload_b: bool) {
    let (a, b) = two_peers().await;
    let net = network(1, "198.19.1.0/24");
    let on_a = attach_with(&a, net, A1, offload_a).expect("member on a");
    let on_b = attach_with(&b, net, B1, offload_b).expect("member on b");
    route_both(&a, &b, net.id, &[(A1, a.id()), (B1, b.id())]);

    assert!(on_a.ns.ping(B1, 56), "a cannot ping b across the peers");
    // A packet of the full MTU fits one datagram (ICMP: 28 bytes of headers).
    let full = usize::from(network_mtu()) - 28;
    assert!(on_b.ns.ping(A1, full), "a full-MTU ping does not cross");

    // 1 MiB over TCP, checked byte for byte on the far side.
    let sent: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let listener = on_b
        .ns
        .enter(|| TcpListener::bind((B1, 0)))
        .expect("enter b")
        .expect("listen on b");
    let port = listener.local_addr().expect("port").port();
    let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut got = Vec::new();
        conn.read_to_end(&mut got)?;
        Ok(got)
    });
    let payload = sent.clone();
    let client = on_a
        .ns
        .enter(move || -> std::io::Result<()> {
            let to = SocketAddr::from((B1, port));
            let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
            conn.set_write_timeout(Some(Duration::from_secs(20)))?;
            conn.write_all(&payload)?;
            conn.shutdown(std::net::Shutdown::Write)
        })
        .expect("enter a");
    client.expect("a sends 1 MiB");
    let got = server
        .join()
        .expect("server thread")
        .expect("b receives 1 MiB");
    assert_eq!(got.len(), sent.len(), "b got {} bytes", got.len());
    assert!(got == sent, "the bytes b got differ from those a sent");

    let stats = a.forwarder.stats();
    let n1 = stats.network(net.id).expect("network 1 on a");
    let to_b = n1.peer(&b.id()).expect("traffic with b");
    assert!(to_b.bytes_out >= 1 << 20, "{to_b:?}");
    assert!(to_b.packets_in > 0, "{to_b:?}");
    assert_eq!(n1.drops.of(DropReason::TooLarge), 0, "{:?}", n1.drops);
    let at_b = b.forwarder.stats();
    let from_a = at_b
        .network(net.id)
        .and_then(|n| n.peer(&a.id()).cloned())
        .expect("traffic from a at b");
    let written = on_b
        .ns
        .exec(&[
            "cat",
            &format!("/sys/class/net/{}/statistics/rx_packets", on_b.device),
        ])
        .expect("device counters")
        .trim()
        .parse::<u64>()
        .expect("a number");
    if offload_b {
        // Segments of the transfer reached b's kernel merged: fewer
        // packets than came over the wire.
        assert!(
            written < from_a.packets_in / 2,
            "{written} packets written for {} received",
            from_a.packets_in
        );
    } else {
        // One write per packet (a packet may land between the two reads).
        assert!(
            written.abs_diff(from_a.packets_in) <= 2,
            "{written} packets written for {} received",
            from_a.packets_in
        );
    }
    let max = a
        .mesh
        .max_datagram_size::<NetProtocol>(&b.id())
        .expect("a connection to b");
    assert!(max >= DATAGRAM_FLOOR, "datagrams of {max} bytes only");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_for_an_unknown_address_is_dropped_and_counted() {
    require_root();
    let (a, b) = two_peers().await;
    let net = network(1, "198.19.1.0/24");
    let on_a = attach(&a, net, A1).expect("member on a");
    let _on_b = attach(&b, net, B1).expect("member on b");
    route_both(&a, &b, net.id, &[(A1, a.id()), (B1, b.id())]);

    assert!(
        !on_a.ns.ping(NOBODY, 56),
        "an address nobody hosts answered"
    );
    let no_route = || {
        let stats = a.forwarder.stats();
        stats
            .network(net.id)
            .map(|n| n.drops.of(DropReason::NoRoute))
    };
    assert!(
        eventually(WAIT, || no_route() >= Some(1)).await,
        "not counted: {:?}",
        a.forwarder.stats()
    );
    // A route removed drops from then on too.
    a.forwarder.remove_route(net.id, B1).expect("remove");
    assert!(!on_a.ns.ping(B1, 56), "a removed route still carries");
    assert!(eventually(WAIT, || no_route() >= Some(2)).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_with_a_source_its_sender_does_not_host_is_dropped() {
    require_root();
    let (a, b) = two_peers().await;
    let net = network(1, "198.19.1.0/24");
    let _on_a = attach(&a, net, A1).expect("member on a");
    let _on_b = attach(&b, net, B1).expect("member on b");
    let third = Ipv4Addr::new(198, 19, 1, 3);
    // .3 is b's own, as far as b's table says; a claims it anyway.
    route_both(
        &a,
        &b,
        net.id,
        &[(A1, a.id()), (B1, b.id()), (third, b.id())],
    );

    let dropped = |reason| {
        let stats = b.forwarder.stats();
        stats.network(net.id).map_or(0, |n| n.drops.of(reason))
    };
    for (source, destination, reason) in [
        (third, B1, DropReason::Spoofed),
        (NOBODY, B1, DropReason::Spoofed),
        (A1, NOBODY, DropReason::NotHere),
        (A1, Ipv4Addr::new(198, 19, 9, 9), DropReason::OutsideNetwork),
    ] {
        a.mesh
            .send_datagram::<NetProtocol>(b.id(), crafted(1, source, destination))
            .await
            .expect("datagram sent");
        assert!(
            eventually(WAIT, || dropped(reason) >= 1).await,
            "{source} -> {destination} not dropped as {reason:?}: {:?}",
            b.forwarder.stats()
        );
    }
    // A network b does not carry, and a header of another version.
    a.mesh
        .send_datagram::<NetProtocol>(b.id(), crafted(7, A1, B1))
        .await
        .expect("datagram sent");
    let mut other_version = crafted(1, A1, B1).to_vec();
    other_version[0] = WIRE_VERSION + 1;
    a.mesh
        .send_datagram::<NetProtocol>(b.id(), other_version.into())
        .await
        .expect("datagram sent");
    let unattributed = |reason| b.forwarder.stats().unattributed.of(reason);
    assert!(eventually(WAIT, || unattributed(DropReason::UnknownNetwork) == 1).await);
    assert!(eventually(WAIT, || unattributed(DropReason::Malformed) == 1).await);
    let n1 = b.forwarder.stats();
    let n1 = n1.network(net.id).expect("network 1 on b");
    assert!(
        n1.peer(&a.id()).is_none_or(|t| t.packets_in == 0),
        "a crafted packet got through: {n1:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_networks_are_isolated_from_each_other() {
    require_root();
    let (a, b) = two_peers().await;
    let n1 = network(1, "198.19.1.0/24");
    let n2 = network(2, "198.19.2.0/24");
    let a_n1 = attach(&a, n1, A1).expect("n1 member on a");
    let _b_n1 = attach(&b, n1, B1).expect("n1 member on b");
    let a_n2 = attach(&a, n2, A2).expect("n2 member on a");
    let _b_n2 = attach(&b, n2, B2).expect("n2 member on b");
    route_both(&a, &b, n1.id, &[(A1, a.id()), (B1, b.id())]);
    route_both(&a, &b, n2.id, &[(A2, a.id()), (B2, b.id())]);

    assert!(a_n1.ns.ping(B1, 56), "n1 does not work");
    assert!(a_n2.ns.ping(B2, 56), "n2 does not work");

    // n2's member routes n1's subnet into its device: the forwarder of n2
    // will not carry it.
    let dev = a_n2.ns.exec(&["ip", "-o", "link", "show", "type", "tun"]);
    let dev = dev
        .expect("list devices")
        .split(':')
        .nth(1)
        .map(|s| s.trim().to_string())
        .expect("the tun device");
    a_n2.ns
        .exec(&["ip", "route", "add", "198.19.1.0/24", "dev", &dev])
        .expect("route n1 into n2's device");
    assert!(!a_n2.ns.ping(B1, 56), "n2 reached n1 by its address");
    let outside = |peer: &common::Peer, id: NetworkId| {
        let stats = peer.forwarder.stats();
        stats
            .network(id)
            .map_or(0, |n| n.drops.of(DropReason::OutsideNetwork))
    };
    assert!(eventually(WAIT, || outside(&a, n2.id) >= 1).await);

    // A peer labelling n1's packet as n2's gets it dropped at b.
    a.mesh
        .send_datagram::<NetProtocol>(b.id(), crafted(2, A2, B1))
        .await
        .expect("datagram sent");
    assert!(eventually(WAIT, || outside(&b, n2.id) >= 1).await);
    let before = b.forwarder.stats();
    let n1_in = before
        .network(n1.id)
        .and_then(|n| n.peer(&a.id()))
        .map_or(0, |t| t.packets_in);
    assert!(n1_in > 0, "the n1 ping was not counted");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_networks_are_checked() {
    require_root();
    let (a, b) = two_peers().await;
    let n1 = network(1, "198.19.1.0/24");
    let _on_a = attach(&a, n1, A1).expect("member on a");
    let overlapping = network(3, "198.19.0.0/16");
    assert!(matches!(
        common::attach(&a, overlapping, Ipv4Addr::new(198, 19, 7, 1)),
        Err(err) if err.to_string().contains("overlaps")
    ));
    assert!(matches!(
        a.forwarder.set_route(n1.id, A2, b.id()),
        Err(coop_net::ForwardError::OutsideSubnet { .. })
    ));
    assert!(matches!(
        a.forwarder.set_route(NetworkId(9), A1, b.id()),
        Err(coop_net::ForwardError::UnknownNetwork(_))
    ));
    a.forwarder.remove_network(n1.id).expect("removed");
    assert!(a.forwarder.networks().is_empty());
    a.shutdown().await;
    b.shutdown().await;
}
