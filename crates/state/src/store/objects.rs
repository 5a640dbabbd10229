//! Apply rules and local reads for the S3 records: keys, buckets, objects,
//! multipart uploads and stripes.
//!
//! Rows of the `sm` table: `s3key/<id>`, `bucket/<name>`,
//! `obj/<bucket>/<key>`, `upload/<id>`, `part/<upload id>/<number>` and
//! `stripe/<hex block id>`; each bucket's byte count, `usage/<bucket>`, is
//! kept by `usage`. Bucket names never hold `/`, so the objects of a
//! bucket are one contiguous range in key order, which is S3's listing
//! order (UTF-8 bytes).
//!
//! Every stripe counts its references (objects and parts). When the count
//! drops to zero the stripe is marked dead, not removed, so that reads in
//! flight still find its shards; garbage collection removes it later.

use std::collections::BTreeMap;

use redb::ReadableTable;

use super::usage;
use super::{
    StateStore, StoreError, StrTable, db_err, get_value, hex, put_value, scan, scan_values,
};
use crate::objects::{
    BlockId, BlockRef, BucketRecord, Completion, MIN_PART_SIZE, NewStripe, ObjectRecord,
    PartRecord, S3KeyRecord, StripeRecord, UploadRecord,
};
use crate::records::{Command, CommandError};

const S3KEY_PREFIX: &str = "s3key/";
const BUCKET_PREFIX: &str = "bucket/";
const OBJECT_PREFIX: &str = "obj/";
const UPLOAD_PREFIX: &str = "upload/";
const PART_PREFIX: &str = "part/";
const STRIPE_PREFIX: &str = "stripe/";

/// The outcome of applying one command: storage failure outside, refusal
/// inside.
type Applied = Result<Result<(), CommandError>, StoreError>;

pub(super) fn s3key_key(id: &str) -> String {
    format!("{S3KEY_PREFIX}{id}")
}

pub(super) fn bucket_key(name: &str) -> String {
    format!("{BUCKET_PREFIX}{name}")
}

pub(super) fn object_key(bucket: &str, key: &str) -> String {
    format!("{OBJECT_PREFIX}{bucket}/{key}")
}

pub(super) fn objects_prefix(bucket: &str) -> String {
    format!("{OBJECT_PREFIX}{bucket}/")
}

pub(super) fn upload_key(id: &str) -> String {
    format!("{UPLOAD_PREFIX}{id}")
}

pub(super) fn parts_prefix(upload: &str) -> String {
    format!("{PART_PREFIX}{upload}/")
}

fn part_key(upload: &str, number: u32) -> String {
    // Zero-padded so parts list in numeric order.
    format!("{PART_PREFIX}{upload}/{number:05}")
}

pub(super) fn stripe_key(id: &BlockId) -> String {
    format!("{STRIPE_PREFIX}{}", hex(id))
}

pub(super) const STRIPES_PREFIX: &str = STRIPE_PREFIX;
pub(super) const OBJECTS_ROW_PREFIX: &str = OBJECT_PREFIX;
pub(super) const BUCKETS_PREFIX: &str = BUCKET_PREFIX;
pub(super) const S3KEYS_PREFIX: &str = S3KEY_PREFIX;
pub(super) const UPLOADS_PREFIX: &str = UPLOAD_PREFIX;

