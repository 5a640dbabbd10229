//! Datagram limits, and the data plane through a relay of the cloud when
//! UDP between two peers is blocked. Each peer runs in a network namespace
//! of its own (its mesh socket, its relay, its TUN device), the two joined
//! by a veth pair on which a firewall drops every UDP packet between them:
//! only the relay's TCP gets through. Needs root and `nft`.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use coop_mesh::Mesh;
use coop_net::{DATAGRAM_FLOOR, DropReason, Forwarder, NetProtocol, Tun, network_mtu};
use coop_types::Connection as PathKind;

use common::{Netns, NsRuntime, configure_in, eventually, network, require_root, two_peers};

const A1: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
const B1: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
const LINK_A: &str = "198.19.200.1";
const LINK_B: &str = "198.19.200.2";
const MESH_PORT: u16 = 47402;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagram_limits_on_loopback() {
    require_root();
    let (a, b) = two_peers().await;
    let fresh = a
        .mesh
        .connect_datagrams::<NetProtocol>(b.id())
        .await
        .expect("connected");
    // Path MTU discovery runs on its own after the handshake (it may be
    // done already), up to iroh's bound of 1,452 bytes of UDP payload.
    let discovered = eventually(Duration::from_secs(3), || {
        a.mesh.max_datagram_size::<NetProtocol>(&b.id()) >= Some(1_400)
    })
    .await;
    let later = a.mesh.max_datagram_size::<NetProtocol>(&b.id());
    eprintln!("loopback: {fresh} bytes on a fresh connection, {later:?} after discovery");
    assert!(
        fresh >= DATAGRAM_FLOOR,
        "a fresh connection takes {fresh} bytes"
    );
    assert!(discovered, "path MTU discovery stopped at {later:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_cross_through_a_relay_when_udp_is_blocked() {
    require_root();
    if std::process::Command::new("nft")
        .arg("-v")
        .output()
        .is_err()
    {
        panic!("this test needs `nft` (apt-get install nftables)");
    }
    let ns_a = Netns::create("cra").expect("namespace a");
    let ns_b = Netns::create("crb").expect("namespace b");
    let (va, vb) = (common::unique("va"), common::unique("vb"));
    common::run(&[
        "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
    ])
    .expect("veth");
    for (ns, dev, ip) in [(&ns_a, &va, LINK_A), (&ns_b, &vb, LINK_B)] {
        common::run(&["ip", "link", "set", dev, "netns", &ns.name]).expect("move veth");
        ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", dev])
            .expect("address");
        ns.exec(&["ip", "link", "set", dev, "up"]).expect("up");
    }
    let rules = format!(
        "table inet noudp {{\n\
         chain out {{ type filter hook output priority 0; ip daddr {LINK_A} meta l4proto udp drop; }}\n\
         chain in {{ type filter hook input priority 0; ip saddr {LINK_A} meta l4proto udp drop; }}\n\
         }}\n"
    );
    let path = std::env::temp_dir().join(format!("{}.nft", ns_b.name));
    std::fs::write(&path, rules).expect("rules file");
    ns_b.exec(&["nft", "-f", &path.display().to_string()])
        .expect("block udp");
    let _ = std::fs::remove_file(&path);

    let rt_a = NsRuntime::start(&ns_a).expect("runtime in a");
    let rt_b = NsRuntime::start(&ns_b).expect("runtime in b");
    let cloud = coop_identity::CloudKey::generate();
    let listen = |ip: &str| SocketAddr::new(ip.parse().expect("ip"), MESH_PORT);
    let (cloud_a, cloud_b) = (cloud.clone(), cloud);
    let a: Mesh = rt_a
        .run(async move { common::mesh(&cloud_a, "a", listen(LINK_A), true).await })
        .await;
    let b: Mesh = rt_b
        .run(async move { common::mesh(&cloud_b, "b", listen(LINK_B), false).await })
        .await;
    // The control plane would have admitted both; the relay serves members only.
    let cert = |m: &Mesh| m.admission().own_cert().expect("certificate");
    a.admission().admit(b.id(), &cert(&b)).expect("a admits b");
    b.admission().admit(a.id(), &cert(&a)).expect("b admits a");
    let relay = format!("http://{LINK_A}:{MESH_PORT}");
    let to_a = vec![format!("{LINK_A}:{MESH_PORT}"), relay.clone()];
    let to_b = vec![format!("{LINK_B}:{MESH_PORT}"), relay];
    let (a_id, b_id) = (a.id(), b.id());
    let (mesh_a, mesh_b) = (a.clone(), b.clone());
    rt_a.run(async move { mesh_a.add_peer_addrs(b_id, &to_b) })
        .await;
    rt_b.run(async move { mesh_b.add_peer_addrs(a_id, &to_a) })
        .await;

    let net = network(1, "198.19.1.0/24");
    let start = |mesh: Mesh| async move {
        let forwarder = Forwarder::start(mesh);
        let tun = Tun::create(&common::unique("ct")).expect("tun");
        let name = tun.name().to_string();
        forwarder.add_network(net, tun).expect("network");
        (forwarder, name)
    };
    let (fwd_a, dev_a) = rt_a.run(start(a.clone())).await;
    let (fwd_b, dev_b) = rt_b.run(start(b.clone())).await;
    configure_in(&ns_a, &dev_a, A1, net.subnet).expect("tun a");
    configure_in(&ns_b, &dev_b, B1, net.subnet).expect("tun b");
    for fwd in [&fwd_a, &fwd_b] {
        fwd.replace_routes(net.id, [(A1, a_id), (B1, b_id)])
            .expect("routes");
    }

    // The first packets wait for the dial through the relay.
    let crossed = eventually(Duration::from_secs(20), || ns_b.ping(A1, 56)).await;
    assert!(crossed, "no ping crossed the relay: {:?}", fwd_b.stats());
    let path = b.path_to(&a_id).map(|p| p.kind);
    assert_eq!(path, Some(PathKind::Relay), "the path is not the relay's");
    let relayed = b.max_datagram_size::<NetProtocol>(&a_id);
    eprintln!("through the relay: {relayed:?} bytes");
    assert!(
        relayed >= Some(DATAGRAM_FLOOR),
        "the relay path takes {relayed:?} bytes"
    );
    let full = usize::from(network_mtu()) - 28;
    assert!(
        ns_a.ping(B1, full),
        "a full-MTU ping does not cross the relay"
    );
    let stats = fwd_b.stats();
    let n1 = stats.network(net.id).expect("network on b");
    assert_eq!(n1.drops.of(DropReason::TooLarge), 0, "{n1:?}");

    let (mesh_a, mesh_b) = (a.clone(), b.clone());
    rt_a.run(async move {
        fwd_a.shutdown().await;
        mesh_a.shutdown().await;
    })
    .await;
    rt_b.run(async move {
        fwd_b.shutdown().await;
        mesh_b.shutdown().await;
    })
    .await;
}
