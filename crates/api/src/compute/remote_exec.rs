//! `coop/exec/1`: exec into a container on another peer. The peer whose
//! API the client called opens a stream to the peer that runs the
//! container and sends one JSON line, the [`ExecCall`]; that peer answers
//! with one JSON line, [`ExecAnswer`], and on success the stream carries
//! the `coop-exec` frames of the `stream` module both ways. The calling
//! peer answers its client's upgrade only after that first line, so a
//! refusal (no such container, not running) is a plain HTTP error, and
//! afterwards it copies bytes without looking at them.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use coop_mesh::{EXEC_ALPN, RecvStream, SendStream, StreamHandler};
use coop_types::PeerId;

use super::containers::start_exec;
use super::stream::serve_exec;
use crate::AppState;
use crate::error::ApiError;

/// Longest first line either side sends.
const MAX_LINE: usize = 64 << 10;

/// What to run, sent first on the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExecCall {
    pub name: String,
    pub argv: Vec<String>,
    pub tty: bool,
    pub rows: Option<u16>,
    pub cols: Option<u16>,
}

/// The answer to an [`ExecCall`]: started, or refused with an HTTP status.
#[derive(Debug, Serialize, Deserialize)]
enum ExecAnswer {
    Started,
    Refused { status: u16, message: String },
}

/// An exec started on another peer, ready to be joined to the client.
pub(crate) struct RemoteSession {
    send: SendStream,
    recv: RecvStream,
}

impl RemoteSession {
    /// Copies the client's frames to the peer and the peer's back until
    /// both sides are done.
    pub(crate) async fn pipe<C>(self, mut client: C)
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let mut peer = tokio::io::join(self.recv, self.send);
        if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut peer).await {
            tracing::debug!(%err, "remote exec session ended with an error");
        }
    }
}

/// Starts `call` on `peer`; fails with the peer's refusal if it refuses.
pub(crate) async fn open(
    state: &AppState,
    peer: PeerId,
    call: &ExecCall,
) -> Result<RemoteSession, ApiError> {
    let unreachable = |e: String| {
        ApiError::Unavailable(format!(
            "peer {} cannot be reached for exec: {e}",
            peer.short()
        ))
    };
    let (mut send, mut recv) = state
        .mesh
        .open_stream(peer, EXEC_ALPN)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    write_line(&mut send, call)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    match read_line::<ExecAnswer, _>(&mut recv).await {
        Ok(ExecAnswer::Started) => Ok(RemoteSession { send, recv }),
        Ok(ExecAnswer::Refused { status, message }) => Err(ApiError::from_status(status, message)),
        Err(err) => Err(unreachable(err)),
    }
}

async fn write_line<T: Serialize>(send: &mut SendStream, value: &T) -> Result<(), String> {
    let mut line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    line.push(b'\n');
    send.write_all(&line).await.map_err(|e| e.to_string())
}

/// Reads one JSON line byte by byte, so nothing after it is consumed.
async fn read_line<T, R>(recv: &mut R) -> Result<T, String>
where
    T: for<'de> Deserialize<'de>,
    R: AsyncRead + Unpin,
{
    let mut line = Vec::new();
    loop {
        let byte = recv
            .read_u8()
            .await
            .map_err(|e| format!("the stream ended early: {e}"))?;
        if byte == b'\n' {
            break;
        }
        if line.len() >= MAX_LINE {
            return Err("the first line is too long".into());
        }
        line.push(byte);
    }
    serde_json::from_slice(&line).map_err(|e| format!("malformed line: {e}"))
}

/// Serves exec sessions other peers open into this peer's containers.
struct ExecService(AppState);

impl StreamHandler for ExecService {
    fn handle(
        &self,
        from: PeerId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> BoxFuture<'static, ()> {
        let state = self.0.clone();
        Box::pin(async move {
            let started = match read_line::<ExecCall, _>(&mut recv).await {
                Ok(call) => {
                    tracing::debug!(container = %call.name, from = %from.short(), "exec from another peer");
                    match state.compute() {
                        Ok(host) => start_exec(&state, &host, call).await,
                        Err(err) => Err(err),
                    }
                }
                Err(err) => Err(ApiError::BadRequest(err)),
            };
            match started {
                Ok(handle) => {
                    if write_line(&mut send, &ExecAnswer::Started).await.is_ok() {
                        serve_exec(tokio::io::join(recv, send), handle).await;
                    }
                }
                Err(err) => {
                    let answer = ExecAnswer::Refused {
                        status: err.status().as_u16(),
                        message: err.to_string(),
                    };
                    let _ = write_line(&mut send, &answer).await;
                    let _ = send.finish();
                }
            }
        })
    }
}

/// Starts answering other peers' exec sessions.
pub(crate) fn serve(state: &AppState) {
    state
        .mesh
        .set_stream_handler(EXEC_ALPN, Arc::new(ExecService(state.clone())));
}
