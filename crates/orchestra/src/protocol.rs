//! `coop/compute/1`: one peer acting on containers of another. A run on
//! another peer becomes a lease the target decides on; start, stop,
//! restart, remove, stats, state, log chunks and log offsets of a container go to the
//! peer that runs it. A refusal travels as a [`ComputeError`], so it reads
//! the same whichever peer the client asked.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use coop_compute::runtime::Stats;
use coop_mesh::{Protocol, Service};
use coop_state::ContainerEntry;
use coop_types::PeerId;

use crate::error::ComputeError;
use crate::service::{ContainerStatus, Orchestra};

/// `coop/compute/1`.
pub struct ComputeProtocol;

/// The ALPN of [`ComputeProtocol`].
pub const COMPUTE_ALPN: &[u8] = b"coop/compute/1";

/// A lease waits for the target to fetch the template (first use) and
/// start the container.
const LEASE_TIMEOUT: Duration = Duration::from_secs(300);
/// A stop waits up to its grace period, then a bit; a restart may fetch.
const ACT_TIMEOUT: Duration = Duration::from_secs(40);
/// Listing waits this long for each peer, then shows its containers as
/// unknown.
pub const OBSERVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Most log bytes one call returns.
pub const LOG_CHUNK: usize = 256 << 10;

impl Protocol for ComputeProtocol {
    const ALPN: &'static [u8] = COMPUTE_ALPN;
    type Request = ComputeCall;
    type Response = ComputeReply;
    fn timeout(call: &ComputeCall) -> Duration {
        match call {
            // A move starts the replica elsewhere: a lease and then some.
            ComputeCall::Lease(_) | ComputeCall::Relocate { .. } => LEASE_TIMEOUT,
            ComputeCall::Act { .. } => ACT_TIMEOUT,
            ComputeCall::Stats { .. }
            | ComputeCall::Observe { .. }
            | ComputeCall::Logs { .. }
            | ComputeCall::LogOffset { .. } => OBSERVE_TIMEOUT,
        }
    }
}

/// What an operator asks of an existing container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Start a stopped or exited container.
    Start,
    /// Stop it (SIGTERM, then SIGKILL after `grace_secs`, or
    /// [`crate::STOP_GRACE`] when `None`); it stays stopped.
    Stop { grace_secs: Option<u32> },
    /// Stop it and start it again.
    Restart,
    /// Remove it; with `force`, a running one too.
    Remove { force: bool },
}

/// A call to the peer that runs (or is asked to run) a container.
#[derive(Debug, Serialize, Deserialize)]
pub enum ComputeCall {
    /// A peer asks the callee to run this container (its `peer` is the
    /// callee); the callee admits it against its free capacity or refuses.
    Lease(Box<ContainerEntry>),
    /// A peer passes on an operator's start, stop, restart or remove.
    Act { name: String, action: Action },
    /// A peer asks for the container's resource use now.
    Stats { name: String },
    /// A peer listing containers asks for the actual state of these.
    Observe { names: Vec<String> },
    /// A peer reading a log asks for up to [`LOG_CHUNK`] bytes from `offset`.
    Logs { name: String, offset: u64 },
    /// The peer hosting an environment replica asks the control-plane
    /// leader to move it elsewhere, and says why.
    Relocate { name: String, why: String },
    /// A peer reading a log `--since` a time (unix seconds) asks where
    /// that output begins (last, so the variants before keep their tags).
    LogOffset { name: String, since: u64 },
}

/// The answer to a [`ComputeCall`].
#[derive(Debug, Serialize, Deserialize)]
pub enum ComputeReply {
    /// The container after a `Lease` or `Act`.
    Status(Box<ContainerStatus>),
    /// The containers of an `Observe` that the callee runs.
    Statuses(Vec<ContainerStatus>),
    /// The answer to `Stats`.
    Stats(Stats),
    /// Log bytes, and whether the container still runs (more may come).
    Logs { bytes: Vec<u8>, running: bool },
    /// A `Relocate` was done.
    Relocated,
    /// The callee refused or failed, and why.
    Refused(ComputeError),
    /// The answer to `LogOffset`: a byte of the log.
    LogOffset(u64),
}

/// Sends `call` to `peer` and turns its answer (or its silence) into a
/// result.
pub(crate) async fn call(
    orchestra: &Orchestra,
    peer: PeerId,
    call: ComputeCall,
) -> Result<ComputeReply, ComputeError> {
    match orchestra.mesh().call::<ComputeProtocol>(peer, &call).await {
        Ok(ComputeReply::Refused(error)) => Err(ComputeError::Refused {
            peer,
            error: Box::new(error),
        }),
        Ok(reply) => Ok(reply),
        Err(err) => Err(ComputeError::mesh(peer, err)),
    }
}

/// The error for an answer of the wrong kind.
pub(crate) fn unexpected(peer: PeerId, reply: &ComputeReply) -> ComputeError {
    ComputeError::Internal(format!(
        "peer {} answered with an unexpected reply: {reply:?}",
        peer.short()
    ))
}

/// Serves [`ComputeCall`]s from the cloud's other members.
pub(crate) struct ComputeService(pub Orchestra);

impl Service<ComputeProtocol> for ComputeService {
    fn answer(&self, from: PeerId, call: ComputeCall) -> BoxFuture<'static, ComputeReply> {
        let orchestra = self.0.clone();
        Box::pin(async move {
            answer(&orchestra, from, call)
                .await
                .unwrap_or_else(ComputeReply::Refused)
        })
    }
}

async fn answer(
    orchestra: &Orchestra,
    from: PeerId,
    call: ComputeCall,
) -> Result<ComputeReply, ComputeError> {
    match call {
        ComputeCall::Lease(entry) => {
            let me = orchestra.peer();
            if entry.peer != me {
                return Err(ComputeError::Invalid(format!(
                    "peer {} was asked to run a container meant for peer {}",
                    me.short(),
                    entry.peer.short()
                )));
            }
            tracing::info!(container = %entry.name, from = %from.short(), "lease requested by another peer");
            orchestra
                .lease_local(*entry)
                .await
                .map(|s| ComputeReply::Status(Box::new(s)))
        }
        ComputeCall::Act { name, action } => orchestra
            .act_local(&name, action)
            .await
            .map(|s| ComputeReply::Status(Box::new(s))),
        ComputeCall::Stats { name } => orchestra.stats_local(&name).await.map(ComputeReply::Stats),
        ComputeCall::Observe { names } => orchestra
            .observe_local(names)
            .await
            .map(ComputeReply::Statuses),
        ComputeCall::Logs { name, offset } => {
            let (bytes, running) = orchestra.log_chunk(&name, offset).await?;
            Ok(ComputeReply::Logs { bytes, running })
        }
        ComputeCall::Relocate { name, why } => orchestra
            .relocate_replica(&name, from, &why)
            .await
            .map(|()| ComputeReply::Relocated),
        ComputeCall::LogOffset { name, since } => orchestra
            .log_offset_since(&name, since)
            .await
            .map(ComputeReply::LogOffset),
    }
}
