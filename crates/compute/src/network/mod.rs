//! Container networking on one peer: a host bridge, one network namespace
//! and veth pair per container, an address from the bridge's subnet,
//! outbound NAT and published ports, all with `ip` and `nft`.
//!
//! Everything coop adds to the host's firewall lives in one nftables table
//! of its own (`ip coop` by default), so it never edits other tables and
//! deleting that table removes all of it. Published ports are elements of
//! one map in that table (`proto . host port : address . container port`),
//! used by a DNAT rule on prerouting (traffic to any of the peer's
//! addresses) and on output (traffic from the peer itself, including
//! 127.0.0.1, which needs `route_localnet` on the bridge and masquerading).
//!
//! Not here: the private networks of environments spanning peers (the
//! `net` room, later) and IPv6.

mod container;
mod host;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use container::{ContainerNetwork, check_host_port_free, network_bridge};
pub use coop_types::Ipv4Subnet;
pub use host::{HostNetwork, host_routes};

/// Where containers' addresses come from and what the host-side pieces are called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Host bridge the containers' veths join (`coop0`); at most 15 characters.
    pub bridge: String,
    /// The containers' subnet; the bridge takes its first address.
    pub subnet: Ipv4Subnet,
    /// nftables table (family `ip`) holding every coop rule.
    pub nft_table: String,
    /// Prefix of host-side veth names; the address's host number follows in hex.
    pub veth_prefix: String,
    /// Prefix of network namespace names under `/run/netns`; the container id follows.
    pub netns_prefix: String,
    /// Turn on `net.ipv4.ip_forward` (needed for outbound NAT and for ports
    /// reached from other machines).
    pub enable_ip_forward: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bridge: "coop0".into(),
            subnet: Ipv4Subnet {
                network: Ipv4Addr::new(10, 88, 0, 0),
                prefix: 16,
            },
            nft_table: "coop".into(),
            veth_prefix: "coopv".into(),
            netns_prefix: "coop-".into(),
            enable_ip_forward: true,
        }
    }
}

impl NetworkConfig {
    /// Checks names fit the kernel's limits and the subnet leaves room for containers.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let name_ok = |name: &str, max: usize| {
            !name.is_empty()
                && name.len() <= max
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        // veth names are the prefix plus up to 6 hex digits, within IFNAMSIZ - 1.
        if !name_ok(&self.bridge, 15) || !name_ok(&self.veth_prefix, 9) {
            return Err(NetworkError::BadConfig(format!(
                "bridge `{}` and veth prefix `{}` must be 1-15 and 1-9 characters of a-z, 0-9, `-`, `_`",
                self.bridge, self.veth_prefix
            )));
        }
        if !name_ok(&self.nft_table, 64) || !name_ok(&self.netns_prefix, 32) {
            return Err(NetworkError::BadConfig(format!(
                "nft table `{}` and netns prefix `{}` must be short names of a-z, 0-9, `-`, `_`",
                self.nft_table, self.netns_prefix
            )));
        }
        if !(8..=30).contains(&self.subnet.prefix) {
            return Err(NetworkError::BadConfig(format!(
                "subnet {} must have a prefix between /8 and /30",
                self.subnet
            )));
        }
        Ok(())
    }
}

/// A network setup that failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network configuration is invalid: {0}")]
    BadConfig(String),
    #[error("network configuration is invalid: {0}")]
    BadSubnet(#[from] coop_types::SubnetError),
    #[error("no free address left in {0}; delete unused containers or configure a larger subnet")]
    SubnetFull(Ipv4Subnet),
    #[error(
        "host port {port}/{protocol} is already in use on this peer ({reason}); publish the container on another host port"
    )]
    PortBusy {
        port: u16,
        protocol: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Command(#[from] crate::runtime::sys::CommandError),
    #[error("cannot create the user and network namespaces of a container: {0}")]
    Namespaces(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid_and_names_are_checked() {
        NetworkConfig::default().validate().unwrap();
        let long = NetworkConfig {
            bridge: "x".repeat(16),
            ..NetworkConfig::default()
        };
        assert!(long.validate().is_err());
    }
}
