//! [`Node`]: starting a peer, and the [`NodeHandle`] that owns its tasks.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use coop_api::AppState;
use coop_identity::{CloudId, CloudKey, PeerKey};
use coop_mesh::{LivenessConfig, Mesh};
use coop_state::{Command, ControlPlane, TokenRecord};
use coop_types::{PeerId, unix_now};

use crate::datadir::{ApiInfo, DataDir};
use crate::error::NodeError;
use crate::settings::NodeSettings;

/// The ALPNs of every protocol a peer serves besides the mesh's own:
/// the router accepts exactly these.
pub(crate) const SERVED_PROTOCOLS: &[&[u8]] = &[
    crate::protocol::RPC_ALPN,
    coop_state::RAFT_ALPN,
    coop_store::BLOCKS_ALPN,
    coop_orchestra::COMPUTE_ALPN,
    coop_orchestra::EXEC_ALPN,
    coop_net::NET_ALPN,
    coop_api::history::HISTORY_ALPN,
    coop_api::events::EVENTS_ALPN,
    coop_backup::remote::BACKUP_ALPN,
    coop_mesh::FRIEND_ALPN,
];

/// What the node's tasks share.
pub(crate) struct Core {
    pub settings: NodeSettings,
    pub dir: DataDir,
    pub key: PeerKey,
    pub cloud: CloudId,
    pub mesh: Mesh,
    pub control: ControlPlane,
    cloud_key: RwLock<Option<CloudKey>>,
}

impl Core {
    pub(crate) fn cloud_key(&self) -> Option<CloudKey> {
        self.cloud_key.read().ok().and_then(|k| k.clone())
    }

    /// Keeps the cloud key this peer was handed as a new steward, on disk
    /// first (0600), so it survives a restart.
    pub(crate) fn store_cloud_key(&self, key: CloudKey) -> Result<(), NodeError> {
        if self.cloud_key().is_none() {
            let path = self.dir.cloud_key();
            key.save(&path)
                .map_err(|e| NodeError::DataDir(format!("cannot write {}: {e}", path.display())))?;
            info!("received the cloud key: this peer can now sign certificates as a steward");
        }
        if let Ok(mut slot) = self.cloud_key.write() {
            *slot = Some(key);
        }
        Ok(())
    }
}

/// A peer of a cloud, started.
pub struct Node;

/// A running peer: its identity, where it serves, and every task it
/// started. Drop it only after [`NodeHandle::shutdown`], which stops the
/// tasks and waits for them.
pub struct NodeHandle {
    core: Arc<Core>,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
    api: SocketAddr,
    s3: SocketAddr,
}

