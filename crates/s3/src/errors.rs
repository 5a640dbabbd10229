//! Turning coop's typed errors into S3 error codes.

use std::fmt::Display;

use s3s::{S3Error, S3ErrorCode, s3_error};
use tracing::warn;

use coop_state::{CommandError, WriteError};
use coop_store::{StripeReadError, StripeWriteError};

/// A failure that is not the client's: logged here, `500 InternalError`
/// for the client.
pub(crate) fn internal(err: impl Display) -> S3Error {
    warn!(%err, "S3 request failed");
    S3Error::with_message(S3ErrorCode::InternalError, err.to_string())
}

/// The control plane refused or could not take a write.
pub(crate) fn write_error(err: WriteError) -> S3Error {
    match err {
        WriteError::Rejected(refusal) => command_error(refusal),
        WriteError::Unavailable { .. } => {
            warn!(%err, "S3 write could not reach the control plane");
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, err.to_string())
        }
    }
}

/// A refusal by the state machine.
pub(crate) fn command_error(refusal: CommandError) -> S3Error {
    if let CommandError::QuotaExceeded { .. } = refusal {
        return quota_exceeded(&refusal);
    }
    let code = match &refusal {
        CommandError::BucketUnknown(_) => S3ErrorCode::NoSuchBucket,
        CommandError::BucketExists(_) => S3ErrorCode::BucketAlreadyExists,
        CommandError::BucketNotEmpty(_) => S3ErrorCode::BucketNotEmpty,
        CommandError::UploadUnknown(_) => S3ErrorCode::NoSuchUpload,
        CommandError::InvalidPart { .. } => S3ErrorCode::InvalidPart,
        CommandError::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        CommandError::PartTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        CommandError::S3KeyUnknown(_) => S3ErrorCode::InvalidAccessKeyId,
        CommandError::StripeGone => S3ErrorCode::ServiceUnavailable,
        _ => S3ErrorCode::InternalError,
    };
    S3Error::with_message(code, refusal.to_string())
}

/// `403 QuotaExceeded`: S3 has no code of its own for a full bucket (AWS
/// has no bucket quotas); MinIO and Ceph answer this one.
fn quota_exceeded(refusal: &CommandError) -> S3Error {
    let code = S3ErrorCode::Custom("QuotaExceeded".into());
    let mut err = S3Error::with_message(code, refusal.to_string());
    err.set_status_code(http::StatusCode::FORBIDDEN);
    err
}

/// A block could not be stored durably.
pub(crate) fn stripe_write(err: StripeWriteError) -> S3Error {
    warn!(%err, "could not store a block durably");
    S3Error::with_message(
        S3ErrorCode::ServiceUnavailable,
        format!("the object could not be stored durably: {err}"),
    )
}

/// A block could not be read.
pub(crate) fn stripe_read(err: StripeReadError) -> S3Error {
    warn!(%err, "could not read a block");
    S3Error::with_message(
        S3ErrorCode::ServiceUnavailable,
        format!("the object cannot be read right now: {err}"),
    )
}

pub(crate) fn no_such_bucket(bucket: &str) -> S3Error {
    s3_error!(
        NoSuchBucket,
        "The specified bucket does not exist: {bucket}"
    )
}

pub(crate) fn no_such_key(key: &str) -> S3Error {
    s3_error!(NoSuchKey, "The specified key does not exist: {key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_is_403_quota_exceeded() {
        let refusal = CommandError::QuotaExceeded {
            bucket: "photos".into(),
            quota: 500 << 20,
            usage: 500 << 20,
            needed: 3 << 20,
        };
        let err = write_error(WriteError::Rejected(refusal.clone()));
        assert_eq!(err.code().as_str(), "QuotaExceeded");
        assert_eq!(err.status_code(), Some(http::StatusCode::FORBIDDEN));
        assert_eq!(err.message(), Some(refusal.to_string().as_str()));
        assert!(
            refusal
                .to_string()
                .contains("500.0 MiB used of 500.0 MiB, this write needs 3.0 MiB more")
        );
        // Other refusals keep their S3 codes.
        let err = command_error(CommandError::BucketUnknown("photos".into()));
        assert_eq!(err.code().as_str(), "NoSuchBucket");
    }
}
