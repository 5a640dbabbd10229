//! Cloud formation and failure figures on loopback, with the release
//! binary: join time, killed-peer detection, leader failover, idle memory
//! and binary size. Prints figures; asserts nothing.
//!
//! Run: `cargo bench -p coop --bench cloud` (or `./scripts/bench.sh`).

use std::time::{Duration, Instant};

use anyhow::Result;
use coop_testkit::{Cloud, PeerOptions, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_coop");
/// Rounds per figure: enough for a median and a max on a noisy 2-core box.
const ROUNDS: usize = 5;

fn state_via_api(cloud: &Cloud, observer: usize, target: &str) -> Result<Option<String>> {
    let peers = cloud.peers[observer].api_get("/v1/peers")?;
    Ok(peers
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == target))
        .and_then(|p| p["state"].as_str().map(String::from)))
}

fn summary(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    let min = samples[0];
    println!(
        "{label:<40} n={:<3} min {:>8.1} ms  median {:>8.1} ms  max {:>8.1} ms",
        samples.len(),
        ms(min),
        ms(median),
        ms(max)
    );
}

fn main() -> Result<()> {
    println!("coop cloud benchmark (release binary {BIN})");
    let size = std::fs::metadata(BIN)?.len();
    println!(
        "{:<40} {:.1} MiB ({size} bytes)",
        "release binary size",
        size as f64 / (1 << 20) as f64
    );

    // Join: from `coop up --join` to `up` on every existing peer.
    let mut joins = Vec::new();
    let mut detections = Vec::new();
    let mut failovers = Vec::new();
    let mut failover_writes = Vec::new();
    for round in 0..ROUNDS {
        let mut cloud = Cloud::new(BIN, &format!("bench{round}"))?;
        cloud.found("p0", PeerOptions::default())?;
        for i in 1..5 {
            let started = Instant::now();
            cloud.join(&format!("p{i}"), PeerOptions::default())?;
            let id = cloud.peers[i].id();
            for observer in 0..i {
                eventually(Duration::from_secs(30), "join seen", || {
                    Ok(
                        (state_via_api(&cloud, observer, &id)?.as_deref() == Some("up"))
                            .then_some(()),
                    )
                })?;
            }
            joins.push(started.elapsed());
        }
        // Wait for five stewards so failover is possible.
        eventually(Duration::from_secs(30), "five stewards", || {
            let s = cloud.peers[0].api_get("/v1/status")?;
            Ok((s["cloud"]["stewards"].as_array().map(Vec::len) == Some(5)).then_some(()))
        })?;

        // Detection of a killed (non-leader) peer by all others.
        let leader = eventually(Duration::from_secs(10), "leader", || cloud.leader_index(0))?;
        let victim = (leader + 1) % 5;
        let victim_id = cloud.peers[victim].id();
        cloud.peers[victim].kill();
        let killed = Instant::now();
        for observer in (0..5).filter(|o| *o != victim) {
            eventually(Duration::from_secs(30), "unreachable", || {
                Ok(
                    (state_via_api(&cloud, observer, &victim_id)?.as_deref()
                        == Some("unreachable"))
                    .then_some(()),
                )
            })?;
        }
        detections.push(killed.elapsed());
        cloud.peers[victim].start(None)?;

        // Leader failover: kill the leader; time to a new leader and to
        // the first successful write.
        let leader = eventually(Duration::from_secs(10), "leader", || cloud.leader_index(0))?;
        let observer = (leader + 1) % 5;
        cloud.peers[leader].kill();
        let killed = Instant::now();
        eventually(Duration::from_secs(30), "new leader", || {
            Ok(cloud.leader_index(observer)?.filter(|l| *l != leader))
        })?;
        failovers.push(killed.elapsed());
        eventually(Duration::from_secs(30), "write after failover", || {
            let out = cloud.peers[observer].cli(&["config", "set", "bench", &round.to_string()])?;
            Ok(out.status.success().then_some(()))
        })?;
        failover_writes.push(killed.elapsed());
        cloud.peers[leader].start(None)?;

        if round == ROUNDS - 1 {
            // Idle memory: let the cloud settle, then read RSS of every peer.
            std::thread::sleep(Duration::from_secs(10)); // measuring idle: the wait is the point
            let rss: Vec<u64> = cloud.peers.iter().filter_map(|p| p.rss_bytes()).collect();
            let anon: Vec<u64> = cloud.peers.iter().filter_map(|p| p.anon_bytes()).collect();
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            println!(
                "{:<40} min {:.1} MiB  max {:.1} MiB, of which anonymous {:.1}-{:.1} MiB (5-peer cloud, 10 s idle)",
                "idle RSS per agent",
                mib(*rss.iter().min().unwrap_or(&0)),
                mib(*rss.iter().max().unwrap_or(&0)),
                mib(*anon.iter().min().unwrap_or(&0)),
                mib(*anon.iter().max().unwrap_or(&0))
            );
        }
    }
    summary("join: up on every peer", &mut joins);
    summary("killed peer unreachable on all others", &mut detections);
    summary("leader failover: new leader", &mut failovers);
    summary(
        "leader failover: first write succeeds",
        &mut failover_writes,
    );

    let single = Cloud::start(BIN, "bench-single", 1)?;
    std::thread::sleep(Duration::from_secs(10)); // measuring idle: the wait is the point
    if let Some(rss) = single.peers[0].rss_bytes() {
        println!(
            "{:<40} {:.1} MiB, of which anonymous {:.1} MiB (1-peer cloud, 10 s idle)",
            "idle RSS, single peer",
            rss as f64 / (1 << 20) as f64,
            single.peers[0].anon_bytes().unwrap_or(0) as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
