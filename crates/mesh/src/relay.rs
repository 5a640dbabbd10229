//! Relays run by the cloud's own peers (`coop up --relay`).
//!
//! A peer with a public address serves iroh's relay protocol over HTTP on
//! the TCP port with the same number as its mesh UDP port. Peers that cannot
//! reach each other directly (both behind NAT) talk through it; the traffic
//! stays end-to-end encrypted, the relay only forwards. Only admitted peers
//! of this cloud may use it, so it is not an open relay for the Internet.
//!
//! On the next UDP port (mesh port + 1) the relay also answers QUIC address
//! discovery, so peers behind NAT learn their public address and can
//! hole-punch a direct path; see `relay_tls` for how that is trusted.

use std::net::SocketAddr;
use std::sync::Arc;

use iroh_relay::server::{
    Access, AccessControl, ClientRequest, QuicConfig, RelayConfig, Server, ServerConfig,
};

use coop_identity::PeerKey;
use tracing::{info, warn};

use crate::admission::{Admission, peer_of};

/// The UDP port of a coop relay's QUIC address discovery, by convention the
/// one after its relay port, so a relay URL is all a peer needs to know.
pub(crate) fn qad_port(relay_port: u16) -> u16 {
    relay_port.wrapping_add(1)
}

/// Lets only admitted peers connect to the relay.
#[derive(Debug)]
struct MembersOnly(Arc<Admission>);

impl AccessControl for MembersOnly {
    async fn on_connect(&self, request: &ClientRequest) -> Access {
        let peer = peer_of(request.endpoint_id());
        if self.0.is_admitted(&peer) {
            Access::Allow
        } else {
            info!(peer = %peer, "refused relay client: not a member of this cloud (yet)");
            Access::Deny {
                reason: Some("not a member of this cloud".into()),
            }
        }
    }
}

/// A running relay server.
pub(crate) struct RelayServer {
    server: Server,
}

impl RelayServer {
    pub(crate) async fn start(
        bind: SocketAddr,
        admission: Arc<Admission>,
        key: &PeerKey,
    ) -> Result<Self, String> {
        let mut relay = RelayConfig::new(bind);
        relay.access = Arc::new(MembersOnly(admission));
        let quic_bind = SocketAddr::new(bind.ip(), qad_port(bind.port()));
        let mut quic = QuicConfig::new(quic_bind);
        quic.server_config = Some(crate::relay_tls::relay_server_tls(key, bind.ip())?);
        let mut config = ServerConfig::default();
        config.relay = Some(relay);
        config.quic = Some(quic);
        let server = Server::spawn(config).await.map_err(|e| e.to_string())?;
        info!(addr = ?server.http_addr(), "relay server listening");
        Ok(RelayServer { server })
    }

    pub(crate) fn http_addr(&self) -> Option<SocketAddr> {
        self.server.http_addr()
    }

    pub(crate) async fn shutdown(self) {
        if let Err(err) = self.server.shutdown().await {
            warn!(%err, "relay server shutdown failed");
        }
    }
}
