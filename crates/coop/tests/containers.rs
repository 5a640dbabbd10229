//! Containers end to end on one real peer: templates imported through the
//! CLI, containers run, reached, exec'd into, logged, OOM-killed, kept
//! alive across an agent restart, and bad archives refused.
//!
//! These tests need root, cgroups, network namespaces, nftables, loop
//! devices, python3 and Debian's `busybox-static`; without them they fail
//! saying what is missing. Each test gives its agent its own bridge, nft
//! table, veth and netns prefixes and cgroup parent, and removes them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use coop_testkit::containers::{
    busybox_rootfs, container_host_flags, remove_container_host_names, require_container_host,
};
use coop_testkit::{Cloud, Peer, PeerOptions, eventually, free_port, http_request};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_coop");

fn require_host() {
    if let Err(err) = require_container_host() {
        panic!("the container tests cannot run here: {err:#}");
    }
}

/// Agents with host names of their own (bridge, nft table, veth and netns
/// prefixes, cgroup parent: one tag each), and the cleanup of them.
struct Lab {
    cloud: Cloud,
    tags: Vec<u8>,
    rootfs: PathBuf,
}

impl Lab {
    fn new(tag: u8) -> Result<Lab> {
        require_host();
        let mut cloud = Cloud::new(BIN, &format!("containers{tag}"))?;
        let rootfs = cloud.dir.path().join("rootfs");
        busybox_rootfs(&rootfs)?;
        cloud.found(
            "box",
            PeerOptions {
                extra_args: container_host_flags(tag),
                ..PeerOptions::default()
            },
        )?;
        Ok(Lab {
            cloud,
            tags: vec![tag],
            rootfs,
        })
    }

    /// Joins another agent, with host names of `tag` and `extra` flags.
    fn join(&mut self, name: &str, tag: u8, extra: &[&str]) -> Result<()> {
        let mut args = container_host_flags(tag);
        args.extend(extra.iter().map(|a| a.to_string()));
        self.tags.push(tag);
        self.cloud.join(
            name,
            PeerOptions {
                extra_args: args,
                ..PeerOptions::default()
            },
        )?;
        Ok(())
    }

    fn peer(&self) -> &Peer {
        &self.cloud.peers[0]
    }

    /// Waits until the first peer sees `n` peers up (each has sent the
    /// status that says what it lends).
    fn wait_peers_up(&self, n: usize) -> Result<()> {
        eventually(Duration::from_secs(20), "peers up", || {
            let list = self.peer().cli_json(&["peers"])?;
            let up = list
                .as_array()
                .map(|a| a.iter().filter(|p| p["state"] == "up").count())
                .unwrap_or(0);
            Ok((up == n).then_some(()))
        })
    }

    fn peer_mut(&mut self) -> &mut Peer {
        &mut self.cloud.peers[0]
    }

