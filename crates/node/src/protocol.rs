//! The agent's own mesh protocols: joining (`coop/join/1`, open to
//! invitees) and agent-to-agent requests (`coop/rpc/1`, members only).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use coop_identity::{Certificate, CloudId};
use coop_mesh::Protocol;
use coop_state::CloudInfo;
use coop_types::PeerId;

/// `coop/join/1`: a new machine redeems its invite. Open to peers without
/// a certificate (the mesh owns the ALPN, since admission must know it).
pub struct JoinProtocol;

/// How long a new machine waits for each bootstrap peer of its invite: a
/// certificate is signed and the invite redeemed in the control plane,
/// perhaps forwarded to the leader (up to 12 s).
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

impl Protocol for JoinProtocol {
    const ALPN: &'static [u8] = coop_mesh::JOIN_ALPN;
    type Request = JoinRequest;
    type Response = JoinReply;
    fn timeout(_: &JoinRequest) -> Duration {
        JOIN_TIMEOUT
    }
}

/// `coop/rpc/1`: requests between members' agents (forwarded joins, the
/// cloud key for new stewards, probes, backup secrets).
pub struct AgentRpc;

/// The ALPN of [`AgentRpc`].
pub const RPC_ALPN: &[u8] = b"coop/rpc/1";

/// A forwarded join waits for the leader's write (up to 10 s) and a bit.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(12);
/// Storing a key or answering a probe is local work on the callee.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

impl Protocol for AgentRpc {
    const ALPN: &'static [u8] = RPC_ALPN;
    type Request = AgentRequest;
    type Response = AgentReply;
    fn timeout(request: &AgentRequest) -> Duration {
        match request {
            AgentRequest::Join { .. } => FORWARD_TIMEOUT,
            AgentRequest::StewardKey { .. }
            | AgentRequest::Ping
            | AgentRequest::SealSecret { .. }
            | AgentRequest::OpenSecret { .. } => RPC_TIMEOUT,
        }
    }
}

/// Sent by a new machine to a peer named in its invite.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub cloud: CloudId,
    pub invite_id: [u8; 16],
    pub secret: [u8; 32],
    pub name: String,
    pub zone: String,
    /// Mesh addresses the new peer listens on.
    pub addrs: Vec<String>,
    /// The new peer offers to relay for the cloud.
    pub relay: bool,
}

/// The answer to a [`JoinRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum JoinReply {
    /// Welcome: the new peer's certificate, the cloud, and its members'
    /// addresses to start from.
    Accepted {
        cert: Box<Certificate>,
        cloud: Option<CloudInfo>,
        peers: Vec<(PeerId, Vec<String>)>,
    },
    /// Refused for good (bad, used or expired invite; another cloud).
    Refused(String),
    /// Could not be decided now (no leader); the new machine may retry.
    Unavailable(String),
}

/// A request from one member to another on `coop/rpc/1`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AgentRequest {
    /// A member without the cloud key forwards a join it received to the
    /// leader, naming the TLS-proven id of the new peer.
    Join { peer: PeerId, request: JoinRequest },
    /// The leader hands the cloud root key to a peer it is about to make a
    /// steward, so that any leader can sign certificates.
    StewardKey { secret: [u8; 32] },
    /// `coop debug probe` checks that this peer admits the caller.
    Ping,
    /// A member without the cloud key asks one that holds it to seal a
    /// backup secret (`label` names the backup and the secret).
    SealSecret { label: String, secret: Vec<u8> },
    /// ... or to open one, to run the backup.
    OpenSecret { label: String, sealed: Vec<u8> },
}

/// The answer to an [`AgentRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AgentReply {
    /// The leader's decision on a forwarded join.
    Join(JoinReply),
    /// The cloud key of a `StewardKey` is stored.
    KeyStored,
    /// The answer to a `Ping`.
    Pong,
    /// The request was refused, and why.
    Error(String),
    /// A sealed or opened secret.
    Secret(Vec<u8>),
}
