//! The replicated records of backups: what is backed up, where to, how
//! often and how long snapshots are kept, and how the last run went.
//!
//! The secrets of a backup (its repository password, the secret key of an
//! S3 target) are stored sealed: encrypted with a key derived from the
//! cloud key, which only stewards hold. Every peer replicates the record;
//! only a steward can open the secrets, and a peer that runs a backup asks
//! one for them over the mesh.

use serde::{Deserialize, Serialize};

use coop_types::PeerId;

/// What a backup reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupSource {
    /// Every object of a bucket, with its metadata.
    Bucket { bucket: String },
    /// A directory on one peer's filesystem.
    Path { peer: PeerId, path: String },
}

/// Where a backup's repository lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupTarget {
    /// A bucket (and prefix) at any S3 endpoint, as `s3://HOST[:PORT]/BUCKET[/PREFIX]`
    /// or an `http(s)://` URL.
    S3 {
        url: String,
        access_key: String,
        /// The secret key, sealed.
        secret_sealed: Vec<u8>,
    },
    /// A friend cloud (a `FriendLink` of that name) keeps it.
    Friend { name: String },
}

/// How many snapshots of each period a backup keeps after a run (0: none
/// kept for that period). All zero keeps every snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl KeepPolicy {
    /// Whether the policy keeps everything (no forgetting).
    pub fn keeps_all(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// A snapshot was saved.
    Saved {
        /// The snapshot's id (hex).
        snapshot: String,
        /// Files in the snapshot, and those read because they were new or
        /// changed.
        files: u64,
        files_read: u64,
        /// Source bytes in the snapshot.
        bytes: u64,
        /// Bytes the repository grew by (compressed, encrypted).
        bytes_added: u64,
        /// Snapshots forgotten by the keep policy after the run.
        forgotten: u64,
    },
    /// The run failed; the repository keeps what earlier runs saved.
    Failed { error: String },
}

/// One run of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRun {
    /// The peer that ran it.
    pub peer: PeerId,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub finished_ms: u64,
    pub outcome: RunOutcome,
}

/// A backup: row `backup/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Unique in the cloud: 1-63 characters of a-z, 0-9 and `-`, starting
    /// with a letter.
    pub name: String,
    pub source: BackupSource,
    pub target: BackupTarget,
    /// The repository password, sealed.
    pub password_sealed: Vec<u8>,
    /// Seconds between scheduled runs; `None` runs only when asked.
    pub every_secs: Option<u64>,
    pub keep: KeepPolicy,
    /// Unix seconds.
    pub created_at: u64,
    /// The last run, whatever its outcome.
    pub last_run: Option<BackupRun>,
    /// When the last run that saved a snapshot finished (Unix milliseconds).
    pub last_success_ms: Option<u64>,
}

/// Whether `name` may name a backup.
pub fn valid_backup_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lowercase_words() {
        assert!(valid_backup_name("photos-daily"));
        assert!(!valid_backup_name(""));
        assert!(!valid_backup_name("1photos"));
        assert!(!valid_backup_name("Photos"));
        assert!(!valid_backup_name("a/b"));
        assert!(!valid_backup_name(&"a".repeat(64)));
    }
}
