//! Carrying this peer's private networks to the other peers: for each
//! network with a member here, a TUN device in the [`Forwarder`], the
//! network's routing table (which peer hosts which address) from the
//! control plane, a host route into the device for each remote member,
//! proxy ARP on the network's bridge (its containers take the whole subnet
//! for on-link, so the host answers for the remote members), and
//! forwarding allowed between the bridge and the device only.
//!
//! Each carried network also has a names resolver on its gateway address
//! ([`coop_net::dns`]): its members by name, and for an environment's
//! network, each service's healthy replicas by the service's name. The
//! replicas' health is asked of their hosts every [`HEALTH_PASS`].
//!
//! A pass brings all of that in line with the control plane as soon as it
//! applies a change, and at least once a second; a network without local
//! members any more is dropped (its device goes with it, the routes into it
//! and its resolver).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{info, warn};

use coop_compute::network::{NetworkConfig, network_bridge};
use coop_net::dns::{NameTable, Resolver, upstreams_from_resolv_conf};
use coop_net::{Forwarder, Network, Tun, network_mtu, run_command};
use coop_orchestra::Orchestra;
use coop_orchestra::health::HealthStatus;
use coop_state::{ContainerEntry, ControlPlane, NetworkRecord};
use coop_types::{Ipv4Subnet, NetworkId, PeerId};

/// The longest time between two passes over the carried networks.
const PASS: Duration = Duration::from_secs(1);
/// How long a pass waits after a change is applied, so that a burst of
/// changes makes one pass.
const SETTLE: Duration = Duration::from_millis(50);
/// How often the health of the replicas named by services is asked.
const HEALTH_PASS: Duration = Duration::from_secs(2);

/// Environment replicas, by container name, that are running and pass
/// their health checks (or have none): the ones their service's name
/// resolves to.
type Healthy = Arc<RwLock<BTreeSet<String>>>;

/// A network this peer carries.
struct Carried {
    tun: String,
    bridge: String,
    /// Remote members' addresses routed into the device.
    routed: BTreeSet<Ipv4Addr>,
    /// Proxy ARP and the forwarding rules are in place.
    joined: bool,
    /// The names resolver on the gateway address, when it could be bound.
    resolver: Option<Resolver>,
}

/// The TUN device of network `id` on this host: the containers' bridge's
/// name with `t<id>`.
fn tun_name(config: &NetworkConfig, id: u32) -> String {
    format!("{}t{id}", config.bridge)
}

