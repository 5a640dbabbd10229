//! The replicated control plane: openraft over the mesh, persisted in redb.
//!
//! Stewards hold voting replicas; every other peer keeps a read replica
//! (a Raft learner). Writes are typed [`Command`]s applied to typed tables
//! (cloud, peers, invites, tokens, config, S3 metadata, templates,
//! containers and environments); reads are local. This crate owns
//! the storage, the apply logic and the choice of stewards; it does not know
//! about HTTP or the CLI.

mod backups;
mod compute;
mod control;
mod environments;
mod friends;
mod network;
mod networks;
mod objects;
mod records;
mod stewards;
mod store;

pub use backups::{
    BackupRecord, BackupRun, BackupSource, BackupTarget, KeepPolicy, RunOutcome, valid_backup_name,
};
pub use compute::{ContainerEntry, DesiredState, RestartPolicy, TemplateEntry};
pub use control::{ControlPlane, StartError, WriteError};
pub use environments::{
    EnvEvent, EnvPhase, EnvVersion, EnvironmentRecord, MAX_ENV_EVENTS, ReplicaOf, ServiceEntry,
    valid_env_name,
};
pub use friends::{FriendLink, FriendRecord, valid_friend_name};
pub use network::{RAFT_ALPN, RaftAnswer, RaftMessage, RaftProtocol};
pub use networks::{Attachment, NETWORK_POOL, NetworkRecord, POOL_PREFIX, valid_network_name};
pub use objects::{
    BlockId, BlockRef, BucketRecord, Completion, Grant, MIN_PART_SIZE, NewStripe, ObjectRecord,
    PartRecord, S3KeyRecord, ShardLocation, StripeLayout, StripeRecord, UploadRecord, check_quota,
    valid_bucket_name,
};
pub use records::{
    CloudInfo, Command, CommandError, InviteRecord, PeerLookup, PeerNode, PeerRecord, TokenRecord,
    find_peer,
};
pub use stewards::{StewardCandidate, StewardPolicy, ZoneSpread, steward_target};
pub use store::{
    ChangedRow, Changes, ObjectPage, StateStore, StoreError, after_all_with, object_row,
};

use std::io::Cursor;

use coop_types::PeerId;

openraft::declare_raft_types!(
    /// The openraft type configuration of the coop control plane.
    pub TypeConfig:
        D = Command,
        R = Result<(), CommandError>,
        NodeId = PeerId,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle for this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
