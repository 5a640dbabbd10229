//! Container figures with the release binary on this machine (needs root,
//! busybox-static and runc, as the tests do):
//!
//! - start latency from the API call (`POST /v1/containers`, which answers
//!   once the process runs) over 50 starts from a cached template, p50 and
//!   p99, next to `runc run --detach` of a bundle over the same rootfs in
//!   the same run;
//! - memory per idle container with 100 `sleep` containers running on one
//!   peer: the drop of the host's MemAvailable per container, and the
//!   resident memory of the shims;
//! - the first start on a peer that must fetch a 100 MiB template from the
//!   cloud's store, next to a start of the same template once cached.
//!
//! Prints figures; asserts nothing. Run: `./scripts/bench.sh containers`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use coop_testkit::containers::{
    busybox_rootfs, container_host_flags, remove_container_host_names, require_container_host,
};
use coop_testkit::{Cloud, Peer, PeerOptions, TempDir, eventually, http_request};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_coop");
const STARTS: usize = 50;
const IDLE: usize = 100;
const BIG_MIB: usize = 100;

/// `POST /v1/containers` with `request`; the view, and how long it took.
fn api_run(peer: &Peer, token: &str, request: &Value) -> Result<(Value, Duration)> {
    let auth = format!("Bearer {token}");
    let body = request.to_string();
    let started = Instant::now();
    let resp = http_request(
        &peer.api_addr(),
        "POST",
        "/v1/containers",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(&body),
    )?;
    let took = started.elapsed();
    if resp.status != 200 {
        bail!("run failed: HTTP {}: {}", resp.status, resp.body);
    }
    Ok((resp.json()?, took))
}

fn api_remove(peer: &Peer, token: &str, name: &str) -> Result<()> {
    let auth = format!("Bearer {token}");
    let resp = http_request(
        &peer.api_addr(),
        "DELETE",
        &format!("/v1/containers/{name}?force=true"),
        &[("Authorization", &auth)],
        None,
    )?;
    if resp.status != 200 {
        bail!("rm {name} failed: HTTP {}: {}", resp.status, resp.body);
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A peer with host names of `tag`, and the cleanup of its containers and names.
struct Lab {
    cloud: Cloud,
    tags: Vec<u8>,
}

impl Lab {
    fn new(label: &str, tag: u8, extra: &[&str]) -> Result<Lab> {
        let mut cloud = Cloud::new(BIN, label)?;
        let mut args = container_host_flags(tag);
        args.extend(extra.iter().map(|a| a.to_string()));
        cloud.found(
            "box",
            PeerOptions {
                extra_args: args,
                ..PeerOptions::default()
            },
        )?;
        Ok(Lab {
            cloud,
            tags: vec![tag],
        })
    }

    fn join(&mut self, name: &str, tag: u8) -> Result<()> {
        self.tags.push(tag);
        self.cloud.join(
            name,
            PeerOptions {
                extra_args: container_host_flags(tag),
                ..PeerOptions::default()
            },
        )?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(peer) = self.cloud.peers.first()
            && let Ok(list) = peer.cli_json(&["container", "ls", "--all"])
        {
            for c in list.as_array().cloned().unwrap_or_default() {
                if let Some(name) = c["name"].as_str() {
                    let _ = peer.cli(&["container", "rm", "-f", name]);
                }
            }
        }
        for peer in self.cloud.peers.iter_mut() {
            let _ = peer.stop();
        }
        for tag in &self.tags {
            remove_container_host_names(*tag);
        }
    }
}

/// Imports the busybox template on `peer` and starts one container from
/// it, so the template is unpacked in the cache; returns the API token.
fn import_and_warm(peer: &Peer, rootfs: &Path) -> Result<String> {
    let token = peer.token()?;
    peer.cli_json(&[
        "template",
        "import",
        "busybox",
        &rootfs.display().to_string(),
    ])?;
    let warm = json!({"template": "busybox", "name": "warm", "disk": "64M", "argv": ["true"]});
    api_run(peer, &token, &warm)?;
    api_remove(peer, &token, "warm")?;
    Ok(token)
}

/// p50 and p99 of `runc run --detach` of `rootfs` running `sleep`.
fn runc_starts(scratch: &Path, rootfs: &Path) -> Result<Vec<Duration>> {
    let bundle = scratch.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    let status = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .context("runc spec (is runc installed?)")?;
    if !status.success() {
        bail!("runc spec failed");
    }
    let config_path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["sleep", "1000"]);
    config["root"]["path"] = json!(rootfs.display().to_string());
    config["root"]["readonly"] = json!(false);
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let root = scratch.join("runc-state");
    let mut times = Vec::new();
    for i in 0..STARTS {
        let id = format!("coopbench-{}-{i}", std::process::id());
        let started = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        times.push(started.elapsed());
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &id])
            .status();
        if !status.success() {
            bail!("runc run failed");
        }
    }
    times.sort();
    Ok(times)
}

