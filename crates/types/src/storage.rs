//! What the storage endpoints of the API take and return: S3 keys,
//! buckets with their grants, disks and the health of stored data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An S3 key as listed: never the secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct S3KeyView {
    /// The access key id.
    pub id: String,
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Whether the key may create buckets over S3.
    pub create_bucket: bool,
}

/// Body of `POST /v1/s3/keys`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct S3KeyRequest {
    /// 1-64 characters of letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Let the key create buckets over S3 (it owns what it creates).
    #[serde(default)]
    pub create_bucket: bool,
}

/// A new key: the only time its secret is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct S3KeyCreated {
    pub id: String,
    pub secret: String,
    pub name: String,
}

/// Body of `POST /v1/buckets`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketRequest {
    pub name: String,
    /// `ec:K+M` or `replicas:N`; omitted: the cloud's default, which widens
    /// as the cloud grows.
    #[serde(default)]
    pub policy: Option<String>,
    /// Keep a stripe's shards spread so that losing a zone loses nothing.
    #[serde(default)]
    pub zone_spread: bool,
    /// An access key that owns the new bucket (read, write and delete).
    #[serde(default)]
    pub owner: Option<String>,
    /// The most bytes the bucket's objects may hold together; omitted or
    /// null: unlimited.
    #[serde(default)]
    pub quota: Option<u64>,
}

/// Body of `PATCH /v1/buckets/{name}`: the settings to change; a field left
/// out keeps its value.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketPatch {
    /// The new quota in bytes, or null for none. Lowering it below what the
    /// bucket holds refuses new writes only; nothing is deleted.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub quota: Option<Option<u64>>,
}

/// A field that is present, null or not: `Some(None)` for `null`, so that
/// an absent field (`None`, by `default`) can mean "keep".
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// What a key may do in a bucket.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantView {
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub write: bool,
    #[serde(default)]
    pub owner: bool,
}

/// A bucket as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BucketView {
    pub name: String,
    pub created_at: u64,
    /// The policy set on the bucket, or `default`.
    pub policy: String,
    /// The layout new objects get now.
    pub layout: String,
    pub zone_spread: bool,
    pub objects: u64,
    pub bytes: u64,
    /// The most bytes the objects may hold together; `None`: unlimited.
    pub quota: Option<u64>,
    /// The bytes counted against the quota: the sizes of the objects, as
    /// the control plane keeps them (a copy counts again, although it
    /// shares the blocks of its source).
    pub usage: u64,
    /// Access key id → rights.
    pub grants: BTreeMap<String, GrantView>,
}

/// One disk of one peer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DiskView {
    pub peer: String,
    pub peer_name: String,
    pub id: String,
    pub path: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    /// `up` when its peer is up, else the peer's state.
    pub state: String,
}

/// Health of stored blocks (or of objects: an object is as bad as its
/// worst block), judged by which holders of their shards are up.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct BlockHealth {
    /// Every shard's holder is up.
    pub healthy: u64,
    /// Readable, but some shards are on peers that are not up (repair
    /// restores them).
    pub degraded: u64,
    /// Fewer shards on live peers than a read needs; readable again when
    /// enough of the missing holders come back.
    pub unavailable: u64,
    /// Fewer shards than a read needs even counting holders that are only
    /// unreachable or down: too many holders are revoked. Lost for good.
    pub lost: u64,
}

/// `GET /v1/storage`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StorageView {
    pub disks: Vec<DiskView>,
    /// Failure domains the default policy counts now.
    pub domains: usize,
    /// The layout buckets on the default policy get for new objects.
    pub default_layout: String,
    /// Set when the default gives less than erasure coding with 2 parity.
    pub warning: Option<String>,
    pub buckets: usize,
    pub objects: u64,
    pub bytes: u64,
    pub blocks: BlockHealth,
    /// Objects by the health of their worst block.
    pub object_health: BlockHealth,
    /// Blocks this peer's current repair pass still has to fix (lost
    /// shards to rebuild, shards to move off gone peers or onto new ones).
    pub repair_pending: u64,
    /// Counters since this peer started: corrupt shards found, shards
    /// rebuilt, moved and collected, degraded reads, scrubbed shards,
    /// repair passes, cache hits and misses.
    pub counters: BTreeMap<String, u64>,
}

/// What a peer's S3 front counts, for the console's charts: requests, and
/// the body bytes their headers declare each way, since the peer started.
#[derive(Debug, Default)]
pub struct S3Counters {
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl S3Counters {
    /// Counts one request and the bytes its headers declare.
    pub fn count(&self, bytes_in: u64, bytes_out: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::BucketPatch;

    #[test]
    fn a_patch_tells_null_from_absent() {
        let parse = |text: &str| serde_json::from_str::<BucketPatch>(text).map(|p| p.quota);
        assert_eq!(parse(r#"{"quota": 1024}"#).unwrap(), Some(Some(1024)));
        assert_eq!(parse(r#"{"quota": null}"#).unwrap(), Some(None));
        assert_eq!(parse("{}").unwrap(), None);
        assert!(parse(r#"{"quota": -1}"#).is_err());
        assert!(parse(r#"{"qouta": 1}"#).is_err());
    }
}
