//! Peers in two homes, each behind its own NAT router, and a relay peer on
//! the public side (see `coop_testkit::netns`). The home peers join by
//! invite; what path they get depends on their routers:
//!
//! | router a        | router b        | path                        |
//! |-----------------|-----------------|-----------------------------|
//! | port-preserving | port-preserving | direct, hole-punched        |
//! | port-preserving | symmetric       | relay (b's port unknowable) |
//! | symmetric       | symmetric       | relay                       |
//! | UDP between the homes dropped     | relay                       |
//!
//! Each case also checks that `coop debug path` gives the right reason and
//! that the control plane works across the path.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use coop_testkit::netns::{
    HOME_A_IP, HOME_B_IP, Nat, NatLab, PUBLIC_IP, ROUTER_B_WAN, unavailable,
};
use coop_testkit::{Cloud, PeerOptions, eventually};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_coop");

/// The promise for port-preserving routers on both sides.
const DIRECT_WITHIN: Duration = Duration::from_secs(10);

/// A relay (peer 0) and two home peers (1 in home a, 2 in home b), up to
/// each other; returns when both homes see each other up, on any path.
fn homes(lab: &NatLab, label: &str) -> Result<(Cloud, Instant)> {
    let mut cloud = Cloud::new(BIN, label)?;
    cloud.found(
        "relay",
        PeerOptions::in_netns(&lab.public, PUBLIC_IP, &["--relay"]),
    )?;
    cloud.join("home-a", PeerOptions::in_netns(&lab.home_a, HOME_A_IP, &[]))?;
    cloud.join("home-b", PeerOptions::in_netns(&lab.home_b, HOME_B_IP, &[]))?;
    for (observer, target) in [(1, 2), (2, 1)] {
        let target = cloud.peers[target].id();
        eventually(
            Duration::from_secs(30),
            "home peers up to each other",
            || Ok(connection(&cloud, observer, &target)?.map(|_| ())),
        )?;
    }
    Ok((cloud, Instant::now()))
}

/// How `observer` reaches `target` now, if it sees it up.
fn connection(cloud: &Cloud, observer: usize, target: &str) -> Result<Option<String>> {
    let peers = cloud.peers[observer].peers()?;
    Ok(peers.iter().find(|p| p["id"] == target).and_then(|p| {
        (p["state"] == "up")
            .then(|| p["connection"].as_str().map(String::from))
            .flatten()
    }))
}

/// Waits until both homes reach each other directly; the time it took.
fn both_direct(cloud: &Cloud, within: Duration) -> Result<Duration> {
    let started = Instant::now();
    for (observer, target) in [(1, 2), (2, 1)] {
        let target = cloud.peers[target].id();
        eventually(within, "a direct path between the homes", || {
            Ok((connection(cloud, observer, &target)?.as_deref() == Some("direct")).then_some(()))
        })?;
    }
    Ok(started.elapsed())
}

/// `coop debug path` from `observer` to the peer named `target`.
fn path(cloud: &Cloud, observer: usize, target: &str) -> Result<Value> {
    cloud.peers[observer].cli_json(&["debug", "path", target])
}

/// A write on home a reaches home b through the control plane. The write
/// is retried for up to 60 s while the control plane has no leader, and
/// the time it took is printed.
fn write_crosses(cloud: &Cloud, value: &str) -> Result<()> {
    let last_refusal = std::cell::RefCell::new(String::new());
    let began = Instant::now();
    eventually(
        Duration::from_secs(60),
        "a write accepted on home-a",
        || {
            let out = cloud.peers[1].cli(&["config", "set", "nat", value])?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || stderr.contains("leader"),
                "{stderr}"
            );
            if !out.status.success() {
                *last_refusal.borrow_mut() = stderr.trim().to_string();
            }
            Ok(out.status.success().then_some(()))
        },
    )
    .with_context(|| {
        format!(
            "the last refusal: {}\nhome-a's log:\n{}",
            last_refusal.borrow(),
            cloud.peers[1].log_tail()
        )
    })?;
    eprintln!(
        "a write from home-a accepted after {:.1} s",
        began.elapsed().as_secs_f64()
    );
    eventually(
        Duration::from_secs(15),
        "write replicated to home-b",
        || {
            let c = cloud.peers[2].cli_json(&["config", "get"])?;
            Ok((c["nat"] == value).then_some(()))
        },
    )
}