impl Node {
    /// Starts a peer with `settings`: founds a cloud on a first start
    /// without an invite, joins with one, or restarts as the member the
    /// data dir is. Returns once the peer serves its API, S3 and mesh.
    pub async fn start(settings: NodeSettings) -> Result<NodeHandle, NodeError> {
        let dir = DataDir::new(settings.data_dir.clone());
        // Bind the API and S3 first: a busy port must fail before anything
        // is joined.
        let listener = coop_api::bind(settings.api)
            .await
            .map_err(|e| NodeError::Listen {
                what: "the API",
                addr: settings.api,
                reason: e.to_string(),
            })?;
        let s3_listener = coop_s3::bind(settings.s3)
            .await
            .map_err(|e| NodeError::Listen {
                what: "S3",
                addr: settings.s3,
                reason: e.to_string(),
            })?;
        let api = listener.local_addr().unwrap_or(settings.api);
        let s3_addr = s3_listener.local_addr().unwrap_or(settings.s3);
        let liveness = LivenessConfig {
            down_after: settings.down_after(),
            ..LivenessConfig::default()
        };
        let started = crate::bootstrap::start(&settings, &dir, liveness).await?;
        let core = Arc::new(Core {
            settings: settings.clone(),
            dir: dir.clone(),
            key: started.key.clone(),
            cloud: started.cloud,
            mesh: started.mesh.clone(),
            control: started.control.clone(),
            cloud_key: RwLock::new(started.cloud_key),
        });
        core.mesh.serve(crate::services::JoinService(core.clone()));
        core.mesh.serve(crate::services::RpcService(core.clone()));

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut own = |task: futures::future::BoxFuture<'static, ()>| {
            let cancel = cancel.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = task => {}
                }
            });
        };
        // What this peer does on its own (repairs, restarts), for the
        // cloud's events.
        let actions = Arc::new(coop_types::EventLog::default());
        let storage = crate::storage::start(&settings, &core.mesh)?;
        let compute = crate::containers::start(&core, storage.stripes.clone(), actions.clone())?;
        let mut networks = None;
        if let Some(compute) = &compute {
            let reschedule_after = std::time::Duration::from_secs(settings.reschedule_after);
            // Cut off for this long, a peer stops the replicas it runs, well
            // before the leader starts them elsewhere.
            own(Box::pin(
                compute.clone().reconcile(reschedule_after * 2 / 5),
            ));
            own(Box::pin(compute.clone().watch_health()));
            own(Box::pin(
                compute.clone().heal_environments(reschedule_after),
            ));
            if let Ok(runtime) = compute.host().runtime() {
                // Members of a private network on other peers reach this
                // peer's through the forwarder.
                let forwarder = coop_net::Forwarder::start(core.mesh.clone());
                own(Box::pin(crate::networks::carry(
                    core.control.clone(),
                    compute.clone(),
                    runtime.config().network.clone(),
                    forwarder.clone(),
                )));
                networks = Some(forwarder);
            }
        }
        own(Box::pin(crate::storage::upkeep(
            &storage,
            &settings,
            &core.control,
            actions.clone(),
        )));
        own(Box::pin(crate::loops::store_sync(core.clone())));
        own(Box::pin(crate::storage::keep_health(
            storage.health.clone(),
            core.control.clone(),
            core.mesh.clone(),
        )));
        own(Box::pin(crate::loops::membership(core.clone())));
        own(Box::pin(crate::loops::addr_report(core.clone())));
        let status = Arc::new(crate::status::HostStatus {
            id: core.key.id(),
            name: settings.name.clone(),
            zone: settings.zone.clone(),
            boot: unix_now(),
            relay: settings.relay,
            disks: storage.disks.clone(),
            mesh: core.mesh.clone(),
            labels: settings.labels.clone(),
            lent: compute
                .as_ref()
                .filter(|c| c.host().unavailable_reason().is_none())
                .map(|c| c.host().capacity()),
        });
        // The mesh owns status gossip; it ends with the mesh at shutdown.
        core.mesh.start_liveness(core.key.clone(), status);

        ensure_api_token(&core).await?;
        let s3 = coop_s3::CoopS3::new(
            core.control.clone(),
            storage.stripes.clone(),
            coop_s3::S3Limits {
                max_body_bytes: settings.s3_max_body,
                ..coop_s3::S3Limits::default()
            },
        );
        let mut state = AppState::new(
            core.key.clone(),
            core.cloud,
            core.control.clone(),
            core.mesh.clone(),
        )
        .with_storage(
            storage.stripes.clone(),
            storage.disks.clone(),
            storage.metrics.clone(),
            storage.health.clone(),
        );
        if let Some(compute) = compute {
            state = state.with_compute(compute);
        }
        if let Some(forwarder) = networks {
            state = state.with_networks(forwarder);
        }
        state = state.with_s3_counters(s3.counters());
        let backups = coop_backup::Backups::new(
            core.key.id(),
            core.control.clone(),
            core.mesh.clone(),
            storage.stripes.clone(),
            Arc::new(crate::services::CloudSealer(core.clone())),
            tokio::runtime::Handle::current(),
            actions.clone(),
        );
        own(Box::pin(backups.clone().schedule()));
        core.mesh
            .serve(coop_backup::remote::BackupService(backups.clone()));
        core.mesh.serve(backups.friend_service());
        state = state.with_backups(backups);
        state = state.with_actions(actions);
        core.mesh.serve(state.history_service());
        core.mesh.serve(state.events_service());
        let history = coop_api::history::keep(state.clone());
        let history_stop = cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = history_stop.cancelled() => {}
                () = history => {}
            }
        });
        let watch = coop_api::events::watch_peers(
            core.mesh.clone(),
            core.control.clone(),
            state.event_log(),
        );
        let watch_stop = cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = watch_stop.cancelled() => {}
                () = watch => {}
            }
        });
        let api_stop = cancel.clone();
        tasks.spawn(async move {
            let stopped = async move { api_stop.cancelled().await };
            if let Err(err) = coop_api::serve_on(listener, state, stopped).await {
                tracing::error!(%err, "the API server failed");
            }
        });
        let s3_stop = cancel.clone();
        let domains = settings.s3_domains.clone();
        tasks.spawn(async move {
            let stopped = async move { s3_stop.cancelled().await };
            if let Err(err) = coop_s3::serve_on(s3_listener, s3, domains, stopped).await {
                tracing::error!(%err, "the S3 server failed");
            }
        });
        let url = format!("http://{api}");
        dir.write_api_info(&ApiInfo {
            url,
            peer: core.key.id().to_string(),
            pid: std::process::id(),
        })?;
        Ok(NodeHandle {
            core,
            tasks,
            cancel,
            api,
            s3: s3_addr,
        })
    }
}

