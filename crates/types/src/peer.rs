//! Who a peer is and how it is doing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The id of a peer: its ed25519 public key. Shown as 64 lowercase hex
/// characters; the first 10 are enough for a human to tell peers apart.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerId(pub [u8; 32]);

// Hex in human-readable formats (JSON, TOML), raw bytes on the wire.
impl Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_string())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(PeerId)
        }
    }
}

impl PeerId {
    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 10 hex characters, for tables and log lines.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(10);
        s
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// A string that is not 64 hex characters.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a peer id: expected 64 hex characters")]
pub struct PeerIdParseError(pub String);

impl FromStr for PeerId {
    type Err = PeerIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .map_err(|_| PeerIdParseError(s.to_string()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| PeerIdParseError(s.to_string()))?;
        Ok(PeerId(arr))
    }
}

/// What a peer does for the cloud besides running work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves as a relay for peers that cannot reach each other directly.
    Relay,
}

/// One disk a peer offers, as it reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatus {
    /// The disk's id on its peer, as shard locations name it.
    pub id: String,
    pub path: String,
    /// The capacity offered: the `--disk` cap, or the filesystem's size.
    pub total_bytes: u64,
    /// What shards may still use.
    pub free_bytes: u64,
    /// Bytes of shards stored.
    pub used_bytes: u64,
}

/// The signed status a peer publishes about once a second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub peer: PeerId,
    /// Monotonic per boot of the agent, so a receiver can drop stale copies.
    pub seq: u64,
    /// Unix seconds when the agent started, to tell restarts apart.
    pub boot: u64,
    pub name: String,
    pub zone: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub memory_free_bytes: u64,
    /// One-minute load average times 100.
    pub load_centi: u32,
    pub arch: String,
    pub disks: Vec<DiskStatus>,
    /// Socket addresses the peer listens on, as it sees them.
    pub addrs: Vec<String>,
    pub relay: bool,
    /// The operator's labels (`coop up --label KEY=VALUE`), for placement.
    pub labels: std::collections::BTreeMap<String, String>,
    /// What the peer lends to containers; `None` when it runs none.
    pub lent: Option<crate::Resources>,
    /// Its round-trip times to the peers it is connected to, in
    /// microseconds (at most [`MAX_STATUS_RTTS`]): the scheduler's RTTs
    /// between zones come from these.
    pub rtts: Vec<(PeerId, u32)>,
}

/// The most RTTs a status carries.
pub const MAX_STATUS_RTTS: usize = 64;

/// Liveness of a peer as seen from the observing peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// A fresh status arrived recently.
    Up,
    /// No status for a few seconds: the peer may be dead or cut off.
    Unreachable,
    /// No status for longer than the down grace period.
    Down,
    /// Its certificate was revoked; it is cut off for good.
    Revoked,
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerState::Up => "up",
            PeerState::Unreachable => "unreachable",
            PeerState::Down => "down",
            PeerState::Revoked => "revoked",
        })
    }
}

/// How the observing peer currently reaches another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// The observing peer itself.
    #[serde(rename = "self")]
    Myself,
    /// A direct UDP path.
    Direct,
    /// Through a relay run by one of the cloud's peers.
    Relay,
    /// No open connection right now.
    None,
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connection::Myself => "self",
            Connection::Direct => "direct",
            Connection::Relay => "relay",
            Connection::None => "none",
        })
    }
}

/// One row of `coop peers`: what the API returns for every peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    /// The peer's public key, 64 hex characters.
    #[schema(value_type = String)]
    pub id: PeerId,
    pub name: String,
    pub zone: String,
    pub state: PeerState,
    pub connection: Connection,
    pub rtt_ms: Option<f64>,
    pub steward: bool,
    pub leader: bool,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_free_bytes: u64,
    pub load: f64,
    pub arch: String,
    pub addrs: Vec<String>,
    pub relay: bool,
    /// The operator's labels, for placement constraints.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Seconds since the last status arrived, if one ever did.
    pub last_seen_secs: Option<u64>,
    /// What it lends to containers, when it runs them.
    pub lent: Option<crate::Resources>,
    /// What the containers placed on it hold of that (their limits).
    pub held: crate::Resources,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trips_through_hex() {
        let id = PeerId([7; 32]);
        let parsed: PeerId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert!("abc".parse::<PeerId>().is_err());
        assert!("zz".repeat(32).parse::<PeerId>().is_err());
    }

    #[test]
    fn peer_id_is_hex_in_json_and_bytes_in_postcard() {
        let id = PeerId([0xab; 32]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<PeerId>(&json).unwrap(), id);
        let bytes = postcard::to_stdvec(&id).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(postcard::from_bytes::<PeerId>(&bytes).unwrap(), id);
    }

    #[test]
    fn connection_serializes_self() {
        assert_eq!(
            serde_json::to_string(&Connection::Myself).unwrap(),
            "\"self\""
        );
    }
}