    /// Runs the CLI; Ok(stdout) on success, Err(stderr) otherwise.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = self.peer().cli(args).map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn show(&self, name: &str) -> Result<Value> {
        self.peer().cli_json(&["container", "show", name])
    }

    fn import_busybox(&self) -> Result<()> {
        let rootfs = self.rootfs.display().to_string();
        self.peer()
            .cli_json(&["template", "import", "busybox", &rootfs])?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.peer().is_running()
            && let Ok(list) = self.peer().cli_json(&["container", "ls", "--all"])
        {
            for c in list.as_array().cloned().unwrap_or_default() {
                if let Some(name) = c["name"].as_str() {
                    let _ = self.peer().cli(&["container", "rm", "-f", name]);
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

fn state_of(lab: &Lab, name: &str) -> Result<String> {
    Ok(lab.show(name)?["state"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[test]
fn httpd_exec_logs_limits_and_errors() -> Result<()> {
    let lab = Lab::new(1)?;
    lab.import_busybox()?;
    let listed = lab.peer().cli_json(&["template", "ls"])?;
    assert_eq!(listed[0]["name"], "busybox", "{listed}");
    assert_eq!(listed[0]["verified"], true, "{listed}");

    // A web server with a published port, fetched over plain TCP.
    let port = free_port()?;
    let publish = format!("{port}:8080");
    let out = lab.cli(&[
        "container",
        "run",
        "-d",
        "--name",
        "web",
        "--size",
        "tiny",
        "--disk",
        "64M",
        "-p",
        &publish,
        "busybox",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    assert_eq!(out.as_deref().map(str::trim), Ok("web"), "{out:?}");
    let page = eventually(Duration::from_secs(20), "the page", || {
        Ok(
            http_request(&format!("127.0.0.1:{port}"), "GET", "/", &[], None)
                .ok()
                .filter(|r| r.status == 200),
        )
    })?;
    assert!(page.body.contains("hello from coop"), "{}", page.body);
    let ls = lab.peer().cli_json(&["container", "ls"])?;
    assert_eq!(ls[0]["name"], "web", "{ls}");
    assert_eq!(ls[0]["state"], "running", "{ls}");
    assert_eq!(ls[0]["ports"][0], format!("{port}:8080/tcp"), "{ls}");

    // The same host port again: refused, and nothing is left of the attempt.
    let err = lab
        .cli(&[
            "container",
            "run",
            "-d",
            "--name",
            "web2",
            "-p",
            &publish,
            "busybox",
            "--",
            "sleep",
            "100",
        ])
        .expect_err("a busy port must be refused");
    assert!(err.contains("in use"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(lab.show("web2").is_err());
    let err = lab
        .cli(&["container", "run", "-d", "nothing-here"])
        .expect_err("an unknown template must be refused");
    assert!(err.contains("no template"), "{err}");
    let err = lab
        .cli(&["container", "run", "-d", "--size", "gigantic", "busybox"])
        .expect_err("a bad size must be refused");
    assert!(err.contains("gigantic"), "{err}");

    // exec: output and exit code.
    assert_eq!(
        lab.cli(&["container", "exec", "web", "--", "echo", "hi"]),
        Ok("hi\n".into())
    );
    // Root in the container is host uid 2^30 in a user namespace.
    let map = lab
        .cli(&[
            "container",
            "exec",
            "web",
            "--",
            "cat",
            "/proc/self/uid_map",
        ])
        .expect("exec cat");
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "1073741824", "65536"],
        "{map}"
    );
    let out = lab.peer().cli(&[
        "container",
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ])?;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");

    // exec -it through a pty: a shell that answers and exits with a code.
    let out = exec_it(lab.peer(), "web")?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("42"),
        "pty output: {text}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(5), "pty output: {text}");

    // logs -f streams lines while the container still runs.
    lab.cli(&[
        "container",
        "run",
        "-d",
        "--name",
        "ticker",
        "--size",
        "tiny",
        "--disk",
        "64M",
        "busybox",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo tick$i; sleep 1; done",
    ])
    .map_err(anyhow::Error::msg)?;
    let mut follow = Command::new(BIN)
        .args(["--data-dir", &lab.peer().data_dir.display().to_string()])
        .args(["container", "logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(follow.stdout.take().context("no stdout")?).lines();
    let first = lines.next().context("no log line")??;
    assert_eq!(first, "tick1");
    assert_eq!(
        state_of(&lab, "ticker")?,
        "running",
        "the first line must arrive while it runs"
    );
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    assert_eq!(rest, ["tick2", "tick3", "tick4", "tick5"]);
    assert!(follow.wait()?.success());

    // stats and metrics of the web server.
    let stats = lab.peer().cli_json(&["container", "stats", "web"])?;
    assert!(stats["memory_bytes"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert!(stats["pids"].as_u64().unwrap_or(0) >= 1, "{stats}");
    let metrics = http_request(&lab.peer().api_addr(), "GET", "/metrics", &[], None)?;
    assert!(
        metrics
            .body
            .contains("coop_container_memory_bytes{container=\"web\"}"),
        "{}",
        metrics.body
    );

    // A memory hog under --memory 64M is OOM-killed, and show says so.
    lab.cli(&[
        "container",
        "run",
        "-d",
        "--name",
        "hog",
        "--memory",
        "64M",
        "--disk",
        "64M",
        "busybox",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero bs=1M count=300 | tail > /dev/null",
    ])
    .map_err(anyhow::Error::msg)?;
    let hog = eventually(Duration::from_secs(60), "the hog to be OOM-killed", || {
        let view = lab.show("hog")?;
        Ok((view["state"] == "exited").then_some(view))
    })?;
    assert_eq!(hog["oom_killed"], true, "{hog}");
    let human = lab
        .cli(&["container", "show", "hog"])
        .map_err(anyhow::Error::msg)?;
    assert!(human.contains("OOM-killed"), "{human}");

    // stop, start, rm.
    lab.cli(&["container", "stop", "web"])
        .map_err(anyhow::Error::msg)?;
    assert_eq!(state_of(&lab, "web")?, "exited");
    let err = lab.cli(&["template", "rm", "busybox"]).expect_err("in use");
    assert!(err.contains("used by container"), "{err}");
    lab.cli(&["container", "start", "web"])
        .map_err(anyhow::Error::msg)?;
    assert_eq!(state_of(&lab, "web")?, "running");
    let err = lab.cli(&["container", "rm", "web"]).expect_err("running");
    assert!(err.contains("-f"), "{err}");
    lab.cli(&["container", "rm", "-f", "web"])
        .map_err(anyhow::Error::msg)?;
    assert!(lab.show("web").is_err());
    Ok(())
}

#[test]
fn restart_always_survives_an_agent_restart() -> Result<()> {
    let mut lab = Lab::new(2)?;
    lab.import_busybox()?;
    lab.cli(&[
        "container",
        "run",
        "-d",
        "--name",
        "keeper",
        "--restart",
        "always",
        "--size",
        "tiny",
        "--disk",
        "64M",
        "busybox",
        "--",
        "sleep",
        "1000",
    ])
    .map_err(anyhow::Error::msg)?;
    let pid = lab.show("keeper")?["pid"].as_i64().context("no pid")?;

    // The agent goes away; meanwhile the container dies.
    lab.peer_mut().stop()?;
    // SAFETY: kill(2) on the container's init, which this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    lab.peer_mut().start(None)?;
    let again = eventually(Duration::from_secs(30), "keeper to run again", || {
        let view = lab.show("keeper")?;
        Ok((view["state"] == "running" && view["pid"].as_i64() != Some(pid)).then_some(view))
    })?;
    assert_eq!(again["restart"], "always");

    // A crash while the agent runs: restarted too.
    let pid = again["pid"].as_i64().context("no pid")?;
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    eventually(Duration::from_secs(30), "keeper to restart", || {
        let view = lab.show("keeper")?;
        Ok((view["state"] == "running" && view["pid"].as_i64() != Some(pid)).then_some(()))
    })?;
    // The cloud's events say so, and why.
    let events = lab.peer().cli_json(&["events"])?;
    let restarted = events
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "restarted" && e["subject"] == "keeper")
        .with_context(|| format!("no restart among the events: {events}"))?;
    let message = restarted["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("signal 9") && message.contains("always"),
        "{message}"
    );
    // Stopped on purpose: stays stopped.
    lab.cli(&["container", "stop", "keeper"])
        .map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(state_of(&lab, "keeper")?, "exited");
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Writes a docker-save archive of `rootfs` (one layer) to `out`.
fn docker_save(rootfs: &Path, out: &Path) -> Result<()> {
    let script = r#"
import hashlib, io, json, os, sys, tarfile
rootfs, out = sys.argv[1], sys.argv[2]
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as t:
    for name in sorted(os.listdir(rootfs)):
        t.add(os.path.join(rootfs, name), arcname=name)
layer = layer.getvalue()
diff = "sha256:" + hashlib.sha256(layer).hexdigest()
config = json.dumps({"architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
    "os": "linux", "config": {"Entrypoint": ["/bin/sh"], "Env": ["PATH=/bin"]},
    "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
config_name = hashlib.sha256(config).hexdigest() + ".json"
manifest = json.dumps([{"Config": config_name, "RepoTags": ["busybox:1"], "Layers": ["l1/layer.tar"]}]).encode()
with tarfile.open(out, "w") as t:
    for name, data in [("l1/layer.tar", layer), (config_name, config), ("manifest.json", manifest)]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(rootfs)
        .arg(out)
        .status()?;
    if !status.success() {
        bail!("building the OCI archive failed");
    }
    Ok(())
}

#[test]
fn tar_slip_is_refused_and_oci_archives_run() -> Result<()> {
    let lab = Lab::new(3)?;
    let work = lab.cloud.dir.path();

    let evil = work.join("evil.tar");
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import io, sys, tarfile\nwith tarfile.open(sys.argv[1], 'w') as t:\n    i = tarfile.TarInfo('../escaped'); i.size = 3; t.addfile(i, io.BytesIO(b'bad'))\n",
        )
        .arg(&evil)
        .status()?;
    assert!(status.success());
    let err = lab
        .cli(&["template", "import", "evil", &evil.display().to_string()])
        .expect_err("a tar-slip archive must be refused");
    assert!(err.contains("..") && err.contains("HTTP 400"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(lab.cli(&["template", "show", "evil"]).is_err());

    let archive = work.join("busybox-oci.tar");
    docker_save(&lab.rootfs, &archive)?;
    lab.peer().cli_json(&[
        "template",
        "import-oci",
        "bb-oci",
        &archive.display().to_string(),
    ])?;
    let out = lab.peer().cli(&[
        "container",
        "run",
        "--name",
        "once",
        "--disk",
        "64M",
        "bb-oci",
        "--",
        "sh",
        "-c",
        "echo oci-ok; exit 7",
    ])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "oci-ok\n");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `run --peer`: the template travels through the cloud's store, the
/// container runs on the other peer and is driven from the first one, and
/// a peer refuses what does not fit in what it offers.
#[test]
fn containers_run_on_another_peer_within_its_capacity() -> Result<()> {
    let mut lab = Lab::new(4)?;
    lab.join(
        "far",
        104,
        &["--capacity-cpus", "1", "--capacity-memory", "200M"],
    )?;
    lab.import_busybox()?;
    let far = &lab.cloud.peers[1];
    let far_id = far.id();
    let blobs = far.data_dir.join("templates/blobs");
    let cached = |dir: &Path| -> usize { walk_files(dir).len() };
    assert_eq!(cached(&blobs), 0, "the joining peer has no template yet");

    // Started from the first peer's API, running on `far`.
    let port = free_port()?;
    let publish = format!("{port}:8080");
    let view = run_json(
        lab.peer(),
        &[
            "-d", "--peer", "far", "--name", "web", "--memory", "64M", "--disk", "64M", "-p",
            &publish, "busybox", "--", "httpd", "-f", "-p", "8080", "-h", "/www",
        ],
    )?;
    assert_eq!(view["peer"], far_id.as_str(), "{view}");
    assert_eq!(view["state"], "running", "{view}");
    assert_eq!(cached(&blobs), 1, "far fetched the blob from the store");
    let page = eventually(Duration::from_secs(20), "the page on far", || {
        Ok(
            http_request(&format!("127.0.0.1:{port}"), "GET", "/", &[], None)
                .ok()
                .filter(|r| r.status == 200),
        )
    })?;
    assert!(page.body.contains("hello from coop"), "{}", page.body);

    // Both peers see it running; stats come from far through the first.
    for peer in &lab.cloud.peers {
        let ls = peer.cli_json(&["container", "ls"])?;
        assert_eq!(ls[0]["name"], "web", "{ls}");
        assert_eq!(ls[0]["state"], "running", "{ls}");
        assert_eq!(ls[0]["peer"], far_id.as_str(), "{ls}");
    }
    let stats = lab.peer().cli_json(&["container", "stats", "web"])?;
    assert!(stats["pids"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert_eq!(stats["memory_limit_bytes"], 64u64 << 20, "{stats}");

    // Output of a container on far, followed from the first peer until it exits.
    let out = lab.peer().cli(&[
        "container",
        "run",
        "--peer",
        "far",
        "--name",
        "hello",
        "--memory",
        "32M",
        "--disk",
        "64M",
        "busybox",
        "--",
        "sh",
        "-c",
        "echo remote-hello; sleep 1; echo remote-bye; exit 3",
    ])?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "remote-hello\nremote-bye\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3));

    // far offers 200M. `web` holds 64M; `hello` finished for good and
    // holds nothing; so 160M more does not fit.
    let err = lab
        .cli(&[
            "container",
            "run",
            "-d",
            "--peer",
            "far",
            "--name",
            "big",
            "--memory",
            "160M",
            "--disk",
            "64M",
            "busybox",
            "--",
            "sleep",
            "100",
        ])
        .expect_err("a lease beyond far's capacity must be refused");
    assert!(err.contains("lacks capacity"), "{err}");
    assert!(
        err.contains("160 MiB memory asked, 136 MiB of 200 MiB free"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        lab.show("big").is_err(),
        "nothing is left of a refused lease"
    );
    let far_compute = lab.cloud.peers[1].api_get("/v1/compute")?;
    assert_eq!(far_compute["available"], true, "{far_compute}");
    assert_eq!(
        far_compute["capacity_memory_bytes"],
        200u64 << 20,
        "{far_compute}"
    );
    assert_eq!(far_compute["capacity_cpus_milli"], 1000, "{far_compute}");
    assert_eq!(
        far_compute["held_memory_bytes"],
        64u64 << 20,
        "{far_compute}"
    );
    assert_eq!(far_compute["containers"], 2, "{far_compute}");
    // The same container fits on the first peer.
    let here = run_json(
        lab.peer(),
        &[
            "-d", "--name", "big", "--memory", "160M", "--disk", "64M", "busybox", "--", "sleep",
            "100",
        ],
    )?;
    assert_eq!(here["peer"], lab.peer().id().as_str(), "{here}");

    // Stop, start and remove `web` from the first peer.
    let stopped = lab.peer().cli_json(&["container", "stop", "web"])?;
    assert_eq!(stopped["desired"], "stopped", "{stopped}");
    assert_ne!(stopped["state"], "running", "{stopped}");
    let started = lab.peer().cli_json(&["container", "start", "web"])?;
    assert_eq!(started["state"], "running", "{started}");
    // exec into far's container through the first peer: output, exit
    // code, a pty, and far's refusal passed on when it is not running.
    let out = lab.peer().cli(&[
        "container",
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo remote-exec; echo to-stderr >&2; exit 4",
    ])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "remote-exec\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    assert_eq!(out.status.code(), Some(4));
    let out = exec_it(lab.peer(), "web")?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("42"), "pty output: {text}");
    assert_eq!(out.status.code(), Some(5), "pty output: {text}");
    lab.peer().cli_json(&["container", "stop", "web"])?;
    let err = lab
        .cli(&["container", "exec", "web", "--", "true"])
        .expect_err("exec into a stopped container must be refused");
    assert!(err.contains("not running"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    lab.peer().cli_json(&["container", "start", "web"])?;
    lab.peer().cli_json(&["container", "rm", "-f", "web"])?;
    assert!(
        lab.cloud.peers[1]
            .cli_json(&["container", "show", "web"])
            .is_err()
    );
    let far_runtime = lab.cloud.peers[1].data_dir.join("containers/web");
    assert!(!far_runtime.exists(), "far's runtime removed web");
    Ok(())
}

/// Every file under `dir`, recursively.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk_files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// `coop --json container run ARGS` (the flag goes first: after `--`, it
/// would be part of the container's command).
fn run_json(peer: &Peer, args: &[&str]) -> Result<Value> {
    let mut full = vec!["--json", "container", "run"];
    full.extend_from_slice(args);
    let out = peer.cli(&full)?;
    if !out.status.success() {
        bail!(
            "coop container run failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("CLI output is not JSON")
}

/// `coop container exec -it NAME -- sh` through `peer`'s CLI, driven in a
/// pty by python: waits for the prompt, asks for 6*7, exits with 5.
fn exec_it(peer: &Peer, name: &str) -> Result<std::process::Output> {
    let script = format!(
        r##"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv({bin:?}, [{bin:?}, "--data-dir", {dir:?}, "container", "exec", "-it", {name:?}, "--", "sh"])
out = b""
def read_until(needle, limit):
    global out
    end = time.time() + limit
    while needle not in out and time.time() < end:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
read_until(b"#", 20)
os.write(fd, b"echo $((6*7))\r")
read_until(b"42", 20)
os.write(fd, b"exit 5\r")
read_until(b"never", 5)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"##,
        bin = BIN,
        name = name,
        dir = peer.data_dir.display().to_string(),
    );
    Ok(Command::new("python3").arg("-c").arg(&script).output()?)
}

/// `coop env plan` through `peer`'s CLI with `blueprint` written to a file
/// in `dir`; the JSON plan, or the CLI's error text.
fn env_plan(
    peer: &Peer,
    dir: &Path,
    blueprint: &str,
    extra: &[&str],
) -> Result<Result<Value, String>> {
    let file = dir.join("shop.yaml");
    std::fs::write(&file, blueprint)?;
    let file = file.display().to_string();
    let mut args = vec!["--json", "env", "plan", "-f", &file];
    args.extend_from_slice(extra);
    let out = peer.cli(&args)?;
    if !out.status.success() {
        return Ok(Err(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(Ok(
        serde_json::from_slice(&out.stdout).context("plan is not JSON")?
    ))
}

#[test]
fn blueprints_are_planned_over_the_cloud() -> Result<()> {
    let mut lab = Lab::new(5)?;
    lab.join("east", 105, &["--zone", "east", "--label", "disk=ssd"])?;
    lab.join("west", 115, &["--zone", "west"])?;
    lab.import_busybox()?;
    let dir = lab.cloud.dir.path().join("blueprints");
    std::fs::create_dir_all(&dir)?;
    let peers: Vec<String> = lab.cloud.peers.iter().map(|p| p.id()).collect();
    // Every peer must have said what it lends before placement is fair.
    lab.wait_peers_up(3)?;

    let blueprint = r#"
name: shop
x-coop:
  variables:
    WEB_PORT:
      description: the port the shop answers on
      type: int
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports: ["${WEB_PORT}:80"]
    deploy:
      replicas: ${WEB_REPLICAS:-3}
  api:
    image: busybox
    command: sleep 3600
    deploy:
      replicas: 2
      placement:
        constraints: ["node.labels.disk==ssd"]
"#;
    // A declared variable without a value, and no terminal to ask.
    let missing =
        env_plan(lab.peer(), &dir, blueprint, &[])?.expect_err("planned without WEB_PORT");
    assert!(
        missing.contains("WEB_PORT (integer): the port the shop answers on"),
        "{missing}"
    );

    // Three web replicas, one per zone; both api replicas on the ssd peer.
    let port = free_port()?.to_string();
    let var = format!("WEB_PORT={port}");
    let plan =
        env_plan(lab.peer(), &dir, blueprint, &["--var", &var])?.map_err(anyhow::Error::msg)?;
    assert_eq!(plan["name"], "shop", "{plan:#}");
    let replicas = plan["replicas"].as_array().cloned().unwrap_or_default();
    assert_eq!(replicas.len(), 5, "{plan:#}");
    let on = |service: &str| -> Vec<String> {
        replicas
            .iter()
            .filter(|r| r["service"] == service)
            .map(|r| r["peer"].as_str().unwrap_or("none").to_string())
            .collect()
    };
    let mut web = on("web");
    web.sort();
    let mut all = peers.clone();
    all.sort();
    assert_eq!(web, all, "one web replica per zone: {plan:#}");
    assert_eq!(
        on("api"),
        vec![peers[1].clone(); 2],
        "api on the ssd peer: {plan:#}"
    );
    assert_eq!(replicas[0]["name"], "shop-api-0", "{plan:#}");

    // A fourth web replica: each peer already publishes the port.
    let more = "WEB_REPLICAS=4".to_string();
    let plan = env_plan(
        lab.peer(),
        &dir,
        blueprint,
        &["--var", &var, "--var", &more],
    )?
    .map_err(anyhow::Error::msg)?;
    let stuck: Vec<&Value> = plan["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["peer"].is_null())
        .collect();
    assert_eq!(stuck.len(), 1, "{plan:#}");
    assert_eq!(stuck[0]["reason"], "3 peers: port taken", "{plan:#}");

    // Errors come all at once, each with its line; nothing is planned.
    let broken = "services:\n  web:\n    image: busybox\n    build: .\n  api:\n    image: busybox\n    depends_on: [nope]\n";
    let errors = env_plan(lab.peer(), &dir, broken, &[])?.expect_err("a broken blueprint planned");
    assert!(errors.contains("services.web.build"), "{errors}");
    assert!(errors.contains("(line 4)"), "{errors}");
    assert!(errors.contains("nope"), "{errors}");
    // A template the cloud does not have.
    let unknown = "services:\n  web:\n    image: nginx\n";
    let errors = env_plan(lab.peer(), &dir, unknown, &[])?.expect_err("planned a missing template");
    assert!(errors.contains("no template `nginx`"), "{errors}");

    // Up: dependencies first, web spread over the three peers and serving.
    let running = r#"
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    restart: always
    depends_on: [api]
    deploy:
      replicas: 3
  api:
    image: busybox
    command: sleep 3600
    restart: always
    deploy:
      replicas: 2
  edge:
    image: busybox
    command: sleep 3600
    restart: always
    ports: ["${EDGE_PORT}:80"]
    deploy:
      replicas: 0
"#;
    let file = dir.join("shop.yaml");
    let edge = format!("EDGE_PORT={}", free_port()?);
    std::fs::write(&file, running)?;
    let file = file.display().to_string();
    let env = lab
        .peer()
        .cli_json(&["env", "up", "-f", &file, "--name", "shop", "--var", &edge])?;
    let services = env["services"].as_array().cloned().unwrap_or_default();
    for service in &services {
        assert_eq!(service["running"], service["desired"], "{env:#}");
    }
    let replicas = env["replicas"].as_array().cloned().unwrap_or_default();
    assert_eq!(replicas.len(), 5, "{env:#}");
    let mut web_peers: Vec<String> = replicas
        .iter()
        .filter(|r| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("shop-web-"))
        })
        .map(|r| r["peer"].as_str().unwrap_or_default().to_string())
        .collect();
    web_peers.sort();
    assert_eq!(web_peers, all, "web spread over the peers: {env:#}");
    for replica in replicas.iter().filter(|r| {
        r["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("shop-web-"))
    }) {
        let address = replica["address"].as_str().unwrap_or_default();
        let page = eventually(Duration::from_secs(20), "a web replica's page", || {
            Ok(
                http_request(&format!("{address}:80"), "GET", "/", &[], None)
                    .ok()
                    .filter(|r| r.status == 200),
            )
        })?;
        assert!(page.body.contains("hello from coop"), "{}", page.body);
    }
    let events = env["events"].as_array().cloned().unwrap_or_default();
    let first_web = events.iter().position(|e| e["service"] == "web");
    let last_api = events.iter().rposition(|e| e["service"] == "api");
    assert!(last_api < first_web, "api started before web: {env:#}");
    let listed = lab.peer().cli_json(&["env", "ls"])?;
    assert_eq!(listed[0]["name"], "shop", "{listed:#}");
    // The same blueprint again changes nothing.
    let again = lab
        .peer()
        .cli_json(&["env", "up", "-f", &file, "--name", "shop", "--var", &edge])?;
    assert_eq!(again["generation"], env["generation"], "{again:#}");
    assert_eq!(
        again["events"]
            .as_array()
            .and_then(|e| e.last())
            .map(|e| e["kind"].clone()),
        Some(Value::from("unchanged")),
        "{again:#}"
    );

    // Scale web up to five, then down to one: the highest indexes go.
    let running_web = |env: &Value| -> Vec<String> {
        let mut names: Vec<String> = env["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["state"] == "running")
            .filter_map(|r| r["name"].as_str().map(String::from))
            .filter(|n| n.starts_with("shop-web-"))
            .collect();
        names.sort();
        names
    };
    let up5 = lab.peer().cli_json(&["env", "scale", "shop", "web=5"])?;
    assert_eq!(running_web(&up5).len(), 5, "{up5:#}");
    let down1 = lab.peer().cli_json(&["env", "scale", "shop", "web=1"])?;
    assert_eq!(
        running_web(&down1),
        vec!["shop-web-0".to_string()],
        "{down1:#}"
    );
    // Four edge replicas publish one port on three peers: the fourth is
    // pending, and says why, peer by peer.
    let edge4 = lab.peer().cli_json(&["env", "scale", "shop", "edge=4"])?;
    let pending = edge4["pending"].as_array().cloned().unwrap_or_default();
    assert_eq!(pending.len(), 1, "{edge4:#}");
    assert_eq!(pending[0]["name"], "shop-edge-3", "{edge4:#}");
    assert_eq!(pending[0]["reason"], "3 peers: port taken", "{edge4:#}");
    let refusals = pending[0]["refusals"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(refusals.len(), 3, "{edge4:#}");
    let shown = lab
        .cli(&["env", "show", "shop"])
        .map_err(anyhow::Error::msg)?;
    assert!(
        shown.contains("shop-edge-3 fits nowhere: 3 peers: port taken"),
        "{shown}"
    );
    eventually(Duration::from_secs(20), "the refusal noted", || {
        let env = lab.peer().cli_json(&["env", "show", "shop"])?;
        let noted = events_of(&env)
            .iter()
            .any(|(k, a)| k == "refused" && a == "shop-edge-3");
        Ok(noted.then_some(()))
    })?;
    lab.peer().cli_json(&["env", "scale", "shop", "edge=0"])?;
    let bad = lab.peer().cli(&["env", "scale", "shop", "nope=2"])?;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("has no service `nope`"));

    // Down removes every replica and the environment.
    lab.peer().cli_json(&["env", "down", "shop", "-t", "1"])?;
    let left = lab.peer().cli_json(&["container", "ls", "--all"])?;
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left:#}");
    let gone = lab.peer().cli(&["env", "show", "shop"])?;
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no environment `shop`"));

    // A blueprint the cloud cannot hold creates nothing.
    let huge = "services:\n  big:\n    image: busybox\n    x-coop:\n      size: huge\n    deploy:\n      replicas: 500\n";
    std::fs::write(dir.join("big.yaml"), huge)?;
    let big = dir.join("big.yaml").display().to_string();
    let out = lab.peer().cli(&["env", "up", "-f", &big])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fits nowhere") && stderr.contains("nothing was created"),
        "{stderr}"
    );
    let listed = lab.peer().cli_json(&["env", "ls"])?;
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed:#}");
    // Nor does one no peer qualifies for, or one missing a required value.
    let picky = "services:\n  db:\n    image: busybox\n    deploy:\n      placement:\n        constraints: [\"node.labels.disk==nvme\"]\n";
    std::fs::write(dir.join("picky.yaml"), picky)?;
    let picky = dir.join("picky.yaml").display().to_string();
    let out = lab.peer().cli(&["env", "up", "-f", &picky])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fits nowhere") && stderr.contains("disk"),
        "{stderr}"
    );
    let strict = "services:\n  db:\n    image: busybox\n    environment:\n      KEY: ${DB_KEY:?set DB_KEY to the database key}\n";
    std::fs::write(dir.join("strict.yaml"), strict)?;
    let strict = dir.join("strict.yaml").display().to_string();
    let out = lab.peer().cli(&["env", "up", "-f", &strict])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("set DB_KEY to the database key"),
        "{stderr}"
    );
    assert!(stderr.contains("line 5"), "{stderr}");
    let listed = lab.peer().cli_json(&["env", "ls"])?;
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed:#}");
    Ok(())
}

#[test]
fn replicas_of_a_killed_peer_come_back_elsewhere_and_never_run_twice() -> Result<()> {
    let mut lab = Lab::new(6)?;
    lab.join("east", 106, &["--zone", "east"])?;
    lab.join("west", 116, &["--zone", "west"])?;
    lab.import_busybox()?;
    lab.wait_peers_up(3)?;
    let blueprint = "services:\n  web:\n    image: busybox\n    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n    restart: always\n    healthcheck:\n      test: [\"CMD-SHELL\", \"wget -q -O /dev/null http://127.0.0.1/\"]\n      interval: 2s\n    deploy:\n      replicas: 3\n";
    let file = lab.cloud.dir.path().join("heal.yaml");
    std::fs::write(&file, blueprint)?;
    let file = file.display().to_string();
    let env = lab
        .peer()
        .cli_json(&["env", "up", "-f", &file, "--name", "heal"])?;
    let west = lab.cloud.peers[2].id();
    let on_west: Vec<String> = env["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["peer"] == west.as_str())
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    assert_eq!(on_west.len(), 1, "one replica per zone: {env:#}");
    // Each replica is on the environment's own network, at an address of its own.
    let address_of = |env: &Value, name: &str| -> Option<String> {
        let replica = env["replicas"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == name)?;
        let joined = replica["networks"].as_array()?.first()?;
        (joined["network"] == "heal").then(|| joined["address"].as_str().map(String::from))?
    };
    let mut addresses: Vec<String> = (0..3)
        .filter_map(|i| address_of(&env, &format!("heal-web-{i}")))
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 3, "{env:#}");
    let before = address_of(&env, &on_west[0]);

    // A power cut on west: its replica comes back on another peer, healthy.
    lab.cloud.peers[2].kill();
    let killed = Instant::now();
    let moved = eventually(
        Duration::from_secs(60),
        "the replica healthy elsewhere",
        || {
            let env = lab.peer().cli_json(&["env", "show", "heal"])?;
            let back = env["replicas"].as_array().into_iter().flatten().any(|r| {
                r["name"] == on_west[0].as_str()
                    && r["peer"] != west.as_str()
                    && r["health"] == "healthy"
            });
            Ok(back.then_some(env))
        },
    )?;
    eprintln!(
        "kill -9 of a peer -> its replica healthy on another peer: {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    let events = moved["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events.iter().any(|e| e["kind"] == "moved"),
        "the events say it moved: {moved:#}"
    );
    assert_eq!(moved["services"][0]["running"], 3, "{moved:#}");
    assert_eq!(
        address_of(&moved, &on_west[0]),
        before,
        "the address moves with it"
    );

    // West comes back: its old copy is removed, the replica runs once.
    lab.cloud.peers[2].start(None)?;
    eventually(Duration::from_secs(60), "west's stale copy removed", || {
        Ok(lab.cloud.peers[2]
            .log_tail()
            .contains("removed a replica that now runs on another peer")
            .then_some(()))
    })?;
    let env = lab.peer().cli_json(&["env", "show", "heal"])?;
    let copies = env["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == on_west[0].as_str())
        .count();
    assert_eq!(copies, 1, "{env:#}");
    lab.peer().cli_json(&["env", "down", "heal", "-t", "1"])?;
    let networks = lab.peer().cli_json(&["network", "ls"])?;
    assert_eq!(networks.as_array().map(Vec::len), Some(0), "{networks:#}");
    Ok(())
}

/// The events of an environment view, as (kind, replica or service).
fn events_of(env: &Value) -> Vec<(String, String)> {
    env["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let about = e["replica"]
                .as_str()
                .or(e["service"].as_str())
                .unwrap_or("")
                .to_string();
            (e["kind"].as_str().unwrap_or("").to_string(), about)
        })
        .collect()
}

/// The replica `name` of an environment view.
fn replica_of<'a>(env: &'a Value, name: &str) -> Option<&'a Value> {
    env["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
}

#[test]
fn environments_wait_for_health_and_update_one_replica_at_a_time() -> Result<()> {
    let mut lab = Lab::new(8)?;
    lab.join("east", 108, &["--zone", "east"])?;
    lab.join("west", 118, &["--zone", "west"])?;
    lab.import_busybox()?;
    lab.wait_peers_up(3)?;
    let dir = lab.cloud.dir.path().join("blueprints");
    std::fs::create_dir_all(&dir)?;
    let version = |api_version: &str, api_check: &str, web_port: &str| {
        format!(
            r#"
name: shop
services:
  init:
    image: busybox
    command: ["sh", "-c", "echo prepared; sleep 1"]
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    restart: always
    depends_on:
      init: {{condition: service_completed_successfully}}
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:{web_port}/ready.txt"]
      interval: 2s
      timeout: 2s
      retries: 1
    x-coop:
      setup:
        - file: /www/ready.txt
          content: "set up"
        - run: ["sh", "-c", "grep -q 'set up' /www/ready.txt"]
          retries: 2
          interval: 1s
    deploy:
      replicas: 3
  api:
    image: busybox
    command: ["sleep", "3600"]
    restart: always
    environment:
      VERSION: "{api_version}"
    depends_on:
      web: {{condition: service_healthy}}
{api_check}    deploy:
      replicas: 2
"#
        )
    };
    let checked = "    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 1s\n";
    let file = dir.join("shop.yaml");
    let path = file.display().to_string();

    // Up waits for init to finish, web to be healthy, then api.
    std::fs::write(&file, version("1", "", "80"))?;
    let began = Instant::now();
    let env = lab.peer().cli_json(&["env", "up", "-f", &path])?;
    eprintln!(
        "env up, every replica ready: {:.1} s",
        began.elapsed().as_secs_f64()
    );
    for service in env["services"].as_array().into_iter().flatten() {
        let expect = if service["name"] == "init" {
            0
        } else {
            service["desired"].as_u64().unwrap_or(9)
        };
        assert_eq!(service["healthy"].as_u64(), Some(expect), "{env:#}");
    }
    let init = replica_of(&env, "shop-init-0").context("no init replica")?;
    assert_eq!(init["state"], "exited", "{env:#}");
    assert_eq!(init["exit_code"], 0, "{env:#}");
    for index in 0..3 {
        let name = format!("shop-web-{index}");
        let web = replica_of(&env, &name).context("a web replica is missing")?;
        assert_eq!(web["health"], "healthy", "{env:#}");
        // Set up first (the check reads the file setup wrote), once.
        assert_eq!(web["setup"], "done", "{env:#}");
        let events = events_of(&env);
        let set_up = events.iter().position(|(k, a)| k == "setup" && *a == name);
        let healthy = events
            .iter()
            .position(|(k, a)| k == "healthy" && *a == name);
        assert!(set_up.is_some() && set_up < healthy, "{events:?}");
    }
    let mut web_peers: Vec<&str> = (0..3)
        .filter_map(|i| replica_of(&env, &format!("shop-web-{i}"))?["peer"].as_str())
        .collect();
    web_peers.sort();
    web_peers.dedup();
    assert_eq!(web_peers.len(), 3, "web spread over the zones: {env:#}");
    let events = events_of(&env);
    let position =
        |kind: &str, about: &str| events.iter().position(|(k, a)| k == kind && a == about);
    let init_started = position("started", "shop-init-0");
    let web_started = position("started", "shop-web-0");
    let last_web_healthy = (0..3)
        .filter_map(|i| position("healthy", &format!("shop-web-{i}")))
        .max();
    let api_started = position("started", "shop-api-0");
    assert!(
        init_started.is_some() && init_started < web_started,
        "{events:?}"
    );
    assert!(
        last_web_healthy.is_some() && last_web_healthy < api_started,
        "{events:?}"
    );
    let table = lab
        .cli(&["env", "show", "shop"])
        .map_err(anyhow::Error::msg)?;
    assert!(
        table.contains("HEALTH") && table.contains("healthy"),
        "{table}"
    );
    // A run is its host and process: a replacement within the same second
    // has the same start time.
    let started_at = |env: &Value, name: &str| {
        replica_of(env, name)
            .map(|r| (r["peer"].clone(), r["pid"].clone(), r["started_at"].clone()))
    };

    // An update of api replaces only api's replicas, one at a time, each
    // healthy before the next.
    std::fs::write(&file, version("2", checked, "80"))?;
    let updated = lab.peer().cli_json(&["env", "up", "-f", &path])?;
    for index in 0..3 {
        let name = format!("shop-web-{index}");
        assert_eq!(
            started_at(&updated, &name),
            started_at(&env, &name),
            "{name} untouched"
        );
    }
    for index in 0..2 {
        let name = format!("shop-api-{index}");
        assert_ne!(
            started_at(&updated, &name),
            started_at(&env, &name),
            "{name} replaced"
        );
        assert_eq!(
            replica_of(&updated, &name).map(|r| r["health"].clone()),
            Some(Value::from("healthy"))
        );
    }
    let seen = lab
        .cli(&[
            "container",
            "exec",
            "shop-api-1",
            "--",
            "sh",
            "-c",
            "echo v$VERSION",
        ])
        .map_err(anyhow::Error::msg)?;
    assert_eq!(seen.trim(), "v2");
    let events = events_of(&updated);
    let order: Vec<&(String, String)> = events
        .iter()
        .filter(|(k, a)| (k == "started" || k == "healthy") && a.starts_with("shop-api-"))
        .collect();
    let tail: Vec<(&str, &str)> = order
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|(k, a)| (k.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        tail,
        vec![
            ("started", "shop-api-0"),
            ("healthy", "shop-api-0"),
            ("started", "shop-api-1"),
            ("healthy", "shop-api-1"),
        ],
        "{events:?}"
    );
    assert!(
        updated["can_roll_back"].as_bool().unwrap_or(false),
        "{updated:#}"
    );

    // A broken update stops at its first replica and says why.
    std::fs::write(&file, version("2", checked, "81"))?;
    let out = lab.peer().cli(&["env", "up", "-f", &path])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("shop-web-0") && stderr.contains("unhealthy"),
        "{stderr}"
    );
    assert!(stderr.contains("--rollback"), "{stderr}");
    let broken = lab.peer().cli_json(&["env", "show", "shop"])?;
    for index in 1..3 {
        let name = format!("shop-web-{index}");
        assert_eq!(
            started_at(&broken, &name),
            started_at(&env, &name),
            "{name} untouched"
        );
    }

    // Its host restarts the unhealthy replica, then asks for it to move.
    let last = std::cell::RefCell::new(Value::Null);
    let moved = eventually(
        Duration::from_secs(90),
        "the unhealthy replica moved",
        || {
            let env = lab.peer().cli_json(&["env", "show", "shop"])?;
            *last.borrow_mut() = env.clone();
            let events = events_of(&env);
            let restarted = events
                .iter()
                .any(|(k, a)| k == "restarted" && a == "shop-web-0");
            let moved = events
                .iter()
                .any(|(k, a)| k == "moved" && a == "shop-web-0");
            Ok((restarted && moved).then_some(env))
        },
    )
    .with_context(|| format!("{:#}", last.borrow()))?;
    let message = moved["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "moved")
        .map(|e| e["message"].to_string())
        .unwrap_or_default();
    assert!(
        message.contains("unhealthy through 3 restarts"),
        "{message}"
    );

    // Rollback returns web to the version that passes its check.
    let back = lab
        .peer()
        .cli_json(&["env", "up", "--rollback", "--name", "shop"])?;
    for index in 0..3 {
        let web =
            replica_of(&back, &format!("shop-web-{index}")).context("a web replica is missing")?;
        assert_eq!(web["health"], "healthy", "{back:#}");
    }
    let no_more = lab
        .peer()
        .cli(&["env", "up", "--rollback", "--name", "nope"])?;
    assert!(String::from_utf8_lossy(&no_more.stderr).contains("no environment `nope`"));
    lab.peer().cli_json(&["env", "down", "shop", "-t", "1"])?;
    Ok(())
}

/// A cloud of container agents in the namespace lab, each `(namespace,
/// address, tag, zone)`: the first founds it and relays for the others
/// (behind their NAT routers). Busybox is imported and every peer is up.
fn namespace_cloud(label: &str, peers: &[(&str, &str, u8, &str)]) -> Result<Cloud> {
    let mut cloud = Cloud::new(BIN, label)?;
    let rootfs = cloud.dir.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    for (i, (ns, ip, tag, zone)) in peers.iter().enumerate() {
        let mut extra = container_host_flags(*tag);
        extra.extend(["--zone".to_string(), zone.to_string()]);
        if i == 0 {
            extra.push("--relay".into());
        }
        let options = PeerOptions {
            extra_args: extra,
            ..PeerOptions::in_netns(ns, ip, &[])
        };
        let name = if i == 0 {
            "hub".to_string()
        } else {
            format!("home-{zone}")
        };
        if i == 0 {
            cloud.found(&name, options)?;
        } else {
            cloud.join(&name, options)?;
        }
    }
    let hub = &cloud.peers[0];
    hub.cli_json(&[
        "template",
        "import",
        "busybox",
        &rootfs.display().to_string(),
    ])?;
    eventually(Duration::from_secs(30), "every peer up", || {
        let list = hub.cli_json(&["peers"])?;
        let up = list
            .as_array()
            .map(|a| a.iter().filter(|p| p["state"] == "up").count());
        Ok((up == Some(peers.len())).then_some(()))
    })?;
    Ok(cloud)
}

/// Removes the host names of container agents when a test ends.
struct HostNames(Vec<u8>);

impl Drop for HostNames {
    fn drop(&mut self) {
        for tag in &self.0 {
            remove_container_host_names(*tag);
        }
    }
}

#[test]
fn a_peer_cut_off_stops_its_replicas_and_nothing_runs_twice_after_the_heal() -> Result<()> {
    use coop_testkit::netns::{HOME_A_IP, HOME_B_IP, Nat, NatLab, PUBLIC_IP};
    require_host();
    if let Some(reason) = coop_testkit::netns::unavailable() {
        panic!("the partition test cannot run here: {reason}");
    }
    let lab = NatLab::with(Nat::PortPreserving, Nat::PortPreserving)?;
    let _names = HostNames(vec![9, 109, 119]);
    let cloud = namespace_cloud(
        "containers9",
        &[
            (&lab.public, PUBLIC_IP, 9, "hub"),
            (&lab.home_a, HOME_A_IP, 109, "a"),
            (&lab.home_b, HOME_B_IP, 119, "b"),
        ],
    )?;
    let hub = &cloud.peers[0];
    let home_b = &cloud.peers[2];
    let b = home_b.id();
    let blueprint = "services:\n  web:\n    image: busybox\n    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n    restart: always\n    deploy:\n      replicas: 3\n";
    let file = cloud.dir.path().join("cut.yaml");
    std::fs::write(&file, blueprint)?;
    let env = hub
        .cli_json(&[
            "env",
            "up",
            "-f",
            &file.display().to_string(),
            "--name",
            "cut",
        ])
        .with_context(|| hub.log_tail())?;
    let on_b = env["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["peer"] == b.as_str())
        .and_then(|r| r["name"].as_str())
        .map(String::from)
        .context("no replica on home-b: they spread over the three zones")?;

    // On the environment's network, the service's name resolves to every
    // replica, wherever it runs.
    let address = |name: &str| -> Result<String> {
        let seen = hub.cli_json(&["container", "show", name])?;
        seen["networks"][0]["address"]
            .as_str()
            .map(String::from)
            .with_context(|| format!("{name} has no address on the network: {seen:#}"))
    };
    let names: Vec<String> = env["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    let addresses = names
        .iter()
        .map(|n| address(n))
        .collect::<Result<Vec<String>>>()?;
    let sh = |on: &str, script: &str| -> Result<String> {
        let out = hub.cli(&["container", "exec", on, "--", "sh", "-c", script])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let asker = names
        .iter()
        .find(|n| **n != on_b)
        .context("a second replica")?;
    eventually(
        Duration::from_secs(30),
        "web resolving to every replica",
        || {
            let out = sh(asker, "nslookup web")?;
            Ok(addresses
                .iter()
                .all(|a| out.contains(a.as_str()))
                .then_some(()))
        },
    )?;
    let b_address = address(&on_b)?;

    // Where home-b's runtime keeps the replica while it exists.
    let state_dir = home_b
        .data_dir
        .join("containers")
        .join("containers")
        .join(&on_b);
    assert!(state_dir.exists(), "{}", state_dir.display());

    // Cut off, home-b stops its replica before the others start it again.
    lab.cut_off_home_b()?;
    let cut = Instant::now();
    let stopped = eventually(Duration::from_secs(30), "home-b fences its replica", || {
        let seen = home_b.cli_json(&["container", "show", &on_b])?;
        Ok((seen["state"] != "running").then_some(seen))
    })?;
    let fenced_after = cut.elapsed();
    let moved = eventually(
        Duration::from_secs(60),
        "the replica running elsewhere",
        || {
            let env = hub.cli_json(&["env", "show", "cut"])?;
            let replica = replica_of(&env, &on_b).cloned();
            Ok(replica.filter(|r| r["peer"] != b.as_str() && r["state"] == "running"))
        },
    )?;
    let moved_after = cut.elapsed();
    let seen_running = Instant::now();
    // Moved, the replica keeps its address, and a replica on another peer
    // reaches it by name within 2 s of it running.
    assert_eq!(address(&on_b)?, b_address, "the address of a moved replica");
    let now = hub.cli_json(&["env", "show", "cut"])?;
    let asker = names
        .iter()
        .find(|n| {
            **n != on_b
                && replica_of(&now, n)
                    .is_some_and(|r| r["peer"] != moved["peer"] && r["peer"] != b.as_str())
        })
        .context("a replica on a third peer")?;
    eventually(
        Duration::from_secs(10),
        "the moved replica reached by name",
        || {
            Ok(sh(asker, &format!("wget -q -O - http://{on_b}/"))?
                .contains("hello from coop")
                .then_some(()))
        },
    )?;
    let reached = seen_running.elapsed();
    eprintln!(
        "moved replica reached by name {:.2} s after it was seen running",
        reached.as_secs_f64()
    );
    assert!(reached <= Duration::from_secs(2), "{reached:?}");
    eprintln!(
        "cut off: replica stopped on the cut-off peer after {:.1} s, running elsewhere after {:.1} s",
        fenced_after.as_secs_f64(),
        moved_after.as_secs_f64()
    );
    assert!(fenced_after < moved_after);
    let finished = stopped["finished_at"].as_u64().context("no finish time")?;
    let started = moved["started_at"].as_u64().context("no start time")?;
    assert!(
        finished <= started,
        "stopped at {finished}, started elsewhere at {started}"
    );

    // Back in touch: its stale copy goes, and every replica runs once.
    lab.reconnect_home_b()?;
    eventually(
        Duration::from_secs(60),
        "home-b removes its stale copy",
        || Ok((!state_dir.exists()).then_some(())),
    )?;
    let all = hub.cli_json(&["container", "ls", "--all"])?;
    let mut names: Vec<&str> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["cut-web-0", "cut-web-1", "cut-web-2"],
        "{all:#}"
    );
    let events = eventually(Duration::from_secs(30), "the fencing reported", || {
        let env = hub.cli_json(&["env", "show", "cut"])?;
        let events = events_of(&env);
        let fenced = events.iter().any(|(k, a)| k == "fenced" && *a == on_b);
        Ok(fenced.then_some(events))
    })?;
    assert!(
        events.iter().any(|(k, a)| k == "moved" && *a == on_b),
        "{events:?}"
    );
    hub.cli_json(&["env", "down", "cut", "-t", "1"])?;
    Ok(())
}

/// A `coop` child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The replicas of `coop env ps --json`, by name.
fn ps_rows(lab: &Lab, env: &str) -> Result<std::collections::BTreeMap<String, Value>> {
    let rows = lab.peer().cli_json(&["env", "ps", env])?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["name"].as_str()?.to_string(), r.clone())))
        .collect())
}

#[test]
fn environment_replicas_are_listed_logged_exec_d_and_restarted() -> Result<()> {
    let mut lab = Lab::new(7)?;
    lab.join("east", 107, &["--zone", "east"])?;
    lab.import_busybox()?;
    lab.wait_peers_up(2)?;
    let blueprint = r#"
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    restart: always
    deploy:
      replicas: 2
  talk:
    image: busybox
    command: ["sh", "-c", "echo hello from talk; exec sleep 3600"]
    restart: always
"#;
    let file = lab.cloud.dir.path().join("ops.yaml");
    std::fs::write(&file, blueprint)?;
    let file = file.display().to_string();
    lab.peer()
        .cli_json(&["env", "up", "-f", &file, "--name", "ops"])?;

    // ps: one row per replica, with its service, peer name and uptime.
    let rows = ps_rows(&lab, "ops")?;
    let names: Vec<&String> = rows.keys().collect();
    assert_eq!(names, ["ops-talk-0", "ops-web-0", "ops-web-1"], "{rows:#?}");
    for (name, row) in &rows {
        assert_eq!(row["state"], "running", "{name}: {row:#}");
        assert!(
            row["peer_name"] == "box" || row["peer_name"] == "east",
            "{name}: {row:#}"
        );
        assert!(row["uptime_secs"].is_u64(), "{name}: {row:#}");
    }
    assert_eq!(rows["ops-web-1"]["service"], "web");
    assert_eq!(rows["ops-web-1"]["index"], 1);
    let table = lab.cli(&["env", "ps", "ops"]).map_err(anyhow::Error::msg)?;
    assert!(
        table.contains("REPLICA") && table.contains("ops-talk-0") && table.contains("UPTIME"),
        "{table}"
    );

    // logs: every line prefixed with its replica.
    let talk_line = "ops-talk-0 | hello from talk";
    eventually(Duration::from_secs(20), "talk's line in the logs", || {
        let all = lab
            .cli(&["env", "logs", "ops"])
            .map_err(anyhow::Error::msg)?;
        Ok(all.lines().any(|l| l == talk_line).then_some(()))
    })?;
    let only_web = lab
        .cli(&["env", "logs", "ops", "web"])
        .map_err(anyhow::Error::msg)?;
    assert!(!only_web.contains("hello from talk"), "{only_web}");
    let err = lab.cli(&["env", "logs", "ops", "nope"]).unwrap_err();
    assert!(err.contains("has no service `nope`"), "{err}");

    // exec: output and exit code pass through, wherever the replica runs.
    let out = lab
        .cli(&["env", "exec", "ops", "web", "--", "echo", "from", "exec"])
        .map_err(anyhow::Error::msg)?;
    assert_eq!(out.trim(), "from exec");
    for target in ["web.0", "web.1"] {
        let failed = lab
            .peer()
            .cli(&["env", "exec", "ops", target, "--", "sh", "-c", "exit 7"])?;
        assert_eq!(failed.status.code(), Some(7), "{target}: {failed:?}");
    }
    let err = lab
        .cli(&["env", "exec", "ops", "web.9", "--", "true"])
        .unwrap_err();
    assert!(err.contains("no replica web.9"), "{err}");
    let err = lab
        .cli(&["env", "exec", "ops", "db", "--", "true"])
        .unwrap_err();
    assert!(err.contains("has no service `db`"), "{err}");
    let err = lab
        .cli(&["env", "exec", "nowhere", "web", "--", "true"])
        .unwrap_err();
    assert!(err.contains("no environment `nowhere`"), "{err}");

    // Follow talk's log while it restarts: the follower sees the new run.
    let mut follower = Child(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&lab.peer().data_dir)
            .args(["env", "logs", "ops", "talk", "-f"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = follower.0.stdout.take().context("the follower's stdout")?;
    let (lines, followed) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = followed.recv_timeout(Duration::from_secs(20))?;
    assert_eq!(first, talk_line);

    // restart: talk only, so it starts again (later) and web does not.
    let before = ps_rows(&lab, "ops")?;
    let started = before["ops-talk-0"]["started_at"].as_u64().unwrap_or(0);
    // Start times are in seconds: let one pass, so the new one differs.
    eventually(Duration::from_secs(5), "a second to pass", || {
        Ok((unix_now() > started).then_some(()))
    })?;
    let env = lab.peer().cli_json(&["env", "restart", "ops", "talk"])?;
    let events = env["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "restarted" && e["replica"] == "ops-talk-0"),
        "{env:#}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "restarted" && e["service"] == "web"),
        "{env:#}"
    );
    let after = ps_rows(&lab, "ops")?;
    let restarted = after["ops-talk-0"]["started_at"].as_u64().unwrap_or(0);
    assert!(restarted > started, "{before:#?} then {after:#?}");
    assert_eq!(after["ops-talk-0"]["state"], "running");
    assert_eq!(
        after["ops-web-0"]["started_at"], before["ops-web-0"]["started_at"],
        "web was not restarted"
    );
    let again = followed.recv_timeout(Duration::from_secs(30))?;
    assert_eq!(again, talk_line, "the follower goes on after a restart");
    drop(follower);

    // The log keeps both runs; --since skips the run that was over by then.
    eventually(Duration::from_secs(20), "both runs in the log", || {
        let all = lab
            .cli(&["env", "logs", "ops", "talk"])
            .map_err(anyhow::Error::msg)?;
        Ok((all.matches("hello from talk").count() == 2).then_some(()))
    })?;
    eventually(
        Duration::from_secs(5),
        "two seconds past the restart",
        || Ok((unix_now() >= restarted + 2).then_some(())),
    )?;
    let recent = lab
        .cli(&["env", "logs", "ops", "talk", "--since", "1s"])
        .map_err(anyhow::Error::msg)?;
    assert_eq!(recent.trim(), talk_line, "only the run going now");
    let recent = lab
        .cli(&["container", "logs", "ops-talk-0", "--since", "1s"])
        .map_err(anyhow::Error::msg)?;
    assert_eq!(recent.trim(), "hello from talk");

    lab.peer().cli_json(&["env", "down", "ops", "-t", "1"])?;
    Ok(())
}

/// Now, in unix seconds (the unit of start times).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn containers_on_a_private_network_reach_each_other_and_no_one_else() -> Result<()> {
    let lab = Lab::new(10)?;
    lab.import_busybox()?;
    let peer = lab.peer();
    peer.cli_json(&["network", "create", "n1", "--subnet", "10.211.10.0/24"])?;
    peer.cli_json(&["network", "create", "n2", "--subnet", "10.211.11.0/24"])?;
    let address = |view: &Value, network: &str| -> Option<String> {
        view["networks"]
            .as_array()?
            .iter()
            .find(|n| n["network"] == network)?["address"]
            .as_str()
            .map(String::from)
    };
    let a = run_json(
        peer,
        &[
            "busybox",
            "--cpus",
            "0.2",
            "--name",
            "a",
            "--network",
            "n1",
            "--restart",
            "always",
            "-d",
            "--",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    )?;
    let a_ip = address(&a, "n1").context("a has no address on n1")?;
    assert_eq!(a_ip, "10.211.10.2", "{a:#}");
    let sleeper = |name: &str, network: &[&str]| -> Result<Value> {
        let mut args = vec!["busybox", "--cpus", "0.2", "--name", name];
        args.extend_from_slice(network);
        args.extend(["-d", "--", "sleep", "3600"]);
        run_json(peer, &args)
    };
    let b = sleeper("b", &["--network", "n1", "--ip", "10.211.10.50"])?;
    assert_eq!(address(&b, "n1").as_deref(), Some("10.211.10.50"), "{b:#}");
    sleeper("c", &["--network", "n2"])?;
    sleeper("d", &[])?;
    // busybox's `timeout` and `wget -T` crash here; nc has a working -w.
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {a_ip} 80");
    let fetch = |from: &str| -> Result<String> {
        let out = peer.cli(&["container", "exec", from, "--", "sh", "-c", &request])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // A member reaches another by its address on the network.
    let page = eventually(Duration::from_secs(20), "b reaching a", || {
        let page = fetch("b")?;
        Ok(page.contains("hello from coop").then_some(page))
    })?;
    assert!(page.contains("hello from coop"), "{page}");
    // Another network and no network reach nothing on n1.
    for outsider in ["c", "d"] {
        let page = fetch(outsider)?;
        assert!(
            !page.contains("hello from coop"),
            "{outsider} reached a: {page}"
        );
    }
    let shown = peer.cli_json(&["network", "show", "n1"])?;
    let mut members: Vec<(String, String)> = shown["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m["container"].to_string(), m["address"].to_string()))
        .collect();
    members.sort();
    assert_eq!(
        members,
        vec![
            ("\"a\"".to_string(), format!("\"{a_ip}\"")),
            ("\"b\"".to_string(), "\"10.211.10.50\"".to_string()),
        ]
    );

    // A restart keeps the address, and a is reached again.
    peer.cli_json(&["container", "restart", "a"])?;
    assert_eq!(address(&lab.show("a")?, "n1"), Some(a_ip.clone()));
    eventually(Duration::from_secs(20), "b reaching a again", || {
        Ok(fetch("b")?.contains("hello from coop").then_some(()))
    })?;

    // Bad input: clear errors, nothing created.
    for (args, expected) in [
        (vec!["--network", "nope"], "no network named `nope`"),
        (
            vec!["--network", "n1:10.211.10.50"],
            "held by container `b`",
        ),
        (vec!["--network", "n1:10.99.0.5"], "not a container address"),
        (
            vec!["--network", "n1", "--network", "n2", "--ip", "10.211.10.9"],
            "--ip goes with exactly one",
        ),
    ] {
        let mut full = vec![
            "container",
            "run",
            "busybox",
            "--name",
            "e",
            "--cpus",
            "0.1",
            "-d",
        ];
        full.extend(args);
        let out = peer.cli(&full)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{stderr}"
        );
    }
    assert!(lab.show("e").is_err(), "e was created");
    let in_use = peer.cli(&["network", "rm", "n1"])?;
    assert!(String::from_utf8_lossy(&in_use.stderr).contains("used by container"));
    for name in ["a", "b", "c", "d"] {
        peer.cli_json(&["container", "rm", "-f", name])?;
    }
    peer.cli_json(&["network", "rm", "n1"])?;
    peer.cli_json(&["network", "rm", "n2"])?;
    Ok(())
}

#[test]
fn members_of_a_network_on_three_peers_reach_each_other_by_name_and_no_one_else() -> Result<()> {
    use coop_testkit::netns::{HOME_A_IP, HOME_B_IP, Nat, NatLab, PUBLIC_IP};
    require_host();
    if let Some(reason) = coop_testkit::netns::unavailable() {
        panic!("the network test cannot run here: {reason}");
    }
    // Each peer in a namespace of its own, as on three machines: the hub
    // on a public address (the cloud's relay), two homes behind NAT
    // routers with no direct path between them, so their members talk
    // over the relay.
    let net_lab = NatLab::with(Nat::PortPreserving, Nat::PortPreserving)?;
    net_lab.block_udp_between_homes()?;
    let _names = HostNames(vec![11, 111, 121]);
    let cloud = namespace_cloud(
        "containers11",
        &[
            (&net_lab.public, PUBLIC_IP, 11, "hub"),
            (&net_lab.home_a, HOME_A_IP, 111, "east"),
            (&net_lab.home_b, HOME_B_IP, 121, "west"),
        ],
    )?;
    let hub = &cloud.peers[0];
    hub.cli_json(&["network", "create", "n1", "--subnet", "10.211.20.0/24"])?;
    hub.cli_json(&["network", "create", "n2", "--subnet", "10.211.21.0/24"])?;
    let run = |name: &str, peer: &str, network: Option<&str>, argv: &[&str]| -> Result<Value> {
        let mut full = vec!["busybox", "--cpus", "0.2", "--name", name, "--peer", peer];
        if let Some(network) = network {
            full.extend(["--network", network]);
        }
        full.extend(["--restart", "always", "-d", "--"]);
        full.extend_from_slice(argv);
        run_json(hub, &full)
    };
    let address = |view: &Value| -> Result<String> {
        view["networks"][0]["address"]
            .as_str()
            .map(String::from)
            .context("no address on the network")
    };
    let httpd = ["httpd", "-f", "-p", "80", "-h", "/www"];
    let sleep = ["sleep", "3600"];
    let b = run("b", "home-west", Some("n1"), &httpd)?;
    run("a", "hub", Some("n1"), &sleep)?;
    run("e", "home-east", Some("n1"), &sleep)?;
    run("x", "home-east", Some("n2"), &sleep)?;
    run("y", "home-west", None, &sleep)?;
    let b_ip = address(&b)?;
    let sh = |on: &str, script: &str| -> Result<String> {
        let out = hub.cli(&["container", "exec", on, "--", "sh", "-c", script])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };

    // a, on the hub, reaches b, behind home-west's NAT router, by name.
    let began = Instant::now();
    eventually(Duration::from_secs(30), "a reaching b by name", || {
        Ok(sh("a", "wget -q -O - http://b/")?
            .contains("hello from coop")
            .then_some(()))
    })?;
    eprintln!(
        "a member on another peer answered by name after {:.1} s",
        began.elapsed().as_secs_f64()
    );
    // 1 MiB crosses intact, to the hub and to the other home (over the
    // relay), by both of b's names; pings answer.
    sh(
        "b",
        "dd if=/dev/urandom of=/www/big bs=1024 count=1024 2>/dev/null",
    )?;
    let digest = |text: &str| text.split_whitespace().next().unwrap_or("").to_string();
    let there = digest(&sh("b", "md5sum /www/big")?);
    assert_eq!(there.len(), 32, "{there}");
    for (from, url) in [("a", "http://b/big"), ("e", "http://b.n1.coop/big")] {
        let fetch = format!("wget -q -O /tmp/big {url} && md5sum /tmp/big");
        let got = eventually(Duration::from_secs(30), "1 MiB from b", || {
            let out = digest(&sh(from, &fetch)?);
            Ok((!out.is_empty()).then_some(out))
        })?;
        assert_eq!(got, there, "{from} fetching {url}");
        let ping = sh(from, "ping -c 1 -W 3 b.n1.coop && echo reached")?;
        assert!(ping.contains("reached"), "{from}: {ping}");
    }
    let east_to_west = cloud.peers[1]
        .peers()?
        .into_iter()
        .find(|p| p["id"] == cloud.peers[2].id().as_str())
        .context("home-west not listed at home-east")?;
    assert_eq!(
        east_to_west["connection"], "relay",
        "the homes have no direct path: {east_to_west:#}"
    );

    // Neither a member of another network (by address or by name) nor a
    // container of b's own peer that is on no network reaches b.
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {b_ip} 80");
    for outsider in ["x", "y"] {
        let got = sh(outsider, &request)?;
        assert!(!got.contains("hello from coop"), "{outsider}: {got}");
    }
    let ping = sh("x", &format!("ping -c 1 -W 2 {b_ip} && echo reached"))?;
    assert!(!ping.contains("reached"), "{ping}");
    for name in ["b", "b.n1.coop"] {
        let got = sh("x", &format!("ping -c 1 -W 1 {name} 2>&1; echo done"))?;
        assert!(got.contains("bad address"), "{name} resolved on n2: {got}");
    }

    // Restarted, b keeps its address, and a reaches it again within 2 s
    // of it running.
    hub.cli_json(&["container", "restart", "b"])?;
    let restarted = eventually(Duration::from_secs(30), "b running again", || {
        let seen = hub.cli_json(&["container", "show", "b"])?;
        Ok((seen["state"] == "running").then_some(seen))
    })?;
    let running = Instant::now();
    assert_eq!(address(&restarted)?, b_ip, "b's address after a restart");
    eventually(
        Duration::from_secs(10),
        "a reaching b after its restart",
        || {
            Ok(sh("a", "wget -q -O - http://b/")?
                .contains("hello from coop")
                .then_some(()))
        },
    )?;
    let again = running.elapsed();
    eprintln!(
        "b reached again {:.2} s after it was seen running",
        again.as_secs_f64()
    );
    assert!(again <= Duration::from_secs(2), "{again:?}");

    // The hub's forwarder counted what it carried on n1.
    let metrics = Command::new("ip")
        .args(["netns", "exec", &net_lab.public, "curl", "-s"])
        .arg(format!("http://{}/metrics", hub.api_addr()))
        .output()?;
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let sent = metrics
        .lines()
        .filter(|l| l.starts_with("coop_network_sent_bytes_total{") && l.contains("network=\"n1\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert!(sent > 0, "no bytes counted on n1:\n{metrics}");

    for name in ["a", "b", "e", "x", "y"] {
        hub.cli_json(&["container", "rm", "-f", name])?;
    }
    hub.cli_json(&["network", "rm", "n1"])?;
    hub.cli_json(&["network", "rm", "n2"])?;
    Ok(())
}
