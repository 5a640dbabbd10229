//! Who gets in: invites (reused, expired, forged, truncated), revoked
//! peers, peers of another cloud, and a data dir of another cloud.

use std::time::Duration;

use anyhow::Result;
use coop_testkit::{Cloud, Peer, PeerOptions, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_coop");

/// Runs `coop up --join TOKEN` for a new peer and expects it to exit with
/// an error mentioning `needle`, leaving no data dir behind.
fn join_fails(cloud: &Cloud, name: &str, token: &str, needle: &str) -> Result<()> {
    let peer = Peer::new(&cloud.bin, cloud.dir.path(), name, PeerOptions::default())?;
    let out = peer.up_command(Some(token)).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "join with a bad token succeeded");
    assert!(
        stderr.to_lowercase().contains(needle),
        "expected `{needle}` in the error, got: {stderr}"
    );
    assert!(
        !peer.data_dir.join("membership.json").exists() && !peer.data_dir.join("peer.key").exists(),
        "a failed join left files behind"
    );
    Ok(())
}

#[test]
fn bad_invites_are_refused_with_clear_errors() -> Result<()> {
    let mut cloud = Cloud::start(BIN, "invites", 1)?;
    let token = cloud.peers[0].invite()?;
    join_fails(&cloud, "truncated", &token[..token.len() - 7], "damaged")?;
    let mut chars: Vec<char> = token.chars().collect();
    let i = 30;
    chars[i] = if chars[i] == 'x' { 'y' } else { 'x' };
    let forged: String = chars.into_iter().collect();
    let out = Peer::new(
        &cloud.bin,
        cloud.dir.path(),
        "forged",
        PeerOptions::default(),
    )?
    .up_command(Some(&forged))
    .output()?;
    assert!(!out.status.success());
    join_fails(&cloud, "garbage", "hello", "not a coop invite")?;

    // Expired: the CLI refuses a TTL of zero, so ask the API for a 1 s invite.
    let token_api = cloud.peers[0].token()?;
    let resp = coop_testkit::http_request(
        &cloud.peers[0].api_addr(),
        "POST",
        "/v1/invites",
        &[
            ("Authorization", &format!("Bearer {token_api}")),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"ttl_secs":1}"#),
    )?;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let short = resp.json()?["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    std::thread::sleep(Duration::from_millis(2100)); // the invite must really expire
    join_fails(&cloud, "late", &short, "expired")?;

    // Used twice: the first join works, the second is refused.
    cloud.join("first", PeerOptions::default())?;
    let reused = cloud.peers[0].invite()?;
    let mut second = Peer::new(
        &cloud.bin,
        cloud.dir.path(),
        "second",
        PeerOptions::default(),
    )?;
    second.start(Some(&reused))?;
    join_fails(&cloud, "third", &reused, "already used")?;

    // A data dir that belongs to a cloud cannot join another one.
    let other = Cloud::start(BIN, "other", 1)?;
    let foreign = other.peers[0].invite()?;
    second.stop()?;
    let out = second.up_command(Some(&foreign)).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already belongs to cloud"));
    Ok(())
}

#[test]
fn revoked_peer_and_foreign_peer_are_refused() -> Result<()> {
    let cloud = Cloud::start(BIN, "revoke", 3)?;
    let victim = cloud.peers[2].id();
    eventually(Duration::from_secs(20), "victim up on p0", || {
        Ok((cloud.peers[0].state_of(&victim)?.as_deref() == Some("up")).then_some(()))
    })?;
    let out = cloud.peers[0].cli(&["peer", "revoke", "p2"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = std::time::Instant::now();
    for i in 0..2 {
        let peer = &cloud.peers[i];
        eventually(Duration::from_secs(5), "revocation seen", || {
            Ok((peer.state_of(&victim)?.as_deref() == Some("revoked")).then_some(()))
        })?;
    }
    eprintln!(
        "revocation seen everywhere after {:?}",
        revoked_at.elapsed()
    );
    // The revoked peer's connections are refused at the handshake, and the
    // refusal is logged with its id on the others.
    eventually(
        Duration::from_secs(10),
        "refusal logged with the peer id",
        || {
            let logged = cloud.peers[..2].iter().any(|p| {
                let log = p.log_tail();
                log.contains("refused connection") && log.contains(&victim)
                    || log.contains("peer revoked") && log.contains(&victim)
            });
            Ok(logged.then_some(()))
        },
    )?;
    // It no longer hears from the cloud: everyone else goes silent for it.
    let survivor = cloud.peers[0].id();
    eventually(Duration::from_secs(15), "revoked peer cut off", || {
        Ok((cloud.peers[2].state_of(&survivor)?.as_deref() != Some("up")).then_some(()))
    })?;
    // Writes on the remaining cloud still work.
    let out = cloud.peers[1].cli(&["config", "set", "after-revoke", "1"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A peer of another cloud dials p0 with its own identity: the hello
    // is refused (wrong cloud) and so is any protected protocol.
    let other = Cloud::start(BIN, "foreign", 1)?;
    let stranger = other.peers[0].id();
    let target = &cloud.peers[0];
    let report = other.peers[0].probe(target)?;
    let hello = report["hello"].as_str().unwrap_or_default();
    let rpc = report["rpc"].as_str().unwrap_or_default();
    assert!(hello.contains("not this cloud"), "hello: {hello}");
    assert!(
        rpc.contains("refused") || rpc.contains("no valid certificate"),
        "rpc: {rpc}"
    );
    eventually(
        Duration::from_secs(5),
        "refusal of the stranger logged",
        || Ok(target.log_tail().contains(&stranger).then_some(())),
    )?;
    assert!(target.peers()?.iter().all(|p| p["id"] != stranger.as_str()));
    // The revoked peer itself gets the same treatment.
    let report = cloud.peers[2].probe(target)?;
    assert!(
        report["hello"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{report}"
    );
    Ok(())
}
