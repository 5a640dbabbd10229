//! [`Backups`]: the backups of a cloud as the API and the scheduler drive
//! them: create (the repository is made at once, so a wrong target or key
//! shows then), run, list snapshots, restore, check, remove, export the
//! key; and the scheduler that runs each backup when it is due.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rustic_core::repofile::SnapshotFile;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use utoipa::ToSchema;

use coop_mesh::Mesh;
use coop_state::{
    BackupRecord, BackupRun, BackupSource, BackupTarget, BucketRecord, Command, CommandError,
    ControlPlane, FriendLink, KeepPolicy, RunOutcome, WriteError, valid_backup_name,
};
use coop_store::Stripes;
use coop_types::{EventLog, EventView, PeerId};

use crate::backend::RepoFiles;
use crate::bucket::BucketSource;
use crate::friend::{
    FriendClient, FriendOp, FriendReply, FriendService, FriendToken, call_friend, peers_of,
};
use crate::remote::{BackupProtocol, RemoteReply, RemoteRequest};
use crate::repo::{Meter, Repo, RepoAccess, RepoTarget};
use crate::s3::{S3Client, S3Location};
use crate::{BackupError, unix_now_ms};

/// The shortest period between scheduled runs.
pub const MIN_EVERY_SECS: u64 = 60;
/// How often the scheduler looks for backups that are due.
const SCHEDULER_TICK: Duration = Duration::from_secs(15);

/// Seals and opens backup secrets with the cloud key: directly on a
/// steward, through a steward on other peers.
pub trait Sealer: Send + Sync + 'static {
    fn seal(&self, label: String, secret: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>>;
    fn open(&self, label: String, sealed: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>>;
}

/// How many snapshots of each period a backup keeps after a run (0: none
/// for that period; all 0: every snapshot is kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Keep {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl From<Keep> for KeepPolicy {
    fn from(k: Keep) -> Self {
        KeepPolicy {
            last: k.last,
            hourly: k.hourly,
            daily: k.daily,
            weekly: k.weekly,
            monthly: k.monthly,
            yearly: k.yearly,
        }
    }
}

impl From<KeepPolicy> for Keep {
    fn from(k: KeepPolicy) -> Self {
        Keep {
            last: k.last,
            hourly: k.hourly,
            daily: k.daily,
            weekly: k.weekly,
            monthly: k.monthly,
            yearly: k.yearly,
        }
    }
}

/// A backup to create.
#[derive(Clone, Debug)]
pub struct NewBackup {
    pub name: String,
    /// What to back up: `bucket:NAME` or `path:PEER:/DIR`.
    pub source: String,
    /// `s3://HOST[:PORT]/BUCKET[/PREFIX]`, an `http(s)://` URL, or
    /// `friend:NAME`.
    pub target: String,
    /// For an S3 target.
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub every_secs: Option<u64>,
    pub keep: Keep,
}

/// How one run went, for people and scripts.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RunSummary {
    /// The peer that ran it.
    pub peer: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub finished_ms: u64,
    pub ok: bool,
    /// The snapshot saved (hex id), when the run saved one.
    pub snapshot: Option<String>,
    /// Files in the snapshot, and how many were read (new or changed).
    pub files: u64,
    pub files_read: u64,
    /// Source bytes in the snapshot.
    pub bytes: u64,
    /// What the repository grew by (compressed, encrypted).
    pub bytes_added: u64,
    /// Snapshots the keep policy forgot after the run.
    pub forgotten: u64,
    /// Why the run failed.
    pub error: Option<String>,
}

/// A backup, for people and scripts. Secrets never appear.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupView {
    pub name: String,
    /// `bucket:NAME` or `path:PEER:/DIR`.
    pub source: String,
    /// Where the repository lives (no credentials).
    pub target: String,
    /// The access key used for the target.
    pub access_key: Option<String>,
    /// Seconds between scheduled runs; none: runs only when asked.
    pub every_secs: Option<u64>,
    pub keep: Keep,
    /// Unix seconds.
    pub created_at: u64,
    pub last_run: Option<RunSummary>,
    /// Unix milliseconds.
    pub last_success_ms: Option<u64>,
    /// When the next scheduled run is due (Unix milliseconds).
    pub next_run_ms: Option<u64>,
}

/// One snapshot of a repository.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SnapshotView {
    /// The full id (hex).
    pub id: String,
    /// The first 8 hex digits, as restic shows them.
    pub short_id: String,
    /// RFC 3339.
    pub time: String,
    pub host: String,
    pub paths: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub bytes_added: u64,
}

/// What a restore wrote.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RestoreSummary {
    pub snapshot: String,
    /// Where it went: `bucket:NAME` or `path:PEER:/DIR`.
    pub to: String,
    /// Objects or files written.
    pub files: u64,
    pub bytes: u64,
}

/// A place data comes from or goes to.
enum Place {
    Bucket(String),
    Path { peer: PeerId, path: String },
}

