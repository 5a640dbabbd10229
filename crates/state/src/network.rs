//! Raft messages over the mesh (`coop/raft/1`): the client side used by
//! openraft, and the service answering other replicas.

use std::time::Duration;

use futures::future::BoxFuture;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use coop_mesh::{Mesh, MeshError, Protocol, Service};
use coop_types::PeerId;

use crate::{Command, CommandError, PeerNode, Raft, TypeConfig};

/// `coop/raft/1`: consensus messages between control-plane replicas, and
/// the writes and read indexes other peers ask the leader for.
pub struct RaftProtocol;

/// The ALPN of [`RaftProtocol`].
pub const RAFT_ALPN: &[u8] = b"coop/raft/1";

/// How long a forwarded write or read index may take when the caller sets
/// no deadline of its own (openraft's calls always set one).
const RAFT_TIMEOUT: Duration = Duration::from_secs(10);

impl Protocol for RaftProtocol {
    const ALPN: &'static [u8] = RAFT_ALPN;
    type Request = RaftMessage;
    type Response = RaftAnswer;
    fn timeout(_: &RaftMessage) -> Duration {
        RAFT_TIMEOUT
    }
}

/// A message from one control-plane replica to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftMessage {
    /// The leader replicates log entries (or heartbeats) to a follower.
    Append(AppendEntriesRequest<TypeConfig>),
    /// A candidate asks for a vote.
    Vote(VoteRequest<PeerId>),
    /// The leader sends a snapshot chunk to a lagging replica.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A replica forwards a client write to the peer it believes leads.
    ClientWrite(Command),
    /// A replica about to serve a read that must see every write committed
    /// before it asks the leader how far the log is committed.
    ReadIndex,
}

/// The answer to a [`RaftMessage`], variant by variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftAnswer {
    /// The follower's answer to [`RaftMessage::Append`].
    Append(Result<AppendEntriesResponse<PeerId>, RaftError<PeerId>>),
    /// The voter's answer to [`RaftMessage::Vote`].
    Vote(Result<VoteResponse<PeerId>, RaftError<PeerId>>),
    /// The lagging replica's answer to [`RaftMessage::Snapshot`].
    Snapshot(Result<InstallSnapshotResponse<PeerId>, RaftError<PeerId, InstallSnapshotError>>),
    /// `Ok(Ok)` applied; `Ok(Err)` refused by the state machine; `Err` not
    /// written here (not the leader, or Raft failed).
    ClientWrite(
        Result<Result<(), CommandError>, RaftError<PeerId, ClientWriteError<PeerId, PeerNode>>>,
    ),
    /// The index a linearizable read must wait for (`Err`: not the leader,
    /// or it could not confirm its leadership).
    ReadIndex(Result<Option<u64>, String>),
}

/// Hands openraft a client per target peer.
pub(crate) struct MeshNetwork {
    pub mesh: Mesh,
}

impl RaftNetworkFactory<TypeConfig> for MeshNetwork {
    type Network = MeshRaftClient;

    async fn new_client(&mut self, target: PeerId, node: &PeerNode) -> Self::Network {
        // Addresses in the membership may be older than what gossip told us.
        if !self.mesh.knows_addrs_of(&target) {
            self.mesh.add_peer_addrs(target, &node.addrs);
        }
        MeshRaftClient {
            mesh: self.mesh.clone(),
            target,
        }
    }
}

/// Sends Raft messages to one peer.
pub(crate) struct MeshRaftClient {
    mesh: Mesh,
    target: PeerId,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<PeerId, PeerNode, RaftError<PeerId, E>>;

fn transport_error<E: std::error::Error>(err: MeshError) -> RPCError<PeerId, PeerNode, E> {
    match err {
        MeshError::Unreachable { .. } | MeshError::Refused { .. } | MeshError::Timeout { .. } => {
            RPCError::Unreachable(Unreachable::new(&err))
        }
        _ => RPCError::Network(NetworkError::new(&err)),
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<PeerId, PeerNode, E> {
    let err = std::io::Error::other(format!("unexpected raft answer: {what}"));
    RPCError::Network(NetworkError::new(&err))
}

pub(crate) async fn call(
    mesh: &Mesh,
    target: PeerId,
    message: &RaftMessage,
    timeout: Duration,
) -> Result<RaftAnswer, MeshError> {
    mesh.call_within::<RaftProtocol>(target, message, timeout)
        .await
}

impl MeshRaftClient {
    async fn send<E: std::error::Error>(
        &self,
        message: RaftMessage,
        option: &RPCOption,
    ) -> Result<RaftAnswer, RPCError<PeerId, PeerNode, E>> {
        call(&self.mesh, self.target, &message, option.hard_ttl())
            .await
            .map_err(transport_error)
    }
}

impl RaftNetwork<TypeConfig> for MeshRaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<PeerId>, RpcErr> {
        match self.send(RaftMessage::Append(rpc), &option).await? {
            RaftAnswer::Append(Ok(resp)) => Ok(resp),
            RaftAnswer::Append(Err(err)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            other => Err(unexpected(&format!("{other:?}"))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<PeerId>, RpcErr<InstallSnapshotError>> {
        match self.send(RaftMessage::Snapshot(rpc), &option).await? {
            RaftAnswer::Snapshot(Ok(resp)) => Ok(resp),
            RaftAnswer::Snapshot(Err(err)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            other => Err(unexpected(&format!("{other:?}"))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<PeerId>,
        option: RPCOption,
    ) -> Result<VoteResponse<PeerId>, RpcErr> {
        match self.send(RaftMessage::Vote(rpc), &option).await? {
            RaftAnswer::Vote(Ok(resp)) => Ok(resp),
            RaftAnswer::Vote(Err(err)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            other => Err(unexpected(&format!("{other:?}"))),
        }
    }
}

/// Answers Raft messages from other replicas.
pub(crate) struct RaftService {
    pub raft: Raft,
}

impl Service<RaftProtocol> for RaftService {
    fn answer(&self, _from: PeerId, message: RaftMessage) -> BoxFuture<'static, RaftAnswer> {
        let raft = self.raft.clone();
        Box::pin(async move {
            match message {
                RaftMessage::Append(rpc) => RaftAnswer::Append(raft.append_entries(rpc).await),
                RaftMessage::Vote(rpc) => RaftAnswer::Vote(raft.vote(rpc).await),
                RaftMessage::Snapshot(rpc) => {
                    RaftAnswer::Snapshot(raft.install_snapshot(rpc).await)
                }
                RaftMessage::ClientWrite(cmd) => {
                    RaftAnswer::ClientWrite(raft.client_write(cmd).await.map(|r| r.data))
                }
                RaftMessage::ReadIndex => RaftAnswer::ReadIndex(
                    raft.get_read_log_id()
                        .await
                        .map(|(read, _)| read.map(|id| id.index))
                        .map_err(|e| e.to_string()),
                ),
            }
        })
    }
}

pub(crate) fn serve(mesh: &Mesh, raft: &Raft) {
    mesh.serve::<RaftProtocol>(RaftService { raft: raft.clone() });
}
