//! S3 on real clouds of `coop` processes, driven by real clients: the
//! pytest suite in `tests/s3` (boto3, aws-cli, curl) against six peers,
//! then lost peers, a peer killed in the middle of a multipart upload,
//! wiped disks and flipped bits.
//!
//! The Python side runs from the venv `scripts/test.sh` prepares
//! (`target/s3-venv`, or `COOP_TEST_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use coop_testkit::{Cloud, Peer, PeerOptions, TempDir, eventually};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_coop");

/// An S3 access key made with the CLI.
struct Key {
    id: String,
    secret: String,
}

fn create_key(peer: &Peer, name: &str, create_bucket: bool) -> Result<Key> {
    let mut args = vec!["s3", "key", "create", name];
    if create_bucket {
        args.push("--create-bucket");
    }
    let created = peer.cli_json(&args)?;
    Ok(Key {
        id: created["id"].as_str().context("key id")?.to_owned(),
        secret: created["secret"].as_str().context("key secret")?.to_owned(),
    })
}

/// Runs `tests/s3/tools/objects.py` with `key`; returns its exit status and
/// JSON output.
fn tool(key: &Key, endpoint: &str, bucket: &str, args: &[&str]) -> Result<(bool, Value, String)> {
    let output = tool_command(key, endpoint, bucket, args)?
        .output()
        .context("running objects.py")?;
    parse_tool(output)
}

fn tool_command(key: &Key, endpoint: &str, bucket: &str, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(coop_testkit::s3_python()?);
    cmd.arg(coop_testkit::workspace().join("tests/s3/tools/objects.py"))
        .args(["--endpoint", endpoint, "--bucket", bucket])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    Ok(cmd)
}

fn parse_tool(output: Output) -> Result<(bool, Value, String)> {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    Ok((output.status.success(), value, stderr))
}

/// Writes the assorted objects and returns the manifest's path.
fn put_objects(
    key: &Key,
    endpoint: &str,
    bucket: &str,
    dir: &Path,
    count: usize,
) -> Result<PathBuf> {
    let (ok, manifest, stderr) = tool(
        key,
        endpoint,
        bucket,
        &["put", "--count", &count.to_string()],
    )?;
    if !ok {
        bail!("writing objects failed: {stderr}");
    }
    let path = dir.join(format!("{bucket}.manifest.json"));
    std::fs::write(&path, manifest.to_string())?;
    Ok(path)
}

/// Reads every object of the manifest back; fails with what differed.
fn verify_objects(key: &Key, endpoint: &str, bucket: &str, manifest: &Path) -> Result<()> {
    let manifest = manifest.display().to_string();
    let (ok, report, stderr) = tool(key, endpoint, bucket, &["verify", "--manifest", &manifest])?;
    if !ok {
        bail!("objects differ or failed to read: {report} {stderr}");
    }
    Ok(())
}

fn storage(peer: &Peer) -> Result<Value> {
    peer.cli_json(&["storage", "status"])
}

/// Waits until `peer` counts `domains` failure domains (its view of the
/// other peers' disks comes with their statuses).
fn wait_for_domains(peer: &Peer, domains: u64, layout: &str) -> Result<()> {
    eventually(
        Duration::from_secs(30),
        &format!("{} to see {domains} failure domains", peer.name),
        || {
            let status = storage(peer)?;
            Ok((status["domains"] == domains && status["default_layout"] == layout).then_some(()))
        },
    )
}

