//! `coop/exec/1`: exec into a container on another peer. The peer whose
//! API the client called opens a stream to the peer that runs the
//! container with an [`ExecCall`]; that peer answers started or refused
//! (a [`ComputeError`]), and on success the stream carries the
//! `coop-exec` frames of [`crate::frames`] both ways. The calling peer
//! answers its client only after that reply, so a refusal is a plain
//! error, and afterwards it copies bytes without looking at them.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use coop_mesh::{RecvStream, SendStream, Session, StreamProtocol, StreamService};
use coop_types::PeerId;

use crate::error::ComputeError;
use crate::frames::serve_exec;
use crate::service::Orchestra;

/// `coop/exec/1`: an exec session into a container on another peer.
pub struct ExecProtocol;

/// The ALPN of [`ExecProtocol`].
pub const EXEC_ALPN: &[u8] = b"coop/exec/1";

impl StreamProtocol for ExecProtocol {
    const ALPN: &'static [u8] = EXEC_ALPN;
    type Open = ExecCall;
    type Reply = Result<(), ComputeError>;
    /// Starting a process in a running container takes milliseconds; a
    /// dial and a first hole punch take a few seconds.
    const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
}

/// What to run in a container, sent first on the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecCall {
    pub name: String,
    pub argv: Vec<String>,
    pub tty: bool,
    pub rows: Option<u16>,
    pub cols: Option<u16>,
}

/// An exec started on another peer, ready to be joined to the client.
pub struct RemoteSession {
    send: SendStream,
    recv: RecvStream,
}

impl RemoteSession {
    /// Copies the client's frames to the peer and the peer's back until
    /// both sides are done.
    pub async fn pipe<C>(self, mut client: C)
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
    orchestra: &Orchestra,
    peer: PeerId,
    call: &ExecCall,
) -> Result<RemoteSession, ComputeError> {
    match orchestra.mesh().open::<ExecProtocol>(peer, call).await {
        Ok((Ok(()), send, recv)) => Ok(RemoteSession { send, recv }),
        Ok((Err(error), _, _)) => Err(ComputeError::Refused {
            peer,
            error: Box::new(error),
        }),
        Err(err) => Err(ComputeError::mesh(peer, err)),
    }
}

/// Serves exec sessions other peers open into this peer's containers.
pub(crate) struct ExecService(pub Orchestra);

impl StreamService<ExecProtocol> for ExecService {
    fn serve(
        &self,
        from: PeerId,
        call: ExecCall,
        session: Session<ExecProtocol>,
    ) -> BoxFuture<'static, ()> {
        let orchestra = self.0.clone();
        Box::pin(async move {
            tracing::debug!(container = %call.name, from = %from.short(), "exec from another peer");
            match orchestra.start_exec(call).await {
                Ok(handle) => {
                    if let Ok((send, recv)) = session.reply(&Ok(())).await {
                        serve_exec(tokio::io::join(recv, send), handle).await;
                    }
                }
                Err(err) => {
                    if let Ok((mut send, _)) = session.reply(&Err(err)).await {
                        let _ = send.finish();
                    }
                }
            }
        })
    }
}