/// A friend invite, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FriendInvite {
    pub name: String,
    /// The bucket set aside for the friend's backups.
    pub bucket: String,
    pub quota: Option<u64>,
    /// Unix seconds.
    pub expires_at: u64,
    /// Single use; `coop friend add NAME TOKEN` on the friend's cloud.
    pub token: String,
}

/// A friend link, either way.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FriendView {
    pub name: String,
    /// `keeps-ours`: a friend that keeps this cloud's backups;
    /// `ours-kept`: a cloud whose backups this one keeps.
    pub role: String,
    /// `invited` (not redeemed yet), `expired`, `linked`, `reachable`,
    /// `unreachable`.
    pub state: String,
    /// The bucket that holds the backups (on the keeping side).
    pub bucket: String,
    pub used_bytes: Option<u64>,
    pub quota_bytes: Option<u64>,
    /// When this peer last heard from the friend (Unix milliseconds).
    pub last_contact_ms: Option<u64>,
}

/// How long `friend ls` waits for a friend's answer.
const FRIEND_ASK: Duration = Duration::from_secs(10);

/// The backups of a cloud, as one peer serves them.
#[derive(Clone)]
pub struct Backups(Arc<Inner>);

struct Inner {
    me: PeerId,
    control: ControlPlane,
    mesh: Mesh,
    stripes: Stripes,
    sealer: Arc<dyn Sealer>,
    runtime: Handle,
    events: Arc<EventLog>,
    /// What runs on this peer now, by backup name.
    running: Mutex<HashMap<String, Arc<Meter>>>,
    /// When this peer last heard from each friend, by name.
    contacts: Arc<Mutex<HashMap<String, u64>>>,
}

/// Marks a backup running on this peer until dropped.
struct Claim {
    inner: Arc<Inner>,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut running) = self.inner.running.lock() {
            running.remove(&self.name);
        }
    }
}

fn store_err(err: impl std::fmt::Display) -> BackupError {
    BackupError::Store(err.to_string())
}

fn write_err(err: WriteError) -> BackupError {
    match err {
        WriteError::Rejected(CommandError::BackupExists(name)) => {
            BackupError::Invalid(format!("a backup named `{name}` already exists"))
        }
        WriteError::Rejected(CommandError::BackupUnknown(name)) => BackupError::Unknown(name),
        WriteError::Rejected(CommandError::InvalidRecord(why)) => BackupError::Invalid(why),
        other => BackupError::Store(other.to_string()),
    }
}

/// A fresh repository password: 256 random bits in base32 (52 letters and
/// digits, easy to copy onto paper).
fn new_password() -> String {
    let bytes: [u8; 32] = rand::random();
    data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase()
}

fn password_label(name: &str) -> String {
    format!("{name}/password")
}

fn secret_label(name: &str) -> String {
    format!("{name}/s3-secret")
}

/// What joins a backup's snapshots into one line of parents.
fn snapshot_host(name: &str) -> String {
    format!("coop-{name}")
}

impl Backups {
    pub fn new(
        me: PeerId,
        control: ControlPlane,
        mesh: Mesh,
        stripes: Stripes,
        sealer: Arc<dyn Sealer>,
        runtime: Handle,
        events: Arc<EventLog>,
    ) -> Self {
        Backups(Arc::new(Inner {
            me,
            control,
            mesh,
            stripes,
            sealer,
            runtime,
            events,
            running: Mutex::default(),
            contacts: Arc::default(),
        }))
    }

    /// Backup `name` as the control plane holds it after every write
    /// committed so far (a backup created through another peer a moment
    /// ago is there).
    async fn record(&self, name: &str) -> Result<BackupRecord, BackupError> {
        self.0.control.read_barrier().await.map_err(store_err)?;
        self.0
            .control
            .store()
            .backup(name)
            .map_err(store_err)?
            .ok_or_else(|| BackupError::Unknown(name.to_owned()))
    }

    fn peer_name(&self, id: &PeerId) -> String {
        self.0
            .control
            .store()
            .peer(id)
            .ok()
            .flatten()
            .map_or_else(|| id.to_string(), |p| p.cert.body.name)
    }

    /// A record as people see it.
    pub fn view(&self, record: &BackupRecord) -> BackupView {
        let (target, access_key) = match &record.target {
            BackupTarget::S3 {
                url, access_key, ..
            } => (url.clone(), Some(access_key.clone())),
            BackupTarget::Friend { name } => (format!("friend:{name}"), None),
        };
        let source = match &record.source {
            BackupSource::Bucket { bucket } => format!("bucket:{bucket}"),
            BackupSource::Path { peer, path } => format!("path:{}:{path}", self.peer_name(peer)),
        };
        BackupView {
            name: record.name.clone(),
            source,
            target,
            access_key,
            every_secs: record.every_secs,
            keep: record.keep.into(),
            created_at: record.created_at,
            last_run: record.last_run.as_ref().map(|run| self.summary(run)),
            last_success_ms: record.last_success_ms,
            next_run_ms: next_run_ms(record),
        }
    }

