//! How one peer reaches another: the paths of their connection, what each
//! side knows of its own NAT, and why a path is relayed when it is.
//!
//! These travel on the mesh (postcard) and out of the API (JSON), so no
//! field is ever skipped when serializing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Connection, PeerId};

/// One path of a connection: a way packets take to the other peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PathLine {
    /// Where packets go: `IP:PORT` for a direct path, the relay's URL for
    /// a relayed one.
    pub remote: String,
    pub kind: Connection,
    /// Whether application data takes this path now.
    pub selected: bool,
    pub rtt_ms: f64,
}

/// How this peer's NAT maps its mesh socket to public addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NatMapping {
    /// The public address is this peer's own: no NAT in the way.
    None,
    /// Every destination sees the same public address (endpoint-independent
    /// mapping, e.g. a port-preserving masquerade): hole punching works
    /// when the other side's mapping is the same kind.
    Stable,
    /// Each destination sees another public port (a symmetric NAT, e.g.
    /// `masquerade fully-random`): the other side cannot aim at a port it
    /// cannot know, so paths to peers also behind NAT stay relayed.
    VariesByDestination,
    /// A public address is known from one vantage point only.
    SingleSighting,
    /// No public address is known: no relay's address discovery answered
    /// and no peer saw this one on a direct path (UDP may be blocked).
    Unknown,
}

/// Where another peer saw this peer's packets come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Sighting {
    /// Who saw them: a peer's short id, or `relay address discovery`.
    pub by: String,
    /// The address the packets came from.
    pub addr: String,
}

/// What a peer knows of its own addresses and NAT.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NatReport {
    /// The addresses the mesh socket is bound to.
    pub local: Vec<String>,
    /// Public addresses this peer's packets were seen from.
    pub sightings: Vec<Sighting>,
    pub mapping: NatMapping,
}

impl NatReport {
    /// The distinct public addresses in the sightings.
    pub fn public_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self.sightings.iter().map(|s| s.addr.clone()).collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }
}

/// Why the path to a peer is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PathVerdict {
    /// Packets go straight between the two peers.
    Direct,
    /// No connection is open to the peer.
    NotConnected,
    /// Relayed: a symmetric NAT on either side (or both) changes the public
    /// port with each destination.
    SymmetricNat,
    /// Relayed: one side has no known public address.
    NoPublicAddress,
    /// Relayed although both sides have stable public addresses: probes
    /// were sent and went unanswered (UDP between them is filtered).
    ProbesUnanswered,
    /// Relayed, and the other peer could not be asked about its side.
    Unexplained,
}

/// Everything `coop debug path PEER` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PathReport {
    #[schema(value_type = String)]
    pub peer: PeerId,
    /// The kind of the selected path, if a connection is open.
    pub connection: Option<Connection>,
    pub rtt_ms: Option<f64>,
    /// The paths of the connection the peer's status is judged by.
    pub paths: Vec<PathLine>,
    /// Direct addresses this peer knows for the other one (from the
    /// control plane, gossip and hole punching).
    pub known_addrs: Vec<String>,
    pub here: NatReport,
    /// The other peer's report of itself, when it answered.
    pub there: Option<NatReport>,
    pub verdict: PathVerdict,
    /// The verdict in a sentence, naming the side at fault.
    pub reason: String,
}

/// A timed transfer to a peer (`coop debug speed`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpeedReport {
    #[schema(value_type = String)]
    pub peer: PeerId,
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_sec: f64,
    /// The kind of path the connection used at the end of the transfer.
    pub connection: Option<Connection>,
}
