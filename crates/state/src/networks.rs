//! The replicated records of private networks: each network's name,
//! number and subnet, and (in container entries) which address a
//! container holds on which network.
//!
//! Addresses are handed out by the state machine itself when a container
//! entry is written, so two containers never get the same address however
//! their writes interleave, and an address stays with the container's
//! entry across restarts and moves.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use coop_types::Ipv4Subnet;

/// The cloud-wide pool networks get their subnets from by default, a /24
/// each.
pub const NETWORK_POOL: Ipv4Subnet = Ipv4Subnet {
    network: Ipv4Addr::new(10, 210, 0, 0),
    prefix: 16,
};
/// The prefix of a subnet taken from the pool.
pub const POOL_PREFIX: u8 = 24;

/// A private network: row `net/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Unique in the cloud: 1-63 characters of a-z, 0-9 and `-`.
    pub name: String,
    /// Unique in the cloud, never reused while the network exists; it
    /// names the network on the wire and its bridge on each peer.
    pub id: u32,
    pub subnet: Ipv4Subnet,
    /// The environment that owns it (made and removed with it), if any.
    pub env: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

impl NetworkRecord {
    /// The address of the network's gateway on every peer (host number 1):
    /// its bridge and its DNS resolver.
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.gateway()
    }
}

/// A container's place on a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// Its address there; `0.0.0.0` in a new entry asks the state machine
    /// for the lowest free one.
    pub address: Ipv4Addr,
}

impl Attachment {
    /// The state machine picks the address.
    pub const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
}

/// Whether `name` may name a network (the rules of environment names, so
/// each environment's network can bear its name).
pub fn valid_network_name(name: &str) -> bool {
    crate::valid_env_name(name)
}
