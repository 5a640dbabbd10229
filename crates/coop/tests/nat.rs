//! Two peers in two homes, each behind its own NAT router, and a relay peer
//! on the public side: the home peers join by invite and reach each other.
//! The test prints whether their path is direct or relayed.

use std::time::Duration;

use anyhow::Result;
use coop_testkit::netns::{HOME_A_IP, HOME_B_IP, NatLab, PUBLIC_IP, unavailable};
use coop_testkit::{Cloud, PeerOptions, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_coop");

fn in_ns(ns: &str, ip: &str, extra: &[&str]) -> PeerOptions {
    PeerOptions {
        netns: Some(ns.to_string()),
        listen_ip: Some(ip.to_string()),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..PeerOptions::default()
    }
}

#[test]
fn home_peers_behind_nat_reach_each_other() -> Result<()> {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED home_peers_behind_nat_reach_each_other: {why}");
        return Ok(());
    }
    let lab = NatLab::create()?;
    let mut cloud = Cloud::new(BIN, "nat")?;
    cloud.found("relay", in_ns(&lab.public, PUBLIC_IP, &["--relay"]))?;
    cloud.join("home-a", in_ns(&lab.home_a, HOME_A_IP, &[]))?;
    cloud.join("home-b", in_ns(&lab.home_b, HOME_B_IP, &[]))?;
    let a = cloud.peers[1].id();
    let b = cloud.peers[2].id();

    let seen = |observer: usize, target: &str| -> Result<(String, f64)> {
        eventually(
            Duration::from_secs(30),
            "home peers to reach each other",
            || {
                let peers = cloud.peers[observer].peers()?;
                Ok(peers.iter().find(|p| p["id"] == target).and_then(|p| {
                    let conn = p["connection"].as_str()?.to_string();
                    let up = p["state"] == "up";
                    (up && (conn == "direct" || conn == "relay"))
                        .then(|| (conn, p["rtt_ms"].as_f64().unwrap_or(-1.0)))
                }))
            },
        )
    };
    let (a_to_b, rtt_ab) = seen(1, &b)?;
    let (b_to_a, rtt_ba) = seen(2, &a)?;
    eprintln!("NAT path home-a -> home-b: {a_to_b} (rtt {rtt_ab:.1} ms)");
    eprintln!("NAT path home-b -> home-a: {b_to_a} (rtt {rtt_ba:.1} ms)");

    // A write from one home reaches the other through the control plane.
    let out = cloud.peers[1].cli(&["config", "set", "nat", "ok"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        Duration::from_secs(15),
        "write replicated to home-b",
        || {
            let c = cloud.peers[2].cli_json(&["config", "get"])?;
            Ok((c["nat"] == "ok").then_some(()))
        },
    )?;
    drop(cloud);
    drop(lab);
    Ok(())
}

#[test]
fn peers_on_a_lan_find_each_other_by_mdns() -> Result<()> {
    use coop_testkit::netns::{LAN_A_IP, LAN_B_IP, Lan};
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED peers_on_a_lan_find_each_other_by_mdns: {why}");
        return Ok(());
    }
    let lan = Lan::create()?;
    let mut cloud = Cloud::new(BIN, "mdns")?;
    let with_mdns = |ns: &str, ip: &str| PeerOptions {
        mdns: true,
        ..in_ns(ns, ip, &[])
    };
    cloud.found("a", with_mdns(&lan.host_a, LAN_A_IP))?;
    cloud.join("b", with_mdns(&lan.host_b, LAN_B_IP))?;
    let a = cloud.peers[0].id();
    cloud.peers[1].stop()?;

    // From b's identity, dial a knowing nothing but its id: without mDNS
    // there is no way to find it; with mDNS it is found and admits b.
    let blind = cloud.peers[1].cli_json(&["debug", "probe", "--peer", &a])?;
    assert!(
        blind["hello"] != "admitted",
        "found without any address: {blind}"
    );
    let report = eventually(Duration::from_secs(20), "a found by mDNS", || {
        let r = cloud.peers[1].cli_json(&["debug", "probe", "--peer", &a, "--mdns"])?;
        Ok((r["hello"] == "admitted").then_some(r))
    })?;
    eprintln!("mDNS probe: {report}");
    drop(cloud);
    drop(lan);
    Ok(())
}
