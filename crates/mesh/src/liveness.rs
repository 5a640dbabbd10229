//! Membership and liveness: every peer gossips a signed status about once a
//! second; a peer whose status stops arriving turns `unreachable`, then
//! `down` after a grace period, and `up` again when statuses resume.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use iroh::EndpointId;
use iroh_gossip::api::{Event, GossipSender};
use iroh_gossip::proto::TopicId;
use tracing::{debug, info, warn};

use coop_identity::{CloudId, PeerKey, Signed};
use coop_types::{PeerId, PeerState, PeerStatus};

use crate::Mesh;
use crate::admission::peer_of;

/// How often statuses go out and how silence is judged.
#[derive(Clone, Debug)]
pub struct LivenessConfig {
    /// Interval between two statuses of this peer.
    pub interval: Duration,
    /// Silence after which a peer is `unreachable`. Three missed statuses:
    /// one lost datagram or a slow tick must not flap a healthy peer.
    pub unreachable_after: Duration,
    /// Silence after which a peer is `down`.
    pub down_after: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            interval: Duration::from_secs(1),
            unreachable_after: Duration::from_millis(3000),
            down_after: Duration::from_secs(60),
        }
    }
}

/// Produces this peer's current status (resources, load, addresses).
pub trait StatusSource: Send + Sync + 'static {
    fn status(&self) -> PeerStatus;
}

struct Seen {
    status: PeerStatus,
    at: Instant,
}

/// The latest status of every peer, and when it arrived.
pub struct Liveness {
    own: PeerId,
    config: LivenessConfig,
    started: Instant,
    table: RwLock<HashMap<PeerId, Seen>>,
}

impl Liveness {
    pub(crate) fn new(own: PeerId, config: LivenessConfig) -> Self {
        Liveness {
            own,
            config,
            started: Instant::now(),
            table: RwLock::default(),
        }
    }

    /// Keeps `status` if it is newer than what we have. Returns whether it was.
    pub fn record(&self, status: PeerStatus) -> bool {
        let Ok(mut table) = self.table.write() else {
            return false;
        };
        let fresher = table
            .get(&status.peer)
            .is_none_or(|seen| (status.boot, status.seq) > (seen.status.boot, seen.status.seq));
        if fresher {
            table.insert(
                status.peer,
                Seen {
                    status,
                    at: Instant::now(),
                },
            );
        }
        fresher
    }

    /// Liveness of `peer` as judged here now.
    pub fn state(&self, peer: &PeerId) -> PeerState {
        if *peer == self.own {
            return PeerState::Up;
        }
        let silence = self
            .table
            .read()
            .ok()
            .and_then(|t| t.get(peer).map(|s| s.at.elapsed()))
            // Never heard from since we started: as silent as our uptime.
            .unwrap_or_else(|| self.started.elapsed().max(self.config.unreachable_after));
        if silence < self.config.unreachable_after {
            PeerState::Up
        } else if silence < self.config.down_after {
            PeerState::Unreachable
        } else {
            PeerState::Down
        }
    }

    /// The latest status of `peer` and how long ago it arrived.
    pub fn status(&self, peer: &PeerId) -> Option<(PeerStatus, Duration)> {
        self.table
            .read()
            .ok()?
            .get(peer)
            .map(|s| (s.status.clone(), s.at.elapsed()))
    }

