//! The host side shared by all containers: the bridge and coop's nftables table.

use std::fs;
use std::path::Path;

use crate::network::{NetworkConfig, NetworkError};
use crate::runtime::sys::{run, run_with_input};

/// The bridge and firewall table every container of a runtime uses.
pub struct HostNetwork;

impl HostNetwork {
    /// Creates the bridge (with the gateway address) and the nftables table
    /// where missing, and sets the sysctls NAT and local port access need.
    /// Idempotent: an existing table keeps its published ports.
    pub fn ensure(config: &NetworkConfig) -> Result<(), NetworkError> {
        config.validate()?;
        let bridge = config.bridge.as_str();
        let gateway = format!("{}/{}", config.subnet.gateway(), config.subnet.prefix);
        if !Path::new("/sys/class/net").join(bridge).exists() {
            run("ip", &["link", "add", bridge, "type", "bridge"])?;
        }
        let addresses = run("ip", &["-4", "-o", "addr", "show", "dev", bridge])?;
        if !addresses.split_whitespace().any(|w| w == gateway) {
            run("ip", &["addr", "add", &gateway, "dev", bridge])?;
        }
        run("ip", &["link", "set", bridge, "up"])?;
        // Published ports are DNATed from 127.0.0.1 too; the kernel drops
        // such packets on a non-loopback device unless route_localnet is set.
        write_sysctl(&format!("net/ipv4/conf/{bridge}/route_localnet"), "1")?;
        if config.enable_ip_forward {
            write_sysctl("net/ipv4/ip_forward", "1")?;
        }
        if run("nft", &["list", "table", "ip", &config.nft_table]).is_err() {
            run_with_input("nft", &["-f", "-"], Some(&table_script(config)))?;
        }
        Ok(())
    }

    /// Creates the bridge of a private network where missing, with the
    /// network's gateway address, and the rules that keep it apart: nothing
    /// is forwarded into it from another interface, nor out of it to
    /// another (its members talk over the bridge itself; a container
    /// reaches the rest of the world through its `eth0` on the containers'
    /// bridge). Idempotent.
    pub fn ensure_network_bridge(
        config: &NetworkConfig,
        bridge: &str,
        subnet: coop_types::Ipv4Subnet,
    ) -> Result<(), NetworkError> {
        if !Path::new("/sys/class/net").join(bridge).exists() {
            run("ip", &["link", "add", bridge, "type", "bridge"])?;
        }
        let gateway = format!("{}/{}", subnet.gateway(), subnet.prefix);
        let addresses = run("ip", &["-4", "-o", "addr", "show", "dev", bridge])?;
        if !addresses.split_whitespace().any(|w| w == gateway) {
            run("ip", &["addr", "add", &gateway, "dev", bridge])?;
        }
        run("ip", &["link", "set", bridge, "up"])?;
        let table = config.nft_table.as_str();
        let chain = run("nft", &["list", "chain", "ip", table, "isolate"]).unwrap_or_default();
        if !chain.contains(&format!("\"{bridge}\"")) {
            let script = format!(
                "add chain ip {table} isolate {{ type filter hook forward priority filter; policy accept; }}\n\
                 add rule ip {table} isolate iifname \"{bridge}\" oifname != \"{bridge}\" drop\n\
                 add rule ip {table} isolate oifname \"{bridge}\" iifname != \"{bridge}\" drop\n"
            );
            run_with_input("nft", &["-f", "-"], Some(&script))?;
        }
        Ok(())
    }

    /// Removes coop's nftables table and the bridge. Only for uninstalling
    /// and tests: running containers lose their network.
    pub fn teardown(config: &NetworkConfig) -> Result<(), NetworkError> {
        if run("nft", &["list", "table", "ip", &config.nft_table]).is_ok() {
            run("nft", &["delete", "table", "ip", &config.nft_table])?;
        }
        if Path::new("/sys/class/net").join(&config.bridge).exists() {
            run("ip", &["link", "del", &config.bridge])?;
        }
        Ok(())
    }
}

fn write_sysctl(key: &str, value: &str) -> Result<(), NetworkError> {
    let path = Path::new("/proc/sys").join(key);
    fs::write(&path, value).map_err(|source| NetworkError::Io {
        action: "write sysctl",
        path: path.display().to_string(),
        source,
    })
}

/// coop's whole table. The `ports` map is filled per container; the DNAT
/// rules only apply to traffic for one of the peer's own addresses
/// (`fib daddr type local`), so forwarded traffic to other hosts is untouched.
fn table_script(config: &NetworkConfig) -> String {
    let NetworkConfig {
        bridge,
        subnet,
        nft_table,
        ..
    } = config;
    format!(
        r#"table ip {nft_table} {{
    map ports {{
        type inet_proto . inet_service : ipv4_addr . inet_service
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local dnat ip to meta l4proto . th dport map @ports
    }}
    chain output {{
        type nat hook output priority -100; policy accept;
        fib daddr type local dnat ip to meta l4proto . th dport map @ports
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} oifname != "{bridge}" masquerade
        oifname "{bridge}" ip saddr 127.0.0.0/8 masquerade
    }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_the_bridge_and_subnet() {
        let script = table_script(&NetworkConfig::default());
        assert!(script.starts_with("table ip coop {"));
        assert!(script.contains("ip saddr 10.88.0.0/16 oifname != \"coop0\" masquerade"));
        assert!(script.contains("map @ports"));
    }
}

/// The IPv4 routes of this host's main table that are not the default
/// route (`/proc/net/route`), so a new private network can keep clear of
/// them. Empty when the table cannot be read.
pub fn host_routes() -> Vec<coop_types::Ipv4Subnet> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    parse_routes(&text)
}

/// The routes of a `/proc/net/route` text.
fn parse_routes(text: &str) -> Vec<coop_types::Ipv4Subnet> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            // The kernel prints the address's bytes as a native u32.
            let prefix = mask.count_ones() as u8;
            let network = std::net::Ipv4Addr::from(destination.to_ne_bytes());
            (prefix > 0).then_some(coop_types::Ipv4Subnet { network, prefix })
        })
        .collect()
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn routes_read_from_the_kernel_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
coop0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let routes: Vec<String> = parse_routes(table).iter().map(|r| r.to_string()).collect();
        assert_eq!(routes, vec!["192.168.2.0/24", "10.88.0.0/16"]);
    }
}
