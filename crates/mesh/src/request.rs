//! The byte level under [`crate::protocol`]: one bidirectional QUIC stream
//! per request or session, and the table of handlers by ALPN.
//!
//! For a request, the caller writes its bytes and finishes its half; the
//! handler reads them to the end, answers, and finishes. Streams are cheap
//! in QUIC, so there is no multiplexing header and a slow request never
//! blocks another one. For a stream protocol the handler gets both halves.
//! Nothing outside the mesh sees this level: protocols are typed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use iroh::endpoint::{Connection, RecvStream, SendStream, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use coop_types::PeerId;

use crate::admission::peer_of;
use crate::datagram::{DatagramHandler, DatagramLinks, receive_datagrams};

/// Largest request or response body accepted on a request stream. Raft
/// snapshots of the control plane are the biggest messages; 64 MiB leaves
/// room for a large cloud while bounding what a peer can make us buffer.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Stream reset code: no handler serves this ALPN yet (the peer is still
/// starting the room that serves it).
pub(crate) const RESET_NOT_SERVING: u32 = 1;
/// Stream reset code: the handler failed to produce an answer at all.
pub(crate) const RESET_FAILED: u32 = 2;

/// Answers one request of one protocol, bytes in, bytes out. `Err` means
/// no answer could be made; the stream is reset with [`RESET_FAILED`].
pub(crate) trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, from: PeerId, request: Vec<u8>)
    -> BoxFuture<'static, Result<Vec<u8>, String>>;
}

/// Serves whole bidirectional streams of one protocol: the handler owns
/// both halves for as long as the session lasts (an exec session, say).
pub(crate) trait StreamHandler: Send + Sync + 'static {
    fn handle(&self, from: PeerId, send: SendStream, recv: RecvStream) -> BoxFuture<'static, ()>;
}

/// What serves one ALPN.
#[derive(Clone)]
pub(crate) enum Handler {
    Request(Arc<dyn RequestHandler>),
    Stream(Arc<dyn StreamHandler>),
    Datagram(Arc<dyn DatagramHandler>),
}

/// Handlers by ALPN, filled in as the peer's rooms start.
pub(crate) type HandlerTable = Arc<RwLock<HashMap<&'static [u8], Handler>>>;

/// The iroh protocol handler for one ALPN: takes each stream of a
/// connection and gives it to whatever the table holds for the ALPN then,
/// and each datagram to the ALPN's datagram service, if it has one.
#[derive(Clone)]
pub(crate) struct Served {
    pub alpn: &'static [u8],
    pub handlers: HandlerTable,
    pub datagram_links: Arc<DatagramLinks>,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Served({})", String::from_utf8_lossy(self.alpn))
    }
}

impl Served {
    /// The handler now, if its room has started.
    fn handler(&self) -> Option<Handler> {
        self.handlers
            .read()
            .ok()
            .and_then(|h| h.get(self.alpn).cloned())
    }
}

impl ProtocolHandler for Served {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let from = peer_of(connection.remote_id());
        // Datagrams and streams are read side by side; both end with the
        // connection.
        let datagrams = receive_datagrams(
            connection.clone(),
            from,
            self.alpn,
            self.handlers.clone(),
            self.datagram_links.clone(),
        );
        tokio::join!(datagrams, self.accept_streams(connection, from));
        Ok(())
    }
}

impl Served {
    async fn accept_streams(&self, connection: Connection, from: PeerId) {
        // The streams' handlers live as long as their connection: when it
        // ends, or the router stops accepting, the set drops them.
        let mut streams = JoinSet::new();
        loop {
            while streams.try_join_next().is_some() {}
            let (send, recv) = match connection.accept_bi().await {
                Ok(streams) => streams,
                Err(err) => {
                    debug!(peer = %from.short(), %err, "connection ended");
                    return;
                }
            };
            match self.handler() {
                Some(Handler::Request(handler)) => {
                    streams.spawn(answer_request(handler, from, send, recv));
                }
                Some(Handler::Stream(handler)) => {
                    streams.spawn(handler.handle(from, send, recv));
                }
                // Not ready yet, or a datagram protocol: the caller sees
                // "not serving".
                Some(Handler::Datagram(_)) | None => {
                    let (mut send, mut recv) = (send, recv);
                    let _ = send.reset(VarInt::from_u32(RESET_NOT_SERVING));
                    let _ = recv.stop(VarInt::from_u32(RESET_NOT_SERVING));
                }
            }
        }
    }
}

async fn answer_request(
    handler: Arc<dyn RequestHandler>,
    from: PeerId,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let request = match recv.read_to_end(MAX_MESSAGE_BYTES).await {
        Ok(bytes) => bytes,
        Err(err) => {
            debug!(peer = %from.short(), %err, "bad request stream");
            return;
        }
    };
    match handler.handle(from, request).await {
        Ok(response) => {
            if send.write_all(&response).await.is_ok() {
                let _ = send.finish();
            }
        }
        Err(reason) => {
            warn!(peer = %from.short(), %reason, "no answer could be made to a request");
            let _ = send.reset(VarInt::from_u32(RESET_FAILED));
        }
    }
}
