//! The durable home of the control plane: one redb file holding the Raft log,
//! the vote and the applied state machine.
//!
//! [`StateStore`] opens the file and hands out the two halves openraft drives:
//! the [`LogStore`] (log entries, vote, committed and purged pointers) and the
//! [`StateMachine`] (the typed tables plus the applied pointer, membership and
//! current snapshot). Both share one `Arc<redb::Database>`; every write is a
//! single redb write transaction committed with the default, fsyncing
//! durability, so nothing openraft was told is stored can be lost by a crash.
//! The rest of the agent reads the applied tables through `StateStore`'s
//! local read methods, which use read transactions and never wait on Raft.
//!
//! Layout: table `log` maps a log index to a postcard-encoded entry; table
//! `meta` maps a fixed name to postcard bytes (see the `META_*` names); table
//! `sm` maps `cloud`, `peer/<hex id>`, `invite/<hex id>`, `token/<hex hash>`
//! and `config/<key>` to postcard-encoded records; the S3 rows are listed
//! in `objects`, and each bucket's byte count (`usage/<bucket>`) in `usage`.

mod backups;
mod compute;
#[cfg(test)]
mod compute_tests;
mod environments;
mod friends;
mod journal;
mod log_store;
mod machine;
mod networks;
mod objects;
#[cfg(test)]
mod objects_tests;
#[cfg(test)]
mod quota_tests;
#[cfg(test)]
mod tests;
mod usage;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{Entry, LogId, RaftTypeConfig};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use coop_types::PeerId;

use crate::TypeConfig;
use crate::objects::{
    BlockId, BucketRecord, ObjectRecord, PartRecord, S3KeyRecord, StripeRecord, UploadRecord,
};
use crate::records::{CloudInfo, Command, CommandError, InviteRecord, PeerRecord, TokenRecord};

pub use log_store::LogStore;
pub use machine::StateMachine;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("sm");

const META_VOTE: &str = "vote";
const META_COMMITTED: &str = "committed";
const META_PURGED: &str = "last_purged";
const META_APPLIED: &str = "applied";
const META_MEMBERSHIP: &str = "membership";
const META_SNAPSHOT_META: &str = "snapshot_meta";
const META_SNAPSHOT_DATA: &str = "snapshot_data";
/// Bumped by every snapshot build so snapshot ids stay unique even when two
/// builds see the same applied log id, across restarts too.
const META_SNAPSHOT_SEQ: &str = "snapshot_seq";
/// The format of the records in this database; see [`FORMAT`].
const META_FORMAT: &str = "format";

/// The format of the records this build reads and writes. Records are
/// postcard, which has no field names: adding a field changes the format.
/// Bumped with every such change; a database of another format is refused
/// at open instead of failing on its first record. 2: templates keep their
/// blocks in the store, objects their part sizes. 3: containers name the
/// environment replica they are; environments and their events. 4:
/// environments keep the version before their last update. 5: private
/// networks, and the addresses containers hold on them. 6: buckets have a
/// quota, and each bucket's usage is kept under `usage/<bucket>`.
pub const FORMAT: u32 = 6;

const CLOUD_KEY: &str = "cloud";
const PEER_PREFIX: &str = "peer/";
const INVITE_PREFIX: &str = "invite/";
const TOKEN_PREFIX: &str = "token/";
const CONFIG_PREFIX: &str = "config/";

/// The Raft type configurations this storage can serve: coop's commands and
/// responses over any node id. Production uses [`TypeConfig`]; the tests also
/// run openraft's conformance suite, which insists on `u64` node ids.
pub trait StoreConfig:
    RaftTypeConfig<
        D = Command,
        R = Result<(), CommandError>,
        Entry = Entry<Self>,
        SnapshotData = Cursor<Vec<u8>>,
    >
{
}

impl<C> StoreConfig for C where
    C: RaftTypeConfig<
            D = Command,
            R = Result<(), CommandError>,
            Entry = Entry<C>,
            SnapshotData = Cursor<Vec<u8>>,
        >
{
}

/// Why the state database could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("state database failure while {context}")]
    Db {
        context: &'static str,
        #[source]
        source: redb::Error,
    },
    #[error("the state database holds a corrupt {what}")]
    Decode {
        what: String,
        #[source]
        source: postcard::Error,
    },
    #[error("cannot encode {what} for the state database")]
    Encode {
        what: String,
        #[source]
        source: postcard::Error,
    },
    #[error("the state database is inconsistent: {0}")]
    Inconsistent(String),
    #[error(
        "the control-plane state in {} was written in format {found}, but this coop reads format {FORMAT}; development versions have no upgrade path between formats yet: start this peer from a new data dir",
        path.display()
    )]
    Format { path: PathBuf, found: u32 },
    #[error("the storage worker thread failed")]
    Worker(#[from] tokio::task::JoinError),
}

