//! The state machine half of the store: the apply rules for [`Command`]s and
//! the snapshots of the `sm` table.

use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, Node, NodeId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    CLOUD_KEY, META, META_APPLIED, META_MEMBERSHIP, META_SNAPSHOT_DATA, META_SNAPSHOT_META,
    META_SNAPSHOT_SEQ, SM, StoreConfig, StoreError, StrTable, config_key, db_err, decode,
    get_value, invite_key, peer_key, put_value, token_key, write_txn,
};
use crate::records::{Command, CommandError, InviteRecord, PeerRecord};
use crate::{TokenRecord, TypeConfig};

/// Longest accepted setting name, in characters.
const CONFIG_KEY_MAX: usize = 128;
/// Largest accepted setting value, in bytes.
const CONFIG_VALUE_MAX: usize = 4096;

/// The applied control-plane state, driven by openraft. Reads for the rest
/// of the agent go through [`super::StateStore`] instead.
pub struct StateMachine<C = TypeConfig> {
    db: Arc<Database>,
    applied: Arc<watch::Sender<u64>>,
    changes: Arc<std::sync::Mutex<super::journal::Changes>>,
    _config: PhantomData<fn() -> C>,
}

/// Builds a snapshot of the whole `sm` table in one transaction.
pub struct SnapshotBuilder<C = TypeConfig> {
    db: Arc<Database>,
    _config: PhantomData<fn() -> C>,
}

/// What a snapshot's bytes hold: every `sm` row plus the Raft pointers that
/// describe them, so an install replaces all of it at once.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct SnapshotBlob<NID: NodeId, N: Node> {
    applied: Option<LogId<NID>>,
    membership: StoredMembership<NID, N>,
    rows: Vec<(String, Vec<u8>)>,
}

/// A snapshot's metadata and bytes, as built.
type Built<C> = (
    SnapshotMeta<<C as openraft::RaftTypeConfig>::NodeId, <C as openraft::RaftTypeConfig>::Node>,
    Vec<u8>,
);

type Applied<C> = (
    Option<LogId<<C as openraft::RaftTypeConfig>::NodeId>>,
    StoredMembership<
        <C as openraft::RaftTypeConfig>::NodeId,
        <C as openraft::RaftTypeConfig>::Node,
    >,
);

impl<C: StoreConfig> StateMachine<C> {
    pub(super) fn new(
        db: Arc<Database>,
        applied: Arc<watch::Sender<u64>>,
        changes: Arc<std::sync::Mutex<super::journal::Changes>>,
    ) -> Self {
        StateMachine {
            db,
            applied,
            changes,
            _config: PhantomData,
        }
    }

    fn read_applied(&self) -> Result<Applied<C>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("starting a read"))?;
        let meta = txn
            .open_table(META)
            .map_err(db_err("opening the meta table"))?;
        let applied = get_value(&meta, META_APPLIED)?;
        let membership = get_value(&meta, META_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    fn read_current_snapshot(&self) -> Result<Option<Snapshot<C>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("starting a read"))?;
        let meta = txn
            .open_table(META)
            .map_err(db_err("opening the meta table"))?;
        let snapshot_meta: Option<SnapshotMeta<C::NodeId, C::Node>> =
            get_value(&meta, META_SNAPSHOT_META)?;
        let data = meta
            .get(META_SNAPSHOT_DATA)
            .map_err(db_err("reading the current snapshot"))?
            .map(|bytes| bytes.value().to_vec());
        match (snapshot_meta, data) {
            (Some(meta), Some(data)) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            })),
            (None, None) => Ok(None),
            _ => Err(StoreError::Inconsistent(
                "the current snapshot has metadata without data or data without metadata".into(),
            )),
        }
    }
}

impl<C: StoreConfig> RaftStateMachine<C> for StateMachine<C> {
    type SnapshotBuilder = SnapshotBuilder<C>;

