//! Who may open a coop protocol on this peer.
//!
//! A remote endpoint is admitted once it has shown a certificate of this
//! cloud that verifies (over `coop/hello/1`, or because the control plane
//! lists it), and stays admitted until it is revoked or its certificate
//! expires. The check runs as an iroh endpoint hook right after the TLS
//! handshake, where the remote's key is already proven, so it covers every
//! ALPN, including gossip, without each protocol doing it again.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use iroh::endpoint::{
    AfterHandshakeOutcome, Connection, EndpointHooks, Side, VarInt, WeakConnectionHandle,
};
use tracing::{debug, warn};

use coop_identity::{CertError, Certificate, CloudId};
use coop_types::{Connection as PathKind, PeerId, unix_now};

use crate::is_open_alpn;

/// QUIC close code for a connection refused by admission (HTTP's 403).
pub const CLOSE_NOT_ADMITTED: u32 = 403;
/// QUIC close code for a connection left over from before a peer restarted.
pub const CLOSE_RESTARTED: u32 = 410;

/// The best path the mesh currently has to a peer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PathInfo {
    pub kind: PathKind,
    pub rtt: Option<Duration>,
}

/// The admission list of this peer, and the connections it let in.
#[derive(Debug)]
pub struct Admission {
    cloud: CloudId,
    own_id: PeerId,
    own_cert: RwLock<Option<Certificate>>,
    /// Admitted peers and the expiry of the certificate that admitted them.
    admitted: RwLock<HashMap<PeerId, u64>>,
    revoked: RwLock<HashSet<PeerId>>,
    connections: Mutex<HashMap<PeerId, Vec<WeakConnectionHandle>>>,
    /// The boot nonce each peer last greeted us with.
    boots: Mutex<HashMap<PeerId, u64>>,
}

impl Admission {
    pub fn new(cloud: CloudId, own_id: PeerId, own_cert: Option<Certificate>) -> Self {
        Admission {
            cloud,
            own_id,
            own_cert: RwLock::new(own_cert),
            admitted: RwLock::default(),
            revoked: RwLock::default(),
            connections: Mutex::default(),
            boots: Mutex::default(),
        }
    }

    pub fn cloud(&self) -> CloudId {
        self.cloud
    }

    pub fn own_id(&self) -> PeerId {
        self.own_id
    }

    pub fn own_cert(&self) -> Option<Certificate> {
        self.own_cert.read().ok().and_then(|c| c.clone())
    }

    pub fn set_own_cert(&self, cert: Certificate) {
        if let Ok(mut guard) = self.own_cert.write() {
            *guard = Some(cert);
        }
    }

    /// Verifies `cert` as presented by `peer` and admits the peer if it holds.
    pub fn admit(&self, peer: PeerId, cert: &Certificate) -> Result<(), CertError> {
        cert.verify(&self.cloud, &peer, unix_now())?;
        if self.is_revoked(&peer) {
            return Err(CertError::Revoked(peer));
        }
        if let Ok(mut admitted) = self.admitted.write() {
            admitted.insert(peer, cert.body.expires_at);
        }
        Ok(())
    }

