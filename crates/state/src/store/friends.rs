//! Apply rules and local reads for friend links. Rows of the `sm` table:
//! `friend/<name>` (clouds this one keeps backups for) and
//! `friend-link/<name>` (friends that keep this cloud's).

use super::{StateStore, StoreError, StrTable, db_err, get_value, put_value, scan_values};
use crate::friends::{FriendLink, FriendRecord, valid_friend_name};
use crate::records::{Command, CommandError};

const FRIEND_PREFIX: &str = "friend/";
const LINK_PREFIX: &str = "friend-link/";

type Applied = Result<Result<(), CommandError>, StoreError>;

fn friend_key(name: &str) -> String {
    format!("{FRIEND_PREFIX}{name}")
}

fn link_key(name: &str) -> String {
    format!("{LINK_PREFIX}{name}")
}

fn bad_name(name: &str) -> CommandError {
    CommandError::InvalidRecord(format!(
        "friend name `{name}`: use 1-63 characters of a-z, 0-9 and `-`, starting with a letter"
    ))
}

/// Applies one friend command. Callers route only these here.
pub(super) fn apply(sm: &mut StrTable<'_>, command: Command) -> Applied {
    match command {
        Command::CreateFriend(record) => {
            if !valid_friend_name(&record.name) {
                return Ok(Err(bad_name(&record.name)));
            }
            let row = friend_key(&record.name);
            if get_value::<FriendRecord>(sm, &row)?.is_some() {
                return Ok(Err(CommandError::FriendExists(record.name)));
            }
            if record.cloud.is_some() {
                return Ok(Err(CommandError::InvalidRecord(
                    "a new friend has not redeemed its invite yet".into(),
                )));
            }
            put_value(sm, &row, &record)?;
        }
        Command::RedeemFriend {
            name,
            secret_hash,
            cloud,
            now,
        } => {
            let row = friend_key(&name);
            let Some(mut record) = get_value::<FriendRecord>(sm, &row)? else {
                return Ok(Err(CommandError::FriendUnknown(name)));
            };
            if record.cloud.is_some() {
                return Ok(Err(CommandError::InviteUsed));
            }
            if now > record.expires_at {
                return Ok(Err(CommandError::InviteExpired));
            }
            if record.secret_hash != secret_hash {
                return Ok(Err(CommandError::InviteSecretMismatch));
            }
            record.cloud = Some(cloud);
            put_value(sm, &row, &record)?;
        }
        Command::DeleteFriend { name } => {
            let row = friend_key(&name);
            if get_value::<FriendRecord>(sm, &row)?.is_none() {
                return Ok(Err(CommandError::FriendUnknown(name)));
            }
            sm.remove(row.as_str())
                .map_err(db_err("removing a friend"))?;
        }
        Command::AddFriendLink(link) => {
            if !valid_friend_name(&link.name) {
                return Ok(Err(bad_name(&link.name)));
            }
            let row = link_key(&link.name);
            if get_value::<FriendLink>(sm, &row)?.is_some() {
                return Ok(Err(CommandError::FriendExists(link.name)));
            }
            put_value(sm, &row, &link)?;
        }
        Command::DeleteFriendLink { name } => {
            let row = link_key(&name);
            if get_value::<FriendLink>(sm, &row)?.is_none() {
                return Ok(Err(CommandError::FriendUnknown(name)));
            }
            sm.remove(row.as_str())
                .map_err(db_err("removing a friend link"))?;
        }
        other => {
            return Err(StoreError::Inconsistent(format!(
                "friend apply got a foreign command: {other:?}"
            )));
        }
    }
    Ok(Ok(()))
}

impl StateStore {
    /// A cloud this one keeps backups for.
    pub fn friend(&self, name: &str) -> Result<Option<FriendRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &friend_key(name)))
    }

    /// Every cloud this one keeps backups for, by name.
    pub fn friends(&self) -> Result<Vec<FriendRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, FRIEND_PREFIX))
    }

    /// A friend that keeps this cloud's backups.
    pub fn friend_link(&self, name: &str) -> Result<Option<FriendLink>, StoreError> {
        self.read_sm(|sm| get_value(sm, &link_key(name)))
    }

    /// Every friend that keeps this cloud's backups, by name.
    pub fn friend_links(&self) -> Result<Vec<FriendLink>, StoreError> {
        self.read_sm(|sm| scan_values(sm, LINK_PREFIX))
    }
}