    async fn applied_state(&mut self) -> Result<Applied<C>, StorageError<C::NodeId>> {
        Ok(self
            .read_applied()
            .map_err(|e| StorageIOError::read_state_machine(&e))?)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|entry| entry.log_id.clone()) else {
            return Ok(Vec::new());
        };
        let (responses, touched) = write_txn(&self.db, move |txn| {
            let (applied, touched) = super::journal::collect(|| apply_batch::<C>(txn, entries));
            applied.map(|responses| (responses, touched))
        })
        .await
        .map_err(|e| StorageIOError::apply(last.clone(), &e))?;
        if let Ok(mut changes) = self.changes.lock() {
            changes.add(touched);
        }
        self.applied.send_replace(last.index);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder<C> {
        SnapshotBuilder {
            db: self.db.clone(),
            _config: PhantomData,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<C::NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let signature = meta.signature();
        let data = snapshot.into_inner();
        let blob: SnapshotBlob<C::NodeId, C::Node> = decode(&data, "received snapshot")
            .map_err(|e| StorageIOError::read_snapshot(Some(signature.clone()), &e))?;
        if blob.applied != meta.last_log_id || blob.membership != meta.last_membership {
            let e = StoreError::Inconsistent(format!(
                "snapshot {} carries state for a different log position than its metadata",
                meta.snapshot_id
            ));
            return Err(StorageIOError::read_snapshot(Some(signature), &e).into());
        }
        let meta = meta.clone();
        let applied_index = meta.last_log_id.as_ref().map_or(0, |id| id.index);
        write_txn(&self.db, move |txn| install(txn, &meta, blob, &data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
        if let Ok(mut changes) = self.changes.lock() {
            changes.reset_all();
        }
        self.applied.send_replace(applied_index);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        Ok(self
            .read_current_snapshot()
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?)
    }
}

impl<C: StoreConfig> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let (meta, data) = write_txn(&self.db, build::<C>)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Applies a batch in the caller's transaction: the `sm` rows, the applied
/// log id and the membership all commit together.
fn apply_batch<C: StoreConfig>(
    txn: &WriteTransaction,
    entries: Vec<Entry<C>>,
) -> Result<Vec<Result<(), CommandError>>, StoreError> {
    let mut meta = txn
        .open_table(META)
        .map_err(db_err("opening the meta table"))?;
    let mut sm = txn
        .open_table(SM)
        .map_err(db_err("opening the state table"))?;
    let mut responses = Vec::with_capacity(entries.len());
    let mut membership = None;
    let mut applied = None;
    for entry in entries {
        let response = match entry.payload {
            EntryPayload::Blank => Ok(()),
            EntryPayload::Normal(command) => apply_command(&mut sm, command)?,
            EntryPayload::Membership(config) => {
                membership = Some(StoredMembership::new(Some(entry.log_id.clone()), config));
                Ok(())
            }
        };
        responses.push(response);
        applied = Some(entry.log_id);
    }
    if let Some(applied) = applied {
        put_value(&mut meta, META_APPLIED, &applied)?;
    }
    if let Some(membership) = membership {
        put_value(&mut meta, META_MEMBERSHIP, &membership)?;
    }
    Ok(responses)
}

/// How many recent request ids the state machine remembers for
/// [`Command::Once`]. A retry comes within seconds of its first attempt;
/// far fewer than this many writes happen in between.
const DEDUP_WINDOW: u64 = 4096;

/// Applies `command` unless request `id` was applied before, in which case
/// the first outcome is returned. Ids live in a ring of [`DEDUP_WINDOW`]
/// slots, so the table stays bounded.
fn apply_once(
    sm: &mut StrTable<'_>,
    id: [u8; 16],
    command: Command,
) -> Result<Result<(), CommandError>, StoreError> {
    let id_hex = data_encoding::HEXLOWER.encode(&id);
    let id_key = format!("dedup/id/{id_hex}");
    if let Some(outcome) = get_value::<Result<(), CommandError>>(sm, &id_key)? {
        return Ok(outcome);
    }
    let outcome = apply_command(sm, command)?;
    let next: u64 = get_value(sm, "dedup/next")?.unwrap_or(0);
    let slot_key = format!("dedup/slot/{}", next % DEDUP_WINDOW);
    if let Some(evicted) = get_value::<String>(sm, &slot_key)? {
        sm.remove(format!("dedup/id/{evicted}").as_str())
            .map_err(db_err("forgetting an old request id"))?;
    }
    put_value(sm, &slot_key, &id_hex)?;
    put_value(sm, &id_key, &outcome)?;
    put_value(sm, "dedup/next", &(next + 1))?;
    Ok(outcome)
}

/// Decides and applies one command. The outer error is a storage failure;
/// the inner one is a refusal every replica reaches the same way.
fn apply_command(
    sm: &mut StrTable<'_>,
    command: Command,
) -> Result<Result<(), CommandError>, StoreError> {
    match command {
        Command::Once { id, command } => return apply_once(sm, id, *command),
        command @ (Command::CreateS3Key(_)
        | Command::DeleteS3Key { .. }
        | Command::CreateBucket(_)
        | Command::DeleteBucket { .. }
        | Command::SetGrant { .. }
        | Command::PutObject { .. }
        | Command::DeleteObjects { .. }
        | Command::CreateUpload(_)
        | Command::PutPart { .. }
        | Command::CompleteUpload { .. }
        | Command::AbortUpload { .. }
        | Command::MoveShards { .. }
        | Command::ForgetStripes { .. }
        | Command::SetBucketQuota { .. }) => return super::objects::apply(sm, command),
        command @ (Command::PutTemplate { .. }
        | Command::DeleteTemplate { .. }
        | Command::PutContainer(_)
        | Command::SetContainerDesired { .. }
        | Command::DeleteContainer { .. }) => return super::compute::apply(sm, command),
        command @ (Command::PutEnvironment { .. }
        | Command::DeleteEnvironment { .. }
        | Command::RecordEnvEvent { .. }) => return super::environments::apply(sm, command),
        command @ (Command::CreateNetwork { .. } | Command::DeleteNetwork { .. }) => {
            return super::networks::apply(sm, command);
        }
        command @ (Command::CreateBackup(_)
        | Command::DeleteBackup { .. }
        | Command::RecordBackupRun { .. }) => return super::backups::apply(sm, command),
        command @ (Command::CreateFriend(_)
        | Command::RedeemFriend { .. }
        | Command::DeleteFriend { .. }
        | Command::AddFriendLink(_)
        | Command::DeleteFriendLink { .. }) => return super::friends::apply(sm, command),
        Command::InitCloud { cloud, founder } => {
            if exists(sm, CLOUD_KEY)? {
                return Ok(Err(CommandError::AlreadyInitialized));
            }
            put_value(sm, CLOUD_KEY, &cloud)?;
            put_value(sm, &peer_key(&founder.id()), &founder)?;
        }
        Command::CreateInvite(invite) => {
            // Never overwrite: a replayed create must not make a used
            // invite redeemable again.
            let key = invite_key(&invite.id);
            if get_value::<InviteRecord>(sm, &key)?.is_some() {
                return Ok(Err(CommandError::InviteExists));
            }
            put_value(sm, &key, &invite)?;
        }
        Command::RedeemInvite {
            invite_id,
            secret_hash,
            peer,
            now,
        } => {
            let key = invite_key(&invite_id);
            let Some(mut invite) = get_value::<InviteRecord>(sm, &key)? else {
                return Ok(Err(CommandError::InviteUnknown));
            };
            if invite.used_by.is_some() {
                return Ok(Err(CommandError::InviteUsed));
            }
            if now > invite.expires_at {
                return Ok(Err(CommandError::InviteExpired));
            }
            if secret_hash != invite.secret_hash {
                return Ok(Err(CommandError::InviteSecretMismatch));
            }
            let id = peer.id();
            let peer_key = peer_key(&id);
            if exists(sm, &peer_key)? {
                return Ok(Err(CommandError::PeerExists(id)));
            }
            invite.used_by = Some(id);
            put_value(sm, &key, &invite)?;
            put_value(sm, &peer_key, &peer)?;
        }
        Command::UpdatePeerAddrs { peer, addrs } => {
            let key = peer_key(&peer);
            let Some(mut record) = get_value::<PeerRecord>(sm, &key)? else {
                return Ok(Err(CommandError::PeerUnknown(peer)));
            };
            record.addrs = addrs;
            put_value(sm, &key, &record)?;
        }
        Command::RevokePeer { peer, at } => {
            let key = peer_key(&peer);
            let Some(mut record) = get_value::<PeerRecord>(sm, &key)? else {
                return Ok(Err(CommandError::PeerUnknown(peer)));
            };
            if record.revoked_at.is_some() {
                return Ok(Err(CommandError::PeerRevoked(peer)));
            }
            record.revoked_at = Some(at);
            put_value(sm, &key, &record)?;
        }
        Command::CreateToken(token) => {
            put_value(sm, &token_key(&token.hash), &token)?;
        }
        Command::RevokeToken { hash } => {
            let row = token_key(&hash);
            if get_value::<TokenRecord>(sm, &row)?.is_none() {
                return Ok(Err(CommandError::TokenUnknown));
            }
            sm.remove(row.as_str())
                .map_err(db_err("removing a token"))?;
        }
        Command::SetConfig { key, value } => {
            if let Err(reason) = check_setting(&key, value.as_deref()) {
                return Ok(Err(CommandError::InvalidConfig(reason)));
            }
            let row = config_key(&key);
            match value {
                Some(value) => put_value(sm, &row, &value)?,
                None => {
                    sm.remove(row.as_str())
                        .map_err(db_err("removing a setting"))?;
                }
            }
        }
    }
    Ok(Ok(()))
}

fn exists(sm: &StrTable<'_>, key: &str) -> Result<bool, StoreError> {
    Ok(sm
        .get(key)
        .map_err(db_err("reading the state table"))?
        .is_some())
}

/// Setting names end up in keys, URLs and CLI output, so they stay short and
/// plain; values are capped so the replicated state stays small.
fn check_setting(key: &str, value: Option<&str>) -> Result<(), String> {
    let plain =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
    if key.is_empty() || key.chars().count() > CONFIG_KEY_MAX || !key.chars().all(plain) {
        return Err(format!(
            "setting name `{key}` must be 1 to {CONFIG_KEY_MAX} characters of a-z, 0-9, `.`, `_` or `-`"
        ));
    }
    if let Some(value) = value
        && value.len() > CONFIG_VALUE_MAX
    {
        return Err(format!(
            "the value of `{key}` is {} bytes; at most {CONFIG_VALUE_MAX} are allowed",
            value.len()
        ));
    }
    Ok(())
}

/// Dumps the `sm` table and stores the result as the current snapshot, in
/// the write transaction so no apply can slip in between the two.
fn build<C: StoreConfig>(txn: &WriteTransaction) -> Result<Built<C>, StoreError> {
    let mut meta = txn
        .open_table(META)
        .map_err(db_err("opening the meta table"))?;
    let sm = txn
        .open_table(SM)
        .map_err(db_err("opening the state table"))?;
    let applied: Option<LogId<C::NodeId>> = get_value(&meta, META_APPLIED)?;
    let membership: StoredMembership<C::NodeId, C::Node> =
        get_value(&meta, META_MEMBERSHIP)?.unwrap_or_default();
    let mut rows = Vec::new();
    for row in sm.iter().map_err(db_err("reading the state table"))? {
        let (key, value) = row.map_err(db_err("reading the state table"))?;
        rows.push((key.value().to_owned(), value.value().to_vec()));
    }
    let seq = get_value::<u64>(&meta, META_SNAPSHOT_SEQ)?.unwrap_or(0) + 1;
    let snapshot_id = match &applied {
        // LogId displays as `<term>-<index>`.
        Some(id) => format!("{id}-{seq}"),
        None => format!("0-0-{seq}"),
    };
    let blob = SnapshotBlob {
        applied: applied.clone(),
        membership: membership.clone(),
        rows,
    };
    let data = super::encode(&blob, "snapshot")?;
    let snapshot_meta = SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id,
    };
    put_value(&mut meta, META_SNAPSHOT_SEQ, &seq)?;
    put_value(&mut meta, META_SNAPSHOT_META, &snapshot_meta)?;
    meta.insert(META_SNAPSHOT_DATA, data.as_slice())
        .map_err(db_err("storing the snapshot"))?;
    Ok((snapshot_meta, data))
}

/// Replaces the whole `sm` table and the Raft pointers with a snapshot's, and
/// keeps the snapshot as the current one.
fn install<NID: NodeId, N: Node>(
    txn: &WriteTransaction,
    snapshot_meta: &SnapshotMeta<NID, N>,
    blob: SnapshotBlob<NID, N>,
    data: &[u8],
) -> Result<(), StoreError> {
    let mut sm = txn
        .open_table(SM)
        .map_err(db_err("opening the state table"))?;
    sm.retain(|_, _| false)
        .map_err(db_err("clearing the state table"))?;
    for (key, value) in &blob.rows {
        sm.insert(key.as_str(), value.as_slice())
            .map_err(db_err("installing the snapshot"))?;
    }
    let mut meta = txn
        .open_table(META)
        .map_err(db_err("opening the meta table"))?;
    match &blob.applied {
        Some(applied) => put_value(&mut meta, META_APPLIED, applied)?,
        None => {
            meta.remove(META_APPLIED)
                .map_err(db_err("installing the snapshot"))?;
        }
    }
    put_value(&mut meta, META_MEMBERSHIP, &blob.membership)?;
    put_value(&mut meta, META_SNAPSHOT_META, snapshot_meta)?;
    meta.insert(META_SNAPSHOT_DATA, data)
        .map_err(db_err("storing the snapshot"))?;
    Ok(())
}
