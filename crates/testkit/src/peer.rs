//! One `coop up` process and the CLI aimed at it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{eventually, free_port};

/// How long a started peer may take to write its API address and token.
/// A debug build on a loaded 2-core machine needs a few seconds to join.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Knobs for one peer.
#[derive(Clone, Debug, Default)]
pub struct PeerOptions {
    pub zone: Option<String>,
    /// Seconds of silence before `down` (passed as --down-after).
    pub down_after: Option<u64>,
    /// Extra arguments for `coop up`.
    pub extra_args: Vec<String>,
    /// Run the peer (and its CLI) inside this network namespace.
    pub netns: Option<String>,
    /// Mesh listen IP [default: 127.0.0.1].
    pub listen_ip: Option<String>,
    /// Announce and look up peers by mDNS. Off by default so tests send no
    /// multicast onto the machine's LAN; only turn it on inside a namespace.
    pub mdns: bool,
}

impl PeerOptions {
    /// A peer inside network namespace `ns`, listening on `ip`, with
    /// `extra` flags for `coop up`.
    pub fn in_netns(ns: &str, ip: &str, extra: &[&str]) -> Self {
        PeerOptions {
            netns: Some(ns.to_string()),
            listen_ip: Some(ip.to_string()),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            ..PeerOptions::default()
        }
    }
}

/// Mounts the host's cgroup hierarchies under `/sys/fs/cgroup` again,
/// then runs the command given after it (`$0 $@`).
const REMOUNT_CGROUPS: &str = r#"mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup 2>/dev/null &&
grep ' /sys/fs/cgroup/' /proc/1/mounts | while read src dst type opts rest; do
  mkdir -p "$dst" && mount -t "$type" -o "$opts" "$src" "$dst" 2>/dev/null
done
exec "$0" "$@""#;

/// A peer process with fixed ports, so a restart comes back at the same
/// addresses like a real machine would.
pub struct Peer {
    pub name: String,
    pub data_dir: PathBuf,
    pub api_port: u16,
    pub mesh_port: u16,
    pub s3_port: u16,
    bin: PathBuf,
    log: PathBuf,
    options: PeerOptions,
    child: Option<Child>,
    id: Option<String>,
}

impl Peer {
    pub fn new(bin: &Path, base: &Path, name: &str, options: PeerOptions) -> Result<Self> {
        Ok(Peer {
            name: name.to_string(),
            data_dir: base.join(name),
            api_port: free_port()?,
            mesh_port: free_port()?,
            s3_port: free_port()?,
            bin: bin.to_path_buf(),
            log: base.join(format!("{name}.log")),
            options,
            child: None,
            id: None,
        })
    }

    /// The API address, `127.0.0.1:port`.
    pub fn api_addr(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// The S3 endpoint URL, `http://127.0.0.1:port`.
    pub fn s3_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The full peer id (hex), known after the first start.
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_default()
    }

