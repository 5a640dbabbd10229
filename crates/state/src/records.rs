//! The typed tables of the control plane and the commands that change them.

use serde::{Deserialize, Serialize};

use coop_identity::{Certificate, CloudId};
use coop_types::PeerId;

/// What a Raft member needs to know to reach another one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: String,
    /// `ip:port` mesh addresses, as last reported.
    pub addrs: Vec<String>,
}

/// The cloud itself. Written once, by the first entry of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudInfo {
    pub id: CloudId,
    pub name: String,
    pub created_at: u64,
    pub founder: PeerId,
}

/// A member of the cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub cert: Certificate,
    pub joined_at: u64,
    /// `ip:port` mesh addresses, as last reported.
    pub addrs: Vec<String>,
    /// Unix seconds of revocation; a revoked peer is never admitted again.
    pub revoked_at: Option<u64>,
}

impl PeerRecord {
    pub fn id(&self) -> PeerId {
        self.cert.body.peer
    }
}

/// An invite: only the hash of its secret is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub id: [u8; 16],
    pub secret_hash: [u8; 32],
    pub expires_at: u64,
    pub created_by: PeerId,
    pub created_at: u64,
    pub used_by: Option<PeerId>,
}

/// An API bearer token: only the hash of the token is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub hash: [u8; 32],
    pub user: String,
    /// The peer whose `coop up` created it (the local admin token).
    pub created_by: PeerId,
    pub created_at: u64,
}

/// A change to the control plane, replicated through the Raft log.
/// Every check that decides whether a command applies runs in the state
/// machine, so all replicas decide the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// The founding peer writes the cloud and itself as the first entry.
    InitCloud {
        cloud: CloudInfo,
        founder: PeerRecord,
    },
    /// A peer records an invite it is about to hand out.
    CreateInvite(InviteRecord),
    /// The leader redeems an invite for a new peer whose certificate it
    /// just signed. Refused if the invite is unknown, used, expired or the
    /// secret does not match.
    RedeemInvite {
        invite_id: [u8; 16],
        secret_hash: [u8; 32],
        peer: PeerRecord,
        now: u64,
    },
    /// A peer reports the addresses it listens on after a (re)start.
    UpdatePeerAddrs { peer: PeerId, addrs: Vec<String> },
    /// An operator cuts a peer off for good.
    RevokePeer { peer: PeerId, at: u64 },
    /// A peer stores the hash of its local admin token, or an operator
    /// creates a token for a user.
    CreateToken(TokenRecord),
    /// An operator revokes an API token.
    RevokeToken { hash: [u8; 32] },
    /// An operator sets (or with `None` removes) a cloud setting.
    SetConfig { key: String, value: Option<String> },
    /// Any command, applied at most once per `id`: a writer that retries
    /// after a lost answer (leader died after committing) gets the first
    /// outcome back instead of applying the command twice.
    Once { id: [u8; 16], command: Box<Command> },
}

/// Why a command was refused by the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("the cloud is already initialized")]
    AlreadyInitialized,
    #[error("no such invite; it may belong to another cloud")]
    InviteUnknown,
    #[error("an invite with this id already exists")]
    InviteExists,
    #[error("this invite was already used; ask for a new one with `coop invite`")]
    InviteUsed,
    #[error("this invite expired; ask for a new one with `coop invite`")]
    InviteExpired,
    #[error("the invite secret does not match; the token was altered")]
    InviteSecretMismatch,
    #[error("peer {0} is already a member of this cloud")]
    PeerExists(PeerId),
    #[error("no peer {0} in this cloud")]
    PeerUnknown(PeerId),
    #[error("peer {0} is revoked")]
    PeerRevoked(PeerId),
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    #[error("no such API token")]
    TokenUnknown,
}
