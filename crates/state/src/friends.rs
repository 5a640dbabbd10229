//! The replicated records of friend links between clouds.
//!
//! A friend keeps another cloud's backups: on the friend's cloud a
//! [`FriendRecord`] names the bucket set aside for that other cloud and,
//! once its invite is redeemed, the other cloud's id (peers whose
//! certificates that cloud signed may then use the bucket, and nothing
//! else). On the cloud whose data is backed up, a [`FriendLink`] says how
//! to reach the friend.

use serde::{Deserialize, Serialize};

use coop_identity::CloudId;
use coop_types::PeerId;

/// A cloud this one keeps backups for: row `friend/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRecord {
    /// Unique in the cloud: 1-63 characters of a-z, 0-9 and `-`.
    pub name: String,
    /// The bucket its backups go to.
    pub bucket: String,
    /// BLAKE3 of the invite's secret; the secret itself is only in the token.
    pub secret_hash: [u8; 32],
    /// Unix seconds; an invite not redeemed by then is void.
    pub expires_at: u64,
    pub created_at: u64,
    /// The friend's cloud, once it redeemed the invite.
    pub cloud: Option<CloudId>,
}

/// A friend that keeps this cloud's backups: row `friend-link/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendLink {
    /// This cloud's name for the friend.
    pub name: String,
    /// The friend's cloud.
    pub cloud: CloudId,
    /// The friend's name for this cloud (its record there).
    pub remote_name: String,
    /// The bucket the friend keeps for this cloud.
    pub bucket: String,
    /// The friend's peers and their mesh addresses, as last heard.
    pub peers: Vec<(PeerId, Vec<String>)>,
    pub created_at: u64,
}

/// Whether `name` may name a friend.
pub fn valid_friend_name(name: &str) -> bool {
    crate::backups::valid_backup_name(name)
}
