//! One container's network: its namespace, its veth pair and address, and
//! its published ports.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::network::{NetworkConfig, NetworkError};
use crate::runtime::ShimCommand;
use crate::runtime::spec::{ContainerSpec, PortMapping, Protocol};
use crate::runtime::sys::{run, run_with_input};
use crate::runtime::userns;

/// The bridge of private network `id` on this host: the containers'
/// bridge's name with `n<id>`.
pub fn network_bridge(config: &NetworkConfig, id: u32) -> String {
    format!("{}n{id}", config.bridge)
}

/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A container's address and the names of its network pieces; saved in its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerNetwork {
    /// The container's address on the bridge.
    pub address: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// The bridge's address, the container's default route.
    pub gateway: Ipv4Addr,
    /// Host-side veth name (the container side is `eth0`).
    pub veth: String,
    /// Network namespace name under `/run/netns`.
    pub netns: String,
    /// The private networks it is on, one interface each.
    #[serde(default)]
    pub joined: Vec<Joined>,
}

/// One private network a container is on: its interface there and the
/// host side of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The network's bridge on this host.
    pub bridge: String,
    /// Host-side veth name.
    pub veth: String,
    /// The interface inside the container (`eth1`, ...).
    pub ifname: String,
    pub address: Ipv4Addr,
    pub subnet: coop_types::Ipv4Subnet,
    /// Its MTU; the default when 0.
    #[serde(default)]
    pub mtu: u16,
}