    fn summary(&self, run: &BackupRun) -> RunSummary {
        let mut summary = RunSummary {
            peer: self.peer_name(&run.peer),
            started_ms: run.started_ms,
            finished_ms: run.finished_ms,
            ok: false,
            snapshot: None,
            files: 0,
            files_read: 0,
            bytes: 0,
            bytes_added: 0,
            forgotten: 0,
            error: None,
        };
        match &run.outcome {
            RunOutcome::Saved {
                snapshot,
                files,
                files_read,
                bytes,
                bytes_added,
                forgotten,
            } => {
                summary.ok = true;
                summary.snapshot = Some(snapshot.clone());
                summary.files = *files;
                summary.files_read = *files_read;
                summary.bytes = *bytes;
                summary.bytes_added = *bytes_added;
                summary.forgotten = *forgotten;
            }
            RunOutcome::Failed { error } => summary.error = Some(error.clone()),
        }
        summary
    }

    /// Every backup, by name.
    pub async fn list(&self) -> Result<Vec<BackupView>, BackupError> {
        self.0.control.read_barrier().await.map_err(store_err)?;
        Ok(self
            .0
            .control
            .store()
            .backups()
            .map_err(store_err)?
            .iter()
            .map(|r| self.view(r))
            .collect())
    }

    /// One backup.
    pub async fn get(&self, name: &str) -> Result<BackupView, BackupError> {
        Ok(self.view(&self.record(name).await?))
    }

    /// What runs on this peer now for backup `name`.
    pub fn progress(&self, name: &str) -> Option<Arc<Meter>> {
        self.0.running.lock().ok()?.get(name).cloned()
    }

    fn claim(&self, name: &str, meter: Arc<Meter>) -> Result<Claim, BackupError> {
        let mut running = self
            .0
            .running
            .lock()
            .map_err(|_| BackupError::Store("the run table is poisoned".into()))?;
        if running.contains_key(name) {
            return Err(BackupError::Busy(name.to_owned()));
        }
        running.insert(name.to_owned(), meter);
        Ok(Claim {
            inner: self.0.clone(),
            name: name.to_owned(),
        })
    }

    /// Creates a backup: checks the source, creates the repository at the
    /// target with a new password, and records both sealed.
    pub async fn create(&self, new: NewBackup) -> Result<BackupView, BackupError> {
        if !valid_backup_name(&new.name) {
            return Err(BackupError::Invalid(format!(
                "backup name `{}`: use 1-63 characters of a-z, 0-9 and `-`, starting with a letter",
                new.name
            )));
        }
        self.0.control.read_barrier().await.map_err(store_err)?;
        let store = self.0.control.store();
        if store.backup(&new.name).map_err(store_err)?.is_some() {
            return Err(BackupError::Invalid(format!(
                "a backup named `{}` already exists",
                new.name
            )));
        }
        let source = match self.place(&new.source, "--source")? {
            Place::Bucket(bucket) => {
                if store.bucket(&bucket).map_err(store_err)?.is_none() {
                    return Err(BackupError::NoBucket(bucket));
                }
                BackupSource::Bucket { bucket }
            }
            Place::Path { peer, path } => BackupSource::Path { peer, path },
        };
        if let Some(every) = new.every_secs
            && every < MIN_EVERY_SECS
        {
            return Err(BackupError::Invalid(format!(
                "--every {every}s is too often; give {MIN_EVERY_SECS}s or more"
            )));
        }
        let password = new_password();
        let (target, secret) = match new.target.strip_prefix("friend:") {
            Some(friend) => {
                let link = store
                    .friend_link(friend)
                    .map_err(store_err)?
                    .ok_or_else(|| {
                        BackupError::Invalid(format!(
                            "no friend named `{friend}`; add one with `coop friend add`"
                        ))
                    })?;
                let client = FriendClient::new(self.0.mesh.clone(), link);
                // The friend answers and admits this cloud.
                client.check().await?;
                (RepoTarget::Friend(client), None)
            }
            None => {
                let (Some(access_key), Some(secret_key)) = (&new.access_key, &new.secret_key)
                else {
                    return Err(BackupError::Invalid(
                        "an S3 target needs --access-key and --secret-key".into(),
                    ));
                };
                let location = S3Location::parse(&new.target, access_key, secret_key)?;
                // Reachable, and the key works: a clear error now rather
                // than at the first scheduled run.
                S3Client::new(location.clone())?.check_bucket().await?;
                (RepoTarget::S3(location), Some(secret_key.clone()))
            }
        };
        let access = RepoAccess {
            target: target.clone(),
            password: password.clone(),
        };
        let runtime = self.0.runtime.clone();
        tokio::task::spawn_blocking(move || {
            Repo::create(&access, runtime, Arc::default()).map(|_| ())
        })
        .await
        .map_err(|e| BackupError::Store(format!("the repository task failed: {e}")))??;
        let sealer = &self.0.sealer;
        let password_sealed = sealer
            .open_or_seal(true, password_label(&new.name), password.into_bytes())
            .await?;
        let target = match (target, secret) {
            (RepoTarget::S3(location), Some(secret)) => BackupTarget::S3 {
                url: location.url(),
                access_key: location.access_key.clone(),
                secret_sealed: sealer
                    .open_or_seal(true, secret_label(&new.name), secret.into_bytes())
                    .await?,
            },
            (_, _) => BackupTarget::Friend {
                name: new.target.trim_start_matches("friend:").to_owned(),
            },
        };
        let record = BackupRecord {
            name: new.name,
            source,
            target,
            password_sealed,
            every_secs: new.every_secs,
            keep: new.keep.into(),
            created_at: unix_now_ms() / 1000,
            last_run: None,
            last_success_ms: None,
        };
        self.0
            .control
            .write(Command::CreateBackup(record.clone()))
            .await
            .map_err(write_err)?;
        Ok(self.view(&record))
    }