/// The control-plane database of one peer. Cheap to clone; all clones share
/// the same open file.
#[derive(Clone)]
pub struct StateStore {
    db: Arc<Database>,
    applied: Arc<watch::Sender<u64>>,
    changes: Arc<std::sync::Mutex<journal::Changes>>,
}

impl StateStore {
    /// Opens the database file at `path`, creating it (but not its parent
    /// directory) when missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // Creating every table up front lets read transactions open them
        // without a "table does not exist" case on a fresh file.
        let txn = db
            .begin_write()
            .map_err(db_err("starting the table set-up"))?;
        {
            let log = txn
                .open_table(LOG)
                .map_err(db_err("creating the log table"))?;
            let mut meta = txn
                .open_table(META)
                .map_err(db_err("creating the meta table"))?;
            let sm = txn
                .open_table(SM)
                .map_err(db_err("creating the state table"))?;
            let count = |n: Result<u64, redb::StorageError>| n.map_err(db_err("counting rows"));
            let used = count(log.len())? + count(meta.len())? + count(sm.len())? > 0;
            // Records from before formats were numbered are format 1.
            match get_value::<u32>(&meta, META_FORMAT)? {
                Some(found) if found == FORMAT => {}
                Some(found) => {
                    return Err(StoreError::Format {
                        path: path.to_path_buf(),
                        found,
                    });
                }
                None if used => {
                    return Err(StoreError::Format {
                        path: path.to_path_buf(),
                        found: 1,
                    });
                }
                None => put_value(&mut meta, META_FORMAT, &FORMAT)?,
            }
        }
        txn.commit()
            .map_err(db_err("committing the table set-up"))?;

