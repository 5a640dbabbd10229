//! Multipart uploads: create, upload part (and part copy), complete,
//! abort, list parts and list uploads.
//!
//! Each part is stored as its own blocks and recorded in the control plane
//! as soon as it is durable; completing an upload only stitches the chosen
//! parts' blocks into one object, so it moves no data.

use bytes::Bytes;
use futures::stream;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use coop_state::{Command, Completion, PartRecord, UploadRecord};
use coop_types::unix_now;

use crate::access::{self, Need};
use crate::body;
use crate::buckets::timestamp_ms;
use crate::errors::{command_error, internal};
use crate::objects::{check_key, content_md5_matches, copy_source, now_ms, user_metadata};
use crate::service::CoopS3;

/// S3's part numbers run from 1 to 10 000.
const MAX_PART_NUMBER: i32 = 10_000;
/// Parts or uploads listed per page by default and at most.
const MAX_LISTED: usize = 1000;

fn part_number(n: i32) -> S3Result<u32> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(n as u32)
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
        ))
    }
}

/// The upload, checked to belong to `bucket` and `key`.
fn upload_of(s3: &CoopS3, bucket: &str, key: &str, id: &str) -> S3Result<UploadRecord> {
    match s3.store().upload(id).map_err(internal)? {
        Some(upload) if upload.bucket == bucket && upload.key == key => Ok(upload),
        _ => Err(s3_error!(
            NoSuchUpload,
            "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        )),
    }
}

pub(crate) async fn create(
    s3: &CoopS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let metadata = user_metadata(input.metadata)?;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    let id = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>());
    let upload = UploadRecord {
        id: id.clone(),
        bucket: bucket.name.clone(),
        key: input.key.clone(),
        content_type: input.content_type,
        metadata,
        initiated_ms: now_ms(),
        initiator: access::key_id(&req.credentials)?.to_owned(),
    };
    s3.commit(Command::CreateUpload(upload)).await?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(bucket.name),
        key: Some(input.key),
        upload_id: Some(id),
        ..Default::default()
    }))
}

/// Records a stored part.
async fn record_part(
    s3: &CoopS3,
    upload: &str,
    number: u32,
    stored: body::Stored,
) -> S3Result<String> {
    let etag = stored.etag();
    s3.commit(Command::PutPart {
        upload: upload.to_owned(),
        part: PartRecord {
            number,
            size: stored.size,
            etag: etag.clone(),
            modified_ms: now_ms(),
            blocks: stored.blocks,
        },
        stripes: stored.stripes,
        now: unix_now(),
    })
    .await?;
    Ok(etag)
}

pub(crate) async fn upload_part(
    s3: &CoopS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let input = req.input;
    let number = part_number(input.part_number)?;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    upload_of(s3, &bucket.name, &input.key, &input.upload_id)?;
    // As for a PUT: refused before a shard is stored when the length says so.
    if let Some(len) = input.content_length.and_then(|len| u64::try_from(len).ok()) {
        s3.store()
            .part_fits(&bucket, &input.upload_id, number, len)
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
    let etag = record_part(s3, &input.upload_id, number, stored).await?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        ..Default::default()
    }))
}

/// Parses `bytes=first-last` of `x-amz-copy-source-range`.
fn source_range(text: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (first, last) = text
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable for a source of {size} bytes"
        ));
    }
    Ok(first..last + 1)
}

pub(crate) async fn upload_part_copy(
    s3: &CoopS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let number = part_number(input.part_number)?;
    let (src_bucket, src_key) = copy_source(&input.copy_source)?;
    s3.bucket_for(&req.credentials, &src_bucket, Need::Read)
        .await?;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    upload_of(s3, &bucket.name, &input.key, &input.upload_id)?;
    let source = s3.object(&src_bucket, &src_key)?;
    crate::conditions::Conditions {
        if_match: input.copy_source_if_match,
        if_none_match: input.copy_source_if_none_match,
        if_modified_since: input.copy_source_if_modified_since,
        if_unmodified_since: input.copy_source_if_unmodified_since,
    }
    .check(&source, false)?;
    let range = match input.copy_source_range.as_deref() {
        Some(text) => source_range(text, source.size)?,
        None => 0..source.size,
    };
    s3.store()
        .part_fits(&bucket, &input.upload_id, number, range.end - range.start)
        .map_err(internal)?
        .map_err(command_error)?;
    // A range rarely falls on block boundaries, so the part gets its own
    // blocks: read the source and store it again.
    let chunks = body::read_all(&s3.stripes, s3.store(), &source, range).await?;
    let blob = StreamingBlob::wrap(stream::iter(
        chunks.into_iter().map(Ok::<Bytes, std::io::Error>),
    ));
    let layout = s3.layout(&bucket)?;
    let stored = body::store_body(
        &s3.stripes,
        layout,
        bucket.zone_spread,
        Some(blob),
        s3.limits.max_body_bytes,
    )
    .await?;
    let etag = record_part(s3, &input.upload_id, number, stored).await?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp_ms(now_ms())),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s,
