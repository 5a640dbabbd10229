//! Object operations: put, get (ranges, conditions), head, delete,
//! multi-delete and copy.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use coop_state::{BucketRecord, Command, CommandError, ObjectRecord, StripeLayout, WriteError};

use coop_types::unix_now;

use crate::access::Need;
use crate::body;
use crate::buckets::timestamp_ms;
use crate::conditions::Conditions;
use crate::errors::{command_error, internal, no_such_key, write_error};
use crate::service::CoopS3;

/// S3's longest key, in UTF-8 bytes.
const MAX_KEY_BYTES: usize = 1024;
/// S3's cap on user metadata (names and values), in bytes.
const MAX_METADATA_BYTES: usize = 2048;
/// Keys one multi-delete may name.
const MAX_DELETE_KEYS: usize = 1000;
/// What S3 reports for an object stored without a Content-Type.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

pub(crate) fn now_ms() -> u64 {
    coop_types::unix_now_ms()
}

pub(crate) fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "the object key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is too long: {} bytes, at most {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    Ok(())
}

/// User metadata as stored: lower-case names, within S3's size cap.
pub(crate) fn user_metadata(metadata: Option<Metadata>) -> S3Result<BTreeMap<String, String>> {
    let metadata: BTreeMap<String, String> = metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let bytes: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_METADATA_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size: {bytes} bytes, at most {MAX_METADATA_BYTES}"
        ));
    }
    Ok(metadata)
}

fn metadata_out(object: &ObjectRecord) -> Option<Metadata> {
    (!object.metadata.is_empty()).then(|| {
        object
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

fn content_type_out(object: &ObjectRecord) -> Option<ContentType> {
    Some(
        object
            .content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
    )
}

impl CoopS3 {
    /// The layout new blocks of `bucket` get now.
    pub(crate) fn layout(&self, bucket: &BucketRecord) -> S3Result<StripeLayout> {
        self.stripes.layout_for_bucket(bucket).map_err(internal)
    }

    /// The object at `key`, after the caller's fresh read.
    pub(crate) fn object(&self, bucket: &str, key: &str) -> S3Result<ObjectRecord> {
        self.store()
            .object(bucket, key)
            .map_err(internal)?
            .ok_or_else(|| no_such_key(key))
    }
}

pub(crate) fn content_md5_matches(expected: Option<&str>, md5: &[u8; 16]) -> S3Result<()> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let decoded = data_encoding::BASE64
        .decode(expected.trim().as_bytes())
        .map_err(|_| {
            s3_error!(
                InvalidDigest,
                "The Content-MD5 you specified is not valid base64"
            )
        })?;
    if decoded.as_slice() != md5.as_slice() {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ));
    }
    Ok(())
}

pub(crate) async fn put(
    s3: &CoopS3,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let metadata = user_metadata(input.metadata)?;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    if let Some(ETagCondition::Any) = &input.if_none_match
        && s3
            .store()
            .object(&bucket.name, &input.key)
            .map_err(internal)?
            .is_some()
    {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    // A write bound to go past the quota is refused before a shard is
    // stored; the control plane decides again at the commit.
    if let Some(len) = input.content_length.and_then(|len| u64::try_from(len).ok()) {
        s3.store()
            .object_fits(&bucket, &input.key, len)
            .map_err(internal)?
            .map_err(command_error)?;
    }
    let layout = s3.layout(&bucket)?;
    let stored = body::store_body(
        &s3.stripes,
        layout,
        bucket.zone_spread,
        input.body,
        s3.limits.max_body_bytes,
    )
    .await?;
    content_md5_matches(input.content_md5.as_deref(), &stored.md5)?;
    let etag = stored.etag();
    let object = ObjectRecord {
        size: stored.size,
        etag: etag.clone(),
        content_type: input.content_type,
        metadata,
        modified_ms: now_ms(),
        blocks: stored.blocks,
        parts: Vec::new(),
    };
    s3.commit(Command::PutObject {
        bucket: bucket.name,
        key: input.key,
        object,
        stripes: stored.stripes,
        now: unix_now(),
    })
    .await?;
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(etag)),
        size: i64::try_from(stored.size).ok(),
        ..Default::default()
    }))
}

