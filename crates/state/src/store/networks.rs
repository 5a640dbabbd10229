//! Apply rules and local reads for private networks and the addresses
//! containers hold on them.
//!
//! Rows of the `sm` table: `net/<name>`. A container's addresses live in
//! its entry (`ContainerEntry::networks`); the apply rules here check and
//! fill them in when the entry is written.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use coop_types::Ipv4Subnet;

use super::{StateStore, StoreError, StrTable, db_err, get_value, put_value, scan_values};
use crate::compute::ContainerEntry;
use crate::networks::{Attachment, NETWORK_POOL, NetworkRecord, POOL_PREFIX, valid_network_name};
use crate::records::{Command, CommandError};

const NETWORK_PREFIX: &str = "net/";
const CONTAINER_PREFIX: &str = "container/";

type Applied = Result<Result<(), CommandError>, StoreError>;

fn network_key(name: &str) -> String {
    format!("{NETWORK_PREFIX}{name}")
}

/// The shortest prefix a network may have, and the longest (a /30 holds
/// the gateway and one container).
const PREFIXES: std::ops::RangeInclusive<u8> = 8..=30;

/// Applies one network command. Callers route only these here.
pub(super) fn apply(sm: &mut StrTable<'_>, command: Command) -> Applied {
    match command {
        Command::CreateNetwork {
            name,
            subnet,
            avoid,
            env,
            now,
        } => {
            if !valid_network_name(&name) {
                return Ok(Err(CommandError::InvalidRecord(format!(
                    "network name `{name}`: use 1-63 characters of a-z, 0-9 and `-`, starting with a letter"
                ))));
            }
            let row = network_key(&name);
            if get_value::<NetworkRecord>(sm, &row)?.is_some() {
                return Ok(Err(CommandError::NetworkExists(name)));
            }
            let networks: Vec<NetworkRecord> = scan_values(sm, NETWORK_PREFIX)?;
            let taken = |candidate: Ipv4Subnet| -> Option<String> {
                networks
                    .iter()
                    .find(|n| n.subnet.overlaps(candidate))
                    .map(|n| format!("network `{}` ({})", n.name, n.subnet))
                    .or_else(|| {
                        avoid
                            .iter()
                            .find(|a| a.overlaps(candidate))
                            .map(|a| format!("{a}, which the peer uses"))
                    })
            };
            let subnet = match subnet {
                Some(subnet) => {
                    if !PREFIXES.contains(&subnet.prefix) {
                        return Ok(Err(CommandError::InvalidRecord(format!(
                            "subnet {subnet}: give a prefix from /8 to /30"
                        ))));
                    }
                    if let Some(with) = taken(subnet) {
                        return Ok(Err(CommandError::NetworkOverlap {
                            subnet: subnet.to_string(),
                            with,
                        }));
                    }
                    subnet
                }
                None => {
                    let count = 1u32 << (POOL_PREFIX - NETWORK_POOL.prefix);
                    let step = 1u32 << (32 - POOL_PREFIX);
                    let free = (0..count)
                        .map(|i| Ipv4Subnet {
                            network: Ipv4Addr::from(u32::from(NETWORK_POOL.network) + i * step),
                            prefix: POOL_PREFIX,
                        })
                        .find(|candidate| taken(*candidate).is_none());
                    let Some(subnet) = free else {
                        return Ok(Err(CommandError::NetworkPoolExhausted(
                            NETWORK_POOL.to_string(),
                        )));
                    };
                    subnet
                }
            };
            let id = networks.iter().map(|n| n.id).max().unwrap_or(0) + 1;
            put_value(
                sm,
                &row,
                &NetworkRecord {
                    name,
                    id,
                    subnet,
                    env,
                    created_at: now,
                },
            )?;
        }
        Command::DeleteNetwork { name } => {
            let row = network_key(&name);
            if get_value::<NetworkRecord>(sm, &row)?.is_none() {
                return Ok(Err(CommandError::NetworkUnknown(name)));
            }
            let containers: Vec<ContainerEntry> = scan_values(sm, CONTAINER_PREFIX)?;
            if let Some(user) = containers
                .iter()
                .find(|c| c.networks.iter().any(|a| a.network == name))
            {
                return Ok(Err(CommandError::NetworkInUse {
                    network: name,
                    container: user.name.clone(),
                }));
            }
            sm.remove(row.as_str())
                .map_err(db_err("removing a network"))?;
        }
        other => {
            return Err(StoreError::Inconsistent(format!(
                "network apply got a foreign command: {other:?}"
            )));
        }
    }
    Ok(Ok(()))
}

/// Checks `entry`'s networks and gives each attachment that asks for any
/// address the lowest free one. Refused: an unknown network, the same
/// network twice, an address outside the subnet or held by another
/// container, a full network.
pub(super) fn assign_addresses(
    sm: &StrTable<'_>,
    entry: &mut ContainerEntry,
) -> Result<Result<(), CommandError>, StoreError> {
    if entry.networks.is_empty() {
        return Ok(Ok(()));
    }
    let containers: Vec<ContainerEntry> = scan_values(sm, CONTAINER_PREFIX)?;
    let mut seen = BTreeSet::new();
    for attachment in &mut entry.networks {
        if !seen.insert(attachment.network.clone()) {
            return Ok(Err(CommandError::InvalidRecord(format!(
                "container `{}` joins network `{}` twice",
                entry.name, attachment.network
            ))));
        }
        let Some(network) = get_value::<NetworkRecord>(sm, &network_key(&attachment.network))?
        else {
            return Ok(Err(CommandError::NetworkUnknown(
                attachment.network.clone(),
            )));
        };
        let holders: Vec<(&str, Ipv4Addr)> = containers
            .iter()
            .filter(|c| c.name != entry.name)
            .flat_map(|c| {
                c.networks
                    .iter()
                    .filter(|a| a.network == network.name)
                    .map(|a| (c.name.as_str(), a.address))
            })
            .collect();
        let subnet = network.subnet;
        if attachment.address == Attachment::ANY {
            let free = subnet
                .container_hosts()
                .filter_map(|n| subnet.host(n))
                .find(|a| !holders.iter().any(|(_, held)| held == a));
            let Some(address) = free else {
                return Ok(Err(CommandError::NetworkFull(network.name)));
            };
            attachment.address = address;
            continue;
        }
        let usable = subnet
            .host_number(attachment.address)
            .is_some_and(|n| subnet.container_hosts().contains(&n));
        if !usable {
            return Ok(Err(CommandError::AddressOutside {
                address: attachment.address.to_string(),
                network: network.name,
                subnet: subnet.to_string(),
            }));
        }
        if let Some((holder, _)) = holders.iter().find(|(_, a)| *a == attachment.address) {
            return Ok(Err(CommandError::AddressTaken {
                address: attachment.address.to_string(),
                network: network.name,
                container: holder.to_string(),
            }));
        }
    }
    Ok(Ok(()))
}

impl StateStore {
    /// One network.
    pub fn network(&self, name: &str) -> Result<Option<NetworkRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &network_key(name)))
    }

    /// Every network, sorted by name.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, NETWORK_PREFIX))
    }

    /// The containers on network `name`, with their addresses there.
    pub fn network_members(
        &self,
        name: &str,
    ) -> Result<Vec<(ContainerEntry, Ipv4Addr)>, StoreError> {
        Ok(self
            .containers()?
            .into_iter()
            .filter_map(|c| {
                let address = c
                    .networks
                    .iter()
                    .find(|a| a.network == name)
                    .map(|a| a.address)?;
                Some((c, address))
            })
            .collect())
    }
}
