//! Datagram protocols between real mesh endpoints of one cloud, over
//! loopback QUIC: delivery with the sender's id both ways on one dialed
//! connection, the limits, and the typed errors.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use coop_identity::{Certificate, CertificateBody, CloudKey, PeerKey};
use coop_mesh::{DatagramProtocol, DatagramService, LivenessConfig, Mesh, MeshConfig, MeshError};
use coop_types::PeerId;

struct Blips;

impl DatagramProtocol for Blips {
    const ALPN: &'static [u8] = b"coop/test-blips/1";
}

/// Hands every datagram to the test, with its sender.
struct Collect(mpsc::UnboundedSender<(PeerId, Bytes)>);

impl DatagramService<Blips> for Collect {
    fn receive(&self, from: PeerId, datagram: Bytes) {
        let _ = self.0.send((from, datagram));
    }
}

async fn peer(cloud: &CloudKey, protocols: Vec<&'static [u8]>) -> Mesh {
    let key = PeerKey::generate();
    let cert = Certificate::issue(
        cloud,
        CertificateBody {
            cloud: cloud.id(),
            peer: key.id(),
            name: "p".into(),
            zone: "default".into(),
            roles: vec![],
            issued_at: 0,
            expires_at: u64::MAX,
        },
    )
    .expect("certificate");
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    Mesh::bind(MeshConfig {
        key,
        cloud: cloud.id(),
        certificate: Some(cert),
        listen,
        liveness: LivenessConfig::default(),
        relay: false,
        mdns: false,
        protocols,
    })
    .await
    .expect("mesh binds")
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(PeerId, Bytes)>) -> (PeerId, Bytes) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a datagram in time")
        .expect("the service is alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_go_both_ways_with_the_senders_id() {
    let cloud = CloudKey::generate();
    let a = peer(&cloud, vec![Blips::ALPN]).await;
    let b = peer(&cloud, vec![Blips::ALPN]).await;
    a.add_peer_addrs(b.id(), &b.local_addrs());
    let (to_a, mut at_a) = mpsc::unbounded_channel();
    let (to_b, mut at_b) = mpsc::unbounded_channel();
    a.serve_datagrams::<Blips>(Collect(to_a));
    b.serve_datagrams::<Blips>(Collect(to_b));

    // Nothing is open yet: the non-waiting send says so, and there is no limit.
    let err = a
        .try_send_datagram::<Blips>(b.id(), Bytes::from_static(b"early"))
        .unwrap_err();
    assert!(matches!(err, MeshError::NotConnected { .. }), "{err}");
    assert_eq!(a.max_datagram_size::<Blips>(&b.id()), None);

    a.send_datagram::<Blips>(b.id(), Bytes::from_static(b"ping"))
        .await
        .expect("sent");
    assert_eq!(next(&mut at_b).await, (a.id(), Bytes::from_static(b"ping")));

    // b knows no address of a: it answers on the connection a dialed.
    assert!(!b.knows_addrs_of(&a.id()));
    b.try_send_datagram::<Blips>(a.id(), Bytes::from_static(b"pong"))
        .expect("b answers on a's connection");
    assert_eq!(next(&mut at_a).await, (b.id(), Bytes::from_static(b"pong")));

    // A burst goes in one call.
    let burst: Vec<Bytes> = (0u8..3).map(|i| Bytes::from(vec![i; 10])).collect();
    assert_eq!(
        a.try_send_datagrams::<Blips>(b.id(), &burst)
            .expect("burst"),
        3
    );
    let mut got: Vec<Bytes> = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut at_b).await.1);
    }
    got.sort();
    assert_eq!(got, burst);

    let max = a.max_datagram_size::<Blips>(&b.id()).expect("a limit");
    assert!(max >= 1_150, "{max}");
    a.try_send_datagram::<Blips>(b.id(), Bytes::from(vec![7u8; max]))
        .expect("a datagram at the limit");
    assert_eq!(next(&mut at_b).await.1.len(), max);
    // Path MTU discovery may raise the limit meanwhile: too large is
    // bigger than any UDP payload.
    let too_large = 70_000;
    let err = a
        .try_send_datagram::<Blips>(b.id(), Bytes::from(vec![7u8; too_large]))
        .unwrap_err();
    assert!(
        matches!(err, MeshError::DatagramTooLarge { size, .. } if size == too_large),
        "{err}"
    );
    let err = a
        .try_send_datagrams::<Blips>(
            b.id(),
            &[Bytes::from_static(b"ok"), vec![7u8; too_large].into()],
        )
        .unwrap_err();
    assert!(matches!(err, MeshError::DatagramTooLarge { .. }), "{err}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_protocol_the_peer_does_not_list_is_refused() {
    struct Unlisted;
    impl DatagramProtocol for Unlisted {
        const ALPN: &'static [u8] = b"coop/test-unlisted-blips/1";
    }
    let cloud = CloudKey::generate();
    let a = peer(&cloud, vec![Blips::ALPN]).await;
    let b = peer(&cloud, vec![Blips::ALPN]).await;
    a.add_peer_addrs(b.id(), &b.local_addrs());
    let err = a
        .send_datagram::<Unlisted>(b.id(), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, MeshError::Unreachable { .. }), "{err}");
    assert_eq!(a.max_datagram_size::<Unlisted>(&b.id()), None);
    a.shutdown().await;
    b.shutdown().await;
}