#[test]
fn six_peers_serve_s3_and_lose_nothing_when_two_die() -> Result<()> {
    let python = coop_testkit::s3_python()?;
    // A 64 MiB cap on one request body, so the suite checks EntityTooLarge;
    // repair every 2 s.
    let options = PeerOptions {
        extra_args: ["--s3-max-body", "64M", "--repair-interval", "2"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        ..PeerOptions::default()
    };
    let mut cloud = Cloud::new(BIN, "s3six")?;
    cloud.found("p0", options.clone())?;
    for i in 1..6 {
        cloud.join(&format!("p{i}"), options.clone())?;
    }
    for peer in &cloud.peers {
        wait_for_domains(peer, 6, "ec:4+2")?;
    }
    let owner = create_key(&cloud.peers[0], "suite", true)?;
    let other = create_key(&cloud.peers[1], "stranger", false)?;
    let endpoints: Vec<String> = cloud.peers.iter().map(Peer::s3_url).collect();

    // The conformance suite, through every peer.
    let suite = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "tests/s3",
            "-q",
            "-p",
            "no:cacheprovider",
            "-x",
        ])
        .current_dir(coop_testkit::workspace())
        .env("COOP_S3_ENDPOINT", &endpoints[0])
        .env("COOP_S3_ENDPOINTS", endpoints[1..].join(","))
        .env("COOP_S3_ACCESS_KEY", &owner.id)
        .env("COOP_S3_SECRET_KEY", &owner.secret)
        .env("COOP_S3_OTHER_ACCESS_KEY", &other.id)
        .env("COOP_S3_OTHER_SECRET_KEY", &other.secret)
        .env("COOP_S3_VHOST_DOMAIN", "localhost")
        .env("COOP_S3_BIG_MIB", "100")
        .env("COOP_S3_MAX_BODY_MIB", "64")
        .output()?;
    let report = String::from_utf8_lossy(&suite.stdout);
    println!("{report}");
    if !suite.status.success() {
        bail!(
            "the S3 suite failed:\n{report}\n{}",
            String::from_utf8_lossy(&suite.stderr)
        );
    }

    // Objects of every size around the block boundary, written as ec:4+2.
    let dir = TempDir::new("s3six-manifests")?;
    cloud.peers[0].cli_json(&["bucket", "create", "durable", "--owner", &owner.id])?;
    let manifest = put_objects(&owner, &endpoints[0], "durable", dir.path(), 16)?;
    let status = storage(&cloud.peers[0])?;
    assert!(
        status["blocks"]["healthy"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );

    // Grants from the CLI: the stranger reads only once allowed, and no
    // longer once denied.
    let durable = manifest.display().to_string();
    let stranger_reads = |endpoint: &str| -> Result<bool> {
        Ok(tool(
            &other,
            endpoint,
            "durable",
            &["verify", "--manifest", &durable],
        )?
        .0)
    };
    assert!(
        !stranger_reads(&endpoints[2])?,
        "a key without grants read the bucket"
    );
    cloud.peers[0].cli_json(&["bucket", "allow", "durable", "--key", &other.id, "--read"])?;
    assert!(
        stranger_reads(&endpoints[2])?,
        "an allowed key could not read"
    );
    cloud.peers[0].cli_json(&["bucket", "deny", "durable", "--key", &other.id])?;
    assert!(!stranger_reads(&endpoints[2])?, "a denied key still reads");

    // A second read of the same objects through one peer comes from its
    // read cache.
    let hits = |peer: &Peer| -> Result<u64> {
        Ok(storage(peer)?["counters"]["cache_hits"]
            .as_u64()
            .unwrap_or(0))
    };
    let before = hits(&cloud.peers[3])?;
    verify_objects(&owner, &endpoints[3], "durable", &manifest)?;
    verify_objects(&owner, &endpoints[3], "durable", &manifest)?;
    assert!(
        hits(&cloud.peers[3])? > before,
        "no read was served from the cache"
    );

    // A peer killed in the middle of a multipart upload: nothing of the
    // object becomes visible, and the retry through another peer works.
    let upload = tool_command(
        &owner,
        &endpoints[5],
        "durable",
        &[
            "multipart",
            "--key",
            "big/upload",
            "--parts",
            "4",
            "--pause",
            "0.5",
        ],
    )?
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    eventually(
        Duration::from_secs(60),
        "the first part to be stored",
        || {
            let listed = Command::new(&python)
            .arg("-c")
            .arg(
                "import boto3,sys;from botocore.config import Config;\
                 s=boto3.client('s3',endpoint_url=sys.argv[1],region_name='coop',config=Config(s3={'addressing_style':'path'}));\
                 u=s.list_multipart_uploads(Bucket='durable').get('Uploads',[]);\
                 print(sum(len(s.list_parts(Bucket='durable',Key=x['Key'],UploadId=x['UploadId']).get('Parts',[])) for x in u))",
            )
            .arg(&endpoints[0])
            .env("AWS_ACCESS_KEY_ID", &owner.id)
            .env("AWS_SECRET_ACCESS_KEY", &owner.secret)
            .output()?;
            let parts: u64 = String::from_utf8_lossy(&listed.stdout)
                .trim()
                .parse()
                .unwrap_or(0);
            Ok((parts >= 1).then_some(()))
        },
    )?;
    cloud.peers[5].kill();
    let interrupted = upload.wait_with_output()?;
    assert!(
        !interrupted.status.success(),
        "the upload through a killed peer cannot have completed"
    );
    let (_, seen, _) = tool(
        &owner,
        &endpoints[0],
        "durable",
        &["exists", "--key", "big/upload"],
    )?;
    assert_eq!(
        seen,
        serde_json::json!({"head": false, "listed": false}),
        "no partial object"
    );
    let (ok, retried, stderr) = tool(
        &owner,
        &endpoints[1],
        "durable",
        &["multipart", "--key", "big/upload", "--parts", "4"],
    )?;
    assert!(ok, "the retry failed: {stderr}");
    let (_, seen, _) = tool(
        &owner,
        &endpoints[2],
        "durable",
        &["exists", "--key", "big/upload"],
    )?;
    assert_eq!(seen, serde_json::json!({"head": true, "listed": true}));
    assert!(
        retried["etag"].as_str().unwrap_or("").ends_with("-4\""),
        "{retried}"
    );

    // A second peer dies: with two of six gone, every object written as
    // ec:4+2 reads back byte-identical through the survivors.
    cloud.peers[4].kill();
    for endpoint in &endpoints[..2] {
        verify_objects(&owner, endpoint, "durable", &manifest)?;
    }
    eventually(Duration::from_secs(30), "degraded objects to show", || {
        let status = storage(&cloud.peers[0])?;
        let objects = &status["object_health"];
        Ok((status["blocks"]["degraded"].as_u64().unwrap_or(0) > 0
            && objects["degraded"].as_u64().unwrap_or(0) > 0
            && status["blocks"]["unavailable"] == 0
            && objects["unavailable"] == 0
            && objects["lost"] == 0)
            .then_some(()))
    })?;
    // Writes go on over the four survivors, at the widest layout they allow.
    wait_for_domains(&cloud.peers[0], 4, "ec:2+2")?;
    let later = put_objects(&owner, &endpoints[0], "durable", dir.path(), 8)?;
    verify_objects(&owner, &endpoints[3], "durable", &later)?;

    // The dead peers are removed for good and two new ones join: repair
    // moves the lost shards onto the newcomers until every block is whole.
    for gone in ["p4", "p5"] {
        cloud.peers[0].cli_json(&["peer", "revoke", gone])?;
    }
    cloud.join("p6", options.clone())?;
    cloud.join("p7", options)?;
    eventually(
        Duration::from_secs(90),
        "every block to be whole again",
        || {
            let status = storage(&cloud.peers[0])?;
            let blocks = &status["blocks"];
            let objects = &status["object_health"];
            Ok((blocks["degraded"] == 0
                && blocks["unavailable"] == 0
                && objects["degraded"] == 0
                && objects["lost"] == 0)
                .then_some(()))
        },
    )?;
    let moved: Vec<(String, u64)> = cloud.peers[..4]
        .iter()
        .map(|p| {
            storage(p).map(|s| {
                let n = s["counters"]["moved_shards"].as_u64().unwrap_or(0);
                (p.name.clone(), n)
            })
        })
        .collect::<Result<_>>()?;
    assert!(moved.iter().any(|(_, n)| *n > 0), "repair moved no shard");
    // Every peer that repaired says so in the cloud's events, whichever
    // peer is asked: p0 gathers the others' over the mesh.
    // Each peer is asked with a short timeout (a busy peer's events may
    // miss one listing), so ask again until every repairer is heard.
    eventually(
        Duration::from_secs(30),
        "every repair among the events",
        || {
            let events = cloud.peers[0].cli_json(&["events"])?;
            let unsaid: Vec<&String> = moved
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(name, _)| name)
                .filter(|name| {
                    // moved_shards counts rebalancing moves too.
                    !events.as_array().into_iter().flatten().any(|e| {
                        (e["kind"] == "repaired" || e["kind"] == "rebalanced")
                            && e["subject"] == name.as_str()
                            && e["message"].as_str().is_some_and(|m| m.contains("shard"))
                    })
                })
                .collect();
            Ok(unsaid.is_empty().then_some(()))
        },
    )?;
    let new_url = cloud.peers[6].s3_url();
    verify_objects(&owner, &new_url, "durable", &manifest)?;
    Ok(())
}

