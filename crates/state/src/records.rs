//! The typed tables of the control plane and the commands that change them.

use serde::{Deserialize, Serialize};

use coop_identity::{Certificate, CloudId};
use coop_types::{PeerId, human_bytes};

use crate::compute::{ContainerEntry, DesiredState, TemplateEntry};
use crate::environments::{EnvEvent, EnvironmentRecord};
use crate::objects::{
    BlockId, BucketRecord, Completion, Grant, NewStripe, ObjectRecord, PartRecord, S3KeyRecord,
    ShardLocation, UploadRecord,
};

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

/// Why [`find_peer`] found no single peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerLookup {
    #[error("no peer named `{0}` or with an id starting with it; see `coop peers`")]
    NotFound(String),
    #[error("{count} peers are named `{needle}`; give the peer id instead")]
    SameName { needle: String, count: usize },
    #[error("{count} peers have ids starting with `{needle}`; give more characters")]
    SamePrefix { needle: String, count: usize },
}

/// The peer of `records` that `needle` names: its full id, its name, or a
/// unique prefix of its id (at least 4 characters), in that order.
pub fn find_peer<'a>(
    records: &'a [PeerRecord],
    needle: &str,
) -> Result<&'a PeerRecord, PeerLookup> {
    if let Ok(id) = needle.parse::<PeerId>() {
        return records
            .iter()
            .find(|r| r.id() == id)
            .ok_or_else(|| PeerLookup::NotFound(needle.to_string()));
    }
    let by_name: Vec<&PeerRecord> = records
        .iter()
        .filter(|r| r.cert.body.name == needle)
        .collect();
    match by_name.len() {
        1 => return Ok(by_name[0]),
        0 => {}
        count => {
            return Err(PeerLookup::SameName {
                needle: needle.to_string(),
                count,
            });
        }
    }
    let lower = needle.to_ascii_lowercase();
    let by_prefix: Vec<&PeerRecord> = if lower.len() >= 4 {
        records
            .iter()
            .filter(|r| r.id().to_string().starts_with(&lower))
            .collect()
    } else {
        Vec::new()
    };
    match by_prefix.len() {
        1 => Ok(by_prefix[0]),
        0 => Err(PeerLookup::NotFound(needle.to_string())),
        count => Err(PeerLookup::SamePrefix {
            needle: needle.to_string(),
            count,
        }),
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
    /// An operator creates an S3 access key.
    CreateS3Key(S3KeyRecord),
    /// An operator deletes an S3 access key; its grants go with it.
    DeleteS3Key { id: String },
    /// An operator, or a key allowed to, creates a bucket. Its grants name
    /// the owner.
    CreateBucket(BucketRecord),
    /// An owner deletes an empty bucket; uploads in progress are aborted.
    DeleteBucket { name: String, now: u64 },
    /// An owner or operator gives a key rights on a bucket (`None` takes
    /// them away).
    SetGrant {
        bucket: String,
        key: String,
        grant: Option<Grant>,
    },
    /// A writer whose shards are durable makes `key` point at a new object,
    /// replacing any previous one. Blocks listed in `stripes` are new; any
    /// other block of the object must be a live stripe (a copy shares it).
    PutObject {
        bucket: String,
        key: String,
        object: ObjectRecord,
        stripes: Vec<NewStripe>,
        now: u64,
    },
    /// A client deletes objects; missing keys are not an error (as in S3).
    DeleteObjects {
        bucket: String,
        keys: Vec<String>,
        now: u64,
    },
    /// A client starts a multipart upload.
    CreateUpload(UploadRecord),
    /// A writer whose shards are durable records one part, replacing an
    /// earlier upload of the same part number. Blocks follow the same rule
    /// as in `PutObject`.
    PutPart {
        upload: String,
        part: PartRecord,
        stripes: Vec<NewStripe>,
        now: u64,
    },
    /// A client completes an upload: the named parts become the object and
    /// every other part is dropped.
    CompleteUpload {
        upload: String,
        completion: Completion,
        now: u64,
    },
    /// A client abandons an upload and its parts.
    AbortUpload { upload: String, now: u64 },
    /// The leader forgets stripes that have been dead longer than
    /// `dead_before` (Unix seconds); their shards are gone by then.
    ForgetStripes {
        blocks: Vec<BlockId>,
        dead_before: u64,
    },
    /// The repairer rewrote shards of a block on other disks (their old
    /// holders are gone); each keeps its index and checksum.
    MoveShards {
        block: BlockId,
        moves: Vec<(u32, ShardLocation)>,
    },
    /// The agent that imported a template records it. Refused if that
    /// name and version already exist (remove it first).
    /// Its blocks follow the rule of `PutObject`: those in `stripes` are new.
    PutTemplate {
        entry: TemplateEntry,
        stripes: Vec<NewStripe>,
    },
    /// An operator removes a template version. Refused while a container
    /// was created from it. Its blocks lose a reference at `now`.
    DeleteTemplate {
        name: String,
        version: String,
        now: u64,
    },
    /// The agent that will run a new container records it before starting
    /// it. Refused if the name is taken or its template is unknown.
    PutContainer(ContainerEntry),
    /// An operator starts or stops a container; its peer's reconcile loop
    /// and API act on it.
    SetContainerDesired { name: String, desired: DesiredState },
    /// The agent running a container forgets it once the runtime deleted it.
    DeleteContainer { name: String },
    /// An operator creates an environment (`expected_generation` 0) or
    /// updates it (the generation it read): refused if another update came
    /// first. The stored generation becomes `expected_generation + 1`.
    PutEnvironment {
        record: EnvironmentRecord,
        expected_generation: u64,
    },
    /// An operator removes an environment once none of its replicas is left.
    DeleteEnvironment { name: String },
    /// The compute service notes something that happened to an environment.
    RecordEnvEvent { env: String, event: EnvEvent },
    /// An operator (or an environment) creates a private network: with
    /// `subnet`, that one; without, the first free /24 of the pool. Neither
    /// may overlap another network or one of `avoid` (what the creating
    /// peer's own bridge and routes use).
    CreateNetwork {
        name: String,
        subnet: Option<coop_types::Ipv4Subnet>,
        avoid: Vec<coop_types::Ipv4Subnet>,
        env: Option<String>,
        now: u64,
    },
    /// An operator removes a network no container is on.
    DeleteNetwork { name: String },
    /// Any command, applied at most once per `id`: a writer that retries
    /// after a lost answer (leader died after committing) gets the first
    /// outcome back instead of applying the command twice.
    Once { id: [u8; 16], command: Box<Command> },
    /// An operator creates a backup. Refused if the name is taken.
    CreateBackup(crate::backups::BackupRecord),
    /// An operator removes a backup (its repository stays where it is).
    DeleteBackup { name: String },
    /// The peer that ran a backup records how it went.
    RecordBackupRun {
        name: String,
        run: crate::backups::BackupRun,
    },
    /// An operator invites another cloud to keep its backups here.
    CreateFriend(crate::friends::FriendRecord),
    /// A peer of the invited cloud redeems the invite (its certificate,
    /// checked by the peer that writes this, proves `cloud`).
    RedeemFriend {
        name: String,
        secret_hash: [u8; 32],
        cloud: CloudId,
        now: u64,
    },
    /// An operator stops keeping a friend's backups (the bucket stays).
    DeleteFriend { name: String },
    /// An operator adds a friend that keeps this cloud's backups.
    AddFriendLink(crate::friends::FriendLink),
    /// An operator forgets such a friend.
    DeleteFriendLink { name: String },
    /// An operator sets a bucket's quota in bytes (`None`: unlimited).
    /// Lowering it below what the bucket holds refuses new writes only;
    /// nothing stored is removed.
    SetBucketQuota { bucket: String, quota: Option<u64> },
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
    #[error("an S3 key with id {0} already exists")]
    S3KeyExists(String),
    #[error("no S3 key with id {0}")]
    S3KeyUnknown(String),
    #[error("bucket {0} already exists")]
    BucketExists(String),
    #[error("no bucket named {0}")]
    BucketUnknown(String),
    #[error("bucket {0} is not empty; delete its objects first")]
    BucketNotEmpty(String),
    #[error("no multipart upload with id {0}; it may have been completed or aborted")]
    UploadUnknown(String),
    #[error("part {part} was not uploaded, or its ETag does not match")]
    InvalidPart { part: u32 },
    #[error("parts must be listed in ascending order without repeats")]
    InvalidPartOrder,
    #[error("part {part} is {size} bytes; every part but the last must be at least 5 MiB")]
    PartTooSmall { part: u32, size: u64 },
    #[error("a block the object refers to no longer exists; retry the request")]
    StripeGone,
    #[error("template {0} already exists; remove it first or import under another version")]
    TemplateExists(String),
    #[error("no template {0}; list templates with `coop template ls`")]
    TemplateUnknown(String),
    #[error("template {template} is used by container `{container}`; remove the container first")]
    TemplateInUse { template: String, container: String },
    #[error("a container named `{0}` already exists; pick another name or remove it first")]
    ContainerExists(String),
    #[error("no container named `{0}`; list containers with `coop container ls --all`")]
    ContainerUnknown(String),
    #[error("no environment named `{0}`; list environments with `coop env ls`")]
    EnvironmentUnknown(String),
    #[error(
        "environment `{env}` changed meanwhile (generation {found}, not {expected}); read it again and retry"
    )]
    EnvironmentChanged {
        env: String,
        expected: u64,
        found: u64,
    },
    #[error("environment `{env}` still has replica `{container}`; take it down first")]
    EnvironmentInUse { env: String, container: String },
    #[error("a network named `{0}` already exists; list networks with `coop network ls`")]
    NetworkExists(String),
    #[error("no network named `{0}`; list networks with `coop network ls`")]
    NetworkUnknown(String),
    #[error("subnet {subnet} overlaps {with}; give another --subnet or leave it out")]
    NetworkOverlap { subnet: String, with: String },
    #[error("every /24 of the network pool {0} is taken; give a --subnet outside it")]
    NetworkPoolExhausted(String),
    #[error("network `{network}` is used by container `{container}`; remove the container first")]
    NetworkInUse { network: String, container: String },
    #[error("network `{0}` has no free address left")]
    NetworkFull(String),
    #[error(
        "{address} is not a container address of network `{network}` ({subnet}; .1 is its gateway)"
    )]
    AddressOutside {
        address: String,
        network: String,
        subnet: String,
    },
    #[error("{address} on network `{network}` is held by container `{container}`")]
    AddressTaken {
        address: String,
        network: String,
        container: String,
    },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("a backup named `{0}` already exists; list backups with `coop backup ls`")]
    BackupExists(String),
    #[error("no backup named `{0}`; list backups with `coop backup ls`")]
    BackupUnknown(String),
    #[error("a friend named `{0}` already exists; list friends with `coop friend ls`")]
    FriendExists(String),
    #[error("no friend named `{0}`; list friends with `coop friend ls`")]
    FriendUnknown(String),
    /// `usage` is what counts against the quota: the bucket's objects, and
    /// for a part also the parts its upload already holds.
    #[error(
        "bucket `{bucket}` is over its quota: {} used of {}, this write needs {} more; delete objects or raise the quota with `coop bucket set {bucket} --quota SIZE`",
        human_bytes(*.usage),
        human_bytes(*.quota),
        human_bytes(*.needed)
    )]
    QuotaExceeded {
        bucket: String,
        quota: u64,
        usage: u64,
        needed: u64,
    },
}