/// The byte range a GET asks for, checked against the object's size.
fn byte_range(range: Option<Range>, size: u64) -> S3Result<(std::ops::Range<u64>, Option<String>)> {
    match range {
        None => Ok((0..size, None)),
        Some(range) => {
            let span = range.check(size).map_err(|_| {
                s3_error!(
                    InvalidRange,
                    "The requested range is not satisfiable for an object of {size} bytes"
                )
            })?;
            let header = format!("bytes {}-{}/{size}", span.start, span.end - 1);
            Ok((span, Some(header)))
        }
    }
}

/// What a GET or HEAD serves: the `Range`, or the part `partNumber` names
/// (a part of a multipart upload; an object from a single PUT is one
/// part), with its `Content-Range` and, for a multipart object asked for a
/// part, the number of parts.
fn span_of(
    range: Option<Range>,
    part: Option<i32>,
    object: &ObjectRecord,
) -> S3Result<(std::ops::Range<u64>, Option<String>, Option<i32>)> {
    let Some(number) = part else {
        let (span, header) = byte_range(range, object.size)?;
        return Ok((span, header, None));
    };
    if range.is_some() {
        return Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        ));
    }
    let single = [object.size];
    let parts: &[u64] = if object.parts.is_empty() {
        &single
    } else {
        &object.parts
    };
    let index = usize::try_from(number)
        .ok()
        .filter(|n| (1..=parts.len()).contains(n))
        .ok_or_else(|| {
            let mut err = S3Error::with_message(
                S3ErrorCode::from_bytes(b"InvalidPartNumber").unwrap_or(S3ErrorCode::InvalidRange),
                format!(
                    "The requested partnumber is not satisfiable: the object has {} part(s)",
                    parts.len()
                ),
            );
            err.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
            err
        })?
        - 1;
    let start: u64 = parts[..index].iter().sum();
    let span = start..start + parts[index];
    let header =
        (object.size > 0).then(|| format!("bytes {}-{}/{}", span.start, span.end - 1, object.size));
    let count = (!object.parts.is_empty()).then_some(parts.len() as i32);
    Ok((span, header, count))
}

/// The object a GET or HEAD serves: the key may read, the object exists
/// and the request's conditions hold (304 or 412 otherwise).
async fn readable(
    s3: &CoopS3,
    credentials: &Option<s3s::auth::Credentials>,
    bucket: &str,
    key: &str,
    conditions: Conditions,
) -> S3Result<ObjectRecord> {
    s3.bucket_for(credentials, bucket, Need::Read).await?;
    let object = s3.object(bucket, key)?;
    conditions.check(&object, true)?;
    Ok(object)
}

pub(crate) async fn get(
    s3: &CoopS3,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let object = readable(
        s3,
        &req.credentials,
        &input.bucket,
        &input.key,
        Conditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        },
    )
    .await?;
    let (span, content_range, parts_count) = span_of(input.range, input.part_number, &object)?;
    let length = span.end - span.start;
    let body = body::read_body(&s3.stripes, s3.store(), &object, span);
    Ok(S3Response::new(GetObjectOutput {
        accept_ranges: Some("bytes".into()),
        body: Some(body),
        content_length: i64::try_from(length).ok(),
        content_range,
        parts_count,
        content_type: content_type_out(&object),
        e_tag: Some(ETag::Strong(object.etag.clone())),
        last_modified: Some(timestamp_ms(object.modified_ms)),
        metadata: metadata_out(&object),
        ..Default::default()
    }))
}

pub(crate) async fn head(
    s3: &CoopS3,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let object = readable(
        s3,
        &req.credentials,
        &input.bucket,
        &input.key,
        Conditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        },
    )
    .await?;
    let (span, content_range, parts_count) = span_of(input.range, input.part_number, &object)?;
    Ok(S3Response::new(HeadObjectOutput {
        accept_ranges: Some("bytes".into()),
        content_length: i64::try_from(span.end - span.start).ok(),
        content_range,
        parts_count,
        content_type: content_type_out(&object),
        e_tag: Some(ETag::Strong(object.etag.clone())),
        last_modified: Some(timestamp_ms(object.modified_ms)),
        metadata: metadata_out(&object),
        ..Default::default()
    }))
}

