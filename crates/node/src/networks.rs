//! Carrying this peer's private networks to the other peers: for each
//! network with a member here, a TUN device in the [`Forwarder`], the
//! network's routing table (which peer hosts which address) from the
//! control plane, a host route into the device for each remote member,
//! proxy ARP on the network's bridge (its containers take the whole subnet
//! for on-link, so the host answers for the remote members), and
//! forwarding allowed between the bridge and the device only.
//!
//! One pass a second brings all of that in line with the control plane;
//! a network without local members any more is dropped (its device goes
//! with it, and the routes into it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tracing::{info, warn};

use coop_compute::network::{NetworkConfig, network_bridge};
use coop_net::{Forwarder, Network, Tun, network_mtu};
use coop_state::{ContainerEntry, ControlPlane, NetworkRecord};
use coop_types::{Ipv4Subnet, NetworkId, PeerId};

/// How often the carried networks are brought in line.
const PASS: Duration = Duration::from_secs(1);

/// A network this peer carries.
struct Carried {
    tun: String,
    bridge: String,
    /// Remote members' addresses routed into the device.
    routed: BTreeSet<Ipv4Addr>,
    /// Proxy ARP and the forwarding rules are in place.
    joined: bool,
}

/// The TUN device of network `id` on this host: the containers' bridge's
/// name with `t<id>`.
fn tun_name(config: &NetworkConfig, id: u32) -> String {
    format!("{}t{id}", config.bridge)
}

/// Keeps this peer's networks carried until the future is dropped.
pub(crate) async fn carry(
    control: ControlPlane,
    me: PeerId,
    config: NetworkConfig,
    forwarder: Forwarder,
) {
    let mut carried: BTreeMap<u32, Carried> = BTreeMap::new();
    let mut tick = tokio::time::interval(PASS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = control.store();
        let (Ok(networks), Ok(containers)) = (store.networks(), store.containers()) else {
            continue;
        };
        let here: BTreeSet<&str> = containers
            .iter()
            .filter(|c| c.peer == me)
            .flat_map(|c| c.networks.iter().map(|a| a.network.as_str()))
            .collect();
        let wanted: Vec<&NetworkRecord> = networks
            .iter()
            .filter(|n| here.contains(n.name.as_str()))
            .collect();
        for network in &wanted {
            if let Err(err) = carry_one(&mut carried, network, &containers, me, &config, &forwarder)
            {
                warn!(network = %network.name, %err, "cannot carry a private network to the other peers");
            }
        }
        let keep: BTreeSet<u32> = wanted.iter().map(|n| n.id).collect();
        let gone: Vec<u32> = carried
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in gone {
            carried.remove(&id);
            if let Err(err) = forwarder.remove_network(NetworkId(id)) {
                warn!(network = id, %err, "cannot drop a network no member here is on");
            } else {
                info!(
                    network = id,
                    "no member here any more: network no longer carried"
                );
            }
        }
    }
}

/// Brings one network in line: its device, routing table, host routes,
/// proxy ARP and forwarding rules.
fn carry_one(
    carried: &mut BTreeMap<u32, Carried>,
    network: &NetworkRecord,
    containers: &[ContainerEntry],
    me: PeerId,
    config: &NetworkConfig,
    forwarder: &Forwarder,
) -> Result<(), String> {
    let id = NetworkId(network.id);
    if let std::collections::btree_map::Entry::Vacant(slot) = carried.entry(network.id) {
        let name = tun_name(config, network.id);
        let tun = Tun::create(&name).map_err(|e| e.to_string())?;
        tun.set_mtu(network_mtu()).map_err(|e| e.to_string())?;
        tun.up().map_err(|e| e.to_string())?;
        forwarder
            .add_network(
                Network {
                    id,
                    subnet: network.subnet,
                },
                tun,
            )
            .map_err(|e| e.to_string())?;
        info!(network = %network.name, device = %name, "carrying a private network to the other peers");
        slot.insert(Carried {
            tun: name,
            bridge: network_bridge(config, network.id),
            routed: BTreeSet::new(),
            joined: false,
        });
    }
    let Some(state) = carried.get_mut(&network.id) else {
        return Ok(());
    };
    let members: Vec<(Ipv4Addr, PeerId)> = containers
        .iter()
        .flat_map(|c| {
            c.networks
                .iter()
                .filter(|a| a.network == network.name)
                .map(|a| (a.address, c.peer))
        })
        .collect();
    forwarder
        .replace_routes(id, members.iter().copied())
        .map_err(|e| e.to_string())?;
    let remote: BTreeSet<Ipv4Addr> = members
        .iter()
        .filter(|(_, peer)| *peer != me)
        .map(|(addr, _)| *addr)
        .collect();
    for addr in remote.difference(&state.routed.clone()) {
        let host = Ipv4Subnet {
            network: *addr,
            prefix: 32,
        };
        ip(&["route", "replace", &host.to_string(), "dev", &state.tun])?;
        state.routed.insert(*addr);
    }
    for addr in state.routed.clone().difference(&remote) {
        let host = format!("{addr}/32");
        // Gone already when the device was: nothing to undo.
        let _ = ip(&["route", "del", &host, "dev", &state.tun]);
        state.routed.remove(addr);
    }
    // The bridge appears with the first local member's container.
    if !state.joined && Path::new("/sys/class/net").join(&state.bridge).exists() {
        let sysctl = format!("/proc/sys/net/ipv4/conf/{}/proxy_arp", state.bridge);
        std::fs::write(&sysctl, "1").map_err(|e| format!("cannot write {sysctl}: {e}"))?;
        allow_forwarding(config, &state.bridge, &state.tun)?;
        state.joined = true;
    }
    Ok(())
}

/// Lets the network's bridge and its device forward to each other, ahead
/// of the rules that keep the bridge apart from everything else.
fn allow_forwarding(config: &NetworkConfig, bridge: &str, tun: &str) -> Result<(), String> {
    let table = config.nft_table.as_str();
    let chain = nft(&["list", "chain", "ip", table, "isolate"]).unwrap_or_default();
    if chain.contains(&format!("\"{tun}\"")) {
        return Ok(());
    }
    nft(&[
        "insert", "rule", "ip", table, "isolate", "iifname", bridge, "oifname", tun, "accept",
    ])?;
    nft(&[
        "insert", "rule", "ip", table, "isolate", "iifname", tun, "oifname", bridge, "accept",
    ])?;
    Ok(())
}

fn ip(args: &[&str]) -> Result<String, String> {
    command("ip", args)
}

fn nft(args: &[&str]) -> Result<String, String> {
    command("nft", args)
}

fn command(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
