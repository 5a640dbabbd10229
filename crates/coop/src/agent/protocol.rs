//! The agent's own mesh protocols: joining (`coop/join/1`, open to
//! invitees) and agent-to-agent requests (`coop/rpc/1`, members only).

use serde::{Deserialize, Serialize};

use coop_identity::{Certificate, CloudId};
use coop_state::CloudInfo;
use coop_types::PeerId;

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
}

/// The answer to an [`AgentRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AgentReply {
    Join(JoinReply),
    KeyStored,
    Error(String),
}