/// After `DIRECT_WITHIN`, the path is still relayed both ways and
/// `debug path` from home a says `verdict`.
fn stays_relayed(cloud: &Cloud, up: Instant, verdict: &str) -> Result<Value> {
    std::thread::sleep(DIRECT_WITHIN.saturating_sub(up.elapsed()));
    for (observer, target) in [(1, 2), (2, 1)] {
        let target = cloud.peers[target].id();
        assert_eq!(
            connection(cloud, observer, &target)?.as_deref(),
            Some("relay"),
            "peer {observer} to {target}"
        );
    }
    let report = path(cloud, 1, "home-b")?;
    eprintln!("debug path home-a -> home-b: {report:#}");
    assert_eq!(report["connection"], "relay", "{report:#}");
    assert_eq!(report["verdict"], verdict, "{report:#}");
    Ok(report)
}

fn skip(test: &str) -> bool {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED {test}: {why}");
        return true;
    }
    false
}

#[test]
fn port_preserving_routers_on_both_sides_give_a_direct_path() -> Result<()> {
    if skip("port_preserving_routers_on_both_sides_give_a_direct_path") {
        return Ok(());
    }
    let lab = NatLab::with(Nat::PortPreserving, Nat::PortPreserving)?;
    let (cloud, _) = homes(&lab, "nat-pp")?;
    let took = both_direct(&cloud, DIRECT_WITHIN)?;
    eprintln!(
        "both homes up -> direct both ways: {:.1} s",
        took.as_secs_f64()
    );

    let report = path(&cloud, 1, "home-b")?;
    assert_eq!(report["verdict"], "direct", "{report:#}");
    let selected = report["paths"]
        .as_array()
        .and_then(|paths| paths.iter().find(|p| p["selected"] == true))
        .cloned()
        .unwrap_or_default();
    assert_eq!(selected["kind"], "direct", "{report:#}");
    assert!(
        selected["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("{ROUTER_B_WAN}:"))),
        "the direct path goes to router b's public address: {report:#}"
    );
    assert_eq!(report["here"]["mapping"], "stable", "{report:#}");
    assert_eq!(report["there"]["mapping"], "stable", "{report:#}");
    write_crosses(&cloud, "direct")?;
    drop(cloud);
    drop(lab);
    Ok(())
}

#[test]
fn a_router_with_a_new_public_address_gets_a_direct_path_again() -> Result<()> {
    if skip("a_router_with_a_new_public_address_gets_a_direct_path_again") {
        return Ok(());
    }
    let lab = NatLab::with(Nat::PortPreserving, Nat::PortPreserving)?;
    let (cloud, _) = homes(&lab, "nat-renumber")?;
    both_direct(&cloud, DIRECT_WITHIN)?;

    // Router a restarts with another address from its ISP: every mapping
    // home a had is gone, and home b's probes to the old address go nowhere.
    let new_wan = "198.18.0.4";
    lab.renumber_router_a(new_wan)?;
    let changed = Instant::now();
    let report = eventually(
        Duration::from_secs(20),
        "a direct path to router a's new address",
        || {
            let report = path(&cloud, 2, "home-a")?;
            let moved = report["paths"].as_array().is_some_and(|paths| {
                paths.iter().any(|p| {
                    p["selected"] == true
                        && p["kind"] == "direct"
                        && p["remote"]
                            .as_str()
                            .is_some_and(|r| r.starts_with(&format!("{new_wan}:")))
                })
            });
            Ok(moved.then_some(report))
        },
    )?;
    eprintln!(
        "new public address -> direct again: {:.1} s; {report:#}",
        changed.elapsed().as_secs_f64()
    );
    both_direct(&cloud, Duration::from_secs(10))?;
    drop(cloud);
    drop(lab);
    Ok(())
}

/// After router a renumbers, home-a's control-plane writes must go through
/// again. Known to fail at times (see the issue notes of 2026-12-03): when
/// the other peers cannot reach home-a at its new address for long, home-a
/// never hears a leader and keeps calling elections, and its writes are
/// refused with "no leader elected" for a minute and more. Ignored until
/// the mesh reaches a renumbered peer again promptly; run it with
/// `cargo test -p coop --test nat -- --ignored`.
#[test]
#[ignore = "known bug: a renumbered peer may hear no leader for over a minute"]
fn the_control_plane_takes_writes_again_after_a_router_renumbers() -> Result<()> {
    if skip("the_control_plane_takes_writes_again_after_a_router_renumbers") {
        return Ok(());
    }
    let lab = NatLab::with(Nat::PortPreserving, Nat::PortPreserving)?;
    let (cloud, _) = homes(&lab, "nat-renumber-write")?;
    both_direct(&cloud, DIRECT_WITHIN)?;
    lab.renumber_router_a("198.18.0.4")?;
    both_direct(&cloud, Duration::from_secs(20))?;
    write_crosses(&cloud, "renumbered")?;
    drop(cloud);
    drop(lab);
    Ok(())
}

#[test]
fn one_symmetric_router_leaves_the_path_relayed() -> Result<()> {
    if skip("one_symmetric_router_leaves_the_path_relayed") {
        return Ok(());
    }
    // Home b's router picks a new port for every destination, so home a
    // cannot know where to send; home a's router drops what home b sends
    // from a port it never wrote to. The relay carries the traffic.
    let lab = NatLab::with(Nat::PortPreserving, Nat::Symmetric)?;
    let (cloud, up) = homes(&lab, "nat-pp-sym")?;
    let report = stays_relayed(&cloud, up, "symmetric_nat")?;
    assert_eq!(report["here"]["mapping"], "stable", "{report:#}");
    assert_eq!(
        report["there"]["mapping"], "varies_by_destination",
        "{report:#}"
    );
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("at home-b")),
        "{report:#}"
    );
    write_crosses(&cloud, "relayed")?;
    drop(cloud);
    drop(lab);
    Ok(())
}