fn start_latency(scratch: &Path, rootfs: &Path) -> Result<()> {
    let lab = Lab::new("ctbench-start", 201, &[])?;
    let peer = &lab.cloud.peers[0];
    let token = import_and_warm(peer, rootfs)?;
    let mut times = Vec::new();
    for i in 0..STARTS {
        let name = format!("s{i}");
        let request =
            json!({"template": "busybox", "name": name, "disk": "64M", "argv": ["sleep", "1000"]});
        let (view, took) = api_run(peer, &token, &request)?;
        if view["state"] != "running" {
            bail!("{name} is not running: {view}");
        }
        times.push(took);
        api_remove(peer, &token, &name)?;
    }
    times.sort();
    let runc = runc_starts(scratch, rootfs)?;
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    let (r50, r99) = (percentile(&runc, 0.5), percentile(&runc, 0.99));
    println!(
        "start latency over {STARTS} starts (API call to process running): coop p50 {:.1} ms  p99 {:.1} ms; \
         runc run -d p50 {:.1} ms  p99 {:.1} ms; ratio p50 {:.2}x  p99 {:.2}x",
        millis(p50),
        millis(p99),
        millis(r50),
        millis(r99),
        p50.as_secs_f64() / r50.as_secs_f64(),
        p99.as_secs_f64() / r99.as_secs_f64(),
    );
    Ok(())
}

/// MemAvailable of the host, bytes.
fn mem_available() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no MemAvailable in /proc/meminfo")
}

/// How many `coop shim` processes run, and their summed resident and
/// proportional (shared pages split among sharers) set sizes in bytes.
fn shim_memory() -> (usize, u64, u64) {
    let mut count = 0;
    let mut total = 0;
    let mut pss_total = 0;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return (0, 0, 0);
    };
    for entry in procs.flatten() {
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.get(1) != Some(&&b"shim"[..]) {
            continue;
        }
        let field = |file: &str, name: &str| {
            std::fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with(name))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kb| kb.parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        count += 1;
        total += field("status", "VmRSS:") * 1024;
        pss_total += field("smaps_rollup", "Pss:") * 1024;
    }
    (count, total, pss_total)
}

fn idle_memory(rootfs: &Path) -> Result<()> {
    let lab = Lab::new("ctbench-idle", 204, &["--capacity-cpus", "4"])?;
    let peer = &lab.cloud.peers[0];
    let token = import_and_warm(peer, rootfs)?;
    std::thread::sleep(Duration::from_secs(2));
    let before = mem_available()?;
    let agent_before = peer.rss_bytes().unwrap_or(0);
    let started = Instant::now();
    for i in 0..IDLE {
        let request = json!({"template": "busybox", "name": format!("idle{i}"), "cpus": "10m",
            "memory": "16M", "disk": "64M", "argv": ["sleep", "100000"]});
        api_run(peer, &token, &request)?;
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let after = mem_available()?;
    let agent_after = peer.rss_bytes().unwrap_or(0);
    let (shims, shim_bytes, shim_pss) = shim_memory();
    let running = peer.cli_json(&["container", "ls"])?;
    let mib = |b: f64| b / (1 << 20) as f64;
    println!(
        "{} idle containers running (started in {:.1} s): host MemAvailable drop {:.2} MiB per container; \
         {shims} shims with {:.2} MiB RSS, {:.2} MiB PSS each; agent RSS {:.1} -> {:.1} MiB",
        running.as_array().map_or(0, Vec::len),
        took.as_secs_f64(),
        mib(before.saturating_sub(after) as f64 / IDLE as f64),
        mib(shim_bytes as f64 / shims.max(1) as f64),
        mib(shim_pss as f64 / shims.max(1) as f64),
        mib(agent_before as f64),
        mib(agent_after as f64),
    );
    Ok(())
}

fn first_start(scratch: &Path) -> Result<()> {
    let big = scratch.join("big-rootfs");
    busybox_rootfs(&big)?;
    // Random bytes, so compression cannot shrink the template.
    let status = Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "status=none"])
        .arg(format!("count={BIG_MIB}"))
        .arg(format!("of={}", big.join("data.bin").display()))
        .status()?;
    if !status.success() {
        bail!("dd failed");
    }
    let mut lab = Lab::new("ctbench-fetch", 202, &[])?;
    lab.join("far", 203)?;
    let first = &lab.cloud.peers[0];
    eventually(Duration::from_secs(30), "both peers' disks", || {
        let status = first.cli_json(&["storage", "status"])?;
        Ok((status["disks"].as_array().map(Vec::len) == Some(2)).then_some(()))
    })?;
    let started = Instant::now();
    let template = first.cli_json(&["template", "import", "big", &big.display().to_string()])?;
    let import = started.elapsed();
    let size = template["size_bytes"].as_u64().unwrap_or(0) as f64;
    let token = first.token()?;
    let run = |name: &str| -> Result<Duration> {
        let request = json!({"template": "big", "name": name, "peer": "far", "disk": "512M",
            "argv": ["sleep", "1000"]});
        let (_, took) = api_run(first, &token, &request)?;
        api_remove(first, &token, name)?;
        Ok(took)
    };
    let fetched = run("fetched")?;
    let cached = run("cached")?;
    let mib = size / (1 << 20) as f64;
    println!(
        "template of {mib:.1} MiB: import {:.2} s ({:.1} MiB/s); first start on another peer (fetch, check, unpack, start) \
         {:.2} s = {:.1} MiB/s; start once cached {:.0} ms",
        import.as_secs_f64(),
        mib / import.as_secs_f64(),
        fetched.as_secs_f64(),
        mib / fetched.as_secs_f64(),
        millis(cached),
    );
    Ok(())
}

fn main() -> Result<()> {
    require_container_host()?;
    let scratch = TempDir::new("ctbench")?;
    let rootfs = scratch.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    println!("coop container benchmark (release binary {BIN})");
    start_latency(scratch.path(), &rootfs)?;
    idle_memory(&rootfs)?;
    first_start(scratch.path())?;
    Ok(())
}