/// Applies one S3 command. Callers route only S3 commands here.
pub(super) fn apply(sm: &mut StrTable<'_>, command: Command) -> Applied {
    match command {
        Command::CreateS3Key(key) => create_key(sm, key),
        Command::DeleteS3Key { id } => delete_key(sm, &id),
        Command::CreateBucket(bucket) => create_bucket(sm, bucket),
        Command::DeleteBucket { name, now } => delete_bucket(sm, &name, now),
        Command::SetGrant { bucket, key, grant } => {
            let row = bucket_key(&bucket);
            let Some(mut record) = get_value::<BucketRecord>(sm, &row)? else {
                return Ok(Err(CommandError::BucketUnknown(bucket)));
            };
            if get_value::<S3KeyRecord>(sm, &s3key_key(&key))?.is_none() {
                return Ok(Err(CommandError::S3KeyUnknown(key)));
            }
            match grant {
                Some(grant) => record.grants.insert(key, grant),
                None => record.grants.remove(&key),
            };
            put_value(sm, &row, &record)?;
            Ok(Ok(()))
        }
        Command::PutObject {
            bucket,
            key,
            object,
            stripes,
            now,
        } => put_object(sm, &bucket, &key, object, stripes, now),
        Command::DeleteObjects { bucket, keys, now } => {
            if get_value::<BucketRecord>(sm, &bucket_key(&bucket))?.is_none() {
                return Ok(Err(CommandError::BucketUnknown(bucket)));
            }
            for key in keys {
                let row = object_key(&bucket, &key);
                if let Some(old) = get_value::<ObjectRecord>(sm, &row)? {
                    release(sm, &old.blocks, now)?;
                    sm.remove(row.as_str())
                        .map_err(db_err("removing an object"))?;
                    super::journal::note(&row);
                    usage::account(sm, &bucket, old.size, 0)?;
                }
            }
            Ok(Ok(()))
        }
        Command::CreateUpload(upload) => {
            if get_value::<BucketRecord>(sm, &bucket_key(&upload.bucket))?.is_none() {
                return Ok(Err(CommandError::BucketUnknown(upload.bucket)));
            }
            let row = upload_key(&upload.id);
            if exists(sm, &row)? {
                return Ok(Err(CommandError::InvalidRecord(format!(
                    "upload id {} is taken",
                    upload.id
                ))));
            }
            put_value(sm, &row, &upload)?;
            Ok(Ok(()))
        }
        Command::PutPart {
            upload,
            part,
            stripes,
            now,
        } => put_part(sm, &upload, part, stripes, now),
        Command::CompleteUpload {
            upload,
            completion,
            now,
        } => complete_upload(sm, &upload, completion, now),
        Command::AbortUpload { upload, now } => {
            if get_value::<UploadRecord>(sm, &upload_key(&upload))?.is_none() {
                return Ok(Err(CommandError::UploadUnknown(upload)));
            }
            drop_upload(sm, &upload, now)?;
            Ok(Ok(()))
        }
        Command::ForgetStripes {
            blocks,
            dead_before,
        } => {
            for block in blocks {
                let row = stripe_key(&block);
                let dead = get_value::<StripeRecord>(sm, &row)?
                    .is_some_and(|s| s.refs == 0 && s.dead_since.is_some_and(|t| t < dead_before));
                if dead {
                    sm.remove(row.as_str())
                        .map_err(db_err("forgetting a stripe"))?;
                    super::journal::note(&row);
                }
            }
            Ok(Ok(()))
        }
        Command::SetBucketQuota { bucket, quota } => usage::set_quota(sm, &bucket, quota),
        Command::MoveShards { block, moves } => {
            let row = stripe_key(&block);
            let Some(mut stripe) = get_value::<StripeRecord>(sm, &row)? else {
                return Ok(Err(CommandError::StripeGone));
            };
            for (index, location) in moves {
                let Some(slot) = stripe.shards.get_mut(index as usize) else {
                    return Ok(Err(CommandError::InvalidRecord(format!(
                        "shard {index} is out of range for a {} stripe",
                        stripe.layout
                    ))));
                };
                if slot.checksum != location.checksum {
                    return Ok(Err(CommandError::InvalidRecord(format!(
                        "a moved shard {index} must keep its checksum"
                    ))));
                }
                *slot = location;
            }
            put_value(sm, &row, &stripe)?;
            Ok(Ok(()))
        }
        other => Ok(Err(CommandError::InvalidRecord(format!(
            "not an S3 command: {other:?}"
        )))),
    }
}

fn exists(sm: &StrTable<'_>, key: &str) -> Result<bool, StoreError> {
    Ok(sm
        .get(key)
        .map_err(db_err("reading the state table"))?
        .is_some())
}

/// Whether any row starts with `prefix`.
fn any_with_prefix(sm: &StrTable<'_>, prefix: &str) -> Result<bool, StoreError> {
    let mut rows = sm
        .range(prefix..)
        .map_err(db_err("scanning the state table"))?;
    match rows.next() {
        Some(row) => {
            let (key, _) = row.map_err(db_err("scanning the state table"))?;
            Ok(key.value().starts_with(prefix))
        }
        None => Ok(false),
    }
}

fn create_key(sm: &mut StrTable<'_>, key: S3KeyRecord) -> Applied {
    let row = s3key_key(&key.id);
    if exists(sm, &row)? {
        return Ok(Err(CommandError::S3KeyExists(key.id)));
    }
    put_value(sm, &row, &key)?;
    Ok(Ok(()))
}

