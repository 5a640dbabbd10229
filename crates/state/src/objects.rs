//! The replicated records of S3 storage: access keys, buckets with their
//! grants, objects, multipart uploads and the stripes that hold their bytes.
//!
//! Only metadata lives here. Object bytes are cut into blocks, each coded
//! into a stripe of shards on peers' disks (the `store` crate); a
//! [`StripeRecord`] says where the shards of one block are and what their
//! checksums must be, so a peer that lies about a shard is caught.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use coop_types::PeerId;

use crate::records::CommandError;

/// The id of a block: random, so equal bytes written twice are two blocks
/// and deleting one object never touches another's data.
pub type BlockId = [u8; 32];

/// An S3 access key. SigV4 needs the secret itself on the verifying side,
/// so it is replicated to every peer; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3KeyRecord {
    /// The access key id clients send (`CK` + 18 upper-case letters and digits).
    pub id: String,
    pub secret: String,
    /// What the operator called it.
    pub name: String,
    pub created_at: u64,
    /// Whether this key may create buckets over S3 (it then owns them).
    pub create_bucket: bool,
}

impl S3KeyRecord {
    /// A new key named `name` with a random id and secret, or why the name
    /// is refused (1-64 letters, digits, `.`, `_` and `-`).
    pub fn generate(name: &str, create_bucket: bool, now: u64) -> Result<Self, String> {
        let valid = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(format!(
                "invalid key name `{name}`: use 1-64 characters of letters, digits, `.`, `_` and `-`"
            ));
        }
        const ID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let random = |alphabet: &[u8], len: usize| -> String {
            (0..len)
                .map(|_| char::from(alphabet[rand::random_range(0..alphabet.len())]))
                .collect()
        };
        Ok(S3KeyRecord {
            id: format!("CK{}", random(ID, 18)),
            secret: random(SECRET, 40),
            name: name.to_string(),
            created_at: now,
            create_bucket,
        })
    }
}

impl fmt::Debug for S3KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3KeyRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("created_at", &self.created_at)
            .field("create_bucket", &self.create_bucket)
            .finish_non_exhaustive()
    }
}

/// What one key may do in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub read: bool,
    pub write: bool,
    /// May delete the bucket and change its grants.
    pub owner: bool,
}

impl Grant {
    /// Read, write and owner: what the creator of a bucket gets.
    pub const ALL: Grant = Grant {
        read: true,
        write: true,
        owner: true,
    };
}

/// A bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created_at: u64,
    /// `ec:K+M` or `replicas:N`; `None` follows the cloud's default, which
    /// widens as the cloud grows.
    pub policy: Option<String>,
    /// Refuse layouts that would put more than the tolerated number of
    /// shards of a stripe in one zone.
    pub zone_spread: bool,
    /// Access key id → what it may do here.
    pub grants: BTreeMap<String, Grant>,
    /// The most bytes its objects may hold together; `None` is unlimited.
    /// Writes that would go past it are refused ([`check_quota`]).
    pub quota: Option<u64>,
}

/// Whether a write may go into `bucket`: `usage` bytes are counted against
/// its quota now, the write replaces `replaced` bytes of them and brings
/// `new` bytes. Only a write that grows the count can be refused, so a
/// bucket over a lowered quota can still shrink or be overwritten in place.
///
/// The state machine decides with this (every replica the same way); the
/// front ends call it before storing a body they know the length of, so a
/// write bound to be refused writes no shard.
pub fn check_quota(
    bucket: &BucketRecord,
    usage: u64,
    replaced: u64,
    new: u64,
) -> Result<(), CommandError> {
    let Some(quota) = bucket.quota else {
        return Ok(());
    };
    let needed = new.saturating_sub(replaced);
    if needed > 0 && usage.saturating_add(needed) > quota {
        return Err(CommandError::QuotaExceeded {
            bucket: bucket.name.clone(),
            quota,
            usage,
            needed,
        });
    }
    Ok(())
}

