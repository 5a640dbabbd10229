//! `coop/compute/1`: the API of one peer acting on containers of another.
//! A `run --peer` becomes a lease the target decides on; start, stop,
//! restart, remove, stats and state of a container go to the peer that
//! runs it. Messages are JSON; every answer is a reply or an error with
//! the HTTP status the caller passes on, so a refusal reads the same
//! whichever peer's API the client talked to.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use coop_mesh::{Protocol, Service};
use coop_state::ContainerEntry;
use coop_types::PeerId;

use super::containers::{Action, act_local, lease_local, log_chunk, observe_local, stats_local};
use super::views::{ContainerView, StatsView};
use crate::AppState;
use crate::error::ApiError;

/// A lease waits for the target to fetch the template (first use) and
/// start the container.
const LEASE_TIMEOUT: Duration = Duration::from_secs(300);
/// A stop waits up to its grace period, then a bit.
const ACT_TIMEOUT: Duration = Duration::from_secs(40);
/// Listing waits this long for each peer, then shows its containers as unknown.
pub(crate) const OBSERVE_TIMEOUT: Duration = Duration::from_secs(3);

/// `coop/compute/1`: leases and operations on another peer's containers.
pub struct ComputeProtocol;

/// The ALPN of [`ComputeProtocol`].
pub const COMPUTE_ALPN: &[u8] = b"coop/compute/1";

impl Protocol for ComputeProtocol {
    const ALPN: &'static [u8] = COMPUTE_ALPN;
    type Request = PeerCall;
    type Response = PeerReply;
    fn timeout(call: &PeerCall) -> Duration {
        call.timeout()
    }
}

/// A request to the peer that runs (or is asked to run) a container.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerCall {
    /// Run this container; its `peer` is the callee.
    Lease(Box<ContainerEntry>),
    Act {
        name: String,
        action: Action,
    },
    Stats {
        name: String,
    },
    /// The state of these containers as the callee's runtime sees it.
    Observe {
        names: Vec<String>,
    },
    /// Up to [`LOG_CHUNK`] bytes of the container's log from `offset`.
    Logs {
        name: String,
        offset: u64,
    },
}

/// Most log bytes one call returns.
pub(crate) const LOG_CHUNK: usize = 256 << 10;

/// The answer to a [`PeerCall`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerReply {
    View(Box<ContainerView>),
    Views(Vec<ContainerView>),
    Stats(StatsView),
    /// Log bytes, and whether the container still runs (more may come).
    Logs {
        bytes: Vec<u8>,
        running: bool,
    },
    Error {
        status: u16,
        message: String,
    },
}

impl PeerCall {
    fn timeout(&self) -> Duration {
        match self {
            PeerCall::Lease(_) => LEASE_TIMEOUT,
            PeerCall::Act { .. } => ACT_TIMEOUT,
            PeerCall::Stats { .. } | PeerCall::Observe { .. } | PeerCall::Logs { .. } => {
                OBSERVE_TIMEOUT
            }
        }
    }
}

/// Sends `call` to `peer` and turns its answer (or its silence) into a
/// result.
pub(crate) async fn call(
    state: &AppState,
    peer: PeerId,
    call: PeerCall,
    timeout: Option<Duration>,
) -> Result<PeerReply, ApiError> {
    let timeout = timeout.unwrap_or_else(|| call.timeout());
    let answer = state
        .mesh
        .call_within::<ComputeProtocol>(peer, &call, timeout)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "peer {} cannot be asked right now: {e}",
                peer.short()
            ))
        })?;
    match answer {
        PeerReply::Error { status, message } => Err(ApiError::from_status(status, message)),
        reply => Ok(reply),
    }
}

/// The view a remote call must answer with, or an error naming the mix-up.
pub(crate) fn expect_view(reply: PeerReply) -> Result<ContainerView, ApiError> {
    match reply {
        PeerReply::View(view) => Ok(*view),
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn unexpected(reply: &PeerReply) -> ApiError {
    ApiError::Internal(format!(
        "a peer answered with an unexpected reply: {reply:?}"
    ))
}

/// Serves [`PeerCall`]s from the cloud's other members.
struct ComputeService(AppState);

impl Service<ComputeProtocol> for ComputeService {
    fn answer(&self, from: PeerId, call: PeerCall) -> BoxFuture<'static, PeerReply> {
        let state = self.0.clone();
        Box::pin(async move {
            answer(&state, from, call)
                .await
                .unwrap_or_else(|err| PeerReply::Error {
                    status: err.status().as_u16(),
                    message: err.to_string(),
                })
        })
    }
}

async fn answer(state: &AppState, from: PeerId, call: PeerCall) -> Result<PeerReply, ApiError> {
    let host = state.compute()?;
    match call {
        PeerCall::Lease(entry) => {
            if entry.peer != host.peer() {
                return Err(ApiError::BadRequest(format!(
                    "peer {} was asked to run a container meant for peer {}",
                    host.peer().short(),
                    entry.peer.short()
                )));
            }
            tracing::info!(container = %entry.name, from = %from.short(), "lease requested by another peer");
            lease_local(state, &host, *entry)
                .await
                .map(|v| PeerReply::View(Box::new(v)))
        }
        PeerCall::Act { name, action } => act_local(state, &host, &name, action)
            .await
            .map(|v| PeerReply::View(Box::new(v))),
        PeerCall::Stats { name } => stats_local(state, &host, &name).await.map(PeerReply::Stats),
        PeerCall::Observe { names } => observe_local(state, &host, names)
            .await
            .map(PeerReply::Views),
        PeerCall::Logs { name, offset } => {
            let (bytes, running) = log_chunk(state, &host, &name, offset).await?;
            Ok(PeerReply::Logs { bytes, running })
        }
    }
}

/// Starts answering other peers' compute calls and exec sessions.
pub fn serve_compute_calls(state: &AppState) {
    state.mesh.serve(ComputeService(state.clone()));
    super::remote_exec::serve(state);
}
