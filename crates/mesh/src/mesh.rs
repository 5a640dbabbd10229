//! The mesh endpoint: binding, addresses, pooled connections and requests.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use iroh::address_lookup::MemoryLookup;
use iroh::endpoint::{
    Connection, IdleTimeout, QuicTransportConfig, RecvStream, SendStream, presets,
};
use iroh::protocol::Router;
use iroh::{
    Endpoint, EndpointAddr, EndpointId, RelayConfig, RelayMap, RelayMode, RelayUrl, SecretKey,
    TransportAddr,
};
use iroh_gossip::net::Gossip;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use coop_identity::{Certificate, CloudId, PeerKey};
use coop_types::PeerId;

use crate::admission::{Admission, AdmissionHook};
use crate::datagram::DatagramLinks;
use crate::hello::{HelloProtocol, HelloReply, HelloRequest, PathProtocol};
use crate::liveness::Liveness;
use crate::paths::{PATHS_ALPN, PathsProtocol, PathsService, SPEED_ALPN, SpeedProtocol};
use crate::protocol::protocol_name;
use crate::request::{
    Handler, HandlerTable, MAX_MESSAGE_BYTES, RESET_FAILED, RESET_NOT_SERVING, Served,
};
use crate::{GOSSIP_ALPN, HELLO_ALPN, JOIN_ALPN, PATH_ALPN};

/// How long a dial may take before the peer counts as unreachable. On a LAN
/// a QUIC handshake takes milliseconds; across continents well under a
/// second; 5 s leaves room for a first hole punch.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The mDNS service name coop peers announce themselves under on a LAN.
const MDNS_SERVICE: &str = "coop-mesh";

/// Keep-alives every second and a 6 s idle timeout: a killed peer's
/// connections close within seconds, so requests stop going into a dead
/// connection and redial instead, while a NAT mapping never idles out.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(6);
/// The same for each path of a connection (iroh's default gives a path 15
/// s): a direct path that died (the router behind it got a new public
/// address) closes within seconds, the connection goes on over the relay
/// path, and hole punching starts again from the new addresses.
const PATH_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the mesh needs to start.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub key: PeerKey,
    pub cloud: CloudId,
    /// This peer's certificate; `None` only while joining.
    pub certificate: Option<Certificate>,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Liveness thresholds.
    pub liveness: crate::LivenessConfig,
    /// Serve as a relay for the cloud on TCP at the `listen` address.
    pub relay: bool,
    /// Find peers on the local network by mDNS (and announce this one).
    pub mdns: bool,
    /// The ALPNs of the protocols this peer serves (each declared by the
    /// crate that serves it); join is always served. A connection on any
    /// other ALPN is refused, and a served one answers "not serving" until
    /// its room registers a handler.
    pub protocols: Vec<&'static [u8]>,
}

/// Why a mesh operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cannot reach peer {peer}: {reason}")]
    Unreachable { peer: PeerId, reason: String },
    #[error("peer {peer} refused us: {reason}")]
    Refused { peer: PeerId, reason: String },
    #[error("peer {peer} presented an invalid certificate: {reason}")]
    BadPeer { peer: PeerId, reason: String },
    #[error("request to peer {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("request to peer {peer} timed out after {millis} ms")]
    Timeout { peer: PeerId, millis: u64 },
    #[error("cannot encode a {protocol} message: {reason}")]
    Encode { protocol: String, reason: String },
    #[error(
        "peer {peer} could not decode our {protocol} message (another version of coop?): {reason}"
    )]
    Rejected {
        peer: PeerId,
        protocol: String,
        reason: String,
    },
    #[error("peer {peer} answered {protocol} with a message that does not decode: {reason}")]
    Malformed {
        peer: PeerId,
        protocol: String,
        reason: String,
    },
    #[error("peer {peer} does not serve {protocol} yet (is it still starting?)")]
    NotServing { peer: PeerId, protocol: String },
    #[error("peer {peer} failed to answer a {protocol} request; its log says why")]
    Failed { peer: PeerId, protocol: String },
    #[error("no connection to peer {peer} is open for datagrams (send_datagram dials one)")]
    NotConnected { peer: PeerId },
    #[error(
        "a datagram of {size} bytes is over the {max} bytes the connection to peer {peer} takes now"
    )]
    DatagramTooLarge {
        peer: PeerId,
        size: usize,
        max: usize,
    },
    #[error("the connection to peer {peer} carries no {protocol} datagrams (disabled on one side)")]
    NoDatagrams { peer: PeerId, protocol: String },
}

