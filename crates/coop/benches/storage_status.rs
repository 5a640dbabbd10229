//! How long `coop storage status` takes on a cloud holding many objects:
//! one peer filled with 100,000 small objects through boto3, then the
//! status asked for through the API (`GET /v1/storage`) and the CLI, each
//! several times. Prints figures; asserts nothing.
//!
//! Run: `./scripts/bench.sh storage-status` (needs the venv
//! `scripts/test.sh` makes; filling takes a few minutes).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use coop_testkit::{Cloud, PeerOptions, http_request};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_coop");
/// Objects the cloud holds when the status is asked for.
const OBJECTS: u64 = 100_000;
/// Times each way of asking is repeated.
const ASKS: usize = 7;

/// Median and maximum of `times`, in milliseconds.
fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(times[times.len() / 2]), ms(times[times.len() - 1]))
}

fn main() -> Result<()> {
    println!("coop storage status benchmark (release binary {BIN})");
    let mut cloud = Cloud::new(BIN, "statusbench")?;
    cloud.found("p0", PeerOptions::default())?;
    let peer = &cloud.peers[0];
    let key = peer.cli_json(&["s3", "key", "create", "bench"])?;
    let id = key["id"].as_str().context("key id")?;
    let secret = key["secret"].as_str().context("key secret")?;
    peer.cli(&["bucket", "create", "bench", "--owner", id])?;
    let output = Command::new(coop_testkit::s3_python()?)
        .arg(coop_testkit::workspace().join("tests/s3/tools/fill.py"))
        .args(["--endpoint", &peer.s3_url(), "--bucket", "bench"])
        .args(["--count", &OBJECTS.to_string()])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()?;
    if !output.status.success() {
        bail!(
            "fill.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let filled: Value = serde_json::from_slice(&output.stdout)?;
    println!(
        "filled with {} objects in {:.0} s",
        filled["objects"],
        filled["seconds"].as_f64().unwrap_or(f64::NAN)
    );
    let api = peer.api_addr();
    let token = peer.token()?;
    let auth = format!("Bearer {token}");
    let mut through_api = Vec::new();
    let mut objects = 0;
    for _ in 0..ASKS {
        let started = Instant::now();
        let response = http_request(
            &api,
            "GET",
            "/v1/storage",
            &[("Authorization", &auth)],
            None,
        )?;
        through_api.push(started.elapsed());
        objects = response.json()?["objects"].as_u64().unwrap_or(0);
    }
    let mut through_cli = Vec::new();
    for _ in 0..ASKS {
        let started = Instant::now();
        peer.cli_json(&["storage", "status"])?;
        through_cli.push(started.elapsed());
    }
    let (api_median, api_max) = summary(through_api);
    let (cli_median, cli_max) = summary(through_cli);
    println!(
        "GET /v1/storage with {objects} objects: median {api_median:.1} ms, max {api_max:.1} ms (n={ASKS})"
    );
    println!(
        "coop storage status with {objects} objects: median {cli_median:.1} ms, max {cli_max:.1} ms (n={ASKS})"
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "peer memory after: RSS {:.1} MiB, of which anonymous {:.1} MiB",
        mib(peer.rss_bytes().unwrap_or(0)),
        mib(peer.anon_bytes().unwrap_or(0))
    );
    Ok(())
}
