//! A small Internet in network namespaces: a public segment and two homes,
//! each behind its own nftables masquerade router that drops unsolicited
//! inbound packets, as home routers do.
//!
//! ```text
//!   home-a 10.77.1.2 ── router-a (NAT) 198.18.0.2 ─┐
//!                                                  ├─ pub 198.18.0.1 (bridge)
//!   home-b 10.77.2.2 ── router-b (NAT) 198.18.0.3 ─┘
//! ```
//!
//! A router's NAT keeps a home's source port ([`Nat::PortPreserving`], what
//! most home routers do) or picks a random port per destination
//! ([`Nat::Symmetric`], `masquerade fully-random`). The lab can also drop
//! UDP between the two homes, cut a home off entirely, and give a router a
//! new public address.
//!
//! 198.18.0.0/15 is reserved for network tests and 10.77.0.0/16 exists only
//! inside these namespaces: nothing here leaves the machine. Namespaces are
//! made fresh for every lab (conntrack state would survive otherwise) and
//! deleted on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// The namespaces of one lab.
pub struct NatLab {
    pub public: String,
    pub router_a: String,
    pub router_b: String,
    pub home_a: String,
    pub home_b: String,
    suffix: String,
}

/// How a lab router maps its home's source ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// The home's port is kept: one public address for every destination.
    PortPreserving,
    /// A random public port per destination (a symmetric NAT).
    Symmetric,
}

/// The public addresses of the two routers.
pub const ROUTER_A_WAN: &str = "198.18.0.2";
pub const ROUTER_B_WAN: &str = "198.18.0.3";

/// The public address of the relay peer's namespace.
pub const PUBLIC_IP: &str = "198.18.0.1";
pub const HOME_A_IP: &str = "10.77.1.2";
pub const HOME_B_IP: &str = "10.77.2.2";

/// A short suffix unique to this process and call, so labs of tests running
/// in parallel (one process, several threads) never share a namespace or an
/// interface name (at most 15 characters, so the suffix stays short).
fn unique_suffix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("{}{n}", std::process::id() % 10_000)
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ns(name: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["ip", "netns", "exec", name];
    full.extend_from_slice(args);
    run(&full)
}