#[test]
fn symmetric_routers_on_both_sides_work_over_the_relay() -> Result<()> {
    if skip("symmetric_routers_on_both_sides_work_over_the_relay") {
        return Ok(());
    }
    let lab = NatLab::with(Nat::Symmetric, Nat::Symmetric)?;
    let (cloud, up) = homes(&lab, "nat-sym")?;
    let report = stays_relayed(&cloud, up, "symmetric_nat")?;
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("both sides")),
        "{report:#}"
    );
    write_crosses(&cloud, "relayed")?;
    drop(cloud);
    drop(lab);
    Ok(())
}

#[test]
fn udp_dropped_between_the_homes_falls_back_to_the_relay() -> Result<()> {
    if skip("udp_dropped_between_the_homes_falls_back_to_the_relay") {
        return Ok(());
    }
    let lab = NatLab::with(Nat::PortPreserving, Nat::PortPreserving)?;
    lab.block_udp_between_homes()?;
    let (cloud, up) = homes(&lab, "nat-blocked")?;
    let report = stays_relayed(&cloud, up, "probes_unanswered")?;
    assert_eq!(report["here"]["mapping"], "stable", "{report:#}");
    assert_eq!(report["there"]["mapping"], "stable", "{report:#}");
    write_crosses(&cloud, "relayed")?;
    drop(cloud);
    drop(lab);
    Ok(())
}

#[test]
fn peers_on_a_lan_find_each_other_by_mdns() -> Result<()> {
    use coop_testkit::netns::{LAN_A_IP, LAN_B_IP, Lan};
    if skip("peers_on_a_lan_find_each_other_by_mdns") {
        return Ok(());
    }
    let lan = Lan::create()?;
    let mut cloud = Cloud::new(BIN, "mdns")?;
    let with_mdns = |ns: &str, ip: &str| PeerOptions {
        mdns: true,
        ..PeerOptions::in_netns(ns, ip, &[])
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
