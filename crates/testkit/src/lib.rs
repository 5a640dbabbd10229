//! Real clouds for tests and benchmarks: every peer is a real `coop up`
//! process with its own temporary data dir and free ports, driven through
//! the real CLI and API ([`Cloud`]), or a real node in the test's own
//! process ([`local::LocalCloud`]) for fast tests of join and trust.
//! Nothing is mocked.
//!
//! Tests wait on conditions with [`eventually`], never with bare sleeps.

pub mod containers;
mod http;
pub mod local;
pub mod netns;
mod peer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use http::{HttpResponse, http_request};
pub use peer::{Peer, PeerOptions};

/// Polls `check` every 100 ms until it returns `Some`, or fails after
/// `deadline` with `what` and the last observation in the error.
pub fn eventually<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met".to_string(),
            Err(err) => format!("{err:#}"),
        };
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("coop-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("COOP_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The root of the coop workspace (for `tests/` tools and `target/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python of the venv `./scripts/test.sh` makes (boto3, aws-cli,
/// pytest), or `$COOP_TEST_PYTHON`.
pub fn s3_python() -> Result<PathBuf> {
    let path = match std::env::var_os("COOP_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace().join("target/s3-venv/bin/python"),
    };
    if !path.exists() {
        bail!(
            "no Python venv for the S3 tests at {}: run ./scripts/test.sh, which creates it from tests/s3/requirements.txt",
            path.display()
        );
    }
    Ok(path)
}

/// A free port on 127.0.0.1 for both TCP and UDP (the OS picks it).
pub fn free_port() -> Result<u16> {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

/// Several peers started from one `coop` binary.
pub struct Cloud {
    pub bin: PathBuf,
    pub dir: TempDir,
    pub peers: Vec<Peer>,
}

impl Cloud {
    /// An empty cloud; add peers with [`Cloud::found`] and [`Cloud::join`].
    pub fn new(bin: impl Into<PathBuf>, label: &str) -> Result<Self> {
        Ok(Cloud {
            bin: bin.into(),
            dir: TempDir::new(label)?,
            peers: Vec::new(),
        })
    }

    /// Starts a cloud of `n` peers on loopback: the first founds it, the
    /// others join one after the other with invites from the first.
    pub fn start(bin: impl Into<PathBuf>, label: &str, n: usize) -> Result<Self> {
        let mut cloud = Cloud::new(bin, label)?;
        cloud.found("p0", PeerOptions::default())?;
        for i in 1..n {
            cloud.join(&format!("p{i}"), PeerOptions::default())?;
        }
        Ok(cloud)
    }

    /// Starts the founding peer.
    pub fn found(&mut self, name: &str, options: PeerOptions) -> Result<&mut Peer> {
        let mut peer = Peer::new(&self.bin, self.dir.path(), name, options)?;
        peer.start(None)?;
        self.peers.push(peer);
        self.peers.last_mut().context("peer just pushed")
    }

    /// Starts a new peer that joins with an invite from the first peer.
    pub fn join(&mut self, name: &str, options: PeerOptions) -> Result<&mut Peer> {
        let token = self.peers[0].invite()?;
        let mut peer = Peer::new(&self.bin, self.dir.path(), name, options)?;
        peer.start(Some(&token))?;
        self.peers.push(peer);
        self.peers.last_mut().context("peer just pushed")
    }

    /// The peer that currently leads the control plane, as `observer` sees it.
    pub fn leader_index(&self, observer: usize) -> Result<Option<usize>> {
        let status = self.peers[observer].status()?;
        let leader = status["cloud"]["leader"].as_str().map(String::from);
        Ok(leader.and_then(|id| self.peers.iter().position(|p| p.id() == id)))
    }
}
