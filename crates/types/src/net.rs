//! IPv4 subnets: the containers' bridge on a peer, and the cloud's private
//! networks.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A private network's number, as the data plane's packet header carries
/// it (the control plane's `NetworkRecord::id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NetworkId(pub u32);

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An IPv4 subnet, `10.88.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ipv4Subnet {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

/// A subnet that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("`{0}` is not a subnet like 10.88.0.0/16")]
    Malformed(String),
    #[error("`{given}` has host bits set; write the network address, e.g. {network}/{prefix}")]
    HostBits {
        given: String,
        network: Ipv4Addr,
        prefix: u8,
    },
}

impl Ipv4Subnet {
    fn host_count(self) -> u32 {
        1u32.checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
            .max(1)
    }

    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The address with host number `n` (1 is the bridge), or `None` outside
    /// the usable range (network and broadcast addresses excluded).
    pub fn host(self, n: u32) -> Option<Ipv4Addr> {
        (n >= 1 && n < self.host_count().saturating_sub(1))
            .then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// The host number of `addr` in this subnet.
    pub fn host_number(self, addr: Ipv4Addr) -> Option<u32> {
        let n = u32::from(addr).checked_sub(u32::from(self.network))?;
        (n < self.host_count()).then_some(n)
    }

    /// Whether `addr` is in this subnet.
    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network)
    }

    /// Whether the two subnets share an address.
    pub fn overlaps(self, other: Ipv4Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The bridge's address (host number 1), the containers' gateway.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Host numbers containers may get: from 2 to the last before broadcast.
    pub fn container_hosts(self) -> std::ops::Range<u32> {
        2..self.host_count().saturating_sub(1)
    }
}

impl fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SubnetError::Malformed(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let subnet = Ipv4Subnet {
            network: addr,
            prefix,
        };
        let network = Ipv4Addr::from(u32::from(addr) & subnet.mask());
        if network != addr {
            return Err(SubnetError::HostBits {
                given: s.to_string(),
                network,
                prefix,
            });
        }
        Ok(subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_number_hosts_and_overlap() {
        let s: Ipv4Subnet = "10.88.0.0/16".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(s.host(2), Some(Ipv4Addr::new(10, 88, 0, 2)));
        assert_eq!(s.host(65535), None);
        assert_eq!(s.host_number(Ipv4Addr::new(10, 88, 1, 0)), Some(256));
        assert_eq!(s.host_number(Ipv4Addr::new(10, 89, 0, 0)), None);
        assert_eq!(s.container_hosts(), 2..65535);
        assert!(matches!(
            "10.88.0.1/16".parse::<Ipv4Subnet>(),
            Err(SubnetError::HostBits { .. })
        ));
        assert!("10.88.0.0".parse::<Ipv4Subnet>().is_err());
        assert!("10.88.0.0/33".parse::<Ipv4Subnet>().is_err());
        let inner: Ipv4Subnet = "10.88.3.0/24".parse().unwrap();
        let apart: Ipv4Subnet = "10.89.0.0/24".parse().unwrap();
        assert!(s.overlaps(inner) && inner.overlaps(s));
        assert!(!s.overlaps(apart));
        assert!(inner.contains(Ipv4Addr::new(10, 88, 3, 255)));
        assert!(!inner.contains(Ipv4Addr::new(10, 88, 4, 0)));
        let all: Ipv4Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.overlaps(apart));
    }
}