/// Every shard file under a disk directory.
fn shard_files(disk: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(dirs) = std::fs::read_dir(disk.join("shards")) else {
        return files;
    };
    for dir in dirs.flatten() {
        if let Ok(entries) = std::fs::read_dir(dir.path()) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    files.sort();
    files
}

#[test]
fn one_box_with_six_disks_survives_two_wiped_disks_and_bit_rot() -> Result<()> {
    coop_testkit::s3_python()?;
    let base = TempDir::new("s3box-disks")?;
    let disks: Vec<PathBuf> = (1..=6)
        .map(|i| base.path().join(format!("disk{i}")))
        .collect();
    let mut extra = Vec::new();
    for disk in &disks {
        extra.push("--disk".to_owned());
        extra.push(disk.display().to_string());
    }
    extra.extend(
        [
            "--repair-interval",
            "2",
            "--gc-grace",
            "3",
            "--scrub-interval",
            "4",
            "--upload-expiry",
            "8",
        ]
        .into_iter()
        .map(str::to_owned),
    );
    let mut cloud = Cloud::new(BIN, "s3box")?;
    cloud.found(
        "box",
        PeerOptions {
            extra_args: extra,
            ..PeerOptions::default()
        },
    )?;
    let peer = &cloud.peers[0];
    wait_for_domains(peer, 6, "ec:4+2")?;
    let key = create_key(peer, "box", true)?;
    peer.cli_json(&["bucket", "create", "photos", "--owner", &key.id])?;
    let endpoint = peer.s3_url();
    let manifest = put_objects(&key, &endpoint, "photos", base.path(), 16)?;
    let before: Vec<Vec<PathBuf>> = disks.iter().map(|d| shard_files(d)).collect();
    let total: usize = before.iter().map(Vec::len).sum();
    assert!(total > 0);
    for files in &before {
        assert!(!files.is_empty(), "every disk holds shards: {before:?}");
    }

    // Two disks lose everything: reads are still correct, and reading
    // rebuilds every shard they held.
    for disk in &disks[..2] {
        std::fs::remove_dir_all(disk.join("shards"))?;
        std::fs::create_dir_all(disk.join("shards"))?;
    }
    verify_objects(&key, &endpoint, "photos", &manifest)?;
    // Reads rebuild the data shards they meet; repair (every 2 s here)
    // rebuilds the parity shards nobody reads.
    eventually(
        Duration::from_secs(30),
        "the wiped disks to be refilled",
        || {
            let now: Vec<Vec<PathBuf>> = disks.iter().map(|d| shard_files(d)).collect();
            Ok((now == before).then_some(()))
        },
    )?;

    // Bit rot in a data shard (a healthy read uses only data shards, so a
    // read meets it): the read is still right, and the corrupt shard is
    // counted and rewritten with its original bytes.
    cloud.peers[0].stop()?;
    let victim = before
        .iter()
        .flatten()
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse::<usize>().ok())
                .is_some_and(|index| index < 4)
        })
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .context("a data shard")?
        .clone();
    let original = std::fs::read(&victim)?;
    let mut rotten = original.clone();
    let at = rotten.len() - 100;
    rotten[at] ^= 0xff;
    rotten[at + 1] ^= 0x5a;
    std::fs::write(&victim, &rotten)?;
    cloud.peers[0].start(None)?;
    let peer = &cloud.peers[0];
    verify_objects(&key, &endpoint, "photos", &manifest)?;
    eventually(
        Duration::from_secs(30),
        "the rotten shard to be rewritten",
        || Ok((std::fs::read(&victim)? == original).then_some(())),
    )?;
    let counters = storage(peer)?["counters"].clone();
    assert!(
        counters["corrupt_shards"].as_u64().unwrap_or(0) >= 1,
        "{counters}"
    );
    assert!(
        counters["rebuilt_shards"].as_u64().unwrap_or(0) >= 1,
        "{counters}"
    );
    let metrics = coop_testkit::http_request(&peer.api_addr(), "GET", "/metrics", &[], None)?;
    assert!(
        metrics.body.contains("coop_store_corrupt_shards_total"),
        "{}",
        metrics.body
    );

    // Rot in a parity shard, which no healthy read touches: the scrub
    // (every 4 s here) finds it and repair writes it back.
    let parity = before
        .iter()
        .flatten()
        .find(|p| p.extension().and_then(|e| e.to_str()) == Some("5"))
        .context("a parity shard")?
        .clone();
    let original = std::fs::read(&parity)?;
    let mut rotten = original.clone();
    let at = rotten.len() - 1;
    rotten[at] ^= 0x01;
    std::fs::write(&parity, &rotten)?;
    eventually(
        Duration::from_secs(60),
        "the scrub and repair to restore the parity shard",
        || Ok((std::fs::read(&parity).ok() == Some(original.clone())).then_some(())),
    )?;
    let counters = storage(peer)?["counters"].clone();
    assert!(
        counters["scrubbed_shards"].as_u64().unwrap_or(0) > 0,
        "{counters}"
    );
    let events = peer.cli_json(&["events"])?;
    for kind in ["corrupt", "repaired"] {
        let seen = events
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["kind"] == kind && e["subject"] == "box");
        assert!(seen, "no {kind} event: {events}");
    }

    // An upload abandoned halfway is aborted after --upload-expiry (8 s
    // here); its parts' shards are collected with the rest below.
    let (ok, _, stderr) = tool(
        &key,
        &endpoint,
        "photos",
        &[
            "multipart",
            "--key",
            "abandoned",
            "--parts",
            "2",
            "--part-mib",
            "5",
            "--abandon",
        ],
    )?;
    assert!(ok, "the abandoned upload failed: {stderr}");
    let (_, listed, _) = tool(&key, &endpoint, "photos", &["uploads"])?;
    assert_eq!(listed["uploads"], 1, "{listed}");
    eventually(
        Duration::from_secs(60),
        "the abandoned upload to expire",
        || {
            let (_, listed, _) = tool(&key, &endpoint, "photos", &["uploads"])?;
            Ok((listed["uploads"] == 0).then_some(()))
        },
    )?;

    // Deleted objects give their space back once the grace (3 s here) is
    // over: every shard file goes, the abandoned parts' too.
    let manifest_path = manifest.display().to_string();
    let (ok, _, stderr) = tool(
        &key,
        &endpoint,
        "photos",
        &["delete", "--manifest", &manifest_path],
    )?;
    assert!(ok, "deleting failed: {stderr}");
    eventually(
        Duration::from_secs(60),
        "every shard file to be collected",
        || {
            let left: usize = disks.iter().map(|d| shard_files(d).len()).sum();
            Ok((left == 0).then_some(()))
        },
    )?;
    let counters = storage(peer)?["counters"].clone();
    assert!(
        counters["collected_shards"].as_u64().unwrap_or(0) >= total as u64,
        "{counters}"
    );
    Ok(())
}