        let store = StateStore {
            db: Arc::new(db),
            applied: Arc::new(watch::Sender::new(0)),
            // Whoever reads first builds from scratch.
            changes: Arc::new(std::sync::Mutex::new(journal::Changes {
                rows: Vec::new(),
                reset: true,
            })),
        };
        let applied = store.last_applied_index()?.unwrap_or(0);
        store.applied.send_replace(applied);
        Ok(store)
    }

    /// The Raft log and vote storage, for `openraft::Raft::new`.
    pub fn log_store(&self) -> LogStore<TypeConfig> {
        self.log_store_of()
    }

    /// The replicated state machine, for `openraft::Raft::new`.
    pub fn state_machine(&self) -> StateMachine<TypeConfig> {
        self.state_machine_of()
    }

    fn log_store_of<C: StoreConfig>(&self) -> LogStore<C> {
        LogStore::new(self.db.clone())
    }

    fn state_machine_of<C: StoreConfig>(&self) -> StateMachine<C> {
        StateMachine::new(self.db.clone(), self.applied.clone(), self.changes.clone())
    }

    /// Whether this database already holds Raft state (a vote, a log entry,
    /// a purge mark or an applied entry): tells a restart from a fresh data
    /// directory.
    pub fn has_raft_state(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("starting a read"))?;
        let meta = txn
            .open_table(META)
            .map_err(db_err("opening the meta table"))?;
        for key in [META_VOTE, META_PURGED, META_APPLIED] {
            if meta
                .get(key)
                .map_err(db_err("reading the meta table"))?
                .is_some()
            {
                return Ok(true);
            }
        }
        let log = txn
            .open_table(LOG)
            .map_err(db_err("opening the log table"))?;
        Ok(!log.is_empty().map_err(db_err("reading the log table"))?)
    }

    /// The cloud, once the founding entry is applied.
    pub fn cloud(&self) -> Result<Option<CloudInfo>, StoreError> {
        self.read_sm(|sm| get_value(sm, CLOUD_KEY))
    }

    /// Every member, revoked ones included, sorted by id.
    pub fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, PEER_PREFIX))
    }

    /// One member, revoked or not.
    pub fn peer(&self, id: &PeerId) -> Result<Option<PeerRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &peer_key(id)))
    }

    /// Every invite ever recorded, used ones included, sorted by id.
    pub fn invites(&self) -> Result<Vec<InviteRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, INVITE_PREFIX))
    }

    /// The API token whose hash is `hash`.
    pub fn token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &token_key(hash)))
    }

    /// Every API token record (hashes only), sorted by hash.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, TOKEN_PREFIX))
    }

    /// Every cloud setting.
    pub fn config(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.read_sm(|sm| {
            let mut settings = BTreeMap::new();
            for (key, value) in scan(sm, CONFIG_PREFIX)? {
                let name = key[CONFIG_PREFIX.len()..].to_owned();
                settings.insert(name, value);
            }
            Ok(settings)
        })
    }

    /// An S3 access key, secret included.
    pub fn s3_key(&self, id: &str) -> Result<Option<S3KeyRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &objects::s3key_key(id)))
    }

    /// Every S3 access key, sorted by id.
    pub fn s3_keys(&self) -> Result<Vec<S3KeyRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, objects::S3KEYS_PREFIX))
    }

    pub fn bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &objects::bucket_key(name)))
    }

    /// Every bucket, sorted by name.
    pub fn buckets(&self) -> Result<Vec<BucketRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, objects::BUCKETS_PREFIX))
    }

    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &objects::object_key(bucket, key)))
    }

    /// Up to `limit` objects of `bucket` whose keys start with `prefix` and
    /// sort after `after` (when given), in key order.
    pub fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>, StoreError> {
        let base = objects::objects_prefix(bucket);
        let wanted = format!("{base}{prefix}");
        self.read_sm(|sm| {
            let start = match after {
                Some(after) if after >= prefix => format!("{base}{after}"),
                _ => wanted.clone(),
            };
            let mut found = Vec::new();
            for row in sm
                .range(start.as_str()..)
                .map_err(db_err("listing objects"))?
            {
                if found.len() >= limit {
                    break;
                }
                let (row_key, value) = row.map_err(db_err("listing objects"))?;
                let row_key = row_key.value();
                if !row_key.starts_with(&wanted) {
                    break;
                }
                let key = &row_key[base.len()..];
                if after.is_some_and(|after| key <= after) {
                    continue;
                }
                found.push((key.to_owned(), decode(value.value(), row_key)?));
            }
            Ok(found)
        })
    }

    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &objects::upload_key(id)))
    }

    /// Every multipart upload in progress in `bucket`, by key, then by
    /// initiation time.
    /// Every multipart upload in progress, of every bucket.
    pub fn all_uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, objects::UPLOADS_PREFIX))
    }

    pub fn uploads(&self, bucket: &str) -> Result<Vec<UploadRecord>, StoreError> {
        let mut uploads: Vec<UploadRecord> =
            self.read_sm(|sm| scan_values(sm, objects::UPLOADS_PREFIX))?;
        uploads.retain(|u| u.bucket == bucket);
        uploads.sort_by(|a, b| (&a.key, a.initiated_ms).cmp(&(&b.key, b.initiated_ms)));
        Ok(uploads)
    }

    /// The parts uploaded so far, by part number.
    pub fn parts(&self, upload: &str) -> Result<Vec<PartRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, &objects::parts_prefix(upload)))
    }

    pub fn stripe(&self, id: &BlockId) -> Result<Option<StripeRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &objects::stripe_key(id)))
    }

    /// Every stripe, live and dead, with its block id.
    pub fn stripes(&self) -> Result<Vec<(BlockId, StripeRecord)>, StoreError> {
        let rows: Vec<(String, StripeRecord)> =
            self.read_sm(|sm| scan(sm, objects::STRIPES_PREFIX))?;
        let mut stripes = Vec::with_capacity(rows.len());
        for (row, stripe) in rows {
            let hex_id = &row[objects::STRIPES_PREFIX.len()..];
            let id = data_encoding::HEXLOWER
                .decode(hex_id.as_bytes())
                .ok()
                .and_then(|bytes| BlockId::try_from(bytes).ok())
                .ok_or_else(|| StoreError::Inconsistent(format!("bad stripe row {row}")))?;
            stripes.push((id, stripe));
        }
        Ok(stripes)
    }

    /// The index of the last entry applied to the state machine, if any.
    pub fn last_applied_index(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("starting a read"))?;
        let meta = txn
            .open_table(META)
            .map_err(db_err("opening the meta table"))?;
        let applied: Option<LogId<PeerId>> = get_value(&meta, META_APPLIED)?;
        Ok(applied.map(|id| id.index))
    }

    /// Takes the stripe and object rows changed since the last call (or a
    /// reset: rebuild from scratch). See [`Changes`].
    pub fn drain_changes(&self) -> Changes {
        match self.changes.lock() {
            Ok(mut changes) => std::mem::take(&mut *changes),
            Err(_) => Changes {
                rows: Vec::new(),
                reset: true,
            },
        }
    }

    /// The record behind a changed row: a stripe or an object, or `None`
    /// when the row is gone (or is neither).
    pub fn changed_row(&self, row: &str) -> Result<ChangedRow, StoreError> {
        if let Some(hex_id) = row.strip_prefix(objects::STRIPES_PREFIX) {
            let Some(id) = parse_block_id(hex_id) else {
                return Ok(ChangedRow::Other);
            };
            let record = self.read_sm(|sm| get_value::<StripeRecord>(sm, row))?;
            return Ok(ChangedRow::Stripe { id, record });
        }
        if row.starts_with(objects::OBJECTS_ROW_PREFIX) {
            let record = self.read_sm(|sm| get_value::<ObjectRecord>(sm, row))?;
            return Ok(ChangedRow::Object { record });
        }
        Ok(ChangedRow::Other)
    }

    /// Follows the last applied log index: updated after every applied batch
    /// and snapshot install, starting from the value on disk (0 when none).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn read_sm<T>(
        &self,
        read: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("starting a read"))?;
        let sm = txn
            .open_table(SM)
            .map_err(db_err("opening the state table"))?;
        read(&sm)
    }
}

