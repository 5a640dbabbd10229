//! The data plane between two peers on loopback, against the mesh itself,
//! in one run: TCP throughput through the TUN devices against coop's raw
//! QUIC stream transfer (`coop debug speed`'s), and the round trip of a
//! small UDP packet through the devices against that of a bare datagram
//! echoed over the mesh; for context, TCP between two namespaces over a
//! veth pair (the kernel alone). Prints figures; asserts nothing. Needs
//! root.
//!
//! `cargo bench -p coop-net --bench dataplane` (release). `NET_BENCH_MIB`
//! sets the bytes of each transfer (default 128 MiB).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use coop_mesh::{DatagramProtocol, DatagramService, Mesh};
use coop_net::{NET_ALPN, NetProtocol, network_mtu};
use coop_types::PeerId;

use common::{attach, network, require_root, route_both, two_peers_serving};

const A1: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
const B1: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
/// The two ends of the veth pair measured for context.
const V1: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 1);
const V2: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 2);
const ROUNDS: usize = 3;
const PINGS: usize = 2_000;

/// Bare datagrams echoed back by the other side: the mesh's own RTT.
struct Echo;

impl DatagramProtocol for Echo {
    const ALPN: &'static [u8] = b"coop/bench-echo/1";
}

/// Datagrams counted and dropped by the receiver: the mesh's datagram
/// ceiling.
struct Flood;

impl DatagramProtocol for Flood {
    const ALPN: &'static [u8] = b"coop/bench-flood/1";
}

struct FloodSink(Arc<std::sync::atomic::AtomicU64>);