fn delete_key(sm: &mut StrTable<'_>, id: &str) -> Applied {
    let row = s3key_key(id);
    if !exists(sm, &row)? {
        return Ok(Err(CommandError::S3KeyUnknown(id.to_owned())));
    }
    sm.remove(row.as_str())
        .map_err(db_err("removing an S3 key"))?;
    for (row, mut bucket) in scan::<BucketRecord>(sm, BUCKET_PREFIX)? {
        if bucket.grants.remove(id).is_some() {
            put_value(sm, &row, &bucket)?;
        }
    }
    Ok(Ok(()))
}

fn create_bucket(sm: &mut StrTable<'_>, bucket: BucketRecord) -> Applied {
    if !crate::objects::valid_bucket_name(&bucket.name) {
        return Ok(Err(CommandError::InvalidRecord(format!(
            "`{}` is not a valid bucket name",
            bucket.name
        ))));
    }
    let row = bucket_key(&bucket.name);
    if exists(sm, &row)? {
        return Ok(Err(CommandError::BucketExists(bucket.name)));
    }
    for key in bucket.grants.keys() {
        if !exists(sm, &s3key_key(key))? {
            return Ok(Err(CommandError::S3KeyUnknown(key.clone())));
        }
    }
    put_value(sm, &row, &bucket)?;
    Ok(Ok(()))
}

fn delete_bucket(sm: &mut StrTable<'_>, name: &str, now: u64) -> Applied {
    let row = bucket_key(name);
    if !exists(sm, &row)? {
        return Ok(Err(CommandError::BucketUnknown(name.to_owned())));
    }
    if any_with_prefix(sm, &objects_prefix(name))? {
        return Ok(Err(CommandError::BucketNotEmpty(name.to_owned())));
    }
    let uploads: Vec<UploadRecord> = scan_values(sm, UPLOAD_PREFIX)?;
    for upload in uploads.iter().filter(|u| u.bucket == name) {
        drop_upload(sm, &upload.id, now)?;
    }
    sm.remove(row.as_str())
        .map_err(db_err("removing a bucket"))?;
    usage::forget(sm, name)?;
    Ok(Ok(()))
}

/// Registers new stripes and takes a reference on every block of `blocks`.
/// Refused, before anything is written, when a shared block is gone.
pub(super) fn acquire(
    sm: &mut StrTable<'_>,
    blocks: &[BlockRef],
    stripes: Vec<NewStripe>,
) -> Result<Result<(), CommandError>, StoreError> {
    let mut new: BTreeMap<BlockId, StripeRecord> = BTreeMap::new();
    for NewStripe { id, mut stripe } in stripes {
        if stripe.shards.len() != stripe.layout.width() {
            return Ok(Err(CommandError::InvalidRecord(format!(
                "a {} stripe needs {} shard locations, got {}",
                stripe.layout,
                stripe.layout.width(),
                stripe.shards.len()
            ))));
        }
        stripe.refs = 0;
        stripe.dead_since = None;
        new.insert(id, stripe);
    }
    // Check every shared block before changing anything, so a refusal
    // leaves the table as it was.
    for block in blocks {
        if new.contains_key(&block.id) {
            continue;
        }
        match get_value::<StripeRecord>(sm, &stripe_key(&block.id))? {
            Some(stripe) if stripe.refs > 0 => {}
            _ => return Ok(Err(CommandError::StripeGone)),
        }
    }
    for block in blocks {
        let row = stripe_key(&block.id);
        let mut stripe = match new.remove(&block.id) {
            Some(stripe) => stripe,
            None => match get_value::<StripeRecord>(sm, &row)? {
                Some(stripe) => stripe,
                None => return Ok(Err(CommandError::StripeGone)),
            },
        };
        // A block listed twice is counted twice: its second turn reads
        // the row written by the first.
        stripe.refs += 1;
        put_value(sm, &row, &stripe)?;
    }
    Ok(Ok(()))
}

/// Drops one reference per listed block; a block left without any is marked
/// dead at `now`.
pub(super) fn release(
    sm: &mut StrTable<'_>,
    blocks: &[BlockRef],
    now: u64,
) -> Result<(), StoreError> {
    for block in blocks {
        let row = stripe_key(&block.id);
        if let Some(mut stripe) = get_value::<StripeRecord>(sm, &row)? {
            stripe.refs = stripe.refs.saturating_sub(1);
            if stripe.refs == 0 {
                stripe.dead_since = Some(now);
            }
            put_value(sm, &row, &stripe)?;
        }
    }
    Ok(())
}

