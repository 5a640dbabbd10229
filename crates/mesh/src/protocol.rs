//! Typed protocols: what every coop protocol on the mesh is built from.
//!
//! A request/response protocol ([`Protocol`]) names its ALPN, its request
//! and response types and how long a call may take. The mesh encodes both
//! with postcard and wraps the answer in an envelope that also carries the
//! failures of the exchange itself (a request the server could not decode,
//! an answer it could not encode), so a caller gets either the server's
//! typed answer or a [`MeshError`] that says which side failed and why.
//! A stream protocol ([`StreamProtocol`]) exchanges one typed opening
//! message each way, then leaves both halves of the QUIC stream to the two
//! sides (an exec session carries its own frames after that).
//!
//! Each protocol is declared in the crate that serves it, beside its
//! messages, and registered with [`Mesh::serve`] or [`Mesh::serve_streams`].
//! The mesh itself runs only hello, join's transport and gossip.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use iroh::endpoint::{ReadError, ReadExactError, RecvStream, SendStream, VarInt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::debug;

use coop_types::PeerId;

use crate::request::{Handler, RequestHandler, StreamHandler};
use crate::{Mesh, MeshError};

/// A request/response protocol: one request, one answer, on a stream of
/// its own.
pub trait Protocol: Send + Sync + 'static {
    /// The ALPN the protocol's connections use, e.g. `coop/blocks/1`.
    const ALPN: &'static [u8];
    /// What the caller sends.
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What the server answers; refusals belong in it as typed variants.
    type Response: Serialize + DeserializeOwned + Send + 'static;
    /// How long a call of `request` may take, dialing included.
    fn timeout(request: &Self::Request) -> Duration;
}

/// Answers the requests of protocol `P`.
pub trait Service<P: Protocol>: Send + Sync + 'static {
    /// The answer to `request` from the (admitted) peer `from`.
    fn answer(&self, from: PeerId, request: P::Request) -> BoxFuture<'static, P::Response>;
}

/// A protocol that opens with one typed message each way and then leaves
/// the stream to its two sides.
pub trait StreamProtocol: Send + Sync + 'static {
    /// The ALPN the protocol's connections use, e.g. `coop/exec/1`.
    const ALPN: &'static [u8];
    /// What the caller sends first.
    type Open: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What the server answers first (accepted, or refused and why).
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// How long opening may take: dial, opening message and reply.
    const OPEN_TIMEOUT: Duration;
}

/// Serves the sessions of stream protocol `P`.
pub trait StreamService<P: StreamProtocol>: Send + Sync + 'static {
    /// Runs one session opened by `from` with `open`; the service answers
    /// through `session.reply` and then owns the stream.
    fn serve(&self, from: PeerId, open: P::Open, session: Session<P>) -> BoxFuture<'static, ()>;
}

/// A session of a stream protocol whose opening message has been read.
pub struct Session<P: StreamProtocol> {
    send: SendStream,
    recv: RecvStream,
    from: PeerId,
    _protocol: PhantomData<fn() -> P>,
}

impl<P: StreamProtocol> Session<P> {
    /// Sends the reply; from then on the stream belongs to the service.
    pub async fn reply(mut self, reply: &P::Reply) -> Result<(SendStream, RecvStream), MeshError> {
        let frame = frame(&Envelope::Answer(reply)).map_err(|reason| MeshError::Encode {
            protocol: protocol_name(P::ALPN),
            reason,
        })?;
        self.send
            .write_all(&frame)
            .await
            .map_err(|e| MeshError::Request {
                peer: self.from,
                reason: e.to_string(),
            })?;
        Ok((self.send, self.recv))
    }
}

/// What travels back on a request stream, and first on a stream protocol.
#[derive(Serialize, Deserialize)]
enum Envelope<T> {
    /// The server's answer.
    Answer(T),
    /// The server could not decode what we sent (another version of coop,
    /// or a broken peer).
    Malformed(String),
}

/// Largest opening message or reply of a stream protocol.
const MAX_OPENING_BYTES: usize = 64 << 10;

/// The protocol's ALPN as text, for errors and logs.
pub(crate) fn protocol_name(alpn: &[u8]) -> String {
    String::from_utf8_lossy(alpn).into_owned()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(value).map_err(|e| e.to_string())
}