/// A dial that outlives the request that started it: a request with a short
/// deadline (a Raft heartbeat has 250 ms) must not abort a handshake that
/// takes a little longer, or a slow peer could never be reached again.
type Dial = Shared<BoxFuture<'static, Result<Connection, String>>>;

/// A pooled connection, or one being dialed.
enum Slot {
    Ready(Connection),
    Dialing(Dial),
}

struct Inner {
    id: PeerId,
    /// Random per process; sent in hellos so peers notice our restarts.
    boot: u64,
    endpoint: Endpoint,
    router: Router,
    admission: Arc<Admission>,
    addr_book: MemoryLookup,
    addrs: RwLock<HashMap<PeerId, Vec<TransportAddr>>>,
    handlers: HandlerTable,
    /// The connection datagrams to each peer go out on, by ALPN.
    datagram_links: Arc<DatagramLinks>,
    pool: Mutex<HashMap<(PeerId, &'static [u8]), Slot>>,
    greeted: Mutex<HashSet<PeerId>>,
    gossip: Gossip,
    liveness: Arc<Liveness>,
    relay_server: tokio::sync::Mutex<Option<crate::relay::RelayServer>>,
    /// Relay URLs already handed to the endpoint.
    relays: Mutex<HashSet<String>>,
    /// Addresses of endpoints seen on the LAN by mDNS, and a bell for news.
    lan: Mutex<HashMap<PeerId, Vec<String>>>,
    lan_news: tokio::sync::Notify,
    /// Work the mesh starts on its own (status gossip, dials, relay
    /// clients, the LAN watch): it all ends at [`Mesh::shutdown`].
    background: Background,
    /// The path kind to each peer at the last look, and when the endpoint
    /// was last told to look at its network again.
    paths_seen: Mutex<(
        HashMap<PeerId, coop_types::Connection>,
        Option<std::time::Instant>,
    )>,
}

/// The owner of the mesh's own tasks.
#[derive(Default)]
struct Background {
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// A handle to this peer's mesh endpoint; cheap to clone.
#[derive(Clone)]
pub struct Mesh(Arc<Inner>);

/// A handle that does not keep the mesh alive, for the services the mesh
/// itself registers (a strong one would be a cycle through its handlers).
#[derive(Clone)]
pub(crate) struct WeakMesh(std::sync::Weak<Inner>);

impl WeakMesh {
    pub(crate) fn upgrade(&self) -> Option<Mesh> {
        self.0.upgrade().map(Mesh)
    }
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mesh({})", self.0.id.short())
    }
}

impl Mesh {
    /// Binds the endpoint and starts serving the coop protocols. Relays and
    /// third-party discovery stay off: addresses come from the cloud itself.
    pub async fn bind(config: MeshConfig) -> Result<Self, MeshError> {
        let id = config.key.id();
        let admission = Arc::new(Admission::new(config.cloud, id, config.certificate));
        let addr_book = MemoryLookup::new();
        let bind_err = |reason: String| MeshError::Bind {
            addr: config.listen,
            reason,
        };
        let transport = QuicTransportConfig::builder()
            .keep_alive_interval(KEEP_ALIVE)
            .max_idle_timeout(IdleTimeout::try_from(IDLE_TIMEOUT).ok())
            .default_path_keep_alive_interval(KEEP_ALIVE)
            .default_path_max_idle_timeout(PATH_IDLE_TIMEOUT)
            .build();
        let endpoint = Endpoint::builder(presets::Minimal)
            .transport_config(transport)
            .secret_key(SecretKey::from_bytes(&config.key.secret_bytes()))
            .clear_ip_transports()
            .bind_addr(config.listen)
            .map_err(|e| bind_err(e.to_string()))?
            .address_lookup(addr_book.clone())
            // Relays come only from the cloud itself, added as peers with
            // `--relay` announce them; none from anyone else.
            .relay_mode(RelayMode::Custom(RelayMap::empty()))
            .ca_tls_config(member_relays_only(admission.clone()))
            .hooks(AdmissionHook(admission.clone()))
            .bind()
            .await
            .map_err(|e| bind_err(e.to_string()))?;
        let mut mdns = None;
        if config.mdns {
            // Multicast may be unavailable (containers, some VPNs): then the
            // cloud's own addresses still work, so warn and go on.
            match iroh_mdns_address_lookup::MdnsAddressLookup::builder()
                .service_name(MDNS_SERVICE)
                .build(endpoint.id())
            {
                Ok(lookup) => match endpoint.address_lookup() {
                    Ok(services) => {
                        services.add(lookup.clone());
                        mdns = Some(lookup);
                    }
                    Err(err) => tracing::warn!(%err, "mDNS unavailable"),
                },
                Err(err) => tracing::warn!(%err, "mDNS unavailable on this network"),
            }
        }
        let handlers: HandlerTable = Arc::default();
        let datagram_links: Arc<DatagramLinks> = Arc::default();
        let gossip = Gossip::builder().alpn(GOSSIP_ALPN).spawn(endpoint.clone());
        let mut router = Router::builder(endpoint.clone())
            .accept(
                HELLO_ALPN,
                HelloProtocol {
                    admission: admission.clone(),
                },
            )
            .accept(PATH_ALPN, PathProtocol)
            .accept(GOSSIP_ALPN, gossip.clone());
        let mut served: Vec<&'static [u8]> = vec![JOIN_ALPN, PATHS_ALPN, SPEED_ALPN];
        served.extend(config.protocols.iter().copied());
        served.sort();
        served.dedup();
        for alpn in served {
            if [HELLO_ALPN, GOSSIP_ALPN, PATH_ALPN].contains(&alpn) {
                continue;
            }
            router = router.accept(
                alpn,
                Served {
                    alpn,
                    handlers: handlers.clone(),
                    datagram_links: datagram_links.clone(),
                },
            );
        }
        let router = router.spawn();
        let liveness = Arc::new(Liveness::new(id, config.liveness));
        let relay_server = if config.relay {
            let server =
                crate::relay::RelayServer::start(config.listen, admission.clone(), &config.key)
                    .await
                    .map_err(|e| bind_err(format!("relay server: {e}")))?;
            Some(server)
        } else {
            None
        };
        let mesh = Mesh(Arc::new(Inner {
            id,
            boot: rand::random(),
            endpoint,
            router,
            admission,
            addr_book,
            addrs: RwLock::default(),
            handlers,
            datagram_links,
            pool: Mutex::default(),
            greeted: Mutex::default(),
            gossip,
            liveness,
            relay_server: tokio::sync::Mutex::new(None),
            relays: Mutex::default(),
            lan: Mutex::default(),
            lan_news: tokio::sync::Notify::new(),
            background: Background::default(),
            paths_seen: Mutex::default(),
        }));
        if let Some(lookup) = mdns {
            mesh.spawn(mesh.clone().watch_lan(lookup));
        }
        let paths = || PathsService(WeakMesh(Arc::downgrade(&mesh.0)));
        mesh.serve::<PathsProtocol>(paths());
        mesh.serve_streams::<SpeedProtocol>(paths());
        if let Some(server) = relay_server {
            if let Some(url) = server.http_addr().map(|addr| mesh.relay_url_for(addr)) {
                mesh.use_relay(&url).await;
            }
            *mesh.0.relay_server.lock().await = Some(server);
        }
        Ok(mesh)
    }