/// Keeps this peer's networks carried until the future is dropped.
pub(crate) async fn carry(
    control: ControlPlane,
    compute: Orchestra,
    config: NetworkConfig,
    forwarder: Forwarder,
) {
    let me = compute.peer();
    let healthy = Healthy::default();
    let watcher = tokio::spawn(watch_health(control.clone(), compute, healthy.clone()));
    let _watcher = AbortOnDrop(watcher);
    let mut carried: BTreeMap<u32, Carried> = BTreeMap::new();
    let mut tick = tokio::time::interval(PASS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut raft = control.raft().metrics();
    let mut applied = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = raft.changed() => {
                if changed.is_err() {
                    tick.tick().await;
                }
                let now = raft.borrow().last_applied.map(|l| l.index);
                if now == applied {
                    continue;
                }
                applied = now;
                tokio::time::sleep(SETTLE).await;
            }
        }
        let store = control.store();
        let (Ok(networks), Ok(containers)) = (store.networks(), store.containers()) else {
            continue;
        };
        let wanted = carried_here(&networks, &containers, me);
        let healthy = healthy.read().map(|h| h.clone()).unwrap_or_default();
        for network in &wanted {
            if let Err(err) = carry_one(&mut carried, network, &containers, me, &config, &forwarder)
            {
                warn!(network = %network.name, %err, "cannot carry a private network to the other peers");
            }
            if let Some(resolver) = carried.get(&network.id).and_then(|c| c.resolver.as_ref()) {
                resolver.set_names(names_of(network, &containers, &healthy));
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

/// The networks with a member on this peer.
fn carried_here<'a>(
    networks: &'a [NetworkRecord],
    containers: &[ContainerEntry],
    me: PeerId,
) -> Vec<&'a NetworkRecord> {
    let here: BTreeSet<&str> = containers
        .iter()
        .filter(|c| c.peer == me)
        .flat_map(|c| c.networks.iter().map(|a| a.network.as_str()))
        .collect();
    networks
        .iter()
        .filter(|n| here.contains(n.name.as_str()))
        .collect()
}

/// The names of `network`: each member by its name; on an environment's
/// network, each of its services by name, with the addresses of its
/// replicas in `healthy`.
fn names_of(
    network: &NetworkRecord,
    containers: &[ContainerEntry],
    healthy: &BTreeSet<String>,
) -> NameTable {
    let mut names = NameTable::new(&network.name);
    let mut services: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
    for container in containers {
        let Some(attachment) = container
            .networks
            .iter()
            .find(|a| a.network == network.name)
        else {
            continue;
        };
        names.add_container(&container.name, attachment.address);
        let Some(owner) = &container.owner else {
            continue;
        };
        if network.env.as_deref() != Some(owner.env.as_str()) {
            continue;
        }
        let addresses = services.entry(owner.service.as_str()).or_default();
        if healthy.contains(&container.name) {
            addresses.push(attachment.address);
        }
    }
    for (service, mut addresses) in services {
        addresses.sort();
        names.add_service(service, addresses);
    }
    names
}

/// Keeps `healthy` up to date: asks the hosts of the environment replicas
/// on the networks carried here how they are, every [`HEALTH_PASS`].
async fn watch_health(control: ControlPlane, compute: Orchestra, healthy: Healthy) {
    let me = compute.peer();
    let mut tick = tokio::time::interval(HEALTH_PASS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = control.store();
        let (Ok(networks), Ok(containers)) = (store.networks(), store.containers()) else {
            continue;
        };
        let envs: BTreeSet<&str> = carried_here(&networks, &containers, me)
            .into_iter()
            .filter_map(|n| n.env.as_deref())
            .collect();
        let replicas: Vec<ContainerEntry> = containers
            .iter()
            .filter(|c| {
                c.owner
                    .as_ref()
                    .is_some_and(|o| envs.contains(o.env.as_str()))
            })
            .cloned()
            .collect();
        let found: BTreeSet<String> = if replicas.is_empty() {
            BTreeSet::new()
        } else {
            let Ok(statuses) = compute.statuses(replicas).await else {
                continue;
            };
            statuses
                .into_iter()
                .filter(|s| {
                    s.actual.as_ref().is_some_and(|a| {
                        a.state.is_running()
                            && a.health
                                .as_ref()
                                .is_none_or(|h| h.status == HealthStatus::Healthy)
                    })
                })
                .map(|s| s.entry.name)
                .collect()
        };
        if let Ok(mut current) = healthy.write() {
            *current = found;
        }
    }
}

/// Aborts a task when dropped: the health watcher ends with the carrier.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The names resolver of `network` on its gateway address, answering
/// other names from the host's resolvers. `None` (and a note) when the
/// address's port 53 is taken, e.g. by another peer on the same host
/// carrying the same network.
fn start_resolver(network: &NetworkRecord) -> Option<Resolver> {
    let gateway = network.subnet.gateway();
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstreams = upstreams_from_resolv_conf(&host, &[gateway]);
    match Resolver::bind(
        SocketAddrV4::new(gateway, 53),
        NameTable::new(&network.name),
        upstreams,
    ) {
        Ok(resolver) => Some(resolver),
        Err(err) => {
            warn!(network = %network.name, %gateway, %err, "cannot serve the network's names on its gateway");
            None
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
            resolver: start_resolver(network),
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
    run_command("ip", args).map_err(|e| e.to_string())
}

fn nft(args: &[&str]) -> Result<String, String> {
    run_command("nft", args).map_err(|e| e.to_string())
}