/// A length-prefixed (u32, big-endian) postcard message.
fn frame<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let body = encode(value)?;
    if body.len() > MAX_OPENING_BYTES {
        return Err(format!(
            "an opening message of {} bytes is over the limit of {MAX_OPENING_BYTES}",
            body.len()
        ));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Why an opening message could not be read: the stream reset with a
/// code, or anything else.
struct FrameError {
    reset: Option<VarInt>,
    reason: String,
}

impl From<String> for FrameError {
    fn from(reason: String) -> Self {
        FrameError {
            reset: None,
            reason,
        }
    }
}

/// Reads one length-prefixed message, leaving what follows it unread.
async fn read_frame(recv: &mut RecvStream) -> Result<Vec<u8>, FrameError> {
    let failed = |where_: &str, err: ReadExactError| FrameError {
        reset: match err {
            ReadExactError::ReadError(ReadError::Reset(code)) => Some(code),
            _ => None,
        },
        reason: format!("the stream ended {where_} the opening message: {err}"),
    };
    let mut len = [0u8; 4];
    recv.read_exact(&mut len)
        .await
        .map_err(|e| failed("before", e))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_OPENING_BYTES {
        return Err(format!(
            "an opening message of {len} bytes is over the limit of {MAX_OPENING_BYTES}"
        )
        .into());
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| failed("inside", e))?;
    Ok(body)
}

/// Decodes an envelope a peer sent, naming the peer when it does not decode.
fn open_envelope<T: DeserializeOwned>(
    peer: PeerId,
    alpn: &[u8],
    bytes: &[u8],
) -> Result<T, MeshError> {
    match postcard::from_bytes::<Envelope<T>>(bytes) {
        Ok(Envelope::Answer(answer)) => Ok(answer),
        Ok(Envelope::Malformed(reason)) => Err(MeshError::Rejected {
            peer,
            protocol: protocol_name(alpn),
            reason,
        }),
        Err(err) => Err(MeshError::Malformed {
            peer,
            protocol: protocol_name(alpn),
            reason: err.to_string(),
        }),
    }
}

/// Adapts a typed [`Service`] to the byte level.
struct TypedRequests<P, S> {
    service: S,
    _protocol: PhantomData<fn() -> P>,
}

impl<P: Protocol, S: Service<P>> RequestHandler for TypedRequests<P, S> {
    fn handle(
        &self,
        from: PeerId,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        match postcard::from_bytes::<P::Request>(&request) {
            Ok(request) => {
                let answer = self.service.answer(from, request);
                Box::pin(async move { encode(&Envelope::Answer(answer.await)) })
            }
            Err(err) => {
                debug!(peer = %from.short(), protocol = %protocol_name(P::ALPN), %err, "malformed request");
                let reply = encode(&Envelope::<P::Response>::Malformed(err.to_string()));
                Box::pin(async move { reply })
            }
        }
    }
}

/// Adapts a typed [`StreamService`] to the byte level.
struct TypedStreams<P, S> {
    service: Arc<S>,
    _protocol: PhantomData<fn() -> P>,
}

impl<P: StreamProtocol, S: StreamService<P>> StreamHandler for TypedStreams<P, S> {
    fn handle(
        &self,
        from: PeerId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> BoxFuture<'static, ()> {
        let service = self.service.clone();
        Box::pin(async move {
            let opened = match tokio::time::timeout(P::OPEN_TIMEOUT, read_frame(&mut recv)).await {
                Err(_) => Err("no opening message in time".to_string()),
                Ok(Err(err)) => Err(err.reason),
                Ok(Ok(bytes)) => postcard::from_bytes::<P::Open>(&bytes).map_err(|e| e.to_string()),
            };
            match opened {
                Ok(open) => {
                    let session = Session {
                        send,
                        recv,
                        from,
                        _protocol: PhantomData,
                    };
                    service.serve(from, open, session).await;
                }
                Err(reason) => {
                    debug!(peer = %from.short(), protocol = %protocol_name(P::ALPN), %reason, "malformed opening");
                    if let Ok(frame) = frame(&Envelope::<P::Reply>::Malformed(reason)) {
                        let _ = send.write_all(&frame).await;
                    }
                    let _ = send.finish();
                }
            }
        })
    }
}

impl Mesh {
    /// Serves protocol `P` with `service` from now on. The ALPN must be
    /// among those the mesh was bound with ([`crate::MeshConfig::protocols`]).
    pub fn serve<P: Protocol>(&self, service: impl Service<P>) {
        let handler = TypedRequests::<P, _> {
            service,
            _protocol: PhantomData,
        };
        self.set_handler(P::ALPN, Handler::Request(Arc::new(handler)));
    }

    /// Serves stream protocol `P` with `service` from now on.
    pub fn serve_streams<P: StreamProtocol>(&self, service: impl StreamService<P>) {
        let handler = TypedStreams::<P, _> {
            service: Arc::new(service),
            _protocol: PhantomData,
        };
        self.set_handler(P::ALPN, Handler::Stream(Arc::new(handler)));
    }

    /// Calls `peer` with `request` and waits up to the protocol's timeout.
    pub async fn call<P: Protocol>(
        &self,
        peer: PeerId,
        request: &P::Request,
    ) -> Result<P::Response, MeshError> {
        self.call_within::<P>(peer, request, P::timeout(request))
            .await
    }

    /// Calls `peer` with `request` and waits up to `timeout`.
    pub async fn call_within<P: Protocol>(
        &self,
        peer: PeerId,
        request: &P::Request,
        timeout: Duration,
    ) -> Result<P::Response, MeshError> {
        let body = encode(request).map_err(|reason| MeshError::Encode {
            protocol: protocol_name(P::ALPN),
            reason,
        })?;
        let reply = self.request(peer, P::ALPN, &body, timeout).await?;
        open_envelope(peer, P::ALPN, &reply)
    }

    /// Calls `peer`, found at `addrs`, on a protocol open to peers without
    /// a certificate (joining), without a hello first.
    pub async fn call_open<P: Protocol>(
        &self,
        peer: PeerId,
        addrs: &[String],
        request: &P::Request,
    ) -> Result<P::Response, MeshError> {
        let body = encode(request).map_err(|reason| MeshError::Encode {
            protocol: protocol_name(P::ALPN),
            reason,
        })?;
        let reply = self
            .request_open(peer, addrs, P::ALPN, &body, P::timeout(request))
            .await?;
        open_envelope(peer, P::ALPN, &reply)
    }

    /// Opens a session of stream protocol `P` with `peer`: sends `open`,
    /// waits for the reply, and hands back the reply and the stream.
    pub async fn open<P: StreamProtocol>(
        &self,
        peer: PeerId,
        open: &P::Open,
    ) -> Result<(P::Reply, SendStream, RecvStream), MeshError> {
        let opening = frame(open).map_err(|reason| MeshError::Encode {
            protocol: protocol_name(P::ALPN),
            reason,
        })?;
        let attempt = async {
            let (mut send, mut recv) = self.open_stream(peer, P::ALPN).await?;
            let failed = |reason: String| MeshError::Request { peer, reason };
            send.write_all(&opening)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let bytes = read_frame(&mut recv)
                .await
                .map_err(|e| self.stream_failure(peer, P::ALPN, e.reset, e.reason))?;
            let reply = open_envelope::<P::Reply>(peer, P::ALPN, &bytes)?;
            Ok((reply, send, recv))
        };
        tokio::time::timeout(P::OPEN_TIMEOUT, attempt)
            .await
            .map_err(|_| MeshError::Timeout {
                peer,
                millis: P::OPEN_TIMEOUT.as_millis() as u64,
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_answers_and_malformed_requests() {
        let peer = PeerId([7; 32]);
        let bytes = encode(&Envelope::Answer(42u32)).unwrap();
        assert_eq!(open_envelope::<u32>(peer, b"t/1", &bytes).unwrap(), 42);
        let bytes = encode(&Envelope::<u32>::Malformed("bad".into())).unwrap();
        assert!(matches!(
            open_envelope::<u32>(peer, b"t/1", &bytes),
            Err(MeshError::Rejected { .. })
        ));
        assert!(matches!(
            open_envelope::<String>(peer, b"t/1", &[9, 9, 9]),
            Err(MeshError::Malformed { .. })
        ));
    }

    #[test]
    fn frames_are_length_prefixed_and_bounded() {
        let framed = frame(&"hi").unwrap();
        assert_eq!(&framed[..4], &3u32.to_be_bytes());
        assert!(frame(&vec![0u8; MAX_OPENING_BYTES + 1]).is_err());
    }
}
