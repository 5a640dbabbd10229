//! S3 figures on loopback clouds of 1, 3 and 6 peers (release binary),
//! measured with boto3 (`tests/s3/tools/bench.py`): 64 MiB PUT and GET
//! MiB/s four at a time, 4 KiB PUT and GET ops/s sixteen at a time, the
//! time to list 2000 keys, and the bytes on disk per byte stored. Printed
//! next to the raw write bandwidth of the same disk (`dd ...
//! conv=fdatasync`) measured in the same run. Prints figures; asserts
//! nothing.
//!
//! Run: `./scripts/bench.sh s3` (needs the venv `scripts/test.sh` makes).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use coop_testkit::{Cloud, PeerOptions, TempDir, eventually};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_coop");
const LARGE_MIB: u64 = 64;
const LARGE_COUNT: u64 = 8;
const SMALL_COUNT: u64 = 2000;

/// MiB/s of writing 1 GiB with dd and one fdatasync, in `dir`.
fn dd_mib_s(dir: &Path) -> Result<f64> {
    let file = dir.join("dd.bin");
    let started = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", "count=1024", "conv=fdatasync", "status=none"])
        .status()?;
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&file)?;
    if !status.success() {
        bail!("dd failed");
    }
    Ok(1024.0 / secs)
}

fn cloud_of(n: usize, label: &str) -> Result<Cloud> {
    if n == 1 {
        let mut cloud = Cloud::new(BIN, label)?;
        cloud.found("p0", PeerOptions::default())?;
        Ok(cloud)
    } else {
        Cloud::start(BIN, label, n)
    }
}

fn run(n: usize, dd: f64) -> Result<()> {
    let cloud = cloud_of(n, &format!("s3bench{n}"))?;
    let peer = &cloud.peers[0];
    let layout = eventually(Duration::from_secs(60), "every peer's disks", || {
        let status = peer.cli_json(&["storage", "status"])?;
        let layout = status["default_layout"].as_str().unwrap_or("").to_owned();
        Ok((status["disks"].as_array().map(Vec::len) == Some(n)).then_some(layout))
    })?;
    let key = peer.cli_json(&["s3", "key", "create", "bench"])?;
    let id = key["id"].as_str().context("key id")?;
    let secret = key["secret"].as_str().context("key secret")?;
    peer.cli(&["bucket", "create", "bench", "--owner", id])?;
    let output = Command::new(coop_testkit::s3_python()?)
        .arg(coop_testkit::workspace().join("tests/s3/tools/bench.py"))
        .args(["--endpoint", &peer.s3_url(), "--bucket", "bench"])
        .args(["--large-mib", &LARGE_MIB.to_string()])
        .args(["--large-count", &LARGE_COUNT.to_string()])
        .args(["--small-count", &SMALL_COUNT.to_string()])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()?;
    if !output.status.success() {
        bail!(
            "bench.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let figures: Value = serde_json::from_slice(&output.stdout)?;
    // Disk use as every peer reports it (statuses refresh every second).
    std::thread::sleep(Duration::from_secs(2));
    let status = peer.cli_json(&["storage", "status"])?;
    let used: u64 = status["disks"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["used_bytes"].as_u64()).sum())
        .unwrap_or(0);
    let payload = LARGE_MIB * LARGE_COUNT * (1 << 20) + SMALL_COUNT * 4096;
    let f = |name: &str| figures[name].as_f64().unwrap_or(f64::NAN);
    println!(
        "{n} peer(s), {layout:<11} PUT 64MiB x4 {:>7.1} MiB/s ({:>5.2} x dd)  GET {:>7.1} MiB/s  \
         PUT 4KiB x16 {:>6.0} ops/s  GET {:>6.0} ops/s  LIST 2000 {:>6.3} s  on disk {:.2} x payload",
        f("put_large_mib_s"),
        f("put_large_mib_s") / dd,
        f("get_large_mib_s"),
        f("put_small_ops_s"),
        f("get_small_ops_s"),
        f("list_2000_s"),
        used as f64 / payload as f64,
    );
    Ok(())
}

fn main() -> Result<()> {
    let scratch = TempDir::new("s3bench-dd")?;
    let dd = dd_mib_s(scratch.path())?;
    println!("coop S3 benchmark (release binary {BIN})");
    println!("raw disk: dd 1 GiB conv=fdatasync {dd:.1} MiB/s");
    for n in [1, 3, 6] {
        run(n, dd)?;
    }
    Ok(())
}