fn check_blocks(size: u64, blocks: &[BlockRef]) -> Result<(), CommandError> {
    let total: u64 = blocks.iter().map(|b| u64::from(b.len)).sum();
    if total != size {
        return Err(CommandError::InvalidRecord(format!(
            "blocks hold {total} bytes but the size is {size}"
        )));
    }
    Ok(())
}

fn put_object(
    sm: &mut StrTable<'_>,
    bucket: &str,
    key: &str,
    object: ObjectRecord,
    stripes: Vec<NewStripe>,
    now: u64,
) -> Applied {
    let Some(record) = get_value::<BucketRecord>(sm, &bucket_key(bucket))? else {
        return Ok(Err(CommandError::BucketUnknown(bucket.to_owned())));
    };
    if let Err(refusal) = check_blocks(object.size, &object.blocks) {
        return Ok(Err(refusal));
    }
    let row = object_key(bucket, key);
    let old = get_value::<ObjectRecord>(sm, &row)?;
    let replaced = old.as_ref().map_or(0, |old| old.size);
    if let Err(refusal) = usage::object_fits(sm, &record, replaced, object.size)? {
        return Ok(Err(refusal));
    }
    if let Err(refusal) = acquire(sm, &object.blocks, stripes)? {
        return Ok(Err(refusal));
    }
    if let Some(old) = old {
        release(sm, &old.blocks, now)?;
    }
    usage::account(sm, bucket, replaced, object.size)?;
    put_value(sm, &row, &object)?;
    Ok(Ok(()))
}

fn put_part(
    sm: &mut StrTable<'_>,
    upload: &str,
    part: PartRecord,
    stripes: Vec<NewStripe>,
    now: u64,
) -> Applied {
    let Some(record) = get_value::<UploadRecord>(sm, &upload_key(upload))? else {
        return Ok(Err(CommandError::UploadUnknown(upload.to_owned())));
    };
    if let Err(refusal) = check_blocks(part.size, &part.blocks) {
        return Ok(Err(refusal));
    }
    // Deleting a bucket drops its uploads, so the bucket is there.
    if let Some(bucket) = get_value::<BucketRecord>(sm, &bucket_key(&record.bucket))?
        && let Err(refusal) = usage::part_fits(sm, &bucket, upload, part.number, part.size)?
    {
        return Ok(Err(refusal));
    }
    if let Err(refusal) = acquire(sm, &part.blocks, stripes)? {
        return Ok(Err(refusal));
    }
    let row = part_key(upload, part.number);
    if let Some(old) = get_value::<PartRecord>(sm, &row)? {
        release(sm, &old.blocks, now)?;
    }
    put_value(sm, &row, &part)?;
    Ok(Ok(()))
}

fn complete_upload(
    sm: &mut StrTable<'_>,
    upload_id: &str,
    completion: Completion,
    now: u64,
) -> Applied {
    let Some(upload) = get_value::<UploadRecord>(sm, &upload_key(upload_id))? else {
        return Ok(Err(CommandError::UploadUnknown(upload_id.to_owned())));
    };
    let Some(bucket) = get_value::<BucketRecord>(sm, &bucket_key(&upload.bucket))? else {
        return Ok(Err(CommandError::BucketUnknown(upload.bucket)));
    };
    let stored: BTreeMap<u32, PartRecord> =
        scan_values::<PartRecord>(sm, &parts_prefix(upload_id))?
            .into_iter()
            .map(|part| (part.number, part))
            .collect();
    if completion.parts.is_empty() {
        return Ok(Err(CommandError::InvalidRecord(
            "a completion must list at least one part".into(),
        )));
    }
    // Order first, then each part, then sizes: the order of S3's checks.
    let ascending = completion
        .parts
        .windows(2)
        .all(|pair| pair[0].0 < pair[1].0);
    if !ascending || completion.parts[0].0 == 0 {
        return Ok(Err(CommandError::InvalidPartOrder));
    }
    let mut chosen = Vec::with_capacity(completion.parts.len());
    for (number, etag) in &completion.parts {
        match stored.get(number) {
            Some(part) if part.etag == *etag => chosen.push(part),
            _ => return Ok(Err(CommandError::InvalidPart { part: *number })),
        }
    }
    if let Some(small) = chosen[..chosen.len() - 1]
        .iter()
        .find(|part| part.size < MIN_PART_SIZE)
    {
        return Ok(Err(CommandError::PartTooSmall {
            part: small.number,
            size: small.size,
        }));
    }
    let blocks: Vec<BlockRef> = chosen
        .iter()
        .flat_map(|part| part.blocks.iter().copied())
        .collect();
    let object = ObjectRecord {
        size: chosen.iter().map(|part| part.size).sum(),
        etag: completion.etag,
        content_type: upload.content_type.clone(),
        metadata: upload.metadata.clone(),
        modified_ms: completion.modified_ms,
        blocks,
        parts: chosen.iter().map(|part| part.size).collect(),
    };
    let object_row = object_key(&upload.bucket, &upload.key);
    let old = get_value::<ObjectRecord>(sm, &object_row)?;
    let replaced = old.as_ref().map_or(0, |old| old.size);
    if let Err(refusal) = usage::object_fits(sm, &bucket, replaced, object.size)? {
        return Ok(Err(refusal));
    }
    // The object takes over the chosen parts' references; the parts left
    // out lose theirs when the upload is dropped below.
    for block in &object.blocks {
        let row = stripe_key(&block.id);
        if let Some(mut stripe) = get_value::<StripeRecord>(sm, &row)? {
            stripe.refs += 1;
            put_value(sm, &row, &stripe)?;
        }
    }
    if let Some(old) = old {
        release(sm, &old.blocks, now)?;
    }
    usage::account(sm, &upload.bucket, replaced, object.size)?;
    put_value(sm, &object_row, &object)?;
    drop_upload(sm, upload_id, now)?;
    Ok(Ok(()))
}

