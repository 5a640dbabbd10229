//! Operations on one backup's repository: open (creating it on the first
//! run), back up a bucket, list snapshots, forget by a keep policy and
//! prune, check, and restore into a bucket.
//!
//! Everything here blocks (rustic is synchronous and starts its own
//! threads); callers run it on a blocking thread and hand in the runtime
//! the S3 requests and the store's reads run on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rustic_core::repofile::{NodeType, SnapshotFile};
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, KeepOptions, KeyOptions,
    LocalDestination, LsOptions, OpenStatus, PathList, Progress, ProgressBars, ProgressType,
    PruneOptions, Repository, RepositoryBackends, RepositoryOptions, RestoreOptions,
    RusticProgress, SnapshotOptions,
};
use tokio::runtime::Handle;

use coop_state::{ControlPlane, KeepPolicy};
use coop_store::Stripes;

use crate::BackupError;
use crate::backend::{RepoFiles, S3Backend};
use crate::bucket::{BucketSource, ObjectAttributes, ObjectWriter};
use crate::friend::FriendClient;
use crate::s3::{S3Client, S3Location};

/// Bytes read from the repository per step of a restored object.
const RESTORE_STEP: usize = 1 << 20;

/// What a running operation has done so far, for progress bars: one phase
/// at a time (its title, its length if known, how far it is).
#[derive(Debug, Default)]
pub struct Meter {
    title: std::sync::Mutex<String>,
    length: AtomicU64,
    position: AtomicU64,
}

/// A [`Meter`]'s reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeterReading {
    pub phase: String,
    /// 0 when unknown.
    pub total: u64,
    pub done: u64,
    /// Whether `total` and `done` count bytes (else items).
    pub bytes: bool,
}

impl Meter {
    pub fn reading(&self) -> MeterReading {
        let title = self.title.lock().map(|t| t.clone()).unwrap_or_default();
        MeterReading {
            bytes: title.starts_with('~'),
            phase: title.trim_start_matches('~').to_owned(),
            total: self.length.load(Ordering::Relaxed),
            done: self.position.load(Ordering::Relaxed),
        }
    }

    fn start(&self, title: &str, bytes: bool) {
        if let Ok(mut t) = self.title.lock() {
            *t = if bytes {
                format!("~{title}")
            } else {
                title.to_owned()
            };
        }
        self.length.store(0, Ordering::Relaxed);
        self.position.store(0, Ordering::Relaxed);
    }
}

/// rustic's progress bars, reported into a [`Meter`]. Only the phases
/// worth showing (reading the source, restoring, checking data) move it;
/// quick bookkeeping phases are hidden.
#[derive(Clone, Debug)]
struct MeterBars(Arc<Meter>);

#[derive(Debug)]
struct MeterBar {
    meter: Arc<Meter>,
}

impl RusticProgress for MeterBar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.meter.length.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, title: &str) {
        let bytes = self.meter.reading().bytes;
        self.meter.start(title, bytes);
    }
    fn inc(&self, inc: u64) {
        self.meter.position.fetch_add(inc, Ordering::Relaxed);
    }
    fn finish(&self) {}
}

impl ProgressBars for MeterBars {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        match progress_type {
            ProgressType::Bytes => {
                self.0.start(prefix.trim_end_matches("..."), true);
                Progress::new(MeterBar {
                    meter: self.0.clone(),
                })
            }
            ProgressType::Counter => {
                self.0.start(prefix.trim_end_matches("..."), false);
                Progress::new(MeterBar {
                    meter: self.0.clone(),
                })
            }
            _ => Progress::hidden(),
        }
    }
}

/// Where a repository is.
#[derive(Clone, Debug)]
pub enum RepoTarget {
    S3(S3Location),
    Friend(FriendClient),
}

/// A repository's place and key.
#[derive(Clone, Debug)]
pub struct RepoAccess {
    pub target: RepoTarget,
    pub password: String,
}

/// A repository open for one operation.
pub struct Repo {
    repo: Repository<OpenStatus>,
    pub location: String,
}

/// Converts rustic's error into ours with what was being done.
fn repo_err(context: &str) -> impl FnOnce(Box<rustic_core::RusticError>) -> BackupError + '_ {
    move |err| BackupError::Repository {
        context: context.to_owned(),
        message: err.to_string(),
    }
}

impl Repo {
    fn setup(
        access: &RepoAccess,
        runtime: Handle,
        meter: Arc<Meter>,
    ) -> Result<(Repository<()>, String, bool), BackupError> {
        let (backend, location): (Arc<dyn rustic_core::WriteBackend>, String) = match &access.target
        {
            RepoTarget::S3(location) => {
                let client = S3Client::new(location.clone())?;
                (Arc::new(S3Backend::new(client, runtime)), location.url())
            }
            RepoTarget::Friend(friend) => {
                let url = friend.url();
                (Arc::new(S3Backend::new(friend.clone(), runtime)), url)
            }
        };
        let backends = RepositoryBackends::new(backend, None);
        // No local cache: peers come and go, and the index is read afresh
        // from the target (restic's own layout keeps it small).
        let options = RepositoryOptions::default().no_cache(true);
        let repo = Repository::new_with_progress(&options, &backends, MeterBars(meter))
            .map_err(repo_err("setting up the repository"))?;
        let exists = repo
            .config_id()
            .map_err(repo_err("looking for the repository"))?
            .is_some();
        Ok((repo, location, exists))
    }

