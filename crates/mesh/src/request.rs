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

/// Handlers by ALPN, filled in as the agent's rooms start.
pub(crate) type HandlerTable = Arc<RwLock<HashMap<&'static [u8], Arc<dyn RequestHandler>>>>;

/// The iroh protocol handler serving one request ALPN from the table.
#[derive(Clone)]
pub(crate) struct RequestProtocol {
    pub alpn: &'static [u8],
    pub handlers: HandlerTable,
}

impl fmt::Debug for RequestProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestProtocol({})", String::from_utf8_lossy(self.alpn))
    }
}

impl ProtocolHandler for RequestProtocol {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let from = peer_of(connection.remote_id());
        loop {
            let (mut send, mut recv) = match connection.accept_bi().await {
                Ok(streams) => streams,
                Err(err) => {
                    debug!(peer = %from.short(), %err, "request connection ended");
                    return Ok(());
                }
            };
            let handler = self
                .handlers
                .read()
                .ok()
                .and_then(|h| h.get(self.alpn).cloned());
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
        }
    }
}

/// Serves whole bidirectional streams of one protocol: the handler owns
/// both halves and speaks whatever the protocol says, for as long as it
/// likes (an exec session, say).
pub trait StreamHandler: Send + Sync + 'static {
    fn handle(&self, from: PeerId, send: SendStream, recv: RecvStream) -> BoxFuture<'static, ()>;
}

/// Stream handlers by ALPN.
pub(crate) type StreamTable = Arc<RwLock<HashMap<&'static [u8], Arc<dyn StreamHandler>>>>;

/// The iroh protocol handler serving one stream ALPN from the table.
#[derive(Clone)]
pub(crate) struct StreamProtocol {
    pub alpn: &'static [u8],
    pub handlers: StreamTable,
}

impl fmt::Debug for StreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamProtocol({})", String::from_utf8_lossy(self.alpn))
    }
}

impl ProtocolHandler for StreamProtocol {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let from = peer_of(connection.remote_id());
        loop {
            let (send, mut recv) = match connection.accept_bi().await {
                Ok(streams) => streams,
                Err(err) => {
                    debug!(peer = %from.short(), %err, "stream connection ended");
                    return Ok(());
                }
            };
            let handler = self
                .handlers
                .read()
                .ok()
                .and_then(|h| h.get(self.alpn).cloned());
            match handler {
                Some(handler) => {
                    tokio::spawn(handler.handle(from, send, recv));
                }
                None => {
                    let _ = recv.stop(1u32.into());
                }
            }
        }
    }
}