pub(crate) async fn delete(
    s3: &CoopS3,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    s3.commit(Command::DeleteObjects {
        bucket: bucket.name,
        keys: vec![input.key],
        now: unix_now(),
    })
    .await?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

pub(crate) async fn delete_many(
    s3: &CoopS3,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    let objects = input.delete.objects;
    if objects.len() > MAX_DELETE_KEYS {
        return Err(s3_error!(
            MalformedXML,
            "a multi-object delete may name at most {MAX_DELETE_KEYS} keys, this one names {}",
            objects.len()
        ));
    }
    let mut keys = Vec::with_capacity(objects.len());
    let mut errors = Vec::new();
    for object in objects {
        match check_key(&object.key) {
            Ok(()) => keys.push(object.key),
            Err(err) => errors.push(Error {
                code: Some(err.code().as_str().to_owned()),
                key: Some(object.key),
                message: err.message().map(str::to_owned),
                version_id: None,
            }),
        }
    }
    s3.commit(Command::DeleteObjects {
        bucket: bucket.name,
        keys: keys.clone(),
        now: unix_now(),
    })
    .await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let deleted = (!quiet).then(|| {
        keys.into_iter()
            .map(|key| DeletedObject {
                key: Some(key),
                ..Default::default()
            })
            .collect()
    });
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted,
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    }))
}

/// The bucket and key a copy reads from.
pub(crate) fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id: None,
        } => Ok((bucket.to_string(), key.to_string())),
        CopySource::Bucket { .. } => Err(s3_error!(
            NotImplemented,
            "coop buckets are not versioned; copy without a versionId"
        )),
        _ => Err(s3_error!(
            InvalidArgument,
            "x-amz-copy-source must be <bucket>/<key>"
        )),
    }
}

pub(crate) async fn copy(
    s3: &CoopS3,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let (src_bucket, src_key) = copy_source(&input.copy_source)?;
    s3.bucket_for(&req.credentials, &src_bucket, Need::Read)
        .await?;
    let dest = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    if !replace && src_bucket == dest.name && src_key == input.key {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let conditions = Conditions {
        if_match: input.copy_source_if_match,
        if_none_match: input.copy_source_if_none_match,
        if_modified_since: input.copy_source_if_modified_since,
        if_unmodified_since: input.copy_source_if_unmodified_since,
    };
    let new_metadata = if replace {
        Some((user_metadata(input.metadata)?, input.content_type))
    } else {
        None
    };
    // The copy shares the source's blocks. If the source is replaced
    // between reading it and committing, its blocks may be gone: read it
    // again and retry.
    let mut last: Option<S3Error> = None;
    for _ in 0..3 {
        let source = s3.object(&src_bucket, &src_key)?;
        conditions.check(&source, false)?;
        let (metadata, content_type) = match &new_metadata {
            Some((metadata, content_type)) => (metadata.clone(), content_type.clone()),
            None => (source.metadata.clone(), source.content_type.clone()),
        };
        let modified_ms = now_ms();
        let object = ObjectRecord {
            size: source.size,
            etag: source.etag.clone(),
            content_type,
            metadata,
            modified_ms,
            blocks: source.blocks.clone(),
            parts: source.parts.clone(),
        };
        match s3
            .control
            .write(Command::PutObject {
                bucket: dest.name.clone(),
                key: input.key.clone(),
                object,
                stripes: Vec::new(),
                now: unix_now(),
            })
            .await
        {
            Ok(()) => {
                return Ok(S3Response::new(CopyObjectOutput {
                    copy_object_result: Some(CopyObjectResult {
                        e_tag: Some(ETag::Strong(source.etag)),
                        last_modified: Some(timestamp_ms(modified_ms)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }));
            }
            Err(WriteError::Rejected(CommandError::StripeGone)) => {
                last = Some(write_error(WriteError::Rejected(CommandError::StripeGone)));
                s3.fresh().await?;
            }
            Err(err) => return Err(write_error(err)),
        }
    }
    Err(last.unwrap_or_else(|| internal("the copy did not settle")))
}