    /// Whether `peer` may open protected protocols right now.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        if *peer == self.own_id {
            return true;
        }
        if self.is_revoked(peer) {
            return false;
        }
        let now = unix_now();
        self.admitted
            .read()
            .map(|a| a.get(peer).is_some_and(|expires| now <= *expires))
            .unwrap_or(false)
    }

    pub fn is_revoked(&self, peer: &PeerId) -> bool {
        self.revoked
            .read()
            .map(|r| r.contains(peer))
            .unwrap_or(false)
    }

    /// Records the boot nonce `peer` greeted us with. When it differs from
    /// the last one, the peer restarted: its connections from before are
    /// dead but may look alive until they time out, and gossip would keep
    /// sending into them, so close them now.
    pub(crate) fn note_boot(&self, peer: PeerId, boot: u64) {
        let previous = self
            .boots
            .lock()
            .ok()
            .and_then(|mut b| b.insert(peer, boot));
        if previous.is_some_and(|p| p != boot) {
            let closed = self.close_connections(peer, CLOSE_RESTARTED, b"peer restarted");
            debug!(peer = %peer.short(), closed, "peer restarted: closed its old connections");
        }
    }

    /// Closes every connection to `peer` with `code`; returns how many were open.
    fn close_connections(&self, peer: PeerId, code: u32, reason: &[u8]) -> usize {
        let handles = self
            .connections
            .lock()
            .ok()
            .and_then(|mut c| c.remove(&peer))
            .unwrap_or_default();
        let mut closed = 0;
        for handle in handles {
            if let Some(conn) = handle.upgrade() {
                conn.close(VarInt::from_u32(code), reason);
                closed += 1;
            }
        }
        closed
    }

    /// Revokes `peer` for good and closes every connection it has here.
    pub fn revoke(&self, peer: PeerId) {
        let newly = self
            .revoked
            .write()
            .map(|mut r| r.insert(peer))
            .unwrap_or(false);
        if let Ok(mut admitted) = self.admitted.write() {
            admitted.remove(&peer);
        }
        self.close_connections(peer, CLOSE_NOT_ADMITTED, b"revoked");
        if newly {
            warn!(peer = %peer, "peer revoked: connections closed, it will be refused from now on");
        }
    }

    /// The open connections to and from `peer`.
    pub(crate) fn connections_of(&self, peer: &PeerId) -> Vec<Connection> {
        let Ok(mut conns) = self.connections.lock() else {
            return Vec::new();
        };
        let Some(list) = conns.get_mut(peer) else {
            return Vec::new();
        };
        list.retain(|h| h.upgrade().is_some_and(|c| c.close_reason().is_none()));
        list.iter().filter_map(|h| h.upgrade()).collect()
    }

    /// The paths of the connection [`Admission::path_to`] judges `peer` by.
    pub fn paths_of(&self, peer: &PeerId) -> Vec<coop_types::PathLine> {
        let Some(conn) = self.connections_of(peer).pop() else {
            return Vec::new();
        };
        conn.paths()
            .iter()
            .map(|path| coop_types::PathLine {
                remote: match path.remote_addr() {
                    iroh::TransportAddr::Ip(addr) => addr.to_string(),
                    iroh::TransportAddr::Relay(url) => url.to_string(),
                    other => format!("{other:?}"),
                },
                kind: if path.is_relay() {
                    PathKind::Relay
                } else {
                    PathKind::Direct
                },
                selected: path.is_selected(),
                rtt_ms: path.rtt().as_secs_f64() * 1e3,
            })
            .collect()
    }

    /// The selected path of the freshest open connection to `peer`.
    pub fn path_to(&self, peer: &PeerId) -> Option<PathInfo> {
        let conn = self.connections_of(peer).pop()?;
        let paths = conn.paths();
        let selected = paths.iter().find(|p| p.is_selected())?;
        let kind = if selected.is_relay() {
            PathKind::Relay
        } else {
            PathKind::Direct
        };
        Some(PathInfo {
            kind,
            rtt: Some(selected.rtt()),
        })
    }

    fn remember(&self, peer: PeerId, conn: &Connection) {
        if let Ok(mut conns) = self.connections.lock() {
            let list = conns.entry(peer).or_default();
            list.retain(|h| h.upgrade().is_some_and(|c| c.close_reason().is_none()));
            list.push(conn.weak_handle());
        }
    }
}

/// Turns an iroh endpoint id into a coop peer id (both are the public key).
pub(crate) fn peer_of(id: iroh::EndpointId) -> PeerId {
    PeerId(*id.as_bytes())
}

/// The hook runs on a shared `Arc<Admission>`.
#[derive(Debug)]
pub(crate) struct AdmissionHook(pub std::sync::Arc<Admission>);

impl EndpointHooks for AdmissionHook {
    async fn after_handshake<'a>(&'a self, conn: &'a Connection) -> AfterHandshakeOutcome {
        let admission = &self.0;
        let peer = peer_of(conn.remote_id());
        let alpn = conn.alpn().to_vec();
        let alpn_text = String::from_utf8_lossy(&alpn).to_string();
        if admission.is_revoked(&peer) {
            warn!(peer = %peer, alpn = %alpn_text, "refused connection: peer is revoked");
            return reject("revoked");
        }
        if is_open_alpn(&alpn) {
            return AfterHandshakeOutcome::accept();
        }
        // We only dial peers whose certificate we checked over hello, so an
        // outgoing connection needs no second look here.
        if conn.side() == Side::Client || admission.is_admitted(&peer) {
            debug!(peer = %peer.short(), alpn = %alpn_text, "connection admitted");
            admission.remember(peer, conn);
            return AfterHandshakeOutcome::accept();
        }
        warn!(
            peer = %peer,
            alpn = %alpn_text,
            "refused connection: no valid certificate of this cloud"
        );
        reject("no valid certificate of this cloud")
    }
}

fn reject(reason: &str) -> AfterHandshakeOutcome {
    AfterHandshakeOutcome::Reject {
        error_code: VarInt::from_u32(CLOSE_NOT_ADMITTED),
        reason: reason.as_bytes().to_vec(),
    }
}
