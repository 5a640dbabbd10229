//! The Raft log and vote half of the store.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{
    LOG, META, META_COMMITTED, META_PURGED, META_VOTE, StoreConfig, StoreError, db_err, decode,
    encode, get_value, put_value, write_txn,
};
use crate::TypeConfig;

/// The Raft log, vote, committed and purged pointers, kept in the `log` and
/// `meta` tables. Cloning shares the database; openraft uses clones as log
/// readers for replication.
pub struct LogStore<C = TypeConfig> {
    db: Arc<Database>,
    _config: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            _config: PhantomData,
        }
    }
}

impl<C: StoreConfig> LogStore<C> {
    pub(super) fn new(db: Arc<Database>) -> Self {
        LogStore {
            db,
            _config: PhantomData,
        }
    }

    fn read_entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry<C>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("starting a read"))?;
        let log = txn
            .open_table(LOG)
            .map_err(db_err("opening the log table"))?;
        let mut entries = Vec::new();
        for row in log.range(range).map_err(db_err("reading the log"))? {
            let (index, bytes) = row.map_err(db_err("reading the log"))?;
            let what = format!("log entry {}", index.value());
            entries.push(decode(bytes.value(), &what)?);
        }
        Ok(entries)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("starting a read"))?;
        let meta = txn
            .open_table(META)
            .map_err(db_err("opening the meta table"))?;
        get_value(&meta, key)
    }

    fn log_state(&self) -> Result<LogState<C>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("starting a read"))?;
        let meta = txn
            .open_table(META)
            .map_err(db_err("opening the meta table"))?;
        let last_purged_log_id: Option<LogId<C::NodeId>> = get_value(&meta, META_PURGED)?;
        let log = txn
            .open_table(LOG)
            .map_err(db_err("opening the log table"))?;
        let last = match log.last().map_err(db_err("reading the log"))? {
            Some((index, bytes)) => {
                let what = format!("log entry {}", index.value());
                let entry: Entry<C> = decode(bytes.value(), &what)?;
                Some(entry.log_id)
            }
            None => None,
        };
        // With every entry purged, openraft expects the purge mark as the
        // last log id so the next append continues after it.
        let last_log_id = last.or_else(|| last_purged_log_id.clone());
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn write_meta(
        &self,
        key: &'static str,
        bytes: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        write_txn(&self.db, move |txn| {
            let mut meta = txn
                .open_table(META)
                .map_err(db_err("opening the meta table"))?;
            match bytes {
                Some(bytes) => {
                    meta.insert(key, bytes.as_slice())
                        .map_err(db_err("writing the meta table"))?;
                }
                None => {
                    meta.remove(key).map_err(db_err("writing the meta table"))?;
                }
            }
            Ok(())
        })
        .await
    }
}

impl<C: StoreConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<C::NodeId>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        Ok(self
            .read_entries(bounds)
            .map_err(|e| StorageIOError::read_logs(&e))?)
    }
}

impl<C: StoreConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        Ok(self
            .log_state()
            .map_err(|e| StorageIOError::read_logs(&e))?)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let saved = match encode(vote, META_VOTE) {
            Ok(bytes) => self.write_meta(META_VOTE, Some(bytes)).await,
            Err(e) => Err(e),
        };
        Ok(saved.map_err(|e| StorageIOError::write_vote(&e))?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self
            .read_meta(META_VOTE)
            .map_err(|e| StorageIOError::read_vote(&e))?)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let saved = match committed
            .as_ref()
            .map(|id| encode(id, META_COMMITTED))
            .transpose()
        {
            Ok(bytes) => self.write_meta(META_COMMITTED, bytes).await,
            Err(e) => Err(e),
        };
        Ok(saved.map_err(|e| StorageIOError::write(&e))?)
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self
            .read_meta(META_COMMITTED)
            .map_err(|e| StorageIOError::read(&e))?)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let bytes = encode(&entry, &format!("log entry {index}"))
                .map_err(|e| StorageIOError::write_logs(&e))?;
            rows.push((index, bytes));
        }
        write_txn(&self.db, move |txn| {
            let mut log = txn
                .open_table(LOG)
                .map_err(db_err("opening the log table"))?;
            for (index, bytes) in &rows {
                log.insert(index, bytes.as_slice())
                    .map_err(db_err("appending to the log"))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?;
        // Only now is the batch on disk: openraft counts flushed entries
        // towards the commit quorum.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let since = log_id.index;
        write_txn(&self.db, move |txn| {
            let mut log = txn
                .open_table(LOG)
                .map_err(db_err("opening the log table"))?;
            log.retain_in(since.., |_, _| false)
                .map_err(db_err("truncating the log"))?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let upto = log_id.index;
        write_txn(&self.db, move |txn| {
            // The mark and the removal commit together, so a crash cannot
            // leave a hole between the purge mark and the first entry.
            let mut meta = txn
                .open_table(META)
                .map_err(db_err("opening the meta table"))?;
            put_value(&mut meta, META_PURGED, &log_id)?;
            let mut log = txn
                .open_table(LOG)
                .map_err(db_err("opening the log table"))?;
            log.retain_in(..=upto, |_, _| false)
                .map_err(db_err("purging the log"))?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