/// Bytes of shards each peer's disks hold, by peer id, as `peer` sees them.
fn used_by_peer(peer: &Peer) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut used = std::collections::BTreeMap::new();
    for disk in storage(peer)?["disks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let id = disk["peer"].as_str().unwrap_or_default().to_owned();
        *used.entry(id).or_insert(0) += disk["used_bytes"].as_u64().unwrap_or(0);
    }
    Ok(used)
}

/// A peer that joins a cloud whose stripes already have one shard per
/// peer takes its share of the existing data: repair moves shards from the
/// fuller disks onto it, and every object still reads back.
#[test]
fn a_joining_peer_takes_its_share_of_existing_data() -> Result<()> {
    coop_testkit::s3_python()?;
    let base = TempDir::new("s3grow")?;
    let options = PeerOptions {
        extra_args: ["--repair-interval", "2"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        ..PeerOptions::default()
    };
    let mut cloud = Cloud::new(BIN, "s3grow")?;
    cloud.found("g0", options.clone())?;
    cloud.join("g1", options.clone())?;
    cloud.join("g2", options.clone())?;
    for peer in &cloud.peers {
        wait_for_domains(peer, 3, "ec:1+2")?;
    }
    let key = create_key(&cloud.peers[0], "grow", true)?;
    cloud.peers[0].cli_json(&["bucket", "create", "photos", "--owner", &key.id])?;
    let manifest = put_objects(&key, &cloud.peers[0].s3_url(), "photos", base.path(), 48)?;
    // Every peer holds a whole copy (ec:1+2): equal shares, once every
    // status has caught up.
    let before = eventually(Duration::from_secs(20), "equal shares", || {
        let used = used_by_peer(&cloud.peers[0])?;
        let first = used.values().next().copied().unwrap_or(0);
        Ok((used.len() == 3 && first > 0 && used.values().all(|u| *u == first)).then_some(used))
    })?;

    cloud.join("g3", options.clone())?;
    let newcomer = cloud.peers[3].id();
    let shares = eventually(
        Duration::from_secs(120),
        "the new peer to hold its share",
        || {
            let used = used_by_peer(&cloud.peers[0])?;
            let total: u64 = used.values().sum();
            let mine = used.get(&newcomer).copied().unwrap_or(0);
            // Its fair share is a quarter; most of that is enough here.
            Ok((used.len() == 4 && mine * 4 * 10 >= total * 7).then_some(used))
        },
    )?;
    // Data moved, it was not copied: the total stays what it was.
    let total_before: u64 = before.values().sum();
    let total_after: u64 = shares.values().sum();
    assert!(
        total_after <= total_before + total_before / 20,
        "before {before:?}, after {shares:?}"
    );
    let rebalanced: u64 = cloud.peers[..3]
        .iter()
        .map(|p| storage(p).map(|s| s["counters"]["rebalanced_shards"].as_u64().unwrap_or(0)))
        .sum::<Result<u64>>()?;
    assert!(rebalanced > 0, "no peer counted a rebalanced shard");
    // Every object reads back through the newcomer, and all are healthy.
    verify_objects(&key, &cloud.peers[3].s3_url(), "photos", &manifest)?;
    let health = storage(&cloud.peers[3])?["object_health"].clone();
    assert_eq!(health["healthy"], 48, "{health}");
    Ok(())
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t)
                    if t.is_file()
                        && std::fs::read(&path).is_ok_and(|bytes| {
                            bytes.windows(needle.len()).any(|w| w == needle)
                        }) =>
                {
                    found.push(path);
                }
                _ => {}
            }
        }
    }
    found
}

fn manifest_of(path: &Path) -> Result<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(serde_json::from_str::<Value>(&text)?
        .as_object()
        .context("a manifest is an object")?
        .clone())
}