type StrTable<'txn> = Table<'txn, &'static str, &'static [u8]>;

pub use journal::Changes;
pub use objects::{ObjectPage, after_all_with};

/// What a changed row holds now.
#[derive(Debug)]
pub enum ChangedRow {
    /// A stripe row: its block and the record, `None` once forgotten.
    Stripe {
        id: BlockId,
        record: Option<StripeRecord>,
    },
    /// An object row: the record, `None` once deleted.
    Object { record: Option<ObjectRecord> },
    /// Neither (a row of another kind, or a malformed key).
    Other,
}

/// The key of the row that holds object `key` of `bucket`, as
/// [`StateStore::changed_row`] reports it.
pub fn object_row(bucket: &str, key: &str) -> String {
    objects::object_key(bucket, key)
}

/// The block id a stripe row's key names, if it is well formed.
fn parse_block_id(hex_id: &str) -> Option<BlockId> {
    if hex_id.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex_id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// Wraps a redb error with what the store was doing.
fn db_err<E: Into<redb::Error>>(context: &'static str) -> impl FnOnce(E) -> StoreError {
    move |source| StoreError::Db {
        context,
        source: source.into(),
    }
}

fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|source| StoreError::Encode {
        what: what.to_owned(),
        source,
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|source| StoreError::Decode {
        what: what.to_owned(),
        source,
    })
}

/// Reads and decodes one value of a string-keyed table.
fn get_value<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(db_err("reading a value"))? {
        Some(bytes) => decode(bytes.value(), key).map(Some),
        None => Ok(None),
    }
}

fn put_value<T: Serialize + ?Sized>(
    table: &mut StrTable<'_>,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = encode(value, key)?;
    table
        .insert(key, bytes.as_slice())
        .map_err(db_err("writing a value"))?;
    journal::note(key);
    Ok(())
}

/// Every `(key, decoded value)` whose key starts with `prefix`, in key order.
fn scan<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut found = Vec::new();
    for row in table.range(prefix..).map_err(db_err("scanning a table"))? {
        let (key, value) = row.map_err(db_err("scanning a table"))?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        found.push((key.to_owned(), decode(value.value(), key)?));
    }
    Ok(found)
}

fn scan_values<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<T>, StoreError> {
    Ok(scan(table, prefix)?.into_iter().map(|(_, v)| v).collect())
}

/// Runs `work` in one write transaction on a blocking thread, since the
/// commit waits for fsync, and commits it only if `work` succeeded.
async fn write_txn<T, F>(db: &Arc<Database>, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
{
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let txn = db
            .begin_write()
            .map_err(db_err("starting a write transaction"))?;
        let out = work(&txn)?;
        txn.commit()
            .map_err(db_err("committing a write transaction"))?;
        Ok(out)
    })
    .await?
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn peer_key(id: &PeerId) -> String {
    format!("{PEER_PREFIX}{}", hex(id.as_bytes()))
}

fn invite_key(id: &[u8; 16]) -> String {
    format!("{INVITE_PREFIX}{}", hex(id))
}

fn token_key(hash: &[u8; 32]) -> String {
    format!("{TOKEN_PREFIX}{}", hex(hash))
}

fn config_key(name: &str) -> String {
    format!("{CONFIG_PREFIX}{name}")
}
