//! Typed protocols between real mesh endpoints of one cloud, over loopback
//! QUIC: answers, requests the server cannot decode, protocols a peer does
//! not serve (yet, or at all), and stream sessions.

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use coop_identity::{Certificate, CertificateBody, CloudKey, PeerKey};
use coop_mesh::{
    LivenessConfig, Mesh, MeshConfig, MeshError, Protocol, Service, Session, StreamProtocol,
    StreamService,
};
use coop_types::PeerId;

struct Echo;

impl Protocol for Echo {
    const ALPN: &'static [u8] = b"coop/test-echo/1";
    type Request = String;
    type Response = String;
    fn timeout(_: &String) -> Duration {
        Duration::from_secs(5)
    }
}

/// The same ALPN as [`Echo`], but a request type the server cannot decode.
struct WrongEcho;

#[derive(Serialize, Deserialize)]
enum Nonsense {
    A,
    B,
    C(u64),
}

impl Protocol for WrongEcho {
    const ALPN: &'static [u8] = b"coop/test-echo/1";
    type Request = Nonsense;
    type Response = String;
    fn timeout(_: &Nonsense) -> Duration {
        Duration::from_secs(5)
    }
}

/// A protocol the server's mesh does not list at all.
struct Unlisted;

impl Protocol for Unlisted {
    const ALPN: &'static [u8] = b"coop/test-unlisted/1";
    type Request = u32;
    type Response = u32;
    fn timeout(_: &u32) -> Duration {
        Duration::from_secs(5)
    }
}

struct Shout;

impl StreamProtocol for Shout {
    const ALPN: &'static [u8] = b"coop/test-shout/1";
    type Open = String;
    type Reply = Result<(), String>;
    const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
}

struct EchoService;

impl Service<Echo> for EchoService {
    fn answer(&self, from: PeerId, request: String) -> BoxFuture<'static, String> {
        Box::pin(async move { format!("{request} from {}", from.short()) })
    }
}

struct ShoutService;

impl StreamService<Shout> for ShoutService {
    fn serve(&self, _: PeerId, open: String, session: Session<Shout>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if open != "hello" {
                let _ = session
                    .reply(&Err(format!("`{open}` is not a greeting")))
                    .await;
                return;
            }
            if let Ok((mut send, mut recv)) = session.reply(&Ok(())).await {
                // Upper-cases whatever follows the opening, until EOF.
                if let Ok(bytes) = recv.read_to_end(1 << 20).await {
                    let _ = send.write_all(&bytes.to_ascii_uppercase()).await;
                    let _ = send.finish();
                }
            }
        })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_answer_and_fail_with_typed_errors() {
    let cloud = CloudKey::generate();
    let server = peer(&cloud, vec![Echo::ALPN, Shout::ALPN]).await;
    let client = peer(&cloud, vec![]).await;
    client.add_peer_addrs(server.id(), &server.local_addrs());

    // Listed, but no handler registered yet: "not serving", not a hang.
    let err = client
        .call::<Echo>(server.id(), &"hi".into())
        .await
        .unwrap_err();
    assert!(matches!(err, MeshError::NotServing { .. }), "{err}");

    server.serve::<Echo>(EchoService);
    let answer = client
        .call::<Echo>(server.id(), &"hi".into())
        .await
        .unwrap();
    assert_eq!(answer, format!("hi from {}", client.id().short()));

    // A request the server cannot decode comes back as a typed refusal.
    let err = client
        .call::<WrongEcho>(server.id(), &Nonsense::C(7))
        .await
        .unwrap_err();
    assert!(matches!(err, MeshError::Rejected { .. }), "{err}");

    // An ALPN the server does not list cannot even be dialed.
    let err = client.call::<Unlisted>(server.id(), &1).await.unwrap_err();
    assert!(matches!(err, MeshError::Unreachable { .. }), "{err}");

    // A stream session: typed opening both ways, then raw bytes.
    server.serve_streams::<Shout>(ShoutService);
    let (reply, _, _) = client
        .open::<Shout>(server.id(), &"boo".into())
        .await
        .unwrap();
    assert_eq!(reply, Err("`boo` is not a greeting".to_string()));
    let (reply, mut send, mut recv) = client
        .open::<Shout>(server.id(), &"hello".into())
        .await
        .unwrap();
    assert_eq!(reply, Ok(()));
    send.write_all(b"quiet words").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(1 << 20).await.unwrap(), b"QUIET WORDS");

    for m in [server, client] {
        m.shutdown().await;
    }
}