impl DatagramService<Flood> for FloodSink {
    fn receive(&self, _from: PeerId, datagram: Bytes) {
        self.0
            .fetch_add(datagram.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// MiB/s of network-sized datagrams `b` receives while `a` sends them as
/// fast as the mesh takes them, for `secs`.
async fn datagram_flood(a: &common::Peer, b: &common::Peer, secs: u64) -> f64 {
    let got = Arc::new(std::sync::atomic::AtomicU64::new(0));
    b.mesh.serve_datagrams::<Flood>(FloodSink(got.clone()));
    a.mesh
        .connect_datagrams::<Flood>(b.id())
        .await
        .expect("flood connection");
    let burst: Vec<Bytes> = (0..64)
        .map(|_| {
            Bytes::from(vec![
                0x5a_u8;
                usize::from(network_mtu()) + coop_net::HEADER_LEN
            ])
        })
        .collect();
    let started = Instant::now();
    let before = got.load(std::sync::atomic::Ordering::Relaxed);
    while started.elapsed() < Duration::from_secs(secs) {
        let _ = a.mesh.try_send_datagrams::<Flood>(b.id(), &burst);
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bytes = got.load(std::sync::atomic::Ordering::Relaxed) - before;
    bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// Echoes every datagram; the side that started the echo gets its
/// answers on a channel.
struct EchoService {
    mesh: Arc<OnceLock<Mesh>>,
    answers: Option<tokio::sync::mpsc::UnboundedSender<Bytes>>,
}

impl DatagramService<Echo> for EchoService {
    fn receive(&self, from: PeerId, datagram: Bytes) {
        match &self.answers {
            Some(answers) => {
                let _ = answers.send(datagram);
            }
            None => {
                if let Some(mesh) = self.mesh.get() {
                    let _ = mesh.try_send_datagram::<Echo>(from, datagram);
                }
            }
        }
    }
}

fn main() {
    require_root();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let mib: u64 = std::env::var("NET_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let bytes = mib << 20;
    let (a, b) = two_peers_serving(vec![NET_ALPN, Echo::ALPN, Flood::ALPN]).await;
    let net = network(1, "198.19.1.0/24");
    let on_a = attach(&a, net, A1).expect("member on a");
    let on_b = attach(&b, net, B1).expect("member on b");
    route_both(&a, &b, net.id, &[(A1, a.id()), (B1, b.id())]);
    if !on_a.ns.ping(B1, 56) {
        panic!("no ping crosses; the benchmark cannot run");
    }
    println!(
        "net data plane, two peers on loopback, network MTU {} bytes, {mib} MiB per transfer, best of {ROUNDS}",
        network_mtu()
    );
    let datagram_limit = a.mesh.max_datagram_size::<NetProtocol>(&b.id());
    println!("datagram limit a->b now: {datagram_limit:?} bytes");

    let mut quic_best: f64 = 0.0;
    let mut tun_best: f64 = 0.0;
    for round in 1..=ROUNDS {
        let quic = a
            .mesh
            .measure_speed(b.id(), bytes)
            .await
            .expect("speed test");
        let retransmits_before = retransmits(&on_a.ns);
        let tun = tcp_between(&on_a.ns, &on_b.ns, B1, bytes);
        let retransmitted = retransmits(&on_a.ns).saturating_sub(retransmits_before);
        println!(
            "round {round}: raw QUIC stream {:.1} MiB/s, TCP through the TUNs {tun:.1} MiB/s ({retransmitted} segments retransmitted)",
            quic.mib_per_sec
        );
        quic_best = quic_best.max(quic.mib_per_sec);
        tun_best = tun_best.max(tun);
    }
    println!(
        "throughput: TCP through the TUNs {tun_best:.1} MiB/s, raw QUIC stream {quic_best:.1} MiB/s, ratio {:.2} (goal >= 0.70)",
        tun_best / quic_best
    );
    let flood = datagram_flood(&a, &b, 3).await;
    println!(
        "context: network-sized datagrams sent as fast as the mesh takes them arrive at {flood:.1} MiB/s"
    );
    // For context: the kernel alone, two namespaces joined by a veth pair
    // at the network's MTU, as two containers on one peer over its bridge.
    let (left, right) = veth_pair().expect("veth pair");
    let veth_best = (0..ROUNDS)
        .map(|_| tcp_between(&left, &right, V2, bytes))
        .fold(0.0, f64::max);
    println!(
        "context: TCP over a veth pair at the same MTU (two containers on one peer) {veth_best:.1} MiB/s; TUN path / veth {:.2}",
        tun_best / veth_best
    );

    let mesh_rtt = datagram_echo_rtt(&a, &b).await;
    let tun_rtt = udp_echo_through_tuns(&on_a.ns, &on_b.ns);
    let quic_rtt = a.mesh.path_to(&b.id()).and_then(|p| p.rtt);
    println!(
        "rtt (median of {PINGS}): UDP through the TUNs {:.1} us, bare datagram over the mesh {:.1} us, added {:.1} us (goal <= 200 us); QUIC's own estimate {quic_rtt:?}",
        micros(tun_rtt),
        micros(mesh_rtt),
        micros(tun_rtt) - micros(mesh_rtt)
    );
    let stats = a.forwarder.stats();
    if let Some(n) = stats.network(net.id) {
        println!("drops at a: {:?}", n.drops);
    }
    let stats = b.forwarder.stats();
    if let Some(n) = stats.network(net.id) {
        println!("drops at b: {:?}", n.drops);
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// TCP segments the namespace has retransmitted so far (`nstat`).
fn retransmits(ns: &common::Netns) -> u64 {
    ns.exec(&["nstat", "-az", "TcpRetransSegs"])
        .ok()
        .and_then(|out| {
            out.lines()
                .find(|l| l.starts_with("TcpRetransSegs"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Two namespaces joined by a veth pair at the network's MTU, with
/// [`V1`] and [`V2`].
fn veth_pair() -> anyhow::Result<(common::Netns, common::Netns)> {
    let left = common::Netns::create("vl")?;
    let right = common::Netns::create("vr")?;
    let mtu = network_mtu().to_string();
    left.exec(&[
        "ip",
        "link",
        "add",
        "v",
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        "v",
        "netns",
        &right.name,
        "mtu",
        &mtu,
    ])?;
    for (ns, addr) in [(&left, V1), (&right, V2)] {
        ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "v"])?;
        ns.exec(&["ip", "link", "set", "v", "up"])?;
    }
    Ok((left, right))
}

/// MiB/s of `bytes` sent over TCP from namespace `from` to a server on
/// `to_addr` in `to`, timed until the server has read the last byte.
fn tcp_between(from: &common::Netns, to: &common::Netns, to_addr: Ipv4Addr, bytes: u64) -> f64 {
    let listener = to
        .enter(move || TcpListener::bind((to_addr, 0)))
        .expect("enter")
        .expect("listen");
    let port = listener.local_addr().expect("port").port();
    let server = std::thread::spawn(move || -> std::io::Result<(u64, Instant)> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0u64;
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Ok((got, Instant::now()));
            }
            got += n as u64;
        }
    });
    let conn = from
        .enter(move || {
            TcpStream::connect_timeout(&SocketAddr::from((to_addr, port)), Duration::from_secs(5))
        })
        .expect("enter")
        .expect("connect");
    let started = Instant::now();
    let mut conn = conn;
    let chunk = vec![0x5a_u8; 256 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        conn.write_all(&chunk[..n]).expect("send");
        left -= n as u64;
    }
    conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let (got, ended) = server.join().expect("server").expect("receive");
    assert_eq!(got, bytes, "the server read {got} of {bytes} bytes");
    bytes as f64 / (1 << 20) as f64 / (ended - started).as_secs_f64()
}

/// Median round trip of a small UDP packet from `from` to an echo in `to`.
fn udp_echo_through_tuns(from: &common::Netns, to: &common::Netns) -> Duration {
    let server = to
        .enter(|| UdpSocket::bind((B1, 0)))
        .expect("enter")
        .expect("bind");
    let port = server.local_addr().expect("port").port();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            if server.send_to(&buf[..n], from).is_err() {
                break;
            }
        }
    });
    let client = from
        .enter(|| UdpSocket::bind((A1, 0)))
        .expect("enter")
        .expect("bind");
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    client.connect((B1, port)).expect("connect");
    let mut times = Vec::with_capacity(PINGS);
    let mut buf = [0u8; 64];
    for i in 0..PINGS {
        let started = Instant::now();
        client.send(&(i as u64).to_be_bytes()).expect("send");
        if client.recv(&mut buf).is_ok() {
            times.push(started.elapsed());
        }
    }
    drop(client);
    let _ = echo.join();
    median(times)
}

/// Median round trip of a small datagram echoed by `b` over the mesh.
async fn datagram_echo_rtt(a: &common::Peer, b: &common::Peer) -> Duration {
    let (answers, mut rx) = tokio::sync::mpsc::unbounded_channel();
    a.mesh.serve_datagrams::<Echo>(EchoService {
        mesh: Arc::new(OnceLock::new()),
        answers: Some(answers),
    });
    let b_mesh = Arc::new(OnceLock::new());
    let _ = b_mesh.set(b.mesh.clone());
    b.mesh.serve_datagrams::<Echo>(EchoService {
        mesh: b_mesh,
        answers: None,
    });
    a.mesh
        .connect_datagrams::<Echo>(b.id())
        .await
        .expect("echo connection");
    let mut times = Vec::with_capacity(PINGS);
    for i in 0..PINGS {
        let started = Instant::now();
        let sent = a
            .mesh
            .send_datagram::<Echo>(b.id(), Bytes::copy_from_slice(&(i as u64).to_be_bytes()))
            .await;
        if sent.is_err() {
            continue;
        }
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            times.push(started.elapsed());
        }
    }
    median(times)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}
