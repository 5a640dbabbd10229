//! `coop/exec/1`: exec into a container on another peer. The peer whose
//! API the client called opens a stream to the peer that runs the
//! container and sends one JSON line, the [`ExecCall`]; that peer answers
//! with one JSON line, [`ExecAnswer`], and on success the stream carries
//! the `coop-exec` frames of the `stream` module both ways. The calling
//! peer answers its client's upgrade only after that first line, so a
//! refusal (no such container, not running) is a plain HTTP error, and
//! afterwards it copies bytes without looking at them.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use coop_mesh::{RecvStream, SendStream, Session, StreamProtocol, StreamService};
use coop_types::PeerId;

use super::containers::start_exec;
use super::stream::serve_exec;
use crate::AppState;
use crate::error::ApiError;

/// `coop/exec/1`: an exec session into a container on another peer.
pub struct ExecProtocol;

/// The ALPN of [`ExecProtocol`].
pub const EXEC_ALPN: &[u8] = b"coop/exec/1";

impl StreamProtocol for ExecProtocol {
    const ALPN: &'static [u8] = EXEC_ALPN;
    type Open = ExecCall;
    type Reply = ExecAnswer;
    /// Starting a process in a running container takes milliseconds; a
    /// dial and a first hole punch take a few seconds.
    const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
}

/// What to run, sent first on the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecCall {
    pub name: String,
    pub argv: Vec<String>,
    pub tty: bool,
    pub rows: Option<u16>,
    pub cols: Option<u16>,
}

/// The answer to an [`ExecCall`]: started, or refused with an HTTP status.
#[derive(Debug, Serialize, Deserialize)]
pub enum ExecAnswer {
    /// The process runs; frames follow both ways.
    Started,
    /// The exec could not start, and why.
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
    match state.mesh.open::<ExecProtocol>(peer, call).await {
        Ok((ExecAnswer::Started, send, recv)) => Ok(RemoteSession { send, recv }),
        Ok((ExecAnswer::Refused { status, message }, _, _)) => {
            Err(ApiError::from_status(status, message))
        }
        Err(err) => Err(ApiError::Unavailable(format!(
            "peer {} cannot be reached for exec: {err}",
            peer.short()
        ))),
    }
}

/// Serves exec sessions other peers open into this peer's containers.
struct ExecService(AppState);

impl StreamService<ExecProtocol> for ExecService {
    fn serve(
        &self,
        from: PeerId,
        call: ExecCall,
        session: Session<ExecProtocol>,
    ) -> BoxFuture<'static, ()> {
        let state = self.0.clone();
        Box::pin(async move {
            tracing::debug!(container = %call.name, from = %from.short(), "exec from another peer");
            let started = match state.compute() {
                Ok(host) => start_exec(&state, &host, call).await,
                Err(err) => Err(err),
            };
            match started {
                Ok(handle) => {
                    if let Ok((send, recv)) = session.reply(&ExecAnswer::Started).await {
                        serve_exec(tokio::io::join(recv, send), handle).await;
                    }
                }
                Err(err) => {
                    let answer = ExecAnswer::Refused {
                        status: err.status().as_u16(),
                        message: err.to_string(),
                    };
                    if let Ok((mut send, _)) = session.reply(&answer).await {
                        let _ = send.finish();
                    }
                }
            }
        })
    }
}

/// Starts answering other peers' exec sessions.
pub(crate) fn serve(state: &AppState) {
    state.mesh.serve_streams(ExecService(state.clone()));
}