    /// Learns addresses of endpoints announced on the LAN. A member's LAN
    /// address is used when we have none for it or it has gone silent (it
    /// may have moved, or restarted on a new port).
    async fn watch_lan(self, lookup: iroh_mdns_address_lookup::MdnsAddressLookup) {
        use futures::StreamExt;
        let mut events = lookup.subscribe().await;
        while let Some(event) = events.next().await {
            let iroh_mdns_address_lookup::DiscoveryEvent::Discovered { endpoint_info, .. } = event
            else {
                continue;
            };
            let peer = crate::admission::peer_of(endpoint_info.endpoint_id);
            let addrs: Vec<String> = endpoint_info.ip_addrs().map(|a| a.to_string()).collect();
            if peer == self.0.id || addrs.is_empty() {
                continue;
            }
            debug!(peer = %peer.short(), ?addrs, "seen on the LAN");
            if self.0.admission.is_admitted(&peer)
                && (!self.knows_addrs_of(&peer)
                    || self.0.liveness.state(&peer) != coop_types::PeerState::Up)
            {
                self.add_peer_addrs(peer, &addrs);
            }
            if let Ok(mut lan) = self.0.lan.lock() {
                lan.insert(peer, addrs);
            }
            self.0.lan_news.notify_waiters();
        }
    }

