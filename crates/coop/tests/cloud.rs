//! A real five-peer cloud on loopback: forming by invites, liveness of a
//! killed peer, leader failover, and a full restart.

use std::time::Duration;

use anyhow::Result;
use coop_testkit::{Cloud, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_coop");

/// Every peer lists all `n` peers `up`.
fn all_up(cloud: &Cloud) -> Result<()> {
    let n = cloud.peers.len();
    for peer in &cloud.peers {
        eventually(
            Duration::from_secs(20),
            &format!("{} to see {n} peers up", peer.name),
            || {
                let peers = peer.peers()?;
                let up = peers.iter().filter(|p| p["state"] == "up").count();
                Ok((peers.len() == n && up == n).then_some(()))
            },
        )?;
    }
    Ok(())
}

#[test]
fn five_peers_form_a_cloud_and_see_a_killed_peer() -> Result<()> {
    let mut cloud = Cloud::start(BIN, "five", 5)?;
    all_up(&cloud)?;

    // The contract of `coop peers --json`.
    let peers = cloud.peers[2].peers()?;
    for p in &peers {
        for field in [
            "id",
            "name",
            "zone",
            "state",
            "connection",
            "rtt_ms",
            "steward",
            "cpus",
            "memory_bytes",
            "disk_free_bytes",
        ] {
            assert!(p.get(field).is_some(), "field {field} missing in {p}");
        }
        let me = p["id"] == cloud.peers[2].id();
        assert_eq!(p["connection"] == "self", me, "{p}");
        assert!(p["cpus"].as_u64().unwrap_or(0) >= 1, "{p}");
    }
    // Five peers: five stewards, one leader, seen alike everywhere.
    eventually(Duration::from_secs(20), "five stewards", || {
        let status = cloud.peers[4].status()?;
        Ok((status["cloud"]["stewards"].as_array().map(Vec::len) == Some(5)).then_some(()))
    })?;

    // Kill one peer: every other peer sees it unreachable within 5 s
    // (plus the time our polling takes).
    let victim = cloud.peers[3].id();
    cloud.peers[3].kill();
    let killed = std::time::Instant::now();
    for i in [0, 1, 2, 4] {
        let peer = &cloud.peers[i];
        eventually(Duration::from_secs(8), "killed peer unreachable", || {
            Ok((peer.state_of(&victim)?.as_deref() == Some("unreachable")).then_some(()))
        })?;
    }
    eprintln!(
        "killed peer unreachable everywhere after {:?}",
        killed.elapsed()
    );

    // Restart it: up again everywhere.
    cloud.peers[3].start(None)?;
    all_up(&cloud)?;
    Ok(())
}

#[test]
fn leader_failover_and_full_restart_keep_state() -> Result<()> {
    let mut cloud = Cloud::start(BIN, "failover", 3)?;
    all_up(&cloud)?;
    // Three peers make three stewards; only then can the cloud lose one.
    for peer in &cloud.peers {
        eventually(Duration::from_secs(20), "three stewards", || {
            let status = peer.status()?;
            Ok((status["cloud"]["stewards"].as_array().map(Vec::len) == Some(3)).then_some(()))
        })?;
    }
    let write = cloud.peers[1].cli(&["config", "set", "greeting", "hello"])?;
    assert!(
        write.status.success(),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );

    let leader = eventually(Duration::from_secs(10), "a leader", || {
        cloud.leader_index(0)
    })?;
    cloud.peers[leader].kill();
    let killed = std::time::Instant::now();
    let observer = (leader + 1) % 3;
    let new_leader = eventually(Duration::from_secs(10), "a new leader", || {
        Ok(cloud.leader_index(observer)?.filter(|l| *l != leader))
    })?;
    eprintln!("new leader p{new_leader} after {:?}", killed.elapsed());
    let write = cloud.peers[observer].cli(&["config", "set", "after-failover", "yes"])?;
    assert!(
        write.status.success(),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );

    // Stop everyone, start everyone: the state is intact.
    for peer in cloud.peers.iter_mut() {
        peer.stop()?;
    }
    for peer in cloud.peers.iter_mut() {
        peer.start(None)?;
    }
    all_up(&cloud)?;
    for peer in &cloud.peers {
        let config = eventually(Duration::from_secs(15), "config replicated", || {
            let c = peer.cli_json(&["config", "get"])?;
            Ok((c["after-failover"] == "yes").then_some(c))
        })?;
        assert_eq!(config["greeting"], "hello");
    }
    Ok(())
}

#[test]
fn a_silent_peer_goes_down_after_the_grace_and_logs_can_be_json() -> Result<()> {
    let mut cloud = Cloud::new(BIN, "down")?;
    cloud.found(
        "p0",
        coop_testkit::PeerOptions {
            down_after: Some(5),
            extra_args: vec!["--log-format".into(), "json".into()],
            ..Default::default()
        },
    )?;
    cloud.join("p1", coop_testkit::PeerOptions::default())?;
    all_up(&cloud)?;
    let victim = cloud.peers[1].id();
    cloud.peers[1].kill();
    let observer = &cloud.peers[0];
    eventually(Duration::from_secs(8), "unreachable", || {
        Ok((observer.state_of(&victim)?.as_deref() == Some("unreachable")).then_some(()))
    })?;
    eventually(Duration::from_secs(10), "down after the 5 s grace", || {
        Ok((observer.state_of(&victim)?.as_deref() == Some("down")).then_some(()))
    })?;
    let status = observer.status()?;
    assert_eq!(status["health"], "degraded", "{status}");
    cloud.peers[1].start(None)?;
    all_up(&cloud)?;

    // Structured logs: every log line of p0 is a JSON object with a level.
    let log = cloud.peers[0].log_tail();
    let json_lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(!json_lines.is_empty(), "no JSON log lines in:\n{log}");
    assert!(json_lines.iter().all(|l| l.get("level").is_some()));
    Ok(())
}