/// Why this machine cannot run the lab, if it cannot.
pub fn unavailable() -> Option<String> {
    for tool in ["ip", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    let probe = format!("coop-probe-{}", unique_suffix());
    match run(&["ip", "netns", "add", &probe]) {
        Ok(()) => {
            let _ = run(&["ip", "netns", "del", &probe]);
            None
        }
        Err(err) => Some(format!("network namespaces are unavailable here: {err:#}")),
    }
}

impl NatLab {
    /// Builds the lab with two port-preserving routers.
    pub fn create() -> Result<Self> {
        Self::with(Nat::PortPreserving, Nat::PortPreserving)
    }

    /// Builds the namespaces, links, addresses, routes and router rules,
    /// router a with NAT `a` and router b with NAT `b`.
    pub fn with(a: Nat, b: Nat) -> Result<Self> {
        let suffix = unique_suffix();
        let name = |role: &str| format!("coop-{role}-{suffix}");
        let lab = NatLab {
            public: name("pub"),
            router_a: name("ra"),
            router_b: name("rb"),
            home_a: name("ha"),
            home_b: name("hb"),
            suffix: suffix.clone(),
        };
        for n in lab.all() {
            let _ = run(&["ip", "netns", "del", n]);
            run(&["ip", "netns", "add", n])?;
            ns(n, &["ip", "link", "set", "lo", "up"])?;
        }
        // The public segment: a bridge in `pub` holding the relay's address.
        ns(&lab.public, &["ip", "link", "add", "br0", "type", "bridge"])?;
        ns(
            &lab.public,
            &[
                "ip",
                "addr",
                "add",
                &format!("{PUBLIC_IP}/24"),
                "dev",
                "br0",
            ],
        )?;
        ns(&lab.public, &["ip", "link", "set", "br0", "up"])?;
        lab.router(&lab.router_a, &lab.home_a, "a", ROUTER_A_WAN, "10.77.1", a)?;
        lab.router(&lab.router_b, &lab.home_b, "b", ROUTER_B_WAN, "10.77.2", b)?;
        Ok(lab)
    }

    /// Drops every UDP packet between the two routers' public addresses on
    /// the public segment (a firewall between the homes); the relay stays
    /// reachable.
    pub fn block_udp_between_homes(&self) -> Result<()> {
        let rules = format!(
            "table bridge wan {{\n\
             chain forward {{ type filter hook forward priority 0; \
             ip saddr {{ {ROUTER_A_WAN}, {ROUTER_B_WAN} }} ip daddr {{ {ROUTER_A_WAN}, {ROUTER_B_WAN} }} \
             meta l4proto udp drop; }}\n\
             }}\n"
        );
        apply_rules(&self.public, &rules)
    }

    /// Cuts home b off from everything (its router forwards nothing), as
    /// a broken uplink does; [`NatLab::reconnect_home_b`] undoes it.
    pub fn cut_off_home_b(&self) -> Result<()> {
        let rules = "table inet cut {\n\
             chain forward { type filter hook forward priority -100; policy drop; }\n\
             }\n";
        apply_rules(&self.router_b, rules)
    }

    /// Lets home b's router forward again.
    pub fn reconnect_home_b(&self) -> Result<()> {
        ns(&self.router_b, &["nft", "delete", "table", "inet", "cut"])
    }

    /// Gives router a the public address `new_ip` in place of its old one,
    /// as a router does that restarts and gets a new address from its ISP:
    /// every mapping of the old address is gone.
    pub fn renumber_router_a(&self, new_ip: &str) -> Result<()> {
        ns(
            &self.router_a,
            &[
                "ip",
                "addr",
                "del",
                &format!("{ROUTER_A_WAN}/24"),
                "dev",
                "wan",
            ],
        )?;
        ns(
            &self.router_a,
            &["ip", "addr", "add", &format!("{new_ip}/24"), "dev", "wan"],
        )
    }

    fn all(&self) -> [&String; 5] {
        [
            &self.public,
            &self.router_a,
            &self.router_b,
            &self.home_a,
            &self.home_b,
        ]
    }

    fn router(
        &self,
        router: &str,
        home: &str,
        tag: &str,
        wan_ip: &str,
        lan: &str,
        nat: Nat,
    ) -> Result<()> {
        let s = &self.suffix;
        // WAN: router <-> public bridge.
        let wan = format!("w{tag}{s}");
        let wan_peer = format!("p{tag}{s}");
        run(&[
            "ip", "link", "add", &wan, "type", "veth", "peer", "name", &wan_peer,
        ])?;
        run(&["ip", "link", "set", &wan, "netns", router])?;
        run(&["ip", "link", "set", &wan_peer, "netns", &self.public])?;
        ns(
            &self.public,
            &["ip", "link", "set", &wan_peer, "master", "br0"],
        )?;
        ns(&self.public, &["ip", "link", "set", &wan_peer, "up"])?;
        ns(router, &["ip", "link", "set", &wan, "name", "wan"])?;
        ns(
            router,
            &["ip", "addr", "add", &format!("{wan_ip}/24"), "dev", "wan"],
        )?;
        ns(router, &["ip", "link", "set", "wan", "up"])?;
        // LAN: home <-> router.
        let lan_r = format!("l{tag}{s}");
        let lan_h = format!("h{tag}{s}");
        run(&[
            "ip", "link", "add", &lan_r, "type", "veth", "peer", "name", &lan_h,
        ])?;
        run(&["ip", "link", "set", &lan_r, "netns", router])?;
        run(&["ip", "link", "set", &lan_h, "netns", home])?;
        ns(router, &["ip", "link", "set", &lan_r, "name", "lan"])?;
        ns(
            router,
            &["ip", "addr", "add", &format!("{lan}.1/24"), "dev", "lan"],
        )?;
        ns(router, &["ip", "link", "set", "lan", "up"])?;
        ns(home, &["ip", "link", "set", &lan_h, "name", "eth0"])?;
        ns(
            home,
            &["ip", "addr", "add", &format!("{lan}.2/24"), "dev", "eth0"],
        )?;
        ns(home, &["ip", "link", "set", "eth0", "up"])?;
        ns(
            home,
            &["ip", "route", "add", "default", "via", &format!("{lan}.1")],
        )?;
        ns(router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let masquerade = match nat {
            Nat::PortPreserving => "masquerade",
            Nat::Symmetric => "masquerade fully-random",
        };
        let rules = format!(
            "table ip nat {{\n\
             chain postrouting {{ type nat hook postrouting priority 100; oifname \"wan\" {masquerade}; }}\n\
             }}\n\
             table inet filter {{\n\
             chain input {{ type filter hook input priority 0; policy drop; ct state established,related accept; iifname \"lo\" accept; iifname \"lan\" accept; }}\n\
             chain forward {{ type filter hook forward priority 0; policy drop; ct state established,related accept; iifname \"lan\" accept; }}\n\
             }}\n"
        );
        apply_rules(router, &rules)
    }
}

/// Loads an nftables ruleset into namespace `name`.
fn apply_rules(name: &str, rules: &str) -> Result<()> {
    let path = std::env::temp_dir().join(format!("coop-nft-{name}.conf"));
    std::fs::write(&path, rules)?;
    let applied = ns(name, &["nft", "-f", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    applied
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for n in self.all() {
            let _ = run(&["ip", "netns", "del", n]);
        }
    }
}

/// Two hosts on one Ethernet segment (a veth pair), for LAN features such
/// as mDNS. Multicast stays on this segment, inside the namespaces.
pub struct Lan {
    pub host_a: String,
    pub host_b: String,
}

pub const LAN_A_IP: &str = "10.78.0.1";
pub const LAN_B_IP: &str = "10.78.0.2";

impl Lan {
    pub fn create() -> Result<Self> {
        let suffix = unique_suffix();
        let lan = Lan {
            host_a: format!("coop-la-{suffix}"),
            host_b: format!("coop-lb-{suffix}"),
        };
        for n in [&lan.host_a, &lan.host_b] {
            let _ = run(&["ip", "netns", "del", n]);
            run(&["ip", "netns", "add", n])?;
            ns(n, &["ip", "link", "set", "lo", "up"])?;
        }
        let (va, vb) = (format!("va{suffix}"), format!("vb{suffix}"));
        run(&[
            "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
        ])?;
        for (host, dev, ip) in [(&lan.host_a, &va, LAN_A_IP), (&lan.host_b, &vb, LAN_B_IP)] {
            run(&["ip", "link", "set", dev, "netns", host])?;
            ns(host, &["ip", "link", "set", dev, "name", "eth0"])?;
            ns(
                host,
                &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            )?;
            ns(host, &["ip", "link", "set", "eth0", "up"])?;
            // mDNS sends to 224.0.0.251; give multicast a route out of eth0.
            ns(host, &["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in [&self.host_a, &self.host_b] {
            let _ = run(&["ip", "netns", "del", n]);
        }
    }
}
