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
