//! Bucket operations: create, head, list, delete, location.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use coop_state::{BucketRecord, Command, CommandError, Grant, WriteError};
use coop_types::unix_now;

use crate::access::{self, Need};
use crate::errors::{internal, no_such_bucket, write_error};
use crate::service::CoopS3;

/// The region coop reports; clients may sign with any region.
pub(crate) const REGION: &str = "coop";

impl CoopS3 {
    /// Waits until this peer has applied every write completed before the
    /// request, so reads on any peer see them.
    pub(crate) async fn fresh(&self) -> S3Result<()> {
        self.control.read_barrier().await.map_err(write_error)
    }

    /// Writes `command` through the control plane, as an S3 error on failure.
    pub(crate) async fn commit(&self, command: Command) -> S3Result<()> {
        self.control.write(command).await.map_err(write_error)
    }

    /// The bucket, after a fresh read, if the signing key holds `need`.
    pub(crate) async fn bucket_for(
        &self,
        credentials: &Option<s3s::auth::Credentials>,
        name: &str,
        need: Need,
    ) -> S3Result<BucketRecord> {
        self.fresh().await?;
        let bucket = self
            .store()
            .bucket(name)
            .map_err(internal)?
            .ok_or_else(|| no_such_bucket(name))?;
        access::check(credentials, &bucket, need)?;
        Ok(bucket)
    }
}

pub(crate) async fn create(
    s3: &CoopS3,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let name = req.input.bucket;
    let key = access::signing_key(s3, &req.credentials)?;
    let record = BucketRecord {
        name: name.clone(),
        created_at: unix_now(),
        policy: None,
        zone_spread: false,
        grants: BTreeMap::from([(key.id.clone(), Grant::ALL)]),
        quota: None,
    };
    if !key.create_bucket {
        return Err(s3_error!(
            AccessDenied,
            "this access key may not create buckets; an operator can allow it with `coop s3 key create --create-bucket` or create the bucket with `coop bucket create`"
        ));
    }
    match s3.control.write(Command::CreateBucket(record)).await {
        Ok(()) => Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        })),
        Err(WriteError::Rejected(CommandError::BucketExists(_))) => {
            let existing = s3.store().bucket(&name).map_err(internal)?;
            let owned = existing.is_some_and(|b| b.grants.get(&key.id).is_some_and(|g| g.owner));
            if owned {
                Err(s3_error!(
                    BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it."
                ))
            } else {
                Err(s3_error!(
                    BucketAlreadyExists,
                    "The requested bucket name is not available."
                ))
            }
        }
        Err(err) => Err(write_error(err)),
    }
}

pub(crate) async fn head(
    s3: &CoopS3,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    s3.bucket_for(&req.credentials, &req.input.bucket, Need::Read)
        .await?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(REGION.into()),
        ..Default::default()
    }))
}

pub(crate) async fn list(
    s3: &CoopS3,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    s3.fresh().await?;
    let key = access::key_id(&req.credentials)?;
    let prefix = req.input.prefix.unwrap_or_default();
    let buckets = s3
        .store()
        .buckets()
        .map_err(internal)?
        .into_iter()
        .filter(|b| b.grants.contains_key(key) && b.name.starts_with(&prefix))
        .map(|b| Bucket {
            bucket_region: Some(REGION.into()),
            creation_date: Some(timestamp_secs(b.created_at)),
            name: Some(b.name),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(Owner {
            display_name: Some(key.to_owned()),
            id: Some(key.to_owned()),
        }),
        ..Default::default()
    }))
}

pub(crate) async fn delete(
    s3: &CoopS3,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    let name = req.input.bucket;
    s3.bucket_for(&req.credentials, &name, Need::Owner).await?;
    s3.commit(Command::DeleteBucket {
        name,
        now: unix_now(),
    })
    .await?;
    Ok(S3Response::new(DeleteBucketOutput {}))
}

pub(crate) async fn location(
    s3: &CoopS3,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    s3.bucket_for(&req.credentials, &req.input.bucket, Need::Read)
        .await?;
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: Some(BucketLocationConstraint::from(REGION.to_owned())),
    }))
}

/// An S3 timestamp from Unix seconds.
pub(crate) fn timestamp_secs(secs: u64) -> Timestamp {
    timestamp_ms(secs.saturating_mul(1000))
}

/// An S3 timestamp from Unix milliseconds.
pub(crate) fn timestamp_ms(ms: u64) -> Timestamp {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    Timestamp::from(time)
}