    /// Removes backup `name`; its repository stays at the target.
    pub async fn remove(&self, name: &str) -> Result<(), BackupError> {
        self.record(name).await?;
        self.0
            .control
            .write(Command::DeleteBackup {
                name: name.to_owned(),
            })
            .await
            .map_err(write_err)
    }

    /// The repository password of backup `name`, for the drawer: with it,
    /// `restic` reads the repository.
    pub async fn export_key(&self, name: &str) -> Result<String, BackupError> {
        let record = self.record(name).await?;
        let password = self
            .0
            .sealer
            .open_or_seal(false, password_label(name), record.password_sealed)
            .await?;
        String::from_utf8(password)
            .map_err(|_| BackupError::Secrets("the password is not text".into()))
    }

    async fn access(&self, record: &BackupRecord) -> Result<RepoAccess, BackupError> {
        let sealer = &self.0.sealer;
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .map_err(|_| BackupError::Secrets("a secret is not text".into()))
        };
        let password = sealer
            .open_or_seal(
                false,
                password_label(&record.name),
                record.password_sealed.clone(),
            )
            .await?;
        let target = match &record.target {
            BackupTarget::S3 {
                url,
                access_key,
                secret_sealed,
            } => {
                let secret = sealer
                    .open_or_seal(false, secret_label(&record.name), secret_sealed.clone())
                    .await?;
                RepoTarget::S3(S3Location::parse(url, access_key, &text(secret)?)?)
            }
            BackupTarget::Friend { name } => {
                let link = self
                    .0
                    .control
                    .store()
                    .friend_link(name)
                    .map_err(store_err)?
                    .ok_or_else(|| {
                        BackupError::Invalid(format!(
                            "backup `{}` goes to friend `{name}`, who is no longer linked",
                            record.name
                        ))
                    })?;
                RepoTarget::Friend(FriendClient::new(self.0.mesh.clone(), link))
            }
        };
        Ok(RepoAccess {
            target,
            password: text(password)?,
        })
    }

    /// Runs backup `name` now on this peer and records how it went.
    pub async fn run(&self, name: &str, meter: Arc<Meter>) -> Result<RunSummary, BackupError> {
        let record = self.record(name).await?;
        let _claim = self.claim(name, meter.clone())?;
        if let BackupSource::Path { peer, .. } = &record.source
            && *peer != self.0.me
        {
            // The peer that holds the path runs it and records it.
            let request = RemoteRequest::Run {
                name: name.to_owned(),
            };
            return match self.ask(*peer, request).await? {
                RemoteReply::Ran(summary) => Ok(summary),
                other => Err(BackupError::Remote(format!("unexpected answer {other:?}"))),
            };
        }
        let started_ms = unix_now_ms();
        let result = self.run_once(&record, meter).await;
        let finished_ms = unix_now_ms();
        let outcome = match &result {
            Ok((snap, forgotten)) => {
                let summary = snap.summary.clone().unwrap_or_default();
                RunOutcome::Saved {
                    snapshot: snap.id.to_string(),
                    files: summary.total_files_processed,
                    files_read: summary.files_new + summary.files_changed,
                    bytes: summary.total_bytes_processed,
                    bytes_added: summary.data_added_packed,
                    forgotten: *forgotten,
                }
            }
            Err(err) => RunOutcome::Failed {
                error: err.to_string(),
            },
        };
        let run = BackupRun {
            peer: self.0.me,
            started_ms,
            finished_ms,
            outcome,
        };
        let summary = self.summary(&run);
        let event = if summary.ok {
            EventView::now(
                "backed-up",
                name,
                format!(
                    "backup {name} saved snapshot {} ({} files, {} read, {} bytes added) in {:.1} s",
                    summary
                        .snapshot
                        .as_deref()
                        .map_or("", |s| &s[..s.len().min(8)]),
                    summary.files,
                    summary.files_read,
                    summary.bytes_added,
                    (finished_ms - started_ms) as f64 / 1000.0
                ),
            )
        } else {
            EventView::now(
                "backup-failed",
                name,
                format!(
                    "backup {name} failed: {}",
                    summary.error.as_deref().unwrap_or("")
                ),
            )
        };
        self.0.events.note(event);
        if let Err(err) = self
            .0
            .control
            .write(Command::RecordBackupRun {
                name: name.to_owned(),
                run,
            })
            .await
        {
            tracing::warn!(backup = name, %err, "cannot record how the backup run went");
        }
        result.map(|_| summary)
    }

    async fn run_once(
        &self,
        record: &BackupRecord,
        meter: Arc<Meter>,
    ) -> Result<(SnapshotFile, u64), BackupError> {
        let access = self.access(record).await?;
        let store = self.0.control.store().clone();
        let stripes = self.0.stripes.clone();
        let runtime = self.0.runtime.clone();
        let host = snapshot_host(&record.name);
        let keep = record.keep;
        let source = record.source.clone();
        tokio::task::spawn_blocking(move || {
            let repo = Repo::open(&access, runtime.clone(), meter.clone())?;
            let snap = match source {
                BackupSource::Bucket { bucket } => {
                    let source = BucketSource::new(&bucket, store, stripes, runtime.clone())
                        .map_err(store_err)?;
                    repo.backup_bucket(&source, &host)?
                }
                BackupSource::Path { path, .. } => repo.backup_path(&path, &host)?,
            };
            let forgotten = Repo::open(&access, runtime, meter)?.forget(&keep)?;
            Ok((snap, forgotten))
        })
        .await
        .map_err(|e| BackupError::Store(format!("the backup task failed: {e}")))?
    }

    /// The snapshots of backup `name`'s repository, oldest first.
    pub async fn snapshots(&self, name: &str) -> Result<Vec<SnapshotView>, BackupError> {
        let record = self.record(name).await?;
        let access = self.access(&record).await?;
        let runtime = self.0.runtime.clone();
        let snaps = tokio::task::spawn_blocking(move || {
            Repo::open(&access, runtime, Arc::default())?.snapshots()
        })
        .await
        .map_err(|e| BackupError::Store(format!("the snapshot listing failed: {e}")))??;
        Ok(snaps.iter().map(snapshot_view).collect())
    }

    /// Checks backup `name`'s repository; with `read_data`, every pack.
    /// Answers the problems found (none: healthy).
    pub async fn check(
        &self,
        name: &str,
        read_data: bool,
        meter: Arc<Meter>,
    ) -> Result<Vec<String>, BackupError> {
        let record = self.record(name).await?;
        let access = self.access(&record).await?;
        let runtime = self.0.runtime.clone();
        tokio::task::spawn_blocking(move || Repo::open(&access, runtime, meter)?.check(read_data))
            .await
            .map_err(|e| BackupError::Store(format!("the check failed: {e}")))?
    }

    /// Restores snapshot `snapshot` (default: the latest) of backup `name`
    /// to `to`: `bucket:NAME` (created if missing; an existing bucket must
    /// be empty) or `path:PEER:/DIR` (on that peer).
    pub async fn restore(
        &self,
        name: &str,
        snapshot: Option<String>,
        to: &str,
        meter: Arc<Meter>,
    ) -> Result<RestoreSummary, BackupError> {
        let record = self.record(name).await?;
        match self.place(to, "--to")? {
            Place::Bucket(bucket) => {
                if !matches!(record.source, BackupSource::Bucket { .. }) {
                    return Err(BackupError::Invalid(format!(
                        "backup `{name}` is of a path; restore it to a path (path:PEER:/DIR)"
                    )));
                }
                self.restore_to_bucket(&record, snapshot, &bucket, meter)
                    .await
            }
            Place::Path { peer, path } if peer == self.0.me => {
                self.restore_here(name, snapshot, &path, meter).await
            }
            Place::Path { peer, path } => {
                let _claim = self.claim(name, meter)?;
                let request = RemoteRequest::RestoreToPath {
                    name: name.to_owned(),
                    snapshot,
                    dir: path,
                };
                match self.ask(peer, request).await? {
                    RemoteReply::Restored(summary) => Ok(summary),
                    other => Err(BackupError::Remote(format!("unexpected answer {other:?}"))),
                }
            }
        }
    }

    async fn restore_to_bucket(
        &self,
        record: &BackupRecord,
        snapshot: Option<String>,
        to: &str,
        meter: Arc<Meter>,
    ) -> Result<RestoreSummary, BackupError> {
        let store = self.0.control.store();
        match store.bucket(to).map_err(store_err)? {
            Some(_) => {
                let some = store.list_objects(to, "", None, 1).map_err(store_err)?;
                if !some.is_empty() {
                    return Err(BackupError::Invalid(format!(
                        "bucket `{to}` is not empty; restore into a new or empty bucket"
                    )));
                }
            }
            None => {
                let bucket = BucketRecord {
                    name: to.to_owned(),
                    created_at: unix_now_ms() / 1000,
                    policy: None,
                    zone_spread: false,
                    grants: Default::default(),
                    quota: None,
                };
                match self.0.control.write(Command::CreateBucket(bucket)).await {
                    Ok(()) | Err(WriteError::Rejected(CommandError::BucketExists(_))) => {}
                    Err(err) => return Err(store_err(err)),
                }
            }
        }
        let access = self.access(record).await?;
        let snapshot = snapshot.unwrap_or_else(|| "latest".to_owned());
        let control = self.0.control.clone();
        let stripes = self.0.stripes.clone();
        let runtime = self.0.runtime.clone();
        let bucket = to.to_owned();
        let _claim = self.claim(&record.name, meter.clone())?;
        tokio::task::spawn_blocking(move || {
            let repo = Repo::open(&access, runtime.clone(), meter.clone())?;
            let (id, files, bytes) =
                repo.restore_to_bucket(&snapshot, &bucket, &control, &stripes, &runtime, &meter)?;
            Ok(RestoreSummary {
                snapshot: id,
                to: format!("bucket:{bucket}"),
                files,
                bytes,
            })
        })
        .await
        .map_err(|e| BackupError::Store(format!("the restore failed: {e}")))?
    }

    /// Restores a snapshot of backup `name` into directory `dir` of this
    /// peer (created if missing).
    pub async fn restore_here(
        &self,
        name: &str,
        snapshot: Option<String>,
        dir: &str,
        meter: Arc<Meter>,
    ) -> Result<RestoreSummary, BackupError> {
        if !dir.starts_with('/') {
            return Err(BackupError::Invalid(format!(
                "`{dir}` is not an absolute path"
            )));
        }
        let record = self.record(name).await?;
        let access = self.access(&record).await?;
        let snapshot = snapshot.unwrap_or_else(|| "latest".to_owned());
        let runtime = self.0.runtime.clone();
        let to = format!("path:{}:{dir}", self.peer_name(&self.0.me));
        let dir = dir.to_owned();
        let _claim = self.claim(name, meter.clone())?;
        tokio::task::spawn_blocking(move || {
            let repo = Repo::open(&access, runtime, meter)?;
            let (id, files, bytes) = repo.restore_to_path(&snapshot, &dir)?;
            Ok(RestoreSummary {
                snapshot: id,
                to,
                files,
                bytes,
            })
        })
        .await
        .map_err(|e| BackupError::Store(format!("the restore failed: {e}")))?
    }

    /// Reads `bucket:NAME` or `path:PEER:/DIR` (PEER by name, id or id
    /// prefix).
    fn place(&self, spec: &str, what: &str) -> Result<Place, BackupError> {
        match spec.split_once(':') {
            Some(("bucket", bucket)) if coop_state::valid_bucket_name(bucket) => {
                Ok(Place::Bucket(bucket.to_owned()))
            }
            Some(("path", rest)) => {
                let (peer, path) = rest.split_once(':').ok_or_else(|| {
                    BackupError::Invalid(format!("{what} `{spec}`: give path:PEER:/DIR"))
                })?;
                if !path.starts_with('/') {
                    return Err(BackupError::Invalid(format!(
                        "{what} `{spec}`: the path must be absolute"
                    )));
                }
                let peers = self.0.control.store().peers().map_err(store_err)?;
                let record = coop_state::find_peer(&peers, peer)
                    .map_err(|e| BackupError::Invalid(format!("{what} `{spec}`: {e}")))?;
                let path = if path.len() > 1 {
                    path.trim_end_matches('/')
                } else {
                    path
                };
                Ok(Place::Path {
                    peer: record.id(),
                    path: path.to_owned(),
                })
            }
            _ => Err(BackupError::Invalid(format!(
                "{what} `{spec}`: give bucket:NAME or path:PEER:/DIR"
            ))),
        }
    }

    /// Asks `peer` to do backup work and waits for it.
    async fn ask(&self, peer: PeerId, request: RemoteRequest) -> Result<RemoteReply, BackupError> {
        let name = self.peer_name(&peer);
        match self.0.mesh.call::<BackupProtocol>(peer, &request).await {
            Ok(RemoteReply::Failed { message }) => {
                Err(BackupError::Remote(format!("peer {name}: {message}")))
            }
            Ok(reply) => Ok(reply),
            Err(err) => Err(BackupError::Remote(format!(
                "cannot reach peer {name}, which holds the path: {err}"
            ))),
        }
    }

    /// The service that keeps friends' backups here (`coop/friend/1`).
    pub fn friend_service(&self) -> FriendService {
        FriendService {
            control: self.0.control.clone(),
            stripes: self.0.stripes.clone(),
            mesh: self.0.mesh.clone(),
            contacts: self.0.contacts.clone(),
        }
    }

    /// Invites another cloud to keep its backups here: a bucket of its own
    /// (`friend-NAME`, with `quota`), and a single-use token.
    pub async fn invite_friend(
        &self,
        name: &str,
        quota: Option<u64>,
        ttl_secs: u64,
    ) -> Result<FriendInvite, BackupError> {
        if !coop_state::valid_friend_name(name) {
            return Err(BackupError::Invalid(format!(
                "friend name `{name}`: use 1-63 characters of a-z, 0-9 and `-`, starting with a letter"
            )));
        }
        self.0.control.read_barrier().await.map_err(store_err)?;
        let store = self.0.control.store();
        if store.friend(name).map_err(store_err)?.is_some() {
            return Err(BackupError::Invalid(format!(
                "a friend named `{name}` already exists"
            )));
        }
        let bucket = format!("friend-{name}");
        if !coop_state::valid_bucket_name(&bucket)
            || store.bucket(&bucket).map_err(store_err)?.is_some()
        {
            return Err(BackupError::Invalid(format!(
                "bucket `{bucket}` cannot be made for this friend (taken or too long); pick another name"
            )));
        }
        let now = unix_now_ms() / 1000;
        let record = BucketRecord {
            name: bucket.clone(),
            created_at: now,
            policy: None,
            zone_spread: false,
            grants: Default::default(),
            quota,
        };
        self.0
            .control
            .write(Command::CreateBucket(record))
            .await
            .map_err(write_err)?;
        let secret: [u8; 32] = rand::random();
        let expires_at = now + ttl_secs;
        self.0
            .control
            .write(Command::CreateFriend(coop_state::FriendRecord {
                name: name.to_owned(),
                bucket: bucket.clone(),
                secret_hash: *blake3::hash(&secret).as_bytes(),
                expires_at,
                created_at: now,
                cloud: None,
            }))
            .await
            .map_err(write_err)?;
        let token = FriendToken {
            cloud: self.0.mesh.admission().cloud(),
            name: name.to_owned(),
            secret,
            expires_at,
            peers: peers_of(&self.0.control, &self.0.mesh),
        };
        Ok(FriendInvite {
            name: name.to_owned(),
            bucket,
            quota,
            expires_at,
            token: token.encode(),
        })
    }

    /// Links the friend whose invite `token` is, under `name`: redeems the
    /// invite with this peer's certificate (proving this cloud) and keeps
    /// the link in the control plane.
    pub async fn add_friend(&self, name: &str, token: &str) -> Result<FriendView, BackupError> {
        if !coop_state::valid_friend_name(name) {
            return Err(BackupError::Invalid(format!(
                "friend name `{name}`: use 1-63 characters of a-z, 0-9 and `-`, starting with a letter"
            )));
        }
        let token = FriendToken::decode(token).map_err(BackupError::Invalid)?;
        if token.cloud == self.0.mesh.admission().cloud() {
            return Err(BackupError::Invalid(
                "that invite is from this cloud; a friend is another cloud".into(),
            ));
        }
        self.0.control.read_barrier().await.map_err(store_err)?;
        if self
            .0
            .control
            .store()
            .friend_link(name)
            .map_err(store_err)?
            .is_some()
        {
            return Err(BackupError::Invalid(format!(
                "a friend named `{name}` already exists"
            )));
        }
        let op = FriendOp::Redeem {
            name: token.name.clone(),
            secret: token.secret,
        };
        let place = format!("friend:{name}");
        let (bucket, peers) = match call_friend(&self.0.mesh, &token.peers, op, &place).await? {
            FriendReply::Redeemed { bucket, peers } => (bucket, peers),
            FriendReply::Refused { message, .. } => {
                return Err(BackupError::Invalid(format!(
                    "the friend refused: {message}"
                )));
            }
            other => {
                return Err(BackupError::Remote(format!("unexpected answer {other:?}")));
            }
        };
        let link = FriendLink {
            name: name.to_owned(),
            cloud: token.cloud,
            remote_name: token.name,
            bucket: bucket.clone(),
            peers,
            created_at: unix_now_ms() / 1000,
        };
        self.0
            .control
            .write(Command::AddFriendLink(link))
            .await
            .map_err(write_err)?;
        self.note_contact(name);
        Ok(FriendView {
            name: name.to_owned(),
            role: "keeps-ours".into(),
            state: "reachable".into(),
            bucket,
            used_bytes: Some(0),
            quota_bytes: None,
            last_contact_ms: Some(unix_now_ms()),
        })
    }

    fn note_contact(&self, name: &str) {
        if let Ok(mut contacts) = self.0.contacts.lock() {
            contacts.insert(name.to_owned(), unix_now_ms());
        }
    }

    fn last_contact(&self, name: &str) -> Option<u64> {
        self.0.contacts.lock().ok()?.get(name).copied()
    }

    /// Every friend link, both ways; friends that keep this cloud's
    /// backups are asked how much they hold.
    pub async fn friends(&self) -> Result<Vec<FriendView>, BackupError> {
        self.0.control.read_barrier().await.map_err(store_err)?;
        let store = self.0.control.store();
        let now = unix_now_ms() / 1000;
        let mut views = Vec::new();
        for link in store.friend_links().map_err(store_err)? {
            let client = FriendClient::new(self.0.mesh.clone(), link.clone());
            let asked = tokio::time::timeout(FRIEND_ASK, client.call(FriendOp::Usage)).await;
            let (state, used_bytes, quota_bytes) = match asked {
                Ok(Ok(FriendReply::Usage { bytes, quota, .. })) => {
                    self.note_contact(&link.name);
                    ("reachable", Some(bytes), quota)
                }
                Ok(Ok(FriendReply::Refused { .. })) => ("refused", None, None),
                _ => ("unreachable", None, None),
            };
            views.push(FriendView {
                name: link.name.clone(),
                role: "keeps-ours".into(),
                state: state.into(),
                bucket: link.bucket.clone(),
                used_bytes,
                quota_bytes,
                last_contact_ms: self.last_contact(&link.name),
            });
        }
        for friend in store.friends().map_err(store_err)? {
            let state = match friend.cloud {
                Some(_) => "linked",
                None if friend.expires_at < now => "expired",
                None => "invited",
            };
            let bucket = store.bucket(&friend.bucket).map_err(store_err)?;
            views.push(FriendView {
                name: friend.name.clone(),
                role: "ours-kept".into(),
                state: state.into(),
                bucket: friend.bucket.clone(),
                used_bytes: store.bucket_usage(&friend.bucket).ok(),
                quota_bytes: bucket.and_then(|b| b.quota),
                last_contact_ms: self.last_contact(&friend.name),
            });
        }
        Ok(views)
    }

    /// Cuts a friend off, whichever way the link goes (both, if a cloud is
    /// a friend both ways under one name). A friend keeping this cloud's
    /// backups keeps the bucket until its operator removes it; a bucket
    /// kept here for a friend stays too (`coop bucket rm` frees it).
    pub async fn remove_friend(&self, name: &str) -> Result<(), BackupError> {
        self.0.control.read_barrier().await.map_err(store_err)?;
        let store = self.0.control.store();
        let mut found = false;
        if store.friend(name).map_err(store_err)?.is_some() {
            self.0
                .control
                .write(Command::DeleteFriend {
                    name: name.to_owned(),
                })
                .await
                .map_err(write_err)?;
            found = true;
        }
        if store.friend_link(name).map_err(store_err)?.is_some() {
            self.0
                .control
                .write(Command::DeleteFriendLink {
                    name: name.to_owned(),
                })
                .await
                .map_err(write_err)?;
            found = true;
        }
        if !found {
            return Err(BackupError::NoFriend(name.to_owned()));
        }
        Ok(())
    }

    /// Runs every backup that is due, while this peer leads the control
    /// plane (one peer schedules; a new leader takes over). Never returns.
    pub async fn schedule(self) {
        let mut tick = tokio::time::interval(SCHEDULER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.0.control.is_leader() {
                continue;
            }
            let Ok(records) = self.0.control.store().backups() else {
                continue;
            };
            let now = unix_now_ms();
            for record in records {
                let due = next_run_ms(&record).is_some_and(|at| at <= now);
                if !due || self.progress(&record.name).is_some() {
                    continue;
                }
                let backups = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = backups.run(&record.name, Arc::default()).await {
                        tracing::warn!(backup = %record.name, %err, "a scheduled backup failed");
                    }
                });
            }
        }
    }
}

