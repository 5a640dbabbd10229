//! Request/response over QUIC streams: one bidirectional stream per request.
//!
//! The caller writes the request and finishes its half; the handler reads it
//! to the end, answers, and finishes. Streams are cheap in QUIC, so there is
//! no multiplexing header and a slow request never blocks another one.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use iroh::endpoint::{Connection, RecvStream, SendStream};
use iroh::protocol::{AcceptError, ProtocolHandler};
use tracing::debug;

use coop_types::PeerId;

use crate::admission::peer_of;

/// Largest request or response body accepted on a request stream. Raft
/// snapshots of the control plane are the biggest messages; 64 MiB leaves
/// room for a large cloud while bounding what a peer can make us buffer.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Answers requests of one protocol. Errors are part of the protocol's own
/// response type, so a handler always returns bytes.
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, from: PeerId, request: Vec<u8>) -> BoxFuture<'static, Vec<u8>>;
}

/// Serves whole bidirectional streams of one protocol: the handler owns
/// both halves and speaks whatever the protocol says, for as long as it
/// likes (an exec session, say).
pub trait StreamHandler: Send + Sync + 'static {
    fn handle(&self, from: PeerId, send: SendStream, recv: RecvStream) -> BoxFuture<'static, ()>;
}

/// Handlers of one kind by ALPN, filled in as the agent's rooms start.
pub(crate) type Table<H> = Arc<RwLock<HashMap<&'static [u8], Arc<H>>>>;
/// Request handlers by ALPN.
pub(crate) type HandlerTable = Table<dyn RequestHandler>;
/// Stream handlers by ALPN.
pub(crate) type StreamTable = Table<dyn StreamHandler>;

/// The iroh protocol handler serving one ALPN from a table of handlers:
/// `Served<dyn RequestHandler>` answers one request per stream,
/// `Served<dyn StreamHandler>` hands each stream to its handler.
pub(crate) struct Served<H: ?Sized> {
    pub alpn: &'static [u8],
    pub handlers: Table<H>,
}

impl<H: ?Sized> Clone for Served<H> {
    fn clone(&self) -> Self {
        Served {
            alpn: self.alpn,
            handlers: self.handlers.clone(),
        }
    }
}

impl<H: ?Sized> fmt::Debug for Served<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Served({})", String::from_utf8_lossy(self.alpn))
    }
}

impl<H: ?Sized> Served<H> {
    /// The handler now, if its room has started.
    fn handler(&self) -> Option<Arc<H>> {
        self.handlers
            .read()
            .ok()
            .and_then(|h| h.get(self.alpn).cloned())
    }

    /// Takes the connection's streams one by one until it ends.
    async fn each_stream(
        &self,
        connection: Connection,
        mut serve: impl FnMut(PeerId, Option<Arc<H>>, SendStream, RecvStream),
    ) -> Result<(), AcceptError> {
        let from = peer_of(connection.remote_id());
        loop {
            match connection.accept_bi().await {
                Ok((send, recv)) => serve(from, self.handler(), send, recv),
                Err(err) => {
                    debug!(peer = %from.short(), %err, "connection ended");
                    return Ok(());
                }
            }
        }
    }
}

impl ProtocolHandler for Served<dyn RequestHandler> {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        self.each_stream(connection, |from, handler, mut send, mut recv| {
            tokio::spawn(async move {
                let request = match recv.read_to_end(MAX_MESSAGE_BYTES).await {
                    Ok(bytes) => bytes,
                    Err(err) => {
                        debug!(peer = %from.short(), %err, "bad request stream");
                        return;
                    }
                };
                let Some(handler) = handler else {
                    // Not ready yet: reset so the caller sees an error and retries.
                    let _ = send.reset(1u32.into());
                    return;
                };
                let response = handler.handle(from, request).await;
                if send.write_all(&response).await.is_ok() {
                    let _ = send.finish();
                }
            });
        })
        .await
    }
}

impl ProtocolHandler for Served<dyn StreamHandler> {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        self.each_stream(connection, |from, handler, send, mut recv| match handler {
            Some(handler) => {
                tokio::spawn(handler.handle(from, send, recv));
            }
            None => {
                let _ = recv.stop(1u32.into());
            }
        })
        .await
    }
}
