//! The NAT matrix: two home peers behind lab routers (network namespaces,
//! nftables masquerade, inbound dropped unless established) and a relay
//! peer on the public side, with the release binary. For each pair of
//! routers it prints the path kind 30 s after both homes are up, the time
//! from both up to a direct path, the RTT, and the throughput of 64 MiB
//! sent from one home to the other (`coop debug speed`). In the
//! port-preserving case it then drops UDP between the homes and measures
//! the same transfer over the relay, for a direct-against-relayed ratio
//! from one run. Prints figures; asserts nothing.
//!
//! Run as root: `cargo bench -p coop --bench nat` (or
//! `./scripts/bench.sh nat`).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use coop_testkit::netns::{HOME_A_IP, HOME_B_IP, Nat, NatLab, PUBLIC_IP, unavailable};
use coop_testkit::{Cloud, PeerOptions, eventually};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_coop");
/// How long after both homes are up the path kind is read.
const SETTLE: Duration = Duration::from_secs(30);
/// Bytes per transfer, and transfers per figure (the median is printed).
const TRANSFER: &str = "64MiB";
const TRANSFERS: usize = 3;

/// How `observer` reaches `target` now, and the RTT, if it sees it up.
fn seen(cloud: &Cloud, observer: usize, target: &str) -> Result<Option<(String, f64)>> {
    let peers = cloud.peers[observer].peers()?;
    Ok(peers.iter().find(|p| p["id"] == target).and_then(|p| {
        (p["state"] == "up").then(|| {
            (
                p["connection"].as_str().unwrap_or("none").to_string(),
                p["rtt_ms"].as_f64().unwrap_or(f64::NAN),
            )
        })
    }))
}

/// The median throughput of `TRANSFERS` transfers from home a to home b,
/// in MiB/s, and the path kind the last one used.
fn throughput(cloud: &Cloud) -> Result<(f64, String)> {
    let mut figures = Vec::new();
    let mut kind = String::new();
    for _ in 0..TRANSFERS {
        let report: Value =
            cloud.peers[1].cli_json(&["debug", "speed", "home-b", "--size", TRANSFER])?;
        let Some(rate) = report["mib_per_sec"].as_f64() else {
            bail!("no figure in {report}");
        };
        figures.push(rate);
        kind = report["connection"].as_str().unwrap_or("none").to_string();
    }
    figures.sort_by(f64::total_cmp);
    Ok((figures[figures.len() / 2], kind))
}

struct Row {
    case: &'static str,
    kind: String,
    to_direct: Option<Duration>,
    rtt_ms: f64,
    mib_per_sec: f64,
    verdict: String,
}