/// How a stripe is coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StripeLayout {
    /// Reed-Solomon: `data` shards are the block cut in order, `parity`
    /// shards are computed.
    Erasure { data: u16, parity: u16 },
    /// Every shard is a full copy of the block.
    Replicas { copies: u16 },
}

impl StripeLayout {
    /// How many shards the stripe has.
    pub fn width(&self) -> usize {
        match *self {
            StripeLayout::Erasure { data, parity } => usize::from(data) + usize::from(parity),
            StripeLayout::Replicas { copies } => usize::from(copies),
        }
    }

    /// How many shards are enough to read the block.
    pub fn needed(&self) -> usize {
        match *self {
            StripeLayout::Erasure { data, .. } => usize::from(data),
            StripeLayout::Replicas { .. } => 1,
        }
    }

    /// How many shards may be lost without losing the block.
    pub fn tolerates(&self) -> usize {
        self.width() - self.needed()
    }
}

impl fmt::Display for StripeLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StripeLayout::Erasure { data, parity } => write!(f, "ec:{data}+{parity}"),
            StripeLayout::Replicas { copies } => write!(f, "replicas:{copies}"),
        }
    }
}

/// Where one shard of a stripe lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLocation {
    pub peer: PeerId,
    /// The disk's id on that peer.
    pub disk: String,
    /// BLAKE3 of the shard's bytes.
    pub checksum: [u8; 32],
}

/// The shards of one block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeRecord {
    pub layout: StripeLayout,
    /// Bytes of object data in the block.
    pub len: u32,
    /// Bytes in each shard.
    pub shard_len: u32,
    /// Shard `i` is at `shards[i]`.
    pub shards: Vec<ShardLocation>,
    /// How many objects or parts use this block (a copy shares blocks).
    pub refs: u32,
    /// Unix seconds when the last reference went away. The shards are
    /// kept for a grace period so reads in flight still find them.
    pub dead_since: Option<u64>,
}

/// A block of an object, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub id: BlockId,
    pub len: u32,
}

/// A stored object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub size: u64,
    /// As S3 computes it, without quotes: hex MD5 of a single PUT, or
    /// `<hex md5 of the part md5s>-<parts>` for a multipart upload.
    pub etag: String,
    pub content_type: Option<String>,
    /// `x-amz-meta-*` headers, lower-case names without the prefix.
    pub metadata: BTreeMap<String, String>,
    /// Unix milliseconds.
    pub modified_ms: u64,
    pub blocks: Vec<BlockRef>,
    /// Sizes of the parts of a multipart upload, in order (GET with
    /// `partNumber`); empty for a single PUT.
    pub parts: Vec<u64>,
}

/// A multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub initiated_ms: u64,
    /// The access key that started it.
    pub initiator: String,
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub size: u64,
    /// Hex MD5 of the part, without quotes.
    pub etag: String,
    pub modified_ms: u64,
    pub blocks: Vec<BlockRef>,
}

/// A new block with the stripe that holds it, as a writer registers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewStripe {
    pub id: BlockId,
    pub stripe: StripeRecord,
}

/// How a multipart upload is completed: the parts in order, each with the
/// ETag the client saw, and the resulting object's ETag and size (which the
/// writer computed from the parts it read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub parts: Vec<(u32, String)>,
    pub etag: String,
    pub modified_ms: u64,
}

/// The smallest part S3 accepts, except for the last one.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Whether `name` is a bucket name S3 accepts: 3-63 characters of a-z,
/// 0-9, `.` and `-`, starting and ending with a letter or digit, no `..`,
/// not shaped like an IPv4 address, and none of the prefixes and suffixes
/// AWS reserves.
pub fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let plain = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !(3..=63).contains(&bytes.len())
        || !bytes.iter().all(|b| plain(b) || *b == b'.' || *b == b'-')
        || !bytes.first().is_some_and(plain)
        || !bytes.last().is_some_and(plain)
        || name.contains("..")
    {
        return false;
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return false;
    }
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 3] = ["-s3alias", "--ol-s3", ".mrap"];
    !RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        && !RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
}