    /// The admin token from the data dir.
    pub fn token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.data_dir.join("api.token"))?
            .trim()
            .to_string())
    }

    /// The `coop up` command line for this peer.
    /// A command running the `coop` binary, inside the peer's namespace if any.
    fn coop(&self) -> Command {
        match &self.options.netns {
            Some(ns) => {
                // `ip netns exec` mounts a sysfs of the namespace, which
                // hides the host's cgroups: mount the host's hierarchies
                // again (in its private mount namespace) for containers.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, "sh", "-c", REMOUNT_CGROUPS])
                    .arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        }
    }

    pub fn up_command(&self, join: Option<&str>) -> Command {
        let listen_ip = self.options.listen_ip.as_deref().unwrap_or("127.0.0.1");
        let mut cmd = self.coop();
        cmd.arg("up")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--name")
            .arg(&self.name)
            .arg("--api")
            .arg(self.api_addr())
            .arg("--listen")
            .arg(format!("{listen_ip}:{}", self.mesh_port))
            .arg("--s3")
            .arg(format!("{listen_ip}:{}", self.s3_port))
            .env(
                "COOP_LOG",
                "info,coop=debug,coop_mesh=debug,iroh=warn,openraft=warn",
            );
        if !self.options.mdns {
            // Tests stay on this machine: no multicast onto the LAN.
            cmd.arg("--no-mdns");
        }
        if let Some(zone) = &self.options.zone {
            cmd.arg("--zone").arg(zone);
        }
        if let Some(secs) = self.options.down_after {
            cmd.arg("--down-after").arg(secs.to_string());
        }
        cmd.args(&self.options.extra_args);
        if let Some(token) = join {
            cmd.arg("--join").arg(token);
        }
        cmd
    }

    /// Starts `coop up` and waits until its API answers with its status.
    pub fn start(&mut self, join: Option<&str>) -> Result<()> {
        if self.child.is_some() {
            bail!("peer {} is already running", self.name);
        }
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = self.up_command(join);
        cmd.stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        let status = eventually(
            START_TIMEOUT,
            &format!("peer {} to come up", self.name),
            || {
                if let Some(child) = self.child.as_mut()
                    && let Some(exit) = child.try_wait()?
                {
                    bail!("coop up exited with {exit}; log:\n{}", self.log_tail());
                }
                if !self.data_dir.join("api.token").exists() {
                    return Ok(None);
                }
                Ok(self.cli_json(&["status"]).ok())
            },
        )?;
        self.id = status["peer"]["id"].as_str().map(String::from);
        Ok(())
    }

    /// The last lines of this peer's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The process id of the running `coop up`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the running peer, from /proc, in bytes. It
    /// counts the binary's code pages in full, though every process running
    /// the binary shares them.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.status_kib("VmRSS:").map(|kb| kb * 1024)
    }

    /// The anonymous part of [`Peer::rss_bytes`] (heap and stacks): what
    /// this process alone uses.
    pub fn anon_bytes(&self) -> Option<u64> {
        self.status_kib("RssAnon:").map(|kb| kb * 1024)
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
    }

    /// GET a path of this peer's API with its token; parsed JSON.
    pub fn api_get(&self, path: &str) -> Result<Value> {
        let auth = format!("Bearer {}", self.token()?);
        let resp = crate::http_request(
            &self.api_addr(),
            "GET",
            path,
            &[("Authorization", &auth)],
            None,
        )?;
        if resp.status != 200 {
            bail!("GET {path}: HTTP {}: {}", resp.status, resp.body);
        }
        resp.json()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, like a power cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) with a pid we own and a valid signal number.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let exited = eventually(Duration::from_secs(15), "peer to stop", || {
                Ok(child.try_wait()?.map(|_| ()))
            });
            if exited.is_err() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        Ok(())
    }

    /// Runs `coop --data-dir <dir> ARGS` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let out = self
            .coop()
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running coop {args:?}"))?;
        Ok(out)
    }

    /// Runs a CLI command with `--json`, fails on a non-zero exit, parses stdout.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut full = args.to_vec();
        full.push("--json");
        let out = self.cli(&full)?;
        if !out.status.success() {
            bail!(
                "coop {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).context("CLI output is not JSON")
    }

    pub fn peers(&self) -> Result<Vec<Value>> {
        let v = self.cli_json(&["peers"])?;
        v.as_array()
            .cloned()
            .context("peers output is not an array")
    }

    pub fn status(&self) -> Result<Value> {
        self.cli_json(&["status"])
    }

    /// The state (`up`, `unreachable`, ...) of peer `id` as this peer sees it.
    pub fn state_of(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .peers()?
            .iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["state"].as_str().map(String::from)))
    }

    /// Runs `coop debug probe` from this peer's identity against `target`
    /// at its loopback mesh address; the JSON report (`hello`, `rpc`).
    pub fn probe(&self, target: &Peer) -> Result<Value> {
        let addr = format!("127.0.0.1:{}", target.mesh_port);
        self.cli_json(&["debug", "probe", "--peer", &target.id(), "--addr", &addr])
    }

    /// A fresh invite token from this peer.
    pub fn invite(&self) -> Result<String> {
        let out = self.cli(&["invite", "--ttl", "10m"])?;
        if !out.status.success() {
            bail!(
                "coop invite failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}