impl NodeHandle {
    /// This peer's id.
    pub fn id(&self) -> PeerId {
        self.core.key.id()
    }

    /// The cloud this peer belongs to.
    pub fn cloud(&self) -> CloudId {
        self.core.cloud
    }

    /// Where the REST API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// Where S3 listens.
    pub fn s3_addr(&self) -> SocketAddr {
        self.s3
    }

    /// This peer's mesh endpoint.
    pub fn mesh(&self) -> &Mesh {
        &self.core.mesh
    }

    /// This peer's replica of the control plane.
    pub fn control(&self) -> &ControlPlane {
        &self.core.control
    }

    /// The settings the peer runs with.
    pub fn settings(&self) -> &NodeSettings {
        &self.core.settings
    }

    /// Whether this peer holds the cloud key (founders and stewards do).
    pub fn holds_cloud_key(&self) -> bool {
        self.core.cloud_key().is_some()
    }

    /// This peer's admin API token.
    pub fn api_token(&self) -> Result<String, NodeError> {
        self.core.dir.read_token()
    }

    /// Stops every task the node started (the API and S3 servers finish
    /// their requests), waits for them, then closes the control plane and
    /// the mesh.
    pub async fn shutdown(mut self) {
        info!("stopping");
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.core.control.shutdown().await;
        self.core.mesh.shutdown().await;
    }
}

/// Makes sure this peer has an admin token in the control plane and in
/// `api.token`. The file is written only after the control plane took the
/// token, so a token in the file always works.
async fn ensure_api_token(core: &Core) -> Result<(), NodeError> {
    let path = core.dir.api_token();
    if let Ok(existing) = core.dir.read_token()
        && core
            .control
            .store()
            .token(&coop_api::token_hash(&existing))
            .map_err(|e| NodeError::start("the API")(e.to_string()))?
            .is_some()
    {
        return Ok(());
    }
    let bytes: [u8; 32] = rand::random();
    let token = data_encoding::HEXLOWER.encode(&bytes);
    core.control
        .write(Command::CreateToken(TokenRecord {
            hash: coop_api::token_hash(&token),
            user: "admin".into(),
            created_by: core.key.id(),
            created_at: unix_now(),
        }))
        .await
        .map_err(|e| {
            NodeError::start("the API")(format!(
                "cannot register this peer's admin API token with the control plane: {e}"
            ))
        })?;
    coop_identity::write_secret_file(&path, format!("{token}\n").as_bytes())
        .map_err(|e| NodeError::DataDir(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}
