//! The web console in a real browser: headless Chromium, driven through
//! WebDriver by `tests/console/flows.py` (Selenium, from the test venv),
//! against a real three-peer cloud of `coop` processes that run real
//! containers. Screenshots of the pages go to `target/console-screenshots`.
//! Needs root (containers), busybox-static, and Debian's `chromium` and
//! `chromium-driver` (the test command installs them).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use coop_testkit::containers::{
    busybox_rootfs, container_host_flags, remove_container_host_names, require_container_host,
};
use coop_testkit::{Cloud, PeerOptions, eventually};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_coop");
const TAGS: [u8; 3] = [40, 41, 42];

/// Removes the container agents' host names when the test ends.
struct HostNames;

impl Drop for HostNames {
    fn drop(&mut self) {
        for tag in TAGS {
            remove_container_host_names(tag);
        }
    }
}

#[test]
fn the_console_runs_the_cloud_from_a_browser() -> Result<()> {
    require_container_host().expect("the console test runs real containers");
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the test command installs Debian's chromium and chromium-driver"
        );
    }
    let python = coop_testkit::s3_python()?;
    let _names = HostNames;
    let mut cloud = Cloud::new(BIN, "console")?;
    for (i, tag) in TAGS.iter().enumerate() {
        let options = PeerOptions {
            extra_args: container_host_flags(*tag),
            ..PeerOptions::default()
        };
        let name = format!("p{i}");
        if i == 0 {
            cloud.found(&name, options)?;
        } else {
            cloud.join(&name, options)?;
        }
    }
    let hub = &cloud.peers[0];
    eventually(std::time::Duration::from_secs(30), "three peers up", || {
        let up = hub.peers()?.iter().filter(|p| p["state"] == "up").count();
        Ok((up == 3).then_some(()))
    })?;

    // The template the browser imports: a busybox rootfs as a tar.
    let rootfs = cloud.dir.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    let tar = cloud.dir.path().join("busybox.tar");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()?;
    assert!(packed.success(), "tar of the rootfs failed");

    let shots = coop_testkit::workspace().join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let token = std::fs::read_to_string(hub.data_dir.join("api.token"))
        .context("the admin token")?
        .trim()
        .to_string();
    let out = Command::new(&python)
        .arg(coop_testkit::workspace().join("tests/console/flows.py"))
        .env("COOP_CONSOLE_URL", format!("http://{}", hub.api_addr()))
        .env("COOP_TOKEN", &token)
        .env("COOP_SHOTS", &shots)
        .env("COOP_TEMPLATE_TAR", &tar)
        .env("COOP_REVOKE_PEER", "p2")
        .stdin(Stdio::null())
        .output()
        .context("running the browser flows")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    if !out.status.success() {
        bail!(
            "the browser flows failed:\n{stdout}\n{stderr}\n{}",
            hub.log_tail()
        );
    }

    // What the browser did, seen through the CLI.
    let buckets = hub.cli_json(&["bucket", "ls"])?;
    assert!(
        buckets
            .as_array()
            .is_some_and(|b| b.iter().any(|x| x["name"] == "photos")),
        "{buckets:#}"
    );
    let templates = hub.cli_json(&["template", "ls"])?;
    assert!(
        templates
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x["name"] == "busybox")),
        "{templates:#}"
    );
    let containers = hub.cli_json(&["container", "ls", "--all"])?;
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(0),
        "{containers:#}"
    );
    let peers = hub.peers()?;
    let p2: Vec<&Value> = peers.iter().filter(|p| p["name"] == "p2").collect();
    assert!(p2.iter().all(|p| p["state"] == "revoked"), "{peers:#?}");
    // The objects API the console's bucket pages use: bad input gets
    // clear errors.
    let auth = format!("Bearer {token}");
    let call = |method: &str, path: &str, body: Option<&str>| {
        coop_testkit::http_request(
            &hub.api_addr(),
            method,
            path,
            &[("Authorization", auth.as_str())],
            body,
        )
    };
    let listed = call("GET", "/v1/buckets/photos/objects?prefix=2026/", None)?;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(listed.body.contains("\"2026/summer/\""), "{}", listed.body);
    for (method, path, status, message) in [
        (
            "GET",
            "/v1/buckets/nope/objects",
            404,
            "no bucket named `nope`",
        ),
        (
            "GET",
            "/v1/buckets/photos/objects/2026/none",
            404,
            "no object `2026/none`",
        ),
        (
            "DELETE",
            "/v1/buckets/photos/objects/none",
            404,
            "no object `none`",
        ),
        (
            "PUT",
            "/v1/buckets/nope/objects/a",
            404,
            "no bucket named `nope`",
        ),
    ] {
        let got = call(method, path, Some("x"))?;
        assert_eq!(got.status, status, "{method} {path}: {}", got.body);
        assert!(got.body.contains(message), "{method} {path}: {}", got.body);
    }
    // The same objects through the CLI: a folder's listing, an upload
    // (20 MiB, so its progress shows) read back identical, a delete.
    let folder = hub.cli_json(&["object", "ls", "photos/2026/"])?;
    assert!(
        folder["folders"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "2026/summer/")),
        "{folder:#}"
    );
    let big = cloud.dir.path().join("big.bin");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..20 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&big, &bytes)?;
    let big_arg = big.display().to_string();
    let put = hub.cli_json(&["object", "put", "photos/cli/", &big_arg])?;
    assert_eq!(put["key"], "cli/big.bin", "{put:#}");
    assert_eq!(put["size"], 20 << 20, "{put:#}");
    let back = cloud.dir.path().join("back.bin");
    let back_arg = back.display().to_string();
    hub.cli_json(&["object", "get", "photos/cli/big.bin", &back_arg])?;
    assert!(std::fs::read(&back)? == bytes, "the download differs");
    hub.cli_json(&["object", "rm", "photos/cli/big.bin"])?;
    let gone = hub.cli(&["object", "get", "photos/cli/big.bin", &back_arg])?;
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("no object `cli/big.bin`"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    // Another peer's history comes over the mesh, to the CLI too.
    let history = hub.cli_json(&["history", "--peer", "p1", "--last", "1h"])?;
    assert_eq!(history["peer"], cloud.peers[1].id().as_str(), "{history:#}");
    assert!(
        history["samples"].as_array().is_some_and(|s| !s.is_empty()),
        "{history:#}"
    );
    let p1 = call("GET", "/v1/history?peer=p1", None)?;
    assert_eq!(p1.status, 200, "{}", p1.body);
    let p1: Value = serde_json::from_str(&p1.body)?;
    assert_eq!(p1["peer"], cloud.peers[1].id().as_str(), "{p1:#}");
    let anonymous = coop_testkit::http_request(
        &hub.api_addr(),
        "GET",
        "/v1/buckets/photos/objects",
        &[],
        None,
    )?;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    // The events the overview showed, through the CLI.
    let events = hub.cli_json(&["events", "--since", "1h"])?;
    let kinds: Vec<&str> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "joined").count(),
        3,
        "{events:#}"
    );
    assert!(kinds.contains(&"revoked"), "{events:#}");
    let nonsense = hub.cli(&["events", "--since", "5 parsecs"])?;
    assert!(!nonsense.status.success());
    let config = hub.cli_json(&["config", "get"])?;
    assert_eq!(config["brand.color"], "#7a1fa2", "{config:#}");
    // The CLI names the cloud by its brand too.
    let status = hub.cli(&["status"])?;
    let first = String::from_utf8_lossy(&status.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first.starts_with("<script>window.pwned=1</script> Acme & Co: "),
        "{first}"
    );
    let logo = coop_testkit::http_request(&hub.api_addr(), "GET", "/v1/brand/logo", &[], None)?;
    assert_eq!(
        logo.status, 200,
        "the logo is open to anyone: {}",
        logo.body
    );
    let not_image = hub.cli(&[
        "config",
        "set",
        "brand.logo",
        "photos/2026/summer/readme.txt",
    ])?;
    assert!(!not_image.status.success());
    assert!(
        String::from_utf8_lossy(&not_image.stderr).contains("a logo is one of image/png"),
        "{}",
        String::from_utf8_lossy(&not_image.stderr)
    );
    let refused = hub.cli(&["config", "set", "brand.color", "purple"])?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("#rgb or #rrggbb"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    for page in [
        "overview",
        "peers",
        "storage",
        "templates",
        "containers",
        "container",
        "brand",
    ] {
        let shot = shots.join(format!("{page}.png"));
        assert!(shot.exists(), "no screenshot {}", shot.display());
    }
    Ok(())
}