/// then `-<number of parts>`.
fn multipart_etag(part_etags: &[String]) -> S3Result<String> {
    let mut md5 = Md5::new();
    for etag in part_etags {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(etag.as_bytes())
            .map_err(|_| internal(format!("stored part ETag {etag} is not hex")))?;
        md5.update(&bytes);
    }
    let digest: [u8; 16] = md5.finalize().into();
    Ok(format!(
        "{}-{}",
        data_encoding::HEXLOWER.encode(&digest),
        part_etags.len()
    ))
}

pub(crate) async fn complete(
    s3: &CoopS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    upload_of(s3, &bucket.name, &input.key, &input.upload_id)?;
    let listed = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    if listed.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema: no parts listed"
        ));
    }
    let mut parts = Vec::with_capacity(listed.len());
    for part in listed {
        let number = part
            .part_number
            .ok_or_else(|| s3_error!(MalformedXML, "a listed part has no PartNumber"))?;
        let etag = part
            .e_tag
            .ok_or_else(|| s3_error!(MalformedXML, "a listed part has no ETag"))?;
        parts.push((part_number(number)?, etag.value().to_owned()));
    }
    let etag = multipart_etag(&parts.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>())?;
    s3.commit(Command::CompleteUpload {
        upload: input.upload_id,
        completion: Completion {
            parts,
            etag: etag.clone(),
            modified_ms: now_ms(),
        },
        now: unix_now(),
    })
    .await?;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(bucket.name.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(etag)),
        location: Some(format!("/{}/{}", bucket.name, input.key)),
        ..Default::default()
    }))
}

pub(crate) async fn abort(
    s3: &CoopS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Write)
        .await?;
    upload_of(s3, &bucket.name, &input.key, &input.upload_id)?;
    s3.commit(Command::AbortUpload {
        upload: input.upload_id,
        now: unix_now(),
    })
    .await?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(crate) async fn list_parts(
    s3: &CoopS3,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Read)
        .await?;
    let upload = upload_of(s3, &bucket.name, &input.key, &input.upload_id)?;
    let max = input
        .max_parts
        .map_or(MAX_LISTED, |n| (n.max(0) as usize).min(MAX_LISTED));
    let marker = input.part_number_marker.map_or(0, |m| m.max(0) as u32);
    let all: Vec<PartRecord> = s3
        .store()
        .parts(&upload.id)
        .map_err(internal)?
        .into_iter()
        .filter(|p| p.number > marker)
        .collect();
    let truncated = all.len() > max;
    let shown: Vec<PartRecord> = all.into_iter().take(max).collect();
    let next = shown.last().map(|p| p.number as i32);
    let owner = Owner {
        display_name: Some(upload.initiator.clone()),
        id: Some(upload.initiator.clone()),
    };
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(bucket.name),
        key: Some(upload.key),
        upload_id: Some(upload.id),
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: if truncated { next } else { None },
        initiator: Some(Initiator {
            display_name: owner.display_name.clone(),
            id: owner.id.clone(),
        }),
        owner: Some(owner),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        parts: Some(
            shown
                .into_iter()
                .map(|p| Part {
                    e_tag: Some(ETag::Strong(p.etag)),
                    last_modified: Some(timestamp_ms(p.modified_ms)),
                    part_number: Some(p.number as i32),
                    size: i64::try_from(p.size).ok(),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

pub(crate) async fn list_uploads(
    s3: &CoopS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let bucket = s3
        .bucket_for(&req.credentials, &input.bucket, Need::Read)
        .await?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = input
        .max_uploads
        .map_or(MAX_LISTED, |n| (n.max(0) as usize).min(MAX_LISTED));
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let id_marker = input.upload_id_marker.clone().unwrap_or_default();
    let all: Vec<UploadRecord> = s3
        .store()
        .uploads(&bucket.name)
        .map_err(internal)?
        .into_iter()
        .filter(|u| u.key.starts_with(&prefix))
        .filter(|u| {
            key_marker.is_empty()
                || u.key > key_marker
                || (u.key == key_marker && !id_marker.is_empty() && u.id > id_marker)
        })
        .collect();
    let truncated = all.len() > max;
    let shown: Vec<UploadRecord> = all.into_iter().take(max).collect();
    let (next_key, next_id) = match shown.last() {
        Some(last) if truncated => (Some(last.key.clone()), Some(last.id.clone())),
        _ => (None, None),
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(bucket.name),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: next_key,
        next_upload_id_marker: next_id,
        uploads: Some(
            shown
                .into_iter()
                .map(|u| {
                    let who = Some(u.initiator.clone());
                    MultipartUpload {
                        initiated: Some(timestamp_ms(u.initiated_ms)),
                        initiator: Some(Initiator {
                            display_name: who.clone(),
                            id: who.clone(),
                        }),
                        owner: Some(Owner {
                            display_name: who.clone(),
                            id: who,
                        }),
                        key: Some(u.key),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        upload_id: Some(u.id),
                        ..Default::default()
                    }
                })
                .collect(),
        ),
        ..Default::default()
    }))
}