impl ContainerNetwork {
    /// Picks the lowest free address (not in `taken`) for container `spec`
    /// on the bridge, and names its interfaces on its private networks.
    pub fn allocate(
        config: &NetworkConfig,
        spec: &ContainerSpec,
        taken: &[Ipv4Addr],
    ) -> Result<ContainerNetwork, NetworkError> {
        let id = spec.id.as_str();
        let subnet = config.subnet;
        let number = subnet
            .container_hosts()
            .find(|&n| subnet.host(n).is_some_and(|a| !taken.contains(&a)))
            .ok_or(NetworkError::SubnetFull(subnet))?;
        let address = subnet
            .host(number)
            .ok_or(NetworkError::SubnetFull(subnet))?;
        let veth = format!("{}{number:x}", config.veth_prefix);
        let joined = spec
            .networks
            .iter()
            .enumerate()
            .map(|(i, attach)| {
                let joined = Joined {
                    bridge: network_bridge(config, attach.id),
                    veth: format!("{veth}n{i}"),
                    ifname: format!("eth{}", i + 1),
                    address: attach.address,
                    subnet: attach.subnet,
                    mtu: attach.mtu,
                };
                for name in [&joined.bridge, &joined.veth] {
                    if name.len() > 15 {
                        return Err(NetworkError::BadConfig(format!(
                            "interface name `{name}` is longer than 15 characters; use a shorter bridge or veth prefix"
                        )));
                    }
                }
                Ok(joined)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ContainerNetwork {
            address,
            prefix: subnet.prefix,
            gateway: subnet.gateway(),
            veth,
            netns: format!("{}{id}", config.netns_prefix),
            joined,
        })
    }

    /// The namespace file the container joins (OCI `linux.namespaces[].path`).
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.netns)
    }

    /// Where the user namespace that owns the network namespace is bound,
    /// when the container has one.
    pub fn userns_path(&self) -> PathBuf {
        PathBuf::from(userns::USERNS_DIR).join(&self.netns)
    }

    /// Creates the namespace and a fresh veth pair into it, with the address
    /// and default route. Anything left from an earlier run is replaced.
    ///
    /// With `id_shift`, the namespace belongs to a user namespace of its
    /// own (mapping the container's ids onto `id_shift..`), which the
    /// container joins: its root then holds capabilities over its own
    /// network and nothing of the host's. `shim` makes those two
    /// namespaces (`coop shim userns`).
    pub fn setup(
        &self,
        config: &NetworkConfig,
        id_shift: u32,
        shim: &ShimCommand,
    ) -> Result<(), NetworkError> {
        self.teardown()?;
        let ns = self.netns.as_str();
        if id_shift == 0 {
            run("ip", &["netns", "add", ns])?;
        } else {
            userns::create_namespaces(shim, &self.userns_path(), ns, id_shift)?;
        }
        run(
            "ip",
            &[
                "link", "add", &self.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        )?;
        run(
            "ip",
            &["link", "set", &self.veth, "master", &config.bridge, "up"],
        )?;
        let address = format!("{}/{}", self.address, self.prefix);
        let gateway = self.gateway.to_string();
        let batch = format!(
            "addr add {address} dev eth0\nlink set lo up\nlink set eth0 up\nroute add default via {gateway}\n"
        );
        run_with_input("ip", &["-n", ns, "-batch", "-"], Some(&batch))?;
        for joined in &self.joined {
            super::HostNetwork::ensure_network_bridge(config, &joined.bridge, joined.subnet)?;
            run(
                "ip",
                &[
                    "link",
                    "add",
                    &joined.veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &joined.ifname,
                    "netns",
                    ns,
                ],
            )?;
            run(
                "ip",
                &["link", "set", &joined.veth, "master", &joined.bridge, "up"],
            )?;
            // A MAC made from the address: after a restart its neighbours'
            // ARP entries for it are still right.
            let [a, b, c, d] = joined.address.octets();
            let mac = format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}");
            let mtu = match joined.mtu {
                0 => String::new(),
                mtu => {
                    run(
                        "ip",
                        &["link", "set", &joined.veth, "mtu", &mtu.to_string()],
                    )?;
                    format!("link set {} mtu {mtu}\n", joined.ifname)
                }
            };
            let batch = format!(
                "link set {if} address {mac}\n{mtu}addr add {}/{} dev {if}\nlink set {if} up\n",
                joined.address,
                joined.subnet.prefix,
                if = joined.ifname
            );
            run_with_input("ip", &["-n", ns, "-batch", "-"], Some(&batch))?;
        }
        Ok(())
    }

    /// Removes the veth pair and the namespace. Idempotent.
    pub fn teardown(&self) -> Result<(), NetworkError> {
        for veth in std::iter::once(&self.veth).chain(self.joined.iter().map(|j| &j.veth)) {
            if PathBuf::from("/sys/class/net").join(veth).exists() {
                run("ip", &["link", "del", veth])?;
            }
        }
        if self.netns_path().exists() {
            run("ip", &["netns", "del", &self.netns])?;
        }
        userns::remove_namespace_file(&self.userns_path())?;
        Ok(())
    }

    /// Adds the DNAT map entries for `ports`.
    pub fn publish(
        &self,
        config: &NetworkConfig,
        ports: &[PortMapping],
    ) -> Result<(), NetworkError> {
        if ports.is_empty() {
            return Ok(());
        }
        let elements: Vec<String> = ports
            .iter()
            .map(|p| {
                format!(
                    "{} . {} : {} . {}",
                    p.protocol.name(),
                    p.host_port,
                    self.address,
                    p.container_port
                )
            })
            .collect();
        let script = format!(
            "add element ip {} ports {{ {} }}\n",
            config.nft_table,
            elements.join(", ")
        );
        run_with_input("nft", &["-f", "-"], Some(&script))?;
        Ok(())
    }

    /// Removes the DNAT map entries for `ports`; entries already gone are fine.
    pub fn unpublish(
        &self,
        config: &NetworkConfig,
        ports: &[PortMapping],
    ) -> Result<(), NetworkError> {
        if ports.is_empty() || run("nft", &["list", "table", "ip", &config.nft_table]).is_err() {
            return Ok(());
        }
        for p in ports {
            let element = format!("{{ {} . {} }}", p.protocol.name(), p.host_port);
            if let Err(e) = run(
                "nft",
                &[
                    "delete",
                    "element",
                    "ip",
                    &config.nft_table,
                    "ports",
                    &element,
                ],
            ) && !e.stderr.contains("No such file or directory")
            {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Bytes received and sent by the container (the host veth's counters, swapped).
    pub fn counters(&self) -> (u64, u64) {
        let read = |name: &str| {
            fs::read_to_string(format!("/sys/class/net/{}/statistics/{name}", self.veth))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        (read("tx_bytes"), read("rx_bytes"))
    }
}

/// Refuses a host port some process on the peer already listens on: the
/// DNAT would silently steal its traffic.
pub fn check_host_port_free(port: &PortMapping) -> Result<(), NetworkError> {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port.host_port);
    let result = match port.protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
    };
    result.map_err(|e| NetworkError::PortBusy {
        port: port.host_port,
        protocol: port.protocol.name(),
        reason: format!("binding it failed: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_takes_the_lowest_free_address() {
        let config = NetworkConfig::default();
        let a = ContainerNetwork::allocate(
            &config,
            &ContainerSpec::new("web", "/rootfs", &["sh"]),
            &[],
        )
        .unwrap();
        assert_eq!(a.address, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(a.veth, "coopv2");
        assert_eq!(a.netns, "coop-web");
        let b = ContainerNetwork::allocate(
            &config,
            &ContainerSpec::new("db", "/rootfs", &["sh"]),
            &[a.address],
        )
        .unwrap();
        assert_eq!(b.address, Ipv4Addr::new(10, 88, 0, 3));
        let tiny = NetworkConfig {
            subnet: "10.0.0.0/30".parse().unwrap(),
            ..config
        };
        let only =
            ContainerNetwork::allocate(&tiny, &ContainerSpec::new("x", "/rootfs", &["sh"]), &[])
                .unwrap();
        assert!(matches!(
            ContainerNetwork::allocate(
                &tiny,
                &ContainerSpec::new("y", "/rootfs", &["sh"]),
                &[only.address]
            ),
            Err(NetworkError::SubnetFull(_))
        ));
    }

    #[test]
    fn a_bound_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mapping = PortMapping {
            host_port: port,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let err = check_host_port_free(&mapping).unwrap_err();
        assert!(
            err.to_string().contains(&format!("host port {port}/tcp")),
            "{err}"
        );
    }
}
