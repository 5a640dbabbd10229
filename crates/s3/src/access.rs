//! Who may do what: SigV4 secrets come from the control plane's key table,
//! and each bucket's grants decide reads, writes and ownership.

use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::{S3Result, s3_error};

use coop_state::{BucketRecord, ControlPlane, S3KeyRecord};

use crate::errors::internal;

/// Looks up SigV4 secrets. A key created on another peer a moment ago may
/// not have reached this replica yet, so a miss waits for the replica to
/// catch up once before it is final.
pub(crate) struct KeyAuth {
    control: ControlPlane,
}

impl KeyAuth {
    pub(crate) fn new(control: ControlPlane) -> Self {
        KeyAuth { control }
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if let Some(key) = self.control.store().s3_key(access_key).map_err(internal)? {
            return Ok(SecretKey::from(key.secret));
        }
        self.control.read_barrier().await.map_err(internal)?;
        match self.control.store().s3_key(access_key).map_err(internal)? {
            Some(key) => Ok(SecretKey::from(key.secret)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
        }
    }
}

/// What a request needs on a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Write,
    Owner,
}

/// The access key id a request was signed with. `s3s` already refused
/// unsigned requests, so a missing one is a bug, reported as denied.
pub(crate) fn key_id(credentials: &Option<Credentials>) -> S3Result<&str> {
    credentials
        .as_ref()
        .map(|c| c.access_key.as_str())
        .ok_or_else(|| s3_error!(AccessDenied, "Signature is required"))
}

/// Checks that the signing key holds `need` on `bucket`.
pub(crate) fn check(
    credentials: &Option<Credentials>,
    bucket: &BucketRecord,
    need: Need,
) -> S3Result<()> {
    let key = key_id(credentials)?;
    let grant = bucket.grants.get(key).copied().unwrap_or_default();
    let allowed = match need {
        Need::Read => grant.read || grant.owner,
        Need::Write => grant.write || grant.owner,
        Need::Owner => grant.owner,
    };
    if allowed {
        Ok(())
    } else {
        Err(s3_error!(AccessDenied, "Access Denied"))
    }
}

/// The signing key's record (for its bucket-creation right).
pub(crate) fn signing_key(
    s3: &crate::CoopS3,
    credentials: &Option<Credentials>,
) -> S3Result<S3KeyRecord> {
    let id = key_id(credentials)?;
    s3.store()
        .s3_key(id)
        .map_err(internal)?
        .ok_or_else(|| s3_error!(InvalidAccessKeyId, "the access key no longer exists"))
}
