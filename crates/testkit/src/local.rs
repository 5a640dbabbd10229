//! Clouds of in-process peers: each peer is a [`coop_node::Node`] started
//! in the test's own tokio runtime, on loopback at free ports, with its
//! own temporary data dir and no containers. They run the same code as a
//! `coop up` process (mesh, control plane, storage, API, S3), need no root
//! and start in well under a second, so join and trust can be tested in
//! seconds. Tests of what only a process shows (signals, restarts of the
//! binary, the CLI) keep using [`crate::Cloud`].

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use coop_node::{Node, NodeHandle, NodeSettings};

use crate::{HttpResponse, TempDir, http_request};

/// Polls `check` every 50 ms until it returns `Some`, or fails after
/// `deadline` with `what` and the last observation.
pub async fn eventually_async<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met".to_string(),
            Err(err) => format!("{err:#}"),
        };
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// In-process peers sharing one scratch directory.
pub struct LocalCloud {
    pub dir: TempDir,
    pub peers: Vec<NodeHandle>,
}

impl LocalCloud {
    /// A cloud founded by one in-process peer named `p0`.
    pub async fn found(label: &str) -> Result<Self> {
        let dir = TempDir::new(label)?;
        let settings = NodeSettings::local(dir.path().join("p0"), "p0");
        let founder = Node::start(settings).await.context("founding a cloud")?;
        Ok(LocalCloud {
            dir,
            peers: vec![founder],
        })
    }

    /// The settings a new peer named `name` would start with.
    pub fn settings(&self, name: &str) -> NodeSettings {
        NodeSettings::local(self.dir.path().join(name), name)
    }

    /// Starts a peer that joins with a fresh invite from peer `from`.
    pub async fn join(&mut self, name: &str, from: usize) -> Result<&NodeHandle> {
        let token = self.invite(from).await?;
        let mut settings = self.settings(name);
        settings.join = Some(token);
        let peer = Node::start(settings)
            .await
            .with_context(|| format!("{name} joining"))?;
        self.peers.push(peer);
        self.peers.last().context("peer just pushed")
    }

    /// A fresh invite token from peer `from`, through its API.
    pub async fn invite(&self, from: usize) -> Result<String> {
        let created = self.api(from, "POST", "/v1/invites", Some("{}")).await?;
        if created.status != 200 {
            bail!("invite refused: {} {}", created.status, created.body);
        }
        created.json()?["token"]
            .as_str()
            .map(String::from)
            .context("invite without a token")
    }

    /// Calls peer `i`'s REST API with its admin token.
    pub async fn api(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<HttpResponse> {
        let peer = self.peers.get(i).context("no such peer")?;
        let addr = peer.api_addr().to_string();
        let token = peer.api_token()?;
        let (method, path, body) = (method.to_string(), path.to_string(), body.map(String::from));
        tokio::task::spawn_blocking(move || {
            let auth = format!("Bearer {token}");
            let headers = [
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ];
            http_request(&addr, &method, &path, &headers, body.as_deref())
        })
        .await
        .context("the API call task failed")?
    }

    /// Stops every peer and waits for each to finish.
    pub async fn shutdown(self) {
        for peer in self.peers {
            peer.shutdown().await;
        }
    }
}