    /// Opens the repository at `access`.
    pub fn open(
        access: &RepoAccess,
        runtime: Handle,
        meter: Arc<Meter>,
    ) -> Result<Repo, BackupError> {
        let (repo, location, exists) = Self::setup(access, runtime, meter)?;
        if !exists {
            return Err(BackupError::NoRepository(location));
        }
        let repo = repo
            .open(&Credentials::password(&access.password))
            .map_err(repo_err("opening the repository (is the password right?)"))?;
        Ok(Repo { repo, location })
    }

    /// Creates a repository at `access`, which must not hold one.
    pub fn create(
        access: &RepoAccess,
        runtime: Handle,
        meter: Arc<Meter>,
    ) -> Result<Repo, BackupError> {
        let (repo, location, exists) = Self::setup(access, runtime, meter)?;
        if exists {
            return Err(BackupError::Occupied(location));
        }
        let repo = repo
            .init(
                &Credentials::password(&access.password),
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .map_err(repo_err("creating the repository"))?;
        Ok(Repo { repo, location })
    }

    /// Backs up `source` as a new snapshot under `host` (the snapshots of
    /// one backup share it, so each run's parent is the last one and
    /// unchanged objects are not read again).
    pub fn backup_bucket(
        self,
        source: &BucketSource,
        host: &str,
    ) -> Result<SnapshotFile, BackupError> {
        let repo = self
            .repo
            .to_indexed_ids()
            .map_err(repo_err("reading the repository's index"))?;
        let snap = SnapshotOptions::default()
            .host(host.to_owned())
            .to_snapshot()
            .map_err(repo_err("preparing the snapshot"))?;
        let snap = repo
            .archive(&BackupOptions::default(), source, snap, &[source.root()])
            .map_err(repo_err("backing up"))?;
        let unreadable = source.unreadable();
        if unreadable > 0 {
            return Err(BackupError::Unreadable {
                objects: unreadable,
                snapshot: snap.id.to_string(),
            });
        }
        Ok(snap)
    }

    /// Backs up the directory `path` of this peer as a new snapshot under
    /// `host`. Files that cannot be read are skipped with a warning, as
    /// restic does.
    pub fn backup_path(self, path: &str, host: &str) -> Result<SnapshotFile, BackupError> {
        if !std::path::Path::new(path).is_dir() {
            return Err(BackupError::Invalid(format!(
                "there is no directory {path} on this peer"
            )));
        }
        let repo = self
            .repo
            .to_indexed_ids()
            .map_err(repo_err("reading the repository's index"))?;
        let snap = SnapshotOptions::default()
            .host(host.to_owned())
            .to_snapshot()
            .map_err(repo_err("preparing the snapshot"))?;
        let source = PathList::from_string(path).map_err(repo_err("reading the path"))?;
        repo.backup(&BackupOptions::default(), &source, snap)
            .map_err(repo_err("backing up"))
    }

    /// Restores snapshot `id` (or `latest`) into the directory `dir` of
    /// this peer, created if missing. Returns the snapshot's id, the files
    /// and the bytes restored.
    pub fn restore_to_path(self, id: &str, dir: &str) -> Result<(String, u64, u64), BackupError> {
        let repo = self
            .repo
            .to_indexed()
            .map_err(repo_err("reading the repository's index"))?;
        let snap = repo
            .get_snapshot_from_str(id, |_| true)
            .map_err(repo_err("finding the snapshot"))?;
        let root = repo
            .node_from_snapshot_and_path(&snap, "")
            .map_err(repo_err("reading the snapshot's tree"))?;
        let listing = LsOptions::default().recursive(true);
        let dest = LocalDestination::new(&format!("{}/", dir.trim_end_matches('/')), true, false)
            .map_err(repo_err("preparing the directory"))?;
        let opts = RestoreOptions::default();
        let nodes = repo
            .ls(&root, &listing)
            .map_err(repo_err("listing the snapshot"))?;
        let plan = repo
            .prepare_restore(&opts, nodes, &dest, false)
            .map_err(repo_err("planning the restore"))?;
        let (files, bytes) = (plan.stats.files.restore, plan.restore_size);
        let nodes = repo
            .ls(&root, &listing)
            .map_err(repo_err("listing the snapshot"))?;
        repo.restore(plan, &opts, nodes, &dest)
            .map_err(repo_err("restoring"))?;
        Ok((snap.id.to_string(), files, bytes))
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotFile>, BackupError> {
        let mut snaps = self
            .repo
            .get_all_snapshots()
            .map_err(repo_err("listing snapshots"))?;
        snaps.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(snaps)
    }

    /// Forgets the snapshots `keep` does not keep, then prunes the data
    /// only they used. Returns how many snapshots went.
    pub fn forget(self, keep: &KeepPolicy) -> Result<u64, BackupError> {
        if keep.keeps_all() {
            return Ok(0);
        }
        let opts = keep_options(keep);
        let snaps = self.snapshots()?;
        let now = rustic_core::jiff::Zoned::now();
        let verdicts = opts
            .apply(snaps, &now)
            .map_err(repo_err("applying the keep policy"))?;
        let gone: Vec<_> = verdicts
            .into_iter()
            .filter(|v| !v.keep)
            .map(|v| v.snapshot.id)
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        self.repo
            .delete_snapshots(&gone)
            .map_err(repo_err("forgetting snapshots"))?;
        let prune = PruneOptions::default();
        let plan = self
            .repo
            .prune_plan(&prune)
            .map_err(repo_err("planning the prune"))?;
        self.repo.prune(&prune, plan).map_err(repo_err("pruning"))?;
        Ok(gone.len() as u64)
    }

    /// Checks the repository's structure and, with `read_data`, every
    /// pack's content. Returns the problems found (empty: healthy).
    pub fn check(self, read_data: bool) -> Result<Vec<String>, BackupError> {
        let results = self
            .repo
            .check(CheckOptions::default().read_data(read_data))
            .map_err(repo_err("checking"))?;
        Ok(results
            .0
            .iter()
            .map(|(level, err)| format!("{level:?}: {err}"))
            .collect())
    }

    /// Restores snapshot `id` (or `latest`) of a bucket backup into
    /// `bucket`, which must exist. Objects keep their exact keys, content
    /// types and metadata. Returns objects and bytes written.
    pub fn restore_to_bucket(
        self,
        id: &str,
        bucket: &str,
        control: &ControlPlane,
        stripes: &Stripes,
        runtime: &Handle,
        meter: &Meter,
    ) -> Result<(String, u64, u64), BackupError> {
        let repo = self
            .repo
            .to_indexed()
            .map_err(repo_err("reading the repository's index"))?;
        let snap = repo
            .get_snapshot_from_str(id, |_| true)
            .map_err(repo_err("finding the snapshot"))?;
        let root = repo
            .node_from_snapshot_and_path(&snap, "")
            .map_err(repo_err("reading the snapshot's tree"))?;
        let record = control
            .store()
            .bucket(bucket)
            .map_err(|e| BackupError::Store(e.to_string()))?
            .ok_or_else(|| BackupError::NoBucket(bucket.to_owned()))?;
        let total = snap.summary.as_ref().map_or(0, |s| s.total_bytes_processed);
        meter.start("restoring", true);
        meter.length.store(total, Ordering::Relaxed);
        let (mut objects, mut bytes) = (0u64, 0u64);
        let nodes = repo
            .ls(&root, &LsOptions::default().recursive(true))
            .map_err(repo_err("listing the snapshot"))?;
        for item in nodes {
            let (path, node) = item.map_err(repo_err("listing the snapshot"))?;
            if node.node_type != NodeType::File {
                continue;
            }
            let attrs = ObjectAttributes::of(&node);
            let key = match attrs.key.clone() {
                Some(key) => key,
                None => key_from_path(&path),
            };
            let file = repo
                .open_file(&node)
                .map_err(repo_err("opening a file of the snapshot"))?;
            let mut writer = ObjectWriter::new(stripes, &record).map_err(BackupError::Store)?;
            let mut offset = 0usize;
            loop {
                let chunk: Bytes = repo
                    .read_file_at(&file, offset, RESTORE_STEP)
                    .map_err(repo_err("reading a file of the snapshot"))?;
                if chunk.is_empty() {
                    break;
                }
                offset += chunk.len();
                runtime
                    .block_on(writer.push(&chunk))
                    .map_err(|e| BackupError::Store(format!("storing `{key}`: {e}")))?;
                meter
                    .position
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            runtime
                .block_on(writer.finish(control, bucket, &key, attrs.content_type, attrs.metadata))
                .map_err(|e| BackupError::Store(format!("storing `{key}`: {e}")))?;
            objects += 1;
            bytes += offset as u64;
        }
        Ok((snap.id.to_string(), objects, bytes))
    }
}

/// An object's key from its snapshot path (for snapshots without the key
/// attribute, e.g. a tree restic made): the path below the bucket's
/// directory, unescaped.
fn key_from_path(path: &std::path::Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let below = if parts.len() > 1 {
        &parts[1..]
    } else {
        &parts[..]
    };
    below
        .iter()
        .map(|p| crate::bucket::unescape_part(p))
        .collect::<Vec<_>>()
        .join("/")
}

/// The rustic form of a keep policy.
fn keep_options(keep: &KeepPolicy) -> KeepOptions {
    let n = |v: u32| (v > 0).then(|| i32::try_from(v).unwrap_or(i32::MAX));
    KeepOptions::default()
        .keep_last(n(keep.last))
        .keep_hourly(n(keep.hourly))
        .keep_daily(n(keep.daily))
        .keep_weekly(n(keep.weekly))
        .keep_monthly(n(keep.monthly))
        .keep_yearly(n(keep.yearly))
}