fn run_case(case: &'static str, a: Nat, b: Nat, blocked: bool) -> Result<(Row, Option<Row>)> {
    let lab = NatLab::with(a, b)?;
    if blocked {
        lab.block_udp_between_homes()?;
    }
    let mut cloud = Cloud::new(BIN, "bench-nat")?;
    cloud.found(
        "relay",
        PeerOptions::in_netns(&lab.public, PUBLIC_IP, &["--relay"]),
    )?;
    cloud.join("home-a", PeerOptions::in_netns(&lab.home_a, HOME_A_IP, &[]))?;
    cloud.join("home-b", PeerOptions::in_netns(&lab.home_b, HOME_B_IP, &[]))?;
    let (a_id, b_id) = (cloud.peers[1].id(), cloud.peers[2].id());
    eventually(Duration::from_secs(30), "homes up to each other", || {
        let ab = seen(&cloud, 1, &b_id)?;
        let ba = seen(&cloud, 2, &a_id)?;
        Ok((ab.is_some() && ba.is_some()).then_some(()))
    })?;
    let up = Instant::now();
    let mut to_direct = None;
    while up.elapsed() < SETTLE {
        let ab = seen(&cloud, 1, &b_id)?;
        let ba = seen(&cloud, 2, &a_id)?;
        let direct = |s: &Option<(String, f64)>| s.as_ref().is_some_and(|(k, _)| k == "direct");
        if to_direct.is_none() && direct(&ab) && direct(&ba) {
            to_direct = Some(up.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (kind, rtt_ms) = seen(&cloud, 1, &b_id)?.unwrap_or(("down".into(), f64::NAN));
    let path = cloud.peers[1].cli_json(&["debug", "path", "home-b"])?;
    let verdict = path["verdict"].as_str().unwrap_or("?").to_string();
    let (mib_per_sec, _) = throughput(&cloud)?;
    let row = Row {
        case,
        kind,
        to_direct,
        rtt_ms,
        mib_per_sec,
        verdict,
    };
    // The same homes once UDP between them is dropped: the relayed figure
    // beside the direct one, from the same run.
    let mut relayed = None;
    if row.kind == "direct" {
        lab.block_udp_between_homes()?;
        eventually(
            Duration::from_secs(30),
            "the path back on the relay",
            || Ok((seen(&cloud, 1, &b_id)?.is_some_and(|(k, _)| k == "relay")).then_some(())),
        )?;
        std::thread::sleep(Duration::from_secs(3));
        let (kind, rtt_ms) = seen(&cloud, 1, &b_id)?.unwrap_or(("down".into(), f64::NAN));
        let (mib_per_sec, _) = throughput(&cloud)?;
        relayed = Some(Row {
            case: "  same homes, UDP then dropped",
            kind,
            to_direct: None,
            rtt_ms,
            mib_per_sec,
            verdict: String::new(),
        });
    }
    drop(cloud);
    drop(lab);
    Ok((row, relayed))
}

fn main() -> Result<()> {
    if let Some(why) = unavailable() {
        println!("SKIPPED the NAT matrix: {why}");
        return Ok(());
    }
    println!(
        "coop NAT matrix (release binary {BIN}); transfers of {TRANSFER}, median of {TRANSFERS}"
    );
    let cases = [
        (
            "port-preserving x port-preserving",
            Nat::PortPreserving,
            Nat::PortPreserving,
            false,
        ),
        (
            "port-preserving x symmetric",
            Nat::PortPreserving,
            Nat::Symmetric,
            false,
        ),
        (
            "symmetric x symmetric",
            Nat::Symmetric,
            Nat::Symmetric,
            false,
        ),
        (
            "UDP between the homes dropped",
            Nat::PortPreserving,
            Nat::PortPreserving,
            true,
        ),
    ];
    println!(
        "| {:<34} | {:<8} | {:>11} | {:>8} | {:>12} | {:<18} |",
        "routers (home a x home b)", "path", "up->direct", "RTT", "64 MiB", "debug path verdict"
    );
    println!(
        "|{:-<36}|{:-<10}|{:->13}|{:->10}|{:->14}|{:-<20}|",
        "", "", "", "", "", ""
    );
    let mut direct_rate = None;
    let mut relayed_rate = None;
    for (case, a, b, blocked) in cases {
        let (row, relayed) = run_case(case, a, b, blocked)?;
        for row in std::iter::once(&row).chain(relayed.as_ref()) {
            println!(
                "| {:<34} | {:<8} | {:>11} | {:>5.1} ms | {:>7.1} MiB/s | {:<18} |",
                row.case,
                row.kind,
                row.to_direct
                    .map_or_else(|| "-".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
                row.rtt_ms,
                row.mib_per_sec,
                row.verdict
            );
        }
        if let Some(relayed) = relayed {
            direct_rate = Some(row.mib_per_sec);
            relayed_rate = Some(relayed.mib_per_sec);
        }
    }
    if let (Some(direct), Some(relayed)) = (direct_rate, relayed_rate) {
        println!(
            "direct / relayed throughput between the same two homes: {:.2}",
            direct / relayed
        );
    }
    Ok(())
}
