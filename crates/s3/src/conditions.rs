//! Conditional requests (RFC 9110 §13): `If-Match`, `If-None-Match`,
//! `If-Modified-Since` and `If-Unmodified-Since`, evaluated in the RFC's
//! order against an object's ETag and Last-Modified.

use s3s::dto::{ETag, ETagCondition, Timestamp};
use s3s::{S3Result, s3_error};

use coop_state::ObjectRecord;

use crate::buckets::timestamp_ms;

/// The condition headers of a GET, HEAD or copy source.
#[derive(Default)]
pub(crate) struct Conditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

fn matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(ETag::Strong(value) | ETag::Weak(value)) => value == etag,
    }
}

/// Last-Modified has one-second resolution on the wire; compare in whole
/// seconds so a client echoing the header back gets a match.
fn whole_seconds(ms: u64) -> Timestamp {
    timestamp_ms(ms / 1000 * 1000)
}

impl Conditions {
    /// `Err(PreconditionFailed)` or `Err(NotModified)` when the request
    /// must not be served; `not_modified` is false for copy sources, where
    /// S3 answers 412 instead of 304.
    pub(crate) fn check(&self, object: &ObjectRecord, not_modified: bool) -> S3Result<()> {
        let modified = whole_seconds(object.modified_ms);
        if let Some(condition) = &self.if_match {
            if !matches(condition, &object.etag) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        } else if let Some(since) = &self.if_unmodified_since
            && modified > *since
        {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
        let unchanged = if let Some(condition) = &self.if_none_match {
            matches(condition, &object.etag)
        } else if let Some(since) = &self.if_modified_since {
            modified <= *since
        } else {
            false
        };
        if unchanged {
            if not_modified {
                return Err(s3_error!(NotModified));
            }
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
        Ok(())
    }
}