/// When a scheduled backup is next due: its period after the last run
/// (failed or not), or at once if it never ran.
fn next_run_ms(record: &BackupRecord) -> Option<u64> {
    let every = record.every_secs?;
    Some(match &record.last_run {
        Some(run) => run.finished_ms + every * 1000,
        None => record.created_at * 1000,
    })
}

fn snapshot_view(snap: &SnapshotFile) -> SnapshotView {
    let id = snap.id.to_string();
    let summary = snap.summary.clone().unwrap_or_default();
    SnapshotView {
        short_id: id.chars().take(8).collect(),
        id,
        time: snap.time.timestamp().to_string(),
        host: snap.hostname.clone(),
        paths: snap.paths.iter().map(|p| p.to_string()).collect(),
        files: summary.total_files_processed,
        bytes: summary.total_bytes_processed,
        bytes_added: summary.data_added_packed,
    }
}

/// Seals with `seal`, else opens, mapping errors to [`BackupError`].
trait SealerExt {
    async fn open_or_seal(
        &self,
        seal: bool,
        label: String,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, BackupError>;
}

impl SealerExt for Arc<dyn Sealer> {
    async fn open_or_seal(
        &self,
        seal: bool,
        label: String,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, BackupError> {
        let result = if seal {
            self.seal(label, bytes).await
        } else {
            self.open(label, bytes).await
        };
        result.map_err(BackupError::Secrets)
    }
}
