//! Backups of a cloud's data into restic repositories.
//!
//! A repository is written with `rustic_core` (restic's format: data
//! encrypted and authenticated with the repository's key, deduplicated by
//! content-defined chunks, compressed), so `restic` itself can list and
//! restore it with the repository's password: nobody is locked into coop
//! to get their data back.
//!
//! - [`s3`]: a small SigV4 client for S3 targets (another coop cloud,
//!   Garage, MinIO, AWS);
//! - [`backend`]: the repository on such a target, as rustic reads and
//!   writes it;
//! - [`bucket`]: a bucket as a backup source and a restore target;
//! - [`friend`]: `coop/friend/1`, a friend cloud keeping the repository;
//! - [`repo`]: the operations on one repository;
//! - [`remote`]: `coop/backup/1`, work forwarded to the peer holding a path;
//! - [`seal`]: the secrets of a backup, sealed with the cloud key;
//! - [`service`]: [`Backups`], what the API and the scheduler drive.

pub mod backend;
pub mod bucket;
pub mod friend;
pub mod remote;
pub mod repo;
pub mod s3;
pub mod seal;
pub mod service;

pub use repo::{Meter, MeterReading};
pub use seal::{SealError, SealKey};
pub use service::{
    BackupView, Backups, FriendInvite, FriendView, Keep, NewBackup, RestoreSummary, RunSummary,
    Sealer, SnapshotView,
};

/// Why a backup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Invalid(String),
    #[error("no backup named `{0}`; list backups with `coop backup ls`")]
    Unknown(String),
    #[error("no bucket named `{0}`")]
    NoBucket(String),
    #[error("no friend named `{0}`; list friends with `coop friend ls`")]
    NoFriend(String),
    #[error("backup `{0}` is running on this peer already; wait for it to finish")]
    Busy(String),
    #[error("the target: {0}")]
    Target(#[from] s3::S3Error),
    #[error("{0} holds no restic repository")]
    NoRepository(String),
    #[error(
        "{0} already holds a restic repository that is not this backup's; give an empty bucket or another prefix"
    )]
    Occupied(String),
    #[error("{context}: {message}")]
    Repository { context: String, message: String },
    #[error(
        "{objects} object(s) could not be read while backing up (snapshot {snapshot} lacks them); the storage may be repairing: try again later"
    )]
    Unreadable { objects: u64, snapshot: String },
    #[error("the backup's secrets: {0}")]
    Secrets(String),
    #[error("the control plane: {0}")]
    Store(String),
    #[error("{0}")]
    Remote(String),
}

impl BackupError {
    /// A short machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::Invalid(_) => "invalid",
            BackupError::Unknown(_) | BackupError::NoBucket(_) | BackupError::NoFriend(_) => {
                "not_found"
            }
            BackupError::Busy(_) => "busy",
            BackupError::Target(_) => "target",
            BackupError::NoRepository(_) | BackupError::Occupied(_) => "repository",
            BackupError::Repository { .. } => "repository",
            BackupError::Unreadable { .. } => "unreadable",
            BackupError::Secrets(_) => "secrets",
            BackupError::Store(_) => "unavailable",
            BackupError::Remote(_) => "remote",
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