fn write_manifest(path: &Path, manifest: &serde_json::Map<String, Value>) -> Result<()> {
    std::fs::write(path, Value::Object(manifest.clone()).to_string())?;
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    std::io::Write::write_all(child.stdin.as_mut().context("stdin")?, bytes)?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// A home cloud backs a bucket up into a friend cloud's S3 through a
/// repository restic can read; the second run sends only what changed;
/// both snapshots restore object for object; the friend's disks hold no
/// plaintext; bad input gets clear errors.
#[test]
fn a_bucket_backs_up_to_another_cloud_and_restores_object_for_object() -> Result<()> {
    coop_testkit::s3_python()?;
    let base = TempDir::new("backup")?;
    let mut friend = Cloud::new(BIN, "backup-friend")?;
    friend.found("f0", PeerOptions::default())?;
    friend.join("f1", PeerOptions::default())?;
    let vault_key = create_key(&friend.peers[0], "home", false)?;
    friend.peers[0].cli_json(&["bucket", "create", "vault", "--owner", &vault_key.id])?;
    let target = format!(
        "s3://{}/vault/home",
        friend.peers[0].s3_url().trim_start_matches("http://")
    );

    let mut home = Cloud::new(BIN, "backup-home")?;
    home.found("h0", PeerOptions::default())?;
    home.join("h1", PeerOptions::default())?;
    let key = create_key(&home.peers[0], "photos", false)?;
    home.peers[0].cli_json(&["bucket", "create", "photos", "--owner", &key.id])?;
    let endpoint = home.peers[0].s3_url();
    let (ok, first, stderr) = tool(
        &key,
        &endpoint,
        "photos",
        &["put", "--count", "199", "--meta", "--max-size", "200000"],
    )?;
    assert!(ok, "writing objects failed: {stderr}");
    let mut first = first.as_object().context("manifest")?.clone();
    // One object whose plaintext is easy to look for on disk.
    let marker = b"coop-backup-marker: the friend must never hold this in the clear";
    let marker_file = base.path().join("marker.txt");
    std::fs::write(&marker_file, marker.repeat(64))?;
    home.peers[0].cli_json(&[
        "object",
        "put",
        "photos/notes/marker.txt",
        &marker_file.display().to_string(),
    ])?;
    first.insert(
        "notes/marker.txt".into(),
        Value::String(sha256_hex(&marker.repeat(64))?),
    );
    let first_manifest = base.path().join("first.json");
    write_manifest(&first_manifest, &first)?;

    // h1 holds no cloud key (one steward for two peers): creating and
    // running there seals and opens the secrets through the leader.
    let h1 = &home.peers[1];
    let created = h1.cli_json(&[
        "backup",
        "create",
        "nightly",
        "--source",
        "bucket:photos",
        "--to",
        &target,
        "--access-key",
        &vault_key.id,
        "--secret-key",
        &vault_key.secret,
        "--keep-last",
        "5",
    ])?;
    assert_eq!(created["source"], "bucket:photos", "{created}");
    let run1 = h1.cli_json(&["backup", "run", "nightly"])?;
    assert_eq!(run1["ok"], true, "{run1}");
    assert_eq!(run1["files"], 200, "{run1}");
    assert_eq!(run1["files_read"], 200, "{run1}");
    let added1 = run1["bytes_added"].as_u64().context("bytes added")?;

    // Change 5, delete 2, add 3.
    let (ok, changed, stderr) = tool(
        &key,
        &endpoint,
        "photos",
        &[
            "put",
            "--count",
            "5",
            "--seed",
            "again",
            "--meta",
            "--max-size",
            "200000",
        ],
    )?;
    assert!(ok, "changing objects failed: {stderr}");
    let gone = base.path().join("gone.json");
    std::fs::write(&gone, r#"{"obj-0100": "", "obj-0101": ""}"#)?;
    let (ok, _, stderr) = tool(
        &key,
        &endpoint,
        "photos",
        &["delete", "--manifest", &gone.display().to_string()],
    )?;
    assert!(ok, "deleting objects failed: {stderr}");
    let (ok, added, stderr) = tool(
        &key,
        &endpoint,
        "photos",
        &[
            "put",
            "--count",
            "3",
            "--prefix",
            "new-",
            "--meta",
            "--max-size",
            "200000",
        ],
    )?;
    assert!(ok, "adding objects failed: {stderr}");
    let mut second = first.clone();
    second.remove("obj-0100");
    second.remove("obj-0101");
    for (k, v) in changed.as_object().into_iter().flatten() {
        second.insert(k.clone(), v.clone());
    }
    for (k, v) in added.as_object().into_iter().flatten() {
        second.insert(k.clone(), v.clone());
    }
    let second_manifest = base.path().join("second.json");
    write_manifest(&second_manifest, &second)?;

    let run2 = home.peers[0].cli_json(&["backup", "run", "nightly"])?;
    assert_eq!(run2["ok"], true, "{run2}");
    assert_eq!(run2["files"], 201, "{run2}");
    assert_eq!(
        run2["files_read"], 8,
        "only the changed and new objects are read: {run2}"
    );
    let added2 = run2["bytes_added"].as_u64().context("bytes added")?;
    println!("backup: first run added {added1} bytes, the second {added2}");
    assert!(
        added2 * 5 < added1,
        "the second run sent too much: {added2} of {added1}"
    );

    // Events and metrics tell how the runs went, on any peer (once its
    // replica of the control plane has the second run).
    eventually(
        Duration::from_secs(10),
        "the second run in h1's metrics",
        || {
            let metrics = coop_testkit::http_request(&h1.api_addr(), "GET", "/metrics", &[], None)?;
            Ok((metrics
                .body
                .contains("coop_backup_last_run_ok{backup=\"nightly\"} 1")
                && metrics
                    .body
                    .contains("coop_backup_last_run_files_read{backup=\"nightly\"} 8"))
            .then_some(()))
        },
    )?;
    let events = h1.cli_json(&["events"])?;
    let saved = events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "backed-up" && e["subject"] == "nightly")
        .count();
    assert_eq!(saved, 2, "{events}");

    let snaps = h1.cli_json(&["backup", "snapshots", "nightly"])?;
    let snaps = snaps.as_array().context("snapshots")?;
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let first_id = snaps[0]["short_id"].as_str().context("id")?;

    // Both snapshots come back object for object, metadata included.
    let restored = h1.cli_json(&[
        "backup",
        "restore",
        "nightly",
        first_id,
        "--to",
        "bucket:then",
    ])?;
    assert_eq!(restored["files"], 200, "{restored}");
    home.peers[0].cli_json(&["bucket", "allow", "then", "--key", &key.id, "--read"])?;
    verify_restored(&key, &endpoint, "then", &first_manifest)?;
    let restored =
        home.peers[0].cli_json(&["backup", "restore", "nightly", "--to", "bucket:now"])?;
    assert_eq!(restored["files"], 201, "{restored}");
    home.peers[0].cli_json(&["bucket", "allow", "now", "--key", &key.id, "--read"])?;
    verify_restored(&key, &endpoint, "now", &second_manifest)?;

    let check = h1.cli_json(&["backup", "check", "nightly", "--read-data"])?;
    assert_eq!(check["ok"], true, "{check}");

    // restic itself reads the repository with the exported password.
    let exported = h1.cli_json(&["backup", "key", "export", "nightly"])?;
    let password = exported["password"].as_str().context("password")?;
    let restic = |args: &[&str]| -> Result<Output> {
        Command::new("restic")
            .args(["-r", &format!("s3:{}/vault/home", friend.peers[0].s3_url())])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &vault_key.id)
            .env("AWS_SECRET_ACCESS_KEY", &vault_key.secret)
            .env("RESTIC_PASSWORD", password)
            .env("RESTIC_CACHE_DIR", base.path().join("restic-cache"))
            .stdin(Stdio::null())
            .output()
            .context("running restic (scripts/test.sh installs it)")
    };
    let listed = restic(&["snapshots", "--json"])?;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Value = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let out = base.path().join("restic-out");
    let restored = restic(&["restore", "latest", "--target", &out.display().to_string()])?;
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    for (k, want) in &second {
        let bytes = std::fs::read(out.join("photos").join(k))
            .with_context(|| format!("restic restored no {k}"))?;
        assert_eq!(Some(sha256_hex(&bytes)?.as_str()), want.as_str(), "{k}");
    }

    // A directory of a peer: the peer asked forwards the run to the peer
    // that holds it, and restores go into a directory of either peer.
    let srv = base.path().join("srv");
    std::fs::create_dir_all(srv.join("docs/deep"))?;
    std::fs::write(srv.join("docs/letter.txt"), b"dear friend")?;
    std::fs::write(
        srv.join("docs/deep/numbers.bin"),
        (0..=255u8).cycle().take(300_000).collect::<Vec<u8>>(),
    )?;
    std::fs::write(srv.join("top.txt"), b"top")?;
    let srv_source = format!("path:h1:{}", srv.display());
    home.peers[0].cli_json(&[
        "backup",
        "create",
        "files",
        "--source",
        &srv_source,
        "--to",
        &format!("{target}-files"),
        "--access-key",
        &vault_key.id,
        "--secret-key",
        &vault_key.secret,
    ])?;
    let ran = home.peers[0].cli_json(&["backup", "run", "files"])?;
    assert_eq!(ran["ok"], true, "{ran}");
    assert_eq!(
        ran["peer"], "h1",
        "the peer holding the path runs it: {ran}"
    );
    assert_eq!(ran["files"], 3, "{ran}");
    for (peer, dir) in [("h0", "files-at-h0"), ("h1", "files-at-h1")] {
        let out = base.path().join(dir);
        let to = format!("path:{peer}:{}", out.display());
        let restored = home.peers[0].cli_json(&["backup", "restore", "files", "--to", &to])?;
        assert_eq!(restored["files"], 3, "{restored}");
        // A snapshot of a path holds it as an absolute path, as restic's do.
        let inner = out.join(srv.strip_prefix("/")?);
        for file in ["docs/letter.txt", "docs/deep/numbers.bin", "top.txt"] {
            assert_eq!(
                std::fs::read(inner.join(file))?,
                std::fs::read(srv.join(file))?,
                "{file} restored at {peer}"
            );
        }
    }
    // A bucket's snapshot restores into a directory too: BUCKET/KEY.
    let out = base.path().join("bucket-files");
    let restored = h1.cli_json(&[
        "backup",
        "restore",
        "nightly",
        "--to",
        &format!("path:h1:{}", out.display()),
    ])?;
    assert_eq!(restored["files"], 201, "{restored}");
    assert_eq!(
        std::fs::read(out.join("photos/notes/marker.txt"))?,
        marker.repeat(64)
    );

    // The friend holds only ciphertext; the home's own disks (a positive
    // control for the search) hold the marker in the clear.
    for peer in &friend.peers {
        let found = files_holding(&peer.data_dir, marker);
        assert!(
            found.is_empty(),
            "plaintext on the friend's disk: {found:?}"
        );
    }
    let at_home: usize = home
        .peers
        .iter()
        .map(|p| files_holding(&p.data_dir, marker).len())
        .sum();
    assert!(
        at_home > 0,
        "the search for the marker finds nothing even at home"
    );

    // Bad input: clear errors, nothing changed.
    let refuse = |args: &[&str], expect: &str| -> Result<()> {
        let out = h1.cli(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "coop {args:?} succeeded");
        assert!(stderr.contains(expect), "coop {args:?}: {stderr}");
        Ok(())
    };
    let create = |name: &'static str, to: &str, secret: &str| -> Vec<String> {
        [
            "backup",
            "create",
            name,
            "--source",
            "bucket:photos",
            "--to",
            to,
            "--access-key",
            &vault_key.id,
            "--secret-key",
            secret,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = create("nightly", &format!("{target}-2"), &vault_key.secret);
    refuse(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "already exists",
    )?;
    let args = create("other", &target, &vault_key.secret);
    refuse(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "already holds a restic repository",
    )?;
    let args = create("other", &format!("{target}-2"), "wrong-secret");
    refuse(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "SignatureDoesNotMatch",
    )?;
    let args = create("other", "ftp://example/x", &vault_key.secret);
    refuse(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "is not an S3 target",
    )?;
    refuse(&["backup", "run", "missing"], "no backup named `missing`")?;
    let args = create("other", &format!("{target}-3"), &vault_key.secret);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args[4] = "path:nobody:/srv";
    refuse(&args, "nobody")?;
    args[4] = "path:h1:relative";
    refuse(&args, "must be absolute")?;
    refuse(
        &["backup", "restore", "files", "--to", "bucket:fromfiles"],
        "is of a path",
    )?;
    refuse(
        &["backup", "restore", "nightly", "--to", "bucket:now"],
        "is not empty",
    )?;
    refuse(
        &[
            "backup",
            "restore",
            "nightly",
            "feedbeef",
            "--to",
            "bucket:fresh",
        ],
        "snapshot",
    )?;
    let listed = h1.cli_json(&["backup", "ls"])?;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // The peer running a backup dies half-way: the repository stays one
    // restic calls consistent, and the next run completes and restores.
    let (ok, big, stderr) = tool(
        &key,
        &endpoint,
        "photos",
        &["put", "--count", "64", "--prefix", "big-", "--meta"],
    )?;
    assert!(ok, "writing objects failed: {stderr}");
    let mut third = second.clone();
    for (k, v) in big.as_object().into_iter().flatten() {
        third.insert(k.clone(), v.clone());
    }
    let third_manifest = base.path().join("third.json");
    write_manifest(&third_manifest, &third)?;
    let mut cut_off = Command::new(BIN)
        .arg("--data-dir")
        .arg(&home.peers[1].data_dir)
        .args(["backup", "run", "nightly"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    home.peers[1].kill();
    let _ = cut_off.wait();
    let listed = restic(&["snapshots", "--json"])?;
    let listed: Value = serde_json::from_slice(&listed.stdout)?;
    if listed.as_array().map(Vec::len) != Some(2) {
        bail!("the run finished before its peer was killed; give it more to do: {listed}");
    }
    let checked = restic(&["check"])?;
    assert!(
        checked.status.success(),
        "restic check after a cut-off run: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    home.peers[1].start(None)?;
    let h1 = &home.peers[1];
    let run3 = h1.cli_json(&["backup", "run", "nightly"])?;
    assert_eq!(run3["ok"], true, "{run3}");
    assert_eq!(run3["files"], 265, "{run3}");
    let restored = h1.cli_json(&["backup", "restore", "nightly", "--to", "bucket:after"])?;
    assert_eq!(restored["files"], 265, "{restored}");
    home.peers[0].cli_json(&["bucket", "allow", "after", "--key", &key.id, "--read"])?;
    verify_restored(&key, &endpoint, "after", &third_manifest)?;

    home.peers[0].cli_json(&["backup", "rm", "nightly"])?;
    let out = h1.cli(&["backup", "show", "nightly"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backup named"));
    Ok(())
}

/// Reads a restored bucket back against a manifest, metadata included.
fn verify_restored(key: &Key, endpoint: &str, bucket: &str, manifest: &Path) -> Result<()> {
    // The marker object carries no metadata; check it on its own.
    let mut all = manifest_of(manifest)?;
    let marker = all.remove("notes/marker.txt");
    let with_meta = manifest.with_extension(format!("{bucket}.meta.json"));
    write_manifest(&with_meta, &all)?;
    let (ok, report, stderr) = tool(
        key,
        endpoint,
        bucket,
        &[
            "verify",
            "--meta",
            "--manifest",
            &with_meta.display().to_string(),
        ],
    )?;
    assert!(ok, "restored objects differ: {report} {stderr}");
    if let Some(marker) = marker {
        let plain = manifest.with_extension(format!("{bucket}.marker.json"));
        let mut one = serde_json::Map::new();
        one.insert("notes/marker.txt".into(), marker);
        write_manifest(&plain, &one)?;
        verify_objects(key, endpoint, bucket, &plain)?;
    }
    Ok(())
}

const MIB: u64 = 1 << 20;

/// The bucket `name` as `coop bucket ls --json` lists it.
fn listed_bucket(peer: &Peer, name: &str) -> Result<Value> {
    let buckets = peer.cli_json(&["bucket", "ls"])?;
    buckets
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == name)
        .cloned()
        .with_context(|| format!("no bucket {name} in {buckets}"))
}

/// Writes 1 MiB objects `fill-0000`, `fill-0001`, ... into `bucket` until a
/// PUT is refused; returns the manifest of those stored and the refusal.
fn fill(key: &Key, endpoint: &str, bucket: &str, max: usize) -> Result<(Value, Value)> {
    let (ok, filled, stderr) = tool(
        key,
        endpoint,
        bucket,
        &[
            "fill",
            "--size",
            &MIB.to_string(),
            "--max",
            &max.to_string(),
        ],
    )?;
    if !ok {
        bail!("filling {bucket} failed: {stderr}");
    }
    Ok((filled["stored"].clone(), filled["refused"].clone()))
}

/// A bucket quota set with the CLI: S3 writes past it are refused with
/// `403 QuotaExceeded` (parts of a multipart upload too), the API's upload
/// with `403 quota_exceeded`; what was stored stays readable, overwrites
/// that do not grow the bucket still go through, and raising the quota
/// lets the refused write in.
#[test]
fn a_bucket_quota_refuses_writes_past_it_until_raised() -> Result<()> {
    coop_testkit::s3_python()?;
    let base = TempDir::new("s3quota")?;
    let mut cloud = Cloud::new(BIN, "s3quota")?;
    cloud.found("q0", PeerOptions::default())?;
    let peer = &cloud.peers[0];
    let key = create_key(peer, "quota", false)?;
    let created = peer.cli_json(&[
        "bucket", "create", "capped", "--owner", &key.id, "--quota", "3MiB",
    ])?;
    assert_eq!(created["quota"], 3 * MIB, "{created}");
    let endpoint = peer.s3_url();

    // Three 1 MiB objects fit; the fourth does not.
    let (stored, refused) = fill(&key, &endpoint, "capped", 10)?;
    assert_eq!(stored.as_object().map(|m| m.len()), Some(3), "{stored}");
    assert_eq!(refused["key"], "fill-0003", "{refused}");
    assert_eq!(refused["code"], "QuotaExceeded", "{refused}");
    assert_eq!(refused["status"], 403, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "bucket `capped` is over its quota: 3.0 MiB used of 3.0 MiB, this write needs 1.0 MiB more"
        ),
        "{message}"
    );
    let manifest = base.path().join("capped.manifest.json");
    std::fs::write(&manifest, stored.to_string())?;
    verify_objects(&key, &endpoint, "capped", &manifest)?;

    // Parts count too: a 5 MiB part is refused.
    let (ok, _, stderr) = tool(
        &key,
        &endpoint,
        "capped",
        &[
            "multipart",
            "--key",
            "big",
            "--parts",
            "1",
            "--part-mib",
            "5",
        ],
    )?;
    assert!(
        !ok && stderr.contains("QuotaExceeded"),
        "a part past the quota: {stderr}"
    );

    // So does an upload through the API.
    let auth = format!("Bearer {}", peer.token()?);
    let body = "x".repeat(MIB as usize);
    let put_api = || {
        coop_testkit::http_request(
            &peer.api_addr(),
            "PUT",
            "/v1/buckets/capped/objects/api/one",
            &[("Authorization", &auth)],
            Some(&body),
        )
    };
    let answer = put_api()?;
    assert_eq!(answer.status, 403, "{}", answer.body);
    let error = answer.json()?;
    assert_eq!(error["error"], "quota_exceeded", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("over its quota")),
        "{error}"
    );

    let listed = listed_bucket(peer, "capped")?;
    assert_eq!(
        (&listed["usage"], &listed["quota"]),
        (&Value::from(3 * MIB), &Value::from(3 * MIB)),
        "{listed}"
    );
    let table = peer.cli(&["bucket", "ls"])?;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("3.0 MiB (100%)"), "{table}");

    // Raised to 5 MiB: the first three are overwritten in place (no
    // growth), the refused fourth and a fifth go in, the sixth is refused.
    let raised = peer.cli_json(&["bucket", "set", "capped", "--quota", "5MiB"])?;
    assert_eq!(
        (&raised["quota"], &raised["usage"]),
        (&Value::from(5 * MIB), &Value::from(3 * MIB)),
        "{raised}"
    );
    let (stored, refused) = fill(&key, &endpoint, "capped", 10)?;
    assert_eq!(stored.as_object().map(|m| m.len()), Some(5), "{stored}");
    assert_eq!(refused["key"], "fill-0005", "{refused}");
    assert_eq!(refused["code"], "QuotaExceeded", "{refused}");
    std::fs::write(&manifest, stored.to_string())?;
    verify_objects(&key, &endpoint, "capped", &manifest)?;

    // The API describes how to change it.
    let doc = coop_testkit::http_request(&peer.api_addr(), "GET", "/v1/openapi.json", &[], None)?
        .json()?;
    let bucket_ops = &doc["paths"]["/v1/buckets/{name}"];
    for verb in ["get", "patch", "delete"] {
        assert!(bucket_ops.get(verb).is_some(), "{verb}: {bucket_ops}");
    }

    // No quota at all: the API's upload goes in.
    let lifted = peer.cli_json(&["bucket", "set", "capped", "--quota", "none"])?;
    assert_eq!(lifted["quota"], Value::Null, "{lifted}");
    let answer = put_api()?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let listed = listed_bucket(peer, "capped")?;
    assert_eq!(listed["usage"], 6 * MIB, "{listed}");
    verify_objects(&key, &endpoint, "capped", &manifest)?;
    Ok(())
}

/// A friend cloud keeps a home cloud's backups over coop/friend/1: invite
/// with a quota, link, back up and restore; a used or foreign token is
/// refused, a backup past the quota fails with the quota's error and
/// leaves the repository readable, and a friend cut off can no longer
/// store or read.
#[test]
fn a_friend_cloud_keeps_backups_within_its_quota_until_cut_off() -> Result<()> {
    coop_testkit::s3_python()?;
    let mut friend = Cloud::new(BIN, "friend-keeper")?;
    friend.found("k0", PeerOptions::default())?;
    let mut home = Cloud::new(BIN, "friend-home")?;
    home.found("o0", PeerOptions::default())?;
    home.join("o1", PeerOptions::default())?;
    let keeper = &friend.peers[0];

    let invite = keeper.cli_json(&["friend", "invite", "home", "--quota", "6MiB"])?;
    let token = invite["token"].as_str().context("token")?.to_owned();
    assert_eq!(invite["bucket"], "friend-home", "{invite}");
    // o1 holds no cloud key: its certificate still proves the cloud.
    let o1 = &home.peers[1];
    // Its own API token reaches its replica of the control plane first.
    eventually(
        Duration::from_secs(20),
        "o1's API to take its token",
        || Ok(o1.cli_json(&["friend", "ls"]).ok().map(|_| ())),
    )?;
    let linked = o1.cli_json(&["friend", "add", "keeper", &token])?;
    assert_eq!(linked["bucket"], "friend-home", "{linked}");
    // The token is single-use.
    let again = home.peers[0].cli(&["friend", "add", "other", &token])?;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already used"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let key = create_key(&home.peers[0], "docs", false)?;
    home.peers[0].cli_json(&["bucket", "create", "docs", "--owner", &key.id])?;
    let endpoint = home.peers[0].s3_url();
    let (ok, small, stderr) = tool(
        &key,
        &endpoint,
        "docs",
        &["put", "--count", "40", "--meta", "--max-size", "200000"],
    )?;
    assert!(ok, "writing objects failed: {stderr}");
    let manifest = base_manifest("friend", &small)?;
    o1.cli_json(&[
        "backup",
        "create",
        "offsite",
        "--source",
        "bucket:docs",
        "--to",
        "friend:keeper",
    ])?;
    let run = o1.cli_json(&["backup", "run", "offsite"])?;
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["files"], 40, "{run}");

    let ls = o1.cli_json(&["friend", "ls"])?;
    assert_eq!(ls[0]["state"], "reachable", "{ls}");
    assert!(ls[0]["used_bytes"].as_u64().unwrap_or(0) > 0, "{ls}");
    let kept = keeper.cli_json(&["friend", "ls"])?;
    assert_eq!(kept[0]["state"], "linked", "{kept}");
    assert_eq!(kept[0]["quota_bytes"], 6 << 20, "{kept}");

    let restored = o1.cli_json(&["backup", "restore", "offsite", "--to", "bucket:back"])?;
    assert_eq!(restored["files"], 40, "{restored}");
    home.peers[0].cli_json(&["bucket", "allow", "back", "--key", &key.id, "--read"])?;
    verify_restored(&key, &endpoint, "back", &manifest)?;

    // Past the quota: the run fails with the quota's words, and the
    // repository still reads.
    let (ok, _, stderr) = tool(
        &key,
        &endpoint,
        "docs",
        &["put", "--count", "8", "--prefix", "big-", "--meta"],
    )?;
    assert!(ok, "writing objects failed: {stderr}");
    let over = o1.cli(&["backup", "run", "offsite"])?;
    let said = String::from_utf8_lossy(&over.stderr);
    assert!(!over.status.success(), "a run past the quota succeeded");
    assert!(said.contains("quota"), "{said}");
    let check = o1.cli_json(&["backup", "check", "offsite"])?;
    assert_eq!(check["ok"], true, "{check}");
    let snaps = o1.cli_json(&["backup", "snapshots", "offsite"])?;
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");

    // Cut off on the keeper's side: nothing more is stored or read.
    keeper.cli_json(&["friend", "rm", "home"])?;
    let denied = o1.cli(&["backup", "snapshots", "offsite"])?;
    let said = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "a friend cut off still reads");
    assert!(said.contains("keeps no backups for yours"), "{said}");
    Ok(())
}

/// Writes a put's manifest to a temporary file.
fn base_manifest(label: &str, manifest: &Value) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("coop-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("manifest.json");
    std::fs::write(&path, manifest.to_string())?;
    Ok(path)
}
