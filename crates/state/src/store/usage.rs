//! How many bytes each bucket holds, and the quota checks that read it.
//!
//! Row `usage/<bucket>` of the `sm` table holds the sum of the sizes of the
//! bucket's current objects; a missing row is 0. Every apply that adds,
//! replaces or removes an object updates it in the same write transaction,
//! so it is exact on every replica, travels in snapshots like any other
//! row, survives restarts, and is never counted by scanning the objects.
//! The parts of an upload in progress are not in it: they count once the
//! upload completes, and against the quota while they are uploaded
//! ([`part_fits`]).
//!
//! Quota refusals are decided here, before the command changes anything:
//! a refused command leaves the table as it was, and the shards its writer
//! already stored have no stripe record, so the store's collection removes
//! them like those of any refused write.

use redb::ReadableTable;

use super::objects::{bucket_key, object_key, parts_prefix};
use super::{StateStore, StoreError, StrTable, db_err, get_value, put_value, scan_values};
use crate::objects::{BucketRecord, ObjectRecord, PartRecord, check_quota};
use crate::records::CommandError;

const USAGE_PREFIX: &str = "usage/";

/// The outcome of a check or an apply: storage failure outside, refusal
/// inside.
type Decided = Result<Result<(), CommandError>, StoreError>;

fn usage_key(bucket: &str) -> String {
    format!("{USAGE_PREFIX}{bucket}")
}

/// The bytes `bucket`'s objects hold.
pub(super) fn usage(
    sm: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &str,
) -> Result<u64, StoreError> {
    Ok(get_value(sm, &usage_key(bucket))?.unwrap_or(0))
}

/// Counts `new` bytes in `bucket` in place of `old` ones (an object put
/// over another, or deleted with `new` 0).
pub(super) fn account(
    sm: &mut StrTable<'_>,
    bucket: &str,
    old: u64,
    new: u64,
) -> Result<(), StoreError> {
    if old == new {
        return Ok(());
    }
    let now = usage(sm, bucket)?.saturating_sub(old).saturating_add(new);
    put_value(sm, &usage_key(bucket), &now)
}

/// Drops the count of a bucket that is deleted (it is empty by then).
pub(super) fn forget(sm: &mut StrTable<'_>, bucket: &str) -> Result<(), StoreError> {
    sm.remove(usage_key(bucket).as_str())
        .map_err(db_err("removing a bucket's usage"))?;
    Ok(())
}

/// Whether an object of `new` bytes, replacing one of `replaced` bytes,
/// fits under `bucket`'s quota.
pub(super) fn object_fits(
    sm: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &BucketRecord,
    replaced: u64,
    new: u64,
) -> Decided {
    if bucket.quota.is_none() {
        return Ok(Ok(()));
    }
    let usage = usage(sm, &bucket.name)?;
    Ok(check_quota(bucket, usage, replaced, new))
}

/// Whether part `number` of `upload`, `new` bytes, fits under `bucket`'s
/// quota together with the bucket's objects and the upload's other parts,
/// so a client cannot fill the disks with parts it never completes.
pub(super) fn part_fits(
    sm: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &BucketRecord,
    upload: &str,
    number: u32,
    new: u64,
) -> Decided {
    if bucket.quota.is_none() {
        return Ok(Ok(()));
    }
    let parts: Vec<PartRecord> = scan_values(sm, &parts_prefix(upload))?;
    let held: u64 = parts.iter().map(|part| part.size).sum();
    let replaced = parts
        .iter()
        .find(|part| part.number == number)
        .map_or(0, |part| part.size);
    let usage = usage(sm, &bucket.name)?.saturating_add(held);
    Ok(check_quota(bucket, usage, replaced, new))
}

/// Applies [`crate::Command::SetBucketQuota`].
pub(super) fn set_quota(sm: &mut StrTable<'_>, bucket: &str, quota: Option<u64>) -> Decided {
    let row = bucket_key(bucket);
    let Some(mut record) = get_value::<BucketRecord>(sm, &row)? else {
        return Ok(Err(CommandError::BucketUnknown(bucket.to_owned())));
    };
    record.quota = quota;
    put_value(sm, &row, &record)?;
    Ok(Ok(()))
}

impl StateStore {
    /// The bytes `bucket`'s objects hold, as the state machine counts them
    /// (0 for a bucket that does not exist).
    pub fn bucket_usage(&self, bucket: &str) -> Result<u64, StoreError> {
        self.read_sm(|sm| usage(sm, bucket))
    }

    /// Whether an object of `new` bytes at `key` fits under `bucket`'s
    /// quota now, as the state machine would decide it: an early check for
    /// a writer that knows the length before it stores a shard. The
    /// state machine decides again when the write is committed.
    pub fn object_fits(&self, bucket: &BucketRecord, key: &str, new: u64) -> Decided {
        if bucket.quota.is_none() {
            return Ok(Ok(()));
        }
        self.read_sm(|sm| {
            let old: Option<ObjectRecord> = get_value(sm, &object_key(&bucket.name, key))?;
            object_fits(sm, bucket, old.map_or(0, |old| old.size), new)
        })
    }

    /// Whether part `number` of `upload`, `new` bytes, fits under
    /// `bucket`'s quota now; the early check of [`Self::object_fits`] for
    /// a part.
    pub fn part_fits(&self, bucket: &BucketRecord, upload: &str, number: u32, new: u64) -> Decided {
        if bucket.quota.is_none() {
            return Ok(Ok(()));
        }
        self.read_sm(|sm| part_fits(sm, bucket, upload, number, new))
    }
}
