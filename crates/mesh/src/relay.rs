//! Relays run by the cloud's own peers (`coop up --relay`).
//!
//! A peer with a public address serves iroh's relay protocol over HTTP on
//! the TCP port with the same number as its mesh UDP port. Peers that cannot
//! reach each other directly (both behind NAT) talk through it; the traffic
//! stays end-to-end encrypted, the relay only forwards. Only admitted peers
//! of this cloud may use it, so it is not an open relay for the Internet.

use std::net::SocketAddr;
use std::sync::Arc;

use iroh_relay::server::{Access, AccessControl, ClientRequest, RelayConfig, Server, ServerConfig};
use tracing::{info, warn};

use crate::admission::{Admission, peer_of};

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
    pub(crate) async fn start(bind: SocketAddr, admission: Arc<Admission>) -> Result<Self, String> {
        let mut relay = RelayConfig::new(bind);
        relay.access = Arc::new(MembersOnly(admission));
        let mut config = ServerConfig::default();
        config.relay = Some(relay);
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
