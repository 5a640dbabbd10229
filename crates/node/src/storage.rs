//! Object storage on this peer: its disks, the shard service other peers
//! write to, and the view of the cloud's disks that placement uses.

use std::sync::Arc;
use std::time::Duration;

use coop_mesh::Mesh;
use coop_state::ControlPlane;
use coop_store::{
    BlockClient, BlockService, ClusterDisk, ClusterView, LocalDisks, SpreadPlacement, StoreMetrics,
    Stripes, UpkeepConfig,
};
use coop_types::{PeerId, PeerState};

use crate::error::NodeError;
use crate::settings::NodeSettings;

/// The cloud's disks as gossip reports them: this peer's own, plus those of
/// every peer whose status is fresh.
pub(crate) struct MeshView {
    me: PeerId,
    zone: String,
    local: LocalDisks,
    mesh: Mesh,
}

impl ClusterView for MeshView {
    fn disks(&self) -> Vec<ClusterDisk> {
        let mut disks: Vec<ClusterDisk> = self
            .local
            .statuses()
            .into_iter()
            .map(|d| ClusterDisk {
                peer: self.me,
                zone: self.zone.clone(),
                disk: d.id,
                free_bytes: d.free_bytes,
                used_bytes: d.used_bytes,
                total_bytes: d.total_bytes,
            })
            .collect();
        let fresh = self.mesh.liveness().config().unreachable_after;
        for (status, age) in self.mesh.liveness().statuses() {
            if status.peer == self.me
                || age >= fresh
                || self.mesh.admission().is_revoked(&status.peer)
            {
                continue;
            }
            for disk in status.disks.into_iter().filter(|d| !d.id.is_empty()) {
                disks.push(ClusterDisk {
                    peer: status.peer,
                    zone: status.zone.clone(),
                    disk: disk.id,
                    free_bytes: disk.free_bytes,
                    used_bytes: disk.used_bytes,
                    total_bytes: disk.total_bytes,
                });
            }
        }
        disks
    }

    fn rtt(&self, peer: &PeerId) -> Option<Duration> {
        self.mesh.path_to(peer).and_then(|p| p.rtt)
    }

    fn is_up(&self, peer: &PeerId) -> bool {
        self.mesh.peer_state(peer) == PeerState::Up
    }

    fn is_gone(&self, peer: &PeerId) -> bool {
        matches!(
            self.mesh.peer_state(peer),
            PeerState::Down | PeerState::Revoked
        )
    }
}

/// The repair, scrub and collection loops, until dropped.
pub(crate) fn upkeep(
    storage: &Storage,
    settings: &NodeSettings,
    control: &ControlPlane,
    events: Arc<coop_types::EventLog>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    coop_store::upkeep(
        storage.stripes.clone(),
        control.clone(),
        UpkeepConfig {
            repair_interval: Duration::from_secs(settings.repair_interval.max(1)),
            scrub_interval: Duration::from_secs(settings.scrub_interval.max(1)),
            gc_grace: Duration::from_secs(settings.gc_grace),
            upload_expiry: Duration::from_secs(settings.upload_expiry.max(1)),
            ..UpkeepConfig::default()
        },
        events,
    )
}

/// Storage as the node holds it.
pub(crate) struct Storage {
    /// Health counts of what the cloud stores, kept as things change.
    pub health: Arc<coop_store::HealthBook>,
    pub disks: LocalDisks,
    pub stripes: Stripes,
    pub metrics: Arc<StoreMetrics>,
}

/// Opens this peer's disks and starts serving shards on the mesh.
pub(crate) fn start(settings: &NodeSettings, mesh: &Mesh) -> Result<Storage, NodeError> {
    let disks = LocalDisks::open(mesh.id(), &settings.disks)
        .map_err(|e| NodeError::start("the storage disks")(e.to_string()))?;
    let metrics = Arc::new(StoreMetrics::default());
    BlockService::new(disks.clone(), metrics.clone()).serve(mesh);
    let view = MeshView {
        me: mesh.id(),
        zone: settings.zone.clone(),
        local: disks.clone(),
        mesh: mesh.clone(),
    };
    let stripes = Stripes::new(
        mesh.id(),
        disks.clone(),
        BlockClient::new(mesh.clone()),
        Arc::new(view),
        Arc::new(SpreadPlacement),
        settings.cache_bytes,
        metrics.clone(),
    );
    Ok(Storage {
        health: Arc::default(),
        disks,
        stripes,
        metrics,
    })
}

/// How often the node brings the health counts up to date when nobody
/// asks: often enough that the change journal stays short.
const HEALTH_REFRESH: Duration = Duration::from_secs(10);

/// Keeps the health counts up to date until dropped.
pub(crate) async fn keep_health(
    health: Arc<coop_store::HealthBook>,
    control: ControlPlane,
    mesh: Mesh,
) {
    let mut tick = tokio::time::interval(HEALTH_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (health, store, mesh) = (health.clone(), control.store().clone(), mesh.clone());
        let me = mesh.id();
        let refreshed = tokio::task::spawn_blocking(move || {
            health.report(&store, |peer| {
                if *peer == me {
                    PeerState::Up
                } else {
                    mesh.peer_state(peer)
                }
            })
        })
        .await;
        if let Ok(Err(err)) = refreshed {
            tracing::warn!(%err, "cannot bring the storage health counts up to date");
        }
    }
}