/// Removes an upload and its parts, releasing their blocks.
fn drop_upload(sm: &mut StrTable<'_>, upload: &str, now: u64) -> Result<(), StoreError> {
    for (row, part) in scan::<PartRecord>(sm, &parts_prefix(upload))? {
        release(sm, &part.blocks, now)?;
        sm.remove(row.as_str()).map_err(db_err("removing a part"))?;
    }
    sm.remove(upload_key(upload).as_str())
        .map_err(db_err("removing an upload"))?;
    Ok(())
}

/// Rows read from the state table per batch while building a page.
const BATCH: usize = 1000;

/// One page of an object listing.
#[derive(Debug, Default)]
pub struct ObjectPage {
    pub objects: Vec<(String, ObjectRecord)>,
    /// Common prefixes (up to and with the delimiter), in key order.
    pub prefixes: Vec<String>,
    /// Whether more keys or prefixes follow.
    pub truncated: bool,
    /// The last key or common prefix returned: where the next page starts.
    pub last: Option<String>,
}

/// The first string after every string that starts with `prefix`, in the
/// order S3 lists keys (UTF-8 bytes, which is `str` order).
pub fn after_all_with(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX)
}

impl StateStore {
    /// One page of `bucket`'s keys under `prefix` after `after` (at most
    /// `max` keys and prefixes), folding keys that contain `delimiter`
    /// past the prefix into common prefixes, as S3's listings do.
    pub fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<String>,
        max: usize,
    ) -> Result<ObjectPage, StoreError> {
        let mut page = ObjectPage::default();
        // A common prefix at or before the marker was returned on an
        // earlier page, even though keys under it sort after the marker.
        let marker = after.clone();
        let mut cursor = after;
        'scan: loop {
            let batch = self.list_objects(bucket, prefix, cursor.as_deref(), BATCH)?;
            if batch.is_empty() {
                break;
            }
            let full = batch.len() == BATCH;
            for (key, object) in batch {
                let folded = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                    key[prefix.len()..]
                        .find(d)
                        .map(|i| prefix.len() + i + d.len())
                });
                if let Some(end) = folded
                    && marker.as_deref().is_some_and(|m| key[..end] <= *m)
                {
                    cursor = Some(after_all_with(&key[..end]));
                    continue 'scan;
                }
                if page.objects.len() + page.prefixes.len() >= max {
                    page.truncated = true;
                    break 'scan;
                }
                match folded {
                    Some(end) => {
                        let common = key[..end].to_owned();
                        cursor = Some(after_all_with(&common));
                        page.last = Some(common.clone());
                        page.prefixes.push(common);
                        // Skip the rest of this prefix with a fresh range scan.
                        continue 'scan;
                    }
                    None => {
                        cursor = Some(key.clone());
                        page.last = Some(key.clone());
                        page.objects.push((key, object));
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(page)
    }
}