    /// Waits up to `timeout` for `peer` to be announced on the LAN by mDNS
    /// and returns its addresses. `None` without mDNS or when not seen.
    pub async fn find_on_lan(&self, peer: PeerId, timeout: Duration) -> Option<Vec<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let news = self.0.lan_news.notified();
            if let Some(addrs) = self.0.lan.lock().ok().and_then(|l| l.get(&peer).cloned()) {
                return Some(addrs);
            }
            if tokio::time::timeout_at(deadline, news).await.is_err() {
                return None;
            }
        }
    }

    /// The URL other peers use for a relay served at `addr`: an unspecified
    /// bind address is replaced by this peer's first non-loopback address.
    fn relay_url_for(&self, addr: SocketAddr) -> String {
        let ip = if addr.ip().is_unspecified() {
            self.0
                .endpoint
                .addr()
                .ip_addrs()
                .map(|a| a.ip())
                .find(|ip| !ip.is_loopback())
                .unwrap_or(addr.ip())
        } else {
            addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, addr.port()))
    }

    /// Adds a relay of the cloud to the endpoint, once.
    pub async fn use_relay(&self, url: &str) {
        let Ok(parsed) = url.parse::<RelayUrl>() else {
            debug!(url, "ignoring an unparseable relay url");
            return;
        };
        let fresh = self
            .0
            .relays
            .lock()
            .map(|mut r| r.insert(parsed.to_string()))
            .unwrap_or(false);
        if fresh {
            debug!(%parsed, "using relay");
            self.insert_relay(url).await;
        }
    }

    /// Hands the relay at `url` to the endpoint, with its address discovery
    /// on the port after the relay's.
    async fn insert_relay(&self, url: &str) {
        let Ok(parsed) = url.parse::<RelayUrl>() else {
            return;
        };
        let quic = parsed
            .port()
            .map(|p| iroh_relay::RelayQuicConfig::new(crate::relay::qad_port(p)));
        self.0
            .endpoint
            .insert_relay(parsed.clone(), Arc::new(RelayConfig::new(parsed, quic)))
            .await;
    }

    pub fn id(&self) -> PeerId {
        self.0.id
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.0.admission
    }

    pub fn liveness(&self) -> &Arc<Liveness> {
        &self.0.liveness
    }

    /// The one answer to "how is this peer?": revoked if the cloud revoked
    /// it, else what liveness says (up, unreachable or down).
    pub fn peer_state(&self, peer: &PeerId) -> coop_types::PeerState {
        if self.0.admission.is_revoked(peer) {
            coop_types::PeerState::Revoked
        } else {
            self.0.liveness.state(peer)
        }
    }

    pub(crate) fn gossip(&self) -> &Gossip {
        &self.0.gossip
    }

    /// The addresses peers may reach this endpoint at: the UDP addresses it
    /// is bound to as `ip:port` (an unspecified bind address replaced by the
    /// addresses iroh found on the local interfaces), its public address
    /// behind a NAT, and its relays' URLs.
    pub fn local_addrs(&self) -> Vec<String> {
        let bound = self.0.endpoint.bound_sockets();
        let mut out: Vec<String> = Vec::new();
        let found: Vec<SocketAddr> = self.0.endpoint.addr().ip_addrs().copied().collect();
        for sock in &bound {
            if sock.ip().is_unspecified() {
                for addr in &found {
                    if addr.port() == sock.port() || found.len() == 1 {
                        out.push(addr.to_string());
                    }
                }
                if out.is_empty() {
                    out.push(SocketAddr::new([127, 0, 0, 1].into(), sock.port()).to_string());
                }
            } else {
                out.push(sock.to_string());
            }
        }
        // The public address a NAT gives this peer, as the relay's address
        // discovery saw it: what peers elsewhere reach it at.
        out.extend(self.discovered_public_addr().map(|a| a.to_string()));
        out.extend(self.0.endpoint.addr().relay_urls().map(|u| u.to_string()));
        out.sort();
        out.dedup();
        out
    }

    /// The addresses the mesh socket is bound to.
    pub(crate) fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.0.endpoint.bound_sockets()
    }

    /// The public IPv4 address a relay's address discovery last saw this
    /// peer's packets come from.
    pub(crate) fn discovered_public_addr(&self) -> Option<SocketAddr> {
        let report = iroh::Watcher::get(&mut self.0.endpoint.net_report())?;
        report.global_v4.map(SocketAddr::V4)
    }

    /// Whether the endpoint saw its public address differ between relays
    /// (it can tell only with two relays or more).
    pub(crate) fn varies_by_destination(&self) -> Option<bool> {
        iroh::Watcher::get(&mut self.0.endpoint.net_report())
            .and_then(|report| report.mapping_varies_by_dest())
    }

    /// The direct addresses the endpoint knows for `peer`.
    pub(crate) async fn known_direct_addrs(&self, peer: PeerId) -> Vec<String> {
        let Ok(id) = EndpointId::from_bytes(peer.as_bytes()) else {
            return Vec::new();
        };
        let Some(info) = self.0.endpoint.remote_info(id).await else {
            return Vec::new();
        };
        let mut addrs: Vec<String> = info
            .addrs()
            .filter_map(|a| match a.addr() {
                TransportAddr::Ip(ip) => Some(ip.to_string()),
                _ => None,
            })
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Learns addresses of a peer (from an invite, the control plane or a
    /// status). Unparseable entries are skipped.
    pub fn add_peer_addrs(&self, peer: PeerId, addrs: &[String]) {
        if peer == self.0.id {
            return;
        }
        // Relays admit members only: before this peer has a certificate
        // (while joining) a relay would refuse it, and a refused relay
        // client backs off for a long while. So a joining peer dials
        // direct addresses only.
        let member = self.0.admission.own_cert().is_some();
        let parsed: Vec<TransportAddr> = addrs
            .iter()
            .filter_map(|a| parse_transport_addr(a))
            .filter(|a| member || !a.is_relay())
            .collect();
        if parsed.is_empty() {
            return;
        }
        for addr in &parsed {
            if let TransportAddr::Relay(url) = addr {
                let mesh = self.clone();
                let url = url.to_string();
                self.spawn(async move { mesh.use_relay(&url).await });
            }
        }
        let changed = match self.0.addrs.write() {
            Ok(mut map) => {
                let entry = map.entry(peer).or_default();
                let before = entry.clone();
                *entry = parsed.clone();
                before != parsed
            }
            Err(_) => false,
        };
        if changed {
            let Ok(endpoint_id) = EndpointId::from_bytes(peer.as_bytes()) else {
                return;
            };
            let addr = EndpointAddr::from_parts(endpoint_id, parsed);
            self.0.addr_book.set_endpoint_info(addr);
        }
    }

    /// Whether this mesh has any address for `peer`.
    pub fn knows_addrs_of(&self, peer: &PeerId) -> bool {
        self.0
            .addrs
            .read()
            .map(|m| m.contains_key(peer))
            .unwrap_or(false)
    }

    /// Peers whose addresses this mesh knows.
    pub fn known_peers(&self) -> Vec<PeerId> {
        self.0
            .addrs
            .read()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The handlers by ALPN, for readers that look them up as they go.
    pub(crate) fn handler_table(&self) -> HandlerTable {
        self.0.handlers.clone()
    }

    pub(crate) fn datagram_links(&self) -> &Arc<DatagramLinks> {
        &self.0.datagram_links
    }

    /// Serves `alpn` with `handler` from now on.
    pub(crate) fn set_handler(&self, alpn: &'static [u8], handler: Handler) {
        if let Ok(mut table) = self.0.handlers.write() {
            table.insert(alpn, handler);
        }
    }

    fn endpoint_addr(&self, peer: PeerId) -> Result<EndpointAddr, MeshError> {
        let endpoint_id =
            EndpointId::from_bytes(peer.as_bytes()).map_err(|e| MeshError::Unreachable {
                peer,
                reason: format!("not a valid peer key: {e}"),
            })?;
        let addrs = self
            .0
            .addrs
            .read()
            .ok()
            .and_then(|m| m.get(&peer).cloned())
            .unwrap_or_default();
        Ok(EndpointAddr::from_parts(endpoint_id, addrs))
    }

    async fn dial(&self, peer: PeerId, alpn: &'static [u8]) -> Result<Connection, MeshError> {
        let addr = self.endpoint_addr(peer)?;
        let connecting = self.0.endpoint.connect(addr, alpn);
        match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
            Err(_) => Err(MeshError::Unreachable {
                peer,
                reason: format!("no answer within {} s", DIAL_TIMEOUT.as_secs()),
            }),
            Ok(Err(err)) => Err(MeshError::Unreachable {
                peer,
                reason: err.to_string(),
            }),
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    /// Exchanges certificates with `peer`; afterwards both admit each other.
    pub async fn hello(&self, peer: PeerId) -> Result<Certificate, MeshError> {
        let own = self
            .0
            .admission
            .own_cert()
            .ok_or_else(|| MeshError::Refused {
                peer,
                reason: "this peer has no certificate yet".into(),
            })?;
        let conn = self.dial(peer, HELLO_ALPN).await?;
        let request = postcard::to_stdvec(&HelloRequest {
            cert: own,
            boot: self.0.boot,
        })
        .map_err(|e| MeshError::Request {
            peer,
            reason: e.to_string(),
        })?;
        let reply = roundtrip(&conn, peer, HELLO_ALPN, &request).await;
        conn.close(0u32.into(), b"bye");
        let reply: HelloReply = postcard::from_bytes(&reply?).map_err(|e| MeshError::Request {
            peer,
            reason: format!("malformed hello reply: {e}"),
        })?;
        match reply {
            HelloReply::Refused(reason) => Err(MeshError::Refused { peer, reason }),
            HelloReply::Welcome(cert) => {
                self.0
                    .admission
                    .admit(peer, &cert)
                    .map_err(|e| MeshError::BadPeer {
                        peer,
                        reason: e.to_string(),
                    })?;
                if let Ok(mut greeted) = self.0.greeted.lock() {
                    greeted.insert(peer);
                }
                Ok(cert)
            }
        }
    }

    fn forget(&self, peer: PeerId, alpn: &'static [u8]) {
        let dropped = self
            .0
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&(peer, alpn)));
        if let Some(Slot::Ready(conn)) = dropped {
            conn.close(0u32.into(), b"unresponsive");
        }
        if let Ok(mut greeted) = self.0.greeted.lock() {
            greeted.remove(&peer);
        }
    }

    /// Opens a bidirectional stream to `peer` on a protected stream ALPN.
    pub(crate) async fn open_stream(
        &self,
        peer: PeerId,
        alpn: &'static [u8],
    ) -> Result<(SendStream, RecvStream), MeshError> {
        let conn = self.connection(peer, alpn).await?;
        match conn.open_bi().await {
            Ok(streams) => Ok(streams),
            Err(_) if conn.close_reason().is_some() => {
                // A pooled connection that died: once more on a fresh one.
                self.forget(peer, alpn);
                let conn = self.connection(peer, alpn).await?;
                conn.open_bi().await.map_err(|e| MeshError::Request {
                    peer,
                    reason: e.to_string(),
                })
            }
            Err(e) => Err(MeshError::Request {
                peer,
                reason: e.to_string(),
            }),
        }
    }

    /// Greets `peer` if needed and opens a connection on `alpn`.
    async fn dial_greeted(
        &self,
        peer: PeerId,
        alpn: &'static [u8],
    ) -> Result<Connection, MeshError> {
        let greeted = self
            .0
            .greeted
            .lock()
            .map(|g| g.contains(&peer))
            .unwrap_or(false);
        if !greeted {
            self.hello(peer).await?;
        }
        self.dial(peer, alpn).await
    }

    /// A live pooled connection to `peer` on `alpn`, dialing (once, however
    /// many requests wait) when there is none.
    pub(crate) async fn connection(
        &self,
        peer: PeerId,
        alpn: &'static [u8],
    ) -> Result<Connection, MeshError> {
        let key = (peer, alpn);
        let dial = {
            let Ok(mut pool) = self.0.pool.lock() else {
                return Err(MeshError::Unreachable {
                    peer,
                    reason: "connection pool poisoned".into(),
                });
            };
            match pool.get(&key) {
                Some(Slot::Ready(conn)) if conn.close_reason().is_none() => {
                    return Ok(conn.clone());
                }
                Some(Slot::Dialing(dial)) => dial.clone(),
                _ => {
                    let mesh = self.clone();
                    let stop = self.0.background.stop.clone();
                    // A task of its own: the dial goes on for the callers
                    // still waiting when the first one gives up.
                    let task = self.0.background.tasks.spawn(async move {
                        tokio::select! {
                            dialed = mesh.dial_greeted(peer, alpn) => dialed.map_err(|e| e.to_string()),
                            () = stop.cancelled() => Err("the mesh is shutting down".to_string()),
                        }
                    });
                    let dial: Dial =
                        async move { task.await.map_err(|e| format!("dial task failed: {e}"))? }
                            .boxed()
                            .shared();
                    pool.insert(key, Slot::Dialing(dial.clone()));
                    dial
                }
            }
        };
        let result = dial.await;
        if let Ok(mut pool) = self.0.pool.lock() {
            let still_ours = matches!(pool.get(&key), Some(Slot::Dialing(_)));
            match &result {
                Ok(conn) if still_ours => {
                    pool.insert(key, Slot::Ready(conn.clone()));
                }
                Err(_) if still_ours => {
                    pool.remove(&key);
                }
                _ => {}
            }
        }
        result.map_err(|reason| MeshError::Unreachable { peer, reason })
    }

    /// Sends one request on a protected ALPN and waits for the answer.
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        alpn: &'static [u8],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, MeshError> {
        let attempt = async {
            let conn = self.connection(peer, alpn).await?;
            match roundtrip(&conn, peer, alpn, body).await {
                Ok(reply) => Ok(reply),
                Err(err @ (MeshError::NotServing { .. } | MeshError::Failed { .. })) => Err(err),
                Err(err) => {
                    self.forget(peer, alpn);
                    // A connection that died before the request went out
                    // (the peer restarted, or it did not know us yet) is
                    // safe to retry once on a fresh one.
                    if conn.close_reason().is_some() {
                        debug!(peer = %peer.short(), %err, "retrying on a fresh connection");
                        let conn = self.connection(peer, alpn).await?;
                        roundtrip(&conn, peer, alpn, body).await
                    } else {
                        Err(err)
                    }
                }
            }
        };
        // A timeout leaves the connection pooled: a dead one is closed by
        // the QUIC idle timeout within seconds, and a slow but healthy one
        // should not be torn down and redialed under load.
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| MeshError::Timeout {
                peer,
                millis: timeout.as_millis() as u64,
            })?
    }

    /// Sends one request on an open ALPN (join) to explicit addresses,
    /// without a hello: the caller has no certificate yet.
    pub(crate) async fn request_open(
        &self,
        peer: PeerId,
        addrs: &[String],
        alpn: &'static [u8],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, MeshError> {
        self.add_peer_addrs(peer, addrs);
        let attempt = async {
            let conn = self.dial(peer, alpn).await?;
            let reply = roundtrip(&conn, peer, alpn, body).await;
            conn.close(0u32.into(), b"done");
            reply
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| MeshError::Timeout {
                peer,
                millis: timeout.as_millis() as u64,
            })?
    }

    /// The error for a stream protocol's opening that failed to arrive:
    /// reset on purpose by the server, refused by admission, or broken.
    pub(crate) fn stream_failure(
        &self,
        peer: PeerId,
        alpn: &'static [u8],
        reset: Option<iroh::endpoint::VarInt>,
        reason: String,
    ) -> MeshError {
        if let Some(err) = reset.and_then(|code| reset_error(peer, alpn, code)) {
            return err;
        }
        let pooled = self
            .0
            .pool
            .lock()
            .ok()
            .and_then(|p| match p.get(&(peer, alpn)) {
                Some(Slot::Ready(conn)) => Some(conn.clone()),
                _ => None,
            });
        match pooled {
            Some(conn) => failure(&conn, peer, reason),
            None => MeshError::Request { peer, reason },
        }
    }

    /// The selected path to `peer`, if a connection is open.
    pub fn path_to(&self, peer: &PeerId) -> Option<crate::PathInfo> {
        self.0.admission.path_to(peer)
    }

    /// Has the endpoint probe its public address again when a direct path
    /// to a peer has fallen back to the relay. The usual cause is this
    /// side's public address changing (a router that restarted and got
    /// another address): the endpoint would learn the new one at its next
    /// periodic probe, 20 to 26 s apart; probed now, it finds it and
    /// hole-punches again at once. At most once every 5 s.
    pub(crate) fn notice_lost_paths(&self) {
        const AT_MOST_EVERY: Duration = Duration::from_secs(5);
        let Ok(mut seen) = self.0.paths_seen.lock() else {
            return;
        };
        let (kinds, last_check) = &mut *seen;
        let mut lost = Vec::new();
        for peer in self.known_peers() {
            // Between a dead connection and its redial there is none: the
            // kind before it is what counts.
            let Some(now) = self.path_to(&peer).map(|p| p.kind) else {
                continue;
            };
            if kinds.insert(peer, now) == Some(coop_types::Connection::Direct)
                && now == coop_types::Connection::Relay
            {
                lost.push(peer.short());
            }
        }
        if lost.is_empty() || last_check.is_some_and(|at| at.elapsed() < AT_MOST_EVERY) {
            return;
        }
        *last_check = Some(std::time::Instant::now());
        debug!(peers = ?lost, "direct paths fell back to the relay: checking this peer's network");
        let relay = self
            .0
            .relays
            .lock()
            .ok()
            .and_then(|relays| relays.iter().next().cloned());
        let Some(relay) = relay else {
            return;
        };
        let mesh = self.clone();
        // iroh has no call that only says "probe your public address
        // again"; a change of its relay map does that, and putting a relay
        // back as it was changes nothing else.
        self.spawn(async move { mesh.insert_relay(&relay).await });
    }

    /// Runs `work` as the mesh's own background task: it stops when the
    /// work ends or the mesh shuts down, whichever comes first.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let stop = self.0.background.stop.clone();
        self.0.background.tasks.spawn(async move {
            tokio::select! {
                () = work => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// Stops the mesh's background work, closes every connection and stops
    /// serving.
    pub async fn shutdown(&self) {
        let background = &self.0.background;
        background.stop.cancel();
        background.tasks.close();
        // Cancelled tasks end at their next await; a bound keeps a stuck
        // one from holding shutdown forever.
        if tokio::time::timeout(Duration::from_secs(5), background.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                left = background.tasks.len(),
                "mesh tasks still running at shutdown"
            );
        }
        if let Some(server) = self.0.relay_server.lock().await.take() {
            server.shutdown().await;
        }
        let _ = self.0.router.shutdown().await;
        self.0.endpoint.close().await;
    }
}

/// TLS trust for relays' QUIC address discovery: only members of the cloud.
fn member_relays_only(admission: Arc<Admission>) -> iroh::tls::CaTlsConfig {
    iroh::tls::CaTlsConfig::custom_server_cert_verifier(Arc::new(move |provider| {
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
            Arc::new(crate::relay_tls::MemberRelayVerifier {
                admission: admission.clone(),
                provider,
            });
        Ok(verifier)
    }))
}

/// `ip:port` is a direct address; `http(s)://…` a relay of the cloud.
fn parse_transport_addr(text: &str) -> Option<TransportAddr> {
    if text.starts_with("http://") || text.starts_with("https://") {
        text.parse::<RelayUrl>().ok().map(TransportAddr::Relay)
    } else {
        text.parse::<SocketAddr>().ok().map(TransportAddr::Ip)
    }
}

async fn roundtrip(
    conn: &Connection,
    peer: PeerId,
    alpn: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, MeshError> {
    use iroh::endpoint::{ReadError, ReadToEndError};
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| failure(conn, peer, e.to_string()))?;
    send.write_all(body)
        .await
        .map_err(|e| failure(conn, peer, e.to_string()))?;
    send.finish()
        .map_err(|e| failure(conn, peer, e.to_string()))?;
    match recv.read_to_end(MAX_MESSAGE_BYTES).await {
        Ok(reply) => Ok(reply),
        Err(ReadToEndError::Read(ReadError::Reset(code))) => Err(reset_error(peer, alpn, code)
            .unwrap_or_else(|| failure(conn, peer, format!("stream reset with code {code}")))),
        Err(err) => Err(failure(conn, peer, err.to_string())),
    }
}

/// The typed error for a stream the server reset on purpose.
fn reset_error(peer: PeerId, alpn: &[u8], code: iroh::endpoint::VarInt) -> Option<MeshError> {
    let protocol = protocol_name(alpn);
    match code.into_inner() {
        c if c == u64::from(RESET_NOT_SERVING) => Some(MeshError::NotServing { peer, protocol }),
        c if c == u64::from(RESET_FAILED) => Some(MeshError::Failed { peer, protocol }),
        _ => None,
    }
}

/// A request that failed on the wire: refused by admission, or broken.
fn failure(conn: &Connection, peer: PeerId, reason: String) -> MeshError {
    match refusal(conn) {
        Some(refused) => MeshError::Refused {
            peer,
            reason: refused,
        },
        None => MeshError::Request { peer, reason },
    }
}

/// The reason the remote gave when it closed the connection as refused by
/// admission, if that is how it ended.
fn refusal(conn: &Connection) -> Option<String> {
    match conn.close_reason()? {
        iroh::endpoint::ConnectionError::ApplicationClosed(close)
            if close.error_code
                == iroh::endpoint::VarInt::from_u32(crate::admission::CLOSE_NOT_ADMITTED) =>
        {
            Some(String::from_utf8_lossy(&close.reason).to_string())
        }
        _ => None,
    }
}
