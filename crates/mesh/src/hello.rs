//! `coop/hello/1`: two peers show each other their certificates.
//!
//! The dialer sends its certificate; the acceptor checks it against the
//! cloud key and the TLS-proven key of the connection, admits the dialer and
//! answers with its own certificate, which the dialer checks in turn. After
//! a hello both sides admit each other on every protected ALPN.

use std::sync::Arc;

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use coop_identity::Certificate;

use crate::admission::{Admission, peer_of};

/// Certificates are small; anything bigger is not a hello.
const MAX_HELLO_BYTES: usize = 16 << 10;

/// What the dialer sends.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HelloRequest {
    pub cert: Certificate,
    /// Random per process of the dialer, so the acceptor notices restarts.
    pub boot: u64,
}

/// What the acceptor answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HelloReply {
    /// The dialer is admitted; here is the acceptor's certificate.
    Welcome(Certificate),
    /// The dialer is refused, and why.
    Refused(String),
}

/// Serves hellos.
#[derive(Debug, Clone)]
pub(crate) struct HelloProtocol {
    pub admission: Arc<Admission>,
}

impl ProtocolHandler for HelloProtocol {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let peer = peer_of(connection.remote_id());
        let (mut send, mut recv) = connection.accept_bi().await?;
        let bytes = recv
            .read_to_end(MAX_HELLO_BYTES)
            .await
            .map_err(AcceptError::from_err)?;
        let reply = match postcard::from_bytes::<HelloRequest>(&bytes) {
            Err(err) => HelloReply::Refused(format!("malformed hello: {err}")),
            Ok(req) => match self.admission.admit(peer, &req.cert) {
                Err(err) => {
                    warn!(peer = %peer, %err, "refused peer at hello");
                    HelloReply::Refused(err.to_string())
                }
                Ok(()) => {
                    self.admission.note_boot(peer, req.boot);
                    match self.admission.own_cert() {
                        Some(own) => {
                            debug!(peer = %peer.short(), "hello: peer admitted");
                            HelloReply::Welcome(own)
                        }
                        None => HelloReply::Refused("this peer has not joined a cloud yet".into()),
                    }
                }
            },
        };
        let out = postcard::to_stdvec(&reply).map_err(AcceptError::from_err)?;
        send.write_all(&out).await.map_err(AcceptError::from_err)?;
        send.finish().map_err(AcceptError::from_err)?;
        connection.closed().await;
        Ok(())
    }
}

/// Holds the idle connections peers keep to each other on `coop/path/1`
/// until they close; nothing is sent on them.
#[derive(Debug, Clone)]
pub(crate) struct PathProtocol;

impl ProtocolHandler for PathProtocol {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        connection.closed().await;
        Ok(())
    }
}
