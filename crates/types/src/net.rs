//! The shapes of private networks that several rooms share: a network's id
//! as the data plane carries it, and an IPv4 subnet. The control plane's
//! address management, the data plane's checks and the host's bridges all
//! speak of the same subnet, so it is defined once, here.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A private network's number, as the data plane's packet header carries
/// it. The control plane hands them out; 0 is never a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NetworkId(pub u32);

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An IPv4 subnet, `10.210.3.0/24`: the network address (host bits zero)
/// and the prefix length. Built only through [`Ipv4Subnet::new`] or
/// parsing, so the host bits are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SubnetParts")]
pub struct Ipv4Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// The serialized form, checked on the way in.
#[derive(Deserialize)]
struct SubnetParts {
    network: Ipv4Addr,
    prefix: u8,
}

impl TryFrom<SubnetParts> for Ipv4Subnet {
    type Error = SubnetError;
    fn try_from(parts: SubnetParts) -> Result<Self, SubnetError> {
        Ipv4Subnet::new(parts.network, parts.prefix)
    }
}

/// Why a subnet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("`{0}` is not a subnet like 10.210.0.0/24")]
    Syntax(String),
    #[error("a prefix of /{0} does not exist; IPv4 prefixes go from /0 to /32")]
    Prefix(u8),
    #[error(
        "{network}/{prefix} has host bits set; write the network address, e.g. {masked}/{prefix}"
    )]
    HostBits {
        network: Ipv4Addr,
        prefix: u8,
        masked: Ipv4Addr,
    },
}

impl Ipv4Subnet {
    /// The subnet `network/prefix`; refused when the prefix is over 32 or
    /// `network` has host bits set.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, SubnetError> {
        if prefix > 32 {
            return Err(SubnetError::Prefix(prefix));
        }
        let masked = Ipv4Addr::from(u32::from(network) & mask(prefix));
        if masked != network {
            return Err(SubnetError::HostBits {
                network,
                prefix,
                masked,
            });
        }
        Ok(Ipv4Subnet { network, prefix })
    }

    /// The network address.
    pub fn network(self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// Whether `addr` lies in this subnet.
    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(self, other: Ipv4Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Self, SubnetError> {
        let syntax = || SubnetError::Syntax(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        Ipv4Subnet::new(addr, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_check_and_contain() {
        let s: Ipv4Subnet = "10.210.3.0/24".parse().unwrap();
        assert!(s.contains(Ipv4Addr::new(10, 210, 3, 255)));
        assert!(!s.contains(Ipv4Addr::new(10, 210, 4, 0)));
        assert_eq!(s.to_string(), "10.210.3.0/24");
        assert!(matches!(
            "10.210.3.1/24".parse::<Ipv4Subnet>(),
            Err(SubnetError::HostBits { .. })
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Ipv4Subnet>(),
            Err(SubnetError::Prefix(33))
        ));
        assert!("10.0.0.0".parse::<Ipv4Subnet>().is_err());
        let all: Ipv4Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(all.overlaps(s) && s.overlaps(all));
        assert!(!s.overlaps("10.210.4.0/24".parse().unwrap()));
    }

    #[test]
    fn a_subnet_with_host_bits_does_not_deserialize() {
        let good = postcard::to_stdvec(&"10.1.0.0/16".parse::<Ipv4Subnet>().unwrap()).unwrap();
        assert!(postcard::from_bytes::<Ipv4Subnet>(&good).is_ok());
        let bad = postcard::to_stdvec(&(Ipv4Addr::new(10, 1, 0, 1), 16u8)).unwrap();
        assert!(postcard::from_bytes::<Ipv4Subnet>(&bad).is_err());
    }
}