    /// The latest status of every peer heard from, with its age.
    pub fn statuses(&self) -> Vec<(PeerStatus, Duration)> {
        self.table
            .read()
            .map(|t| {
                t.values()
                    .map(|s| (s.status.clone(), s.at.elapsed()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn config(&self) -> &LivenessConfig {
        &self.config
    }
}

fn topic_of(cloud: CloudId) -> TopicId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"coop/status-topic/");
    hasher.update(&cloud.0);
    TopicId::from_bytes(*hasher.finalize().as_bytes())
}

fn endpoint_id(peer: PeerId) -> Option<EndpointId> {
    EndpointId::from_bytes(peer.as_bytes()).ok()
}

impl Mesh {
    /// Starts publishing this peer's status and listening to everyone's,
    /// until the mesh shuts down.
    pub fn start_liveness(&self, key: PeerKey, source: Arc<dyn StatusSource>) {
        let mesh = self.clone();
        self.spawn(async move {
            if let Err(err) = mesh.run_liveness(key, source).await {
                warn!(%err, "status gossip stopped");
            }
        })
    }

    async fn run_liveness(
        &self,
        key: PeerKey,
        source: Arc<dyn StatusSource>,
    ) -> Result<(), iroh_gossip::api::ApiError> {
        // Greet everyone we know first: a peer that saw us before learns
        // that we restarted and drops the dead connections it still holds,
        // which gossip would otherwise keep using.
        let greetings = self.known_peers().into_iter().map(|peer| {
            let mesh = self.clone();
            async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), mesh.hello(peer)).await;
            }
        });
        futures::future::join_all(greetings).await;
        let topic = topic_of(self.admission().cloud());
        let bootstrap: Vec<EndpointId> = self
            .known_peers()
            .into_iter()
            .filter_map(endpoint_id)
            .collect();
        let (sender, mut receiver) = self.gossip().subscribe(topic, bootstrap).await?.split();
        let mut tick = tokio::time::interval(self.liveness().config().interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rejoin = tokio::time::interval(Duration::from_secs(2));
        let mut neighbors: HashSet<PeerId> = HashSet::new();
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    seq += 1;
                    let mut status = source.status();
                    status.seq = seq;
                    self.liveness().record(status.clone());
                    match Signed::sign(&key, &status).and_then(|s| s.to_bytes()) {
                        Ok(bytes) => {
                            if let Err(err) = sender.broadcast(bytes.into()).await {
                                debug!(%err, "status broadcast failed");
                            }
                        }
                        Err(err) => warn!(%err, "cannot sign status"),
                    }
                }
                _ = rejoin.tick() => {
                    self.rejoin_missing(&sender, &neighbors);
                    self.keep_paths();
                    self.notice_lost_paths();
                }
                event = receiver.next() => {
                    match event {
                        None => return Ok(()),
                        Some(Err(err)) => debug!(%err, "gossip receive error"),
                        Some(Ok(Event::NeighborUp(id))) => {
                            let peer = peer_of(id);
                            info!(peer = %peer.short(), "gossip neighbor up");
                            neighbors.insert(peer);
                        }
                        Some(Ok(Event::NeighborDown(id))) => {
                            let peer = peer_of(id);
                            info!(peer = %peer.short(), "gossip neighbor down");
                            neighbors.remove(&peer);
                        }
                        Some(Ok(Event::Received(msg))) => self.take_status(&msg.content),
                        Some(Ok(Event::Lagged)) => debug!("status gossip lagged"),
                    }
                }
            }
        }
    }

    fn take_status(&self, bytes: &[u8]) {
        let status = Signed::from_bytes(bytes).and_then(|signed| {
            let status: PeerStatus = signed.open()?;
            if status.peer != signed.signer {
                return Err(coop_identity::SignedError::BadSignature(signed.signer));
            }
            Ok(status)
        });
        match status {
            Err(err) => debug!(%err, "dropped a bad status"),
            Ok(status) if !self.admission().is_admitted(&status.peer) => {
                debug!(peer = %status.peer.short(), "dropped status of a non-member");
            }
            Ok(status) => {
                self.add_peer_addrs(status.peer, &status.addrs);
                self.liveness().record(status);
            }
        }
    }

    /// Keeps a connection open to every live peer, so each pair of peers
    /// has its own path (direct, or through a relay) and `coop peers` can
    /// report how it is reached and its round-trip time. Gossip alone may
    /// route a peer's status over a third peer. Clouds here are small
    /// (tens of peers), so a full mesh of idle QUIC connections is cheap.
    fn keep_paths(&self) {
        for peer in self.known_peers() {
            if peer == self.id()
                || self.admission().is_revoked(&peer)
                || self.liveness().state(&peer) != PeerState::Up
                || self.path_to(&peer).is_some()
            {
                continue;
            }
            let mesh = self.clone();
            self.spawn(async move {
                if let Err(err) = mesh.connection(peer, crate::PATH_ALPN).await {
                    debug!(peer = %peer.short(), %err, "no path yet");
                }
            });
        }
    }

    /// Peers we know but are not gossip neighbors of, and that are silent:
    /// greet them and ask gossip to connect, so a cloud heals after restarts
    /// and partitions without waiting for the membership layer.
    fn rejoin_missing(&self, sender: &GossipSender, neighbors: &HashSet<PeerId>) {
        let missing: Vec<PeerId> = self
            .known_peers()
            .into_iter()
            .filter(|p| {
                *p != self.id()
                    && !neighbors.contains(p)
                    && !self.admission().is_revoked(p)
                    && self.liveness().state(p) != PeerState::Up
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let mesh = self.clone();
        let sender = sender.clone();
        self.spawn(async move {
            let mut ready = Vec::new();
            for peer in missing {
                // Always greet: it also tells a peer that restarted since
                // it last saw us to drop its stale connections.
                if mesh.hello(peer).await.is_ok() {
                    ready.extend(endpoint_id(peer));
                }
            }
            if !ready.is_empty() {
                let _ = sender.join_peers(ready).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(peer: PeerId, boot: u64, seq: u64) -> PeerStatus {
        PeerStatus {
            peer,
            seq,
            boot,
            name: "p".into(),
            zone: "default".into(),
            cpus: 1,
            memory_bytes: 1,
            memory_free_bytes: 1,
            load_centi: 0,
            arch: "x86_64".into(),
            disks: vec![],
            addrs: vec![],
            relay: false,
            labels: Default::default(),
            lent: None,
            rtts: Vec::new(),
        }
    }

    #[test]
    fn only_newer_statuses_count_and_restarts_win() {
        let live = Liveness::new(PeerId([0; 32]), LivenessConfig::default());
        let peer = PeerId([1; 32]);
        assert!(live.record(status(peer, 10, 5)));
        assert!(!live.record(status(peer, 10, 4)));
        assert!(live.record(status(peer, 11, 1)));
        assert_eq!(live.state(&peer), PeerState::Up);
    }

    #[test]
    fn silence_turns_unreachable_then_down() {
        let config = LivenessConfig {
            interval: Duration::from_millis(10),
            unreachable_after: Duration::from_millis(0),
            down_after: Duration::from_secs(3600),
        };
        let live = Liveness::new(PeerId([0; 32]), config);
        let peer = PeerId([1; 32]);
        live.record(status(peer, 1, 1));
        assert_eq!(live.state(&peer), PeerState::Unreachable);
        let config = LivenessConfig {
            interval: Duration::from_millis(10),
            unreachable_after: Duration::from_millis(0),
            down_after: Duration::from_millis(0),
        };
        let live = Liveness::new(PeerId([0; 32]), config);
        live.record(status(peer, 1, 1));
        assert_eq!(live.state(&peer), PeerState::Down);
        assert_eq!(live.state(&PeerId([0; 32])), PeerState::Up);
    }
}
