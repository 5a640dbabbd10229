//! The agent: `coop up`. Brings up the mesh, the control plane and the API,
//! founds or joins a cloud on first start, and keeps this peer in step with
//! the cloud until it is stopped.

mod bootstrap;
mod containers;
mod loops;
pub(crate) mod protocol;
mod services;
mod status;
mod storage;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{info, warn};

use coop_api::AppState;
use coop_identity::{CloudId, CloudKey, PeerKey};
use coop_mesh::{LivenessConfig, Mesh};
use coop_state::{Command, ControlPlane, TokenRecord};
use coop_types::unix_now;

use crate::GlobalArgs;
use crate::datadir::{ApiInfo, DataDir};
use crate::settings::{Settings, UpArgs};

/// The ALPNs of every protocol a peer serves besides the mesh's own:
/// the router accepts exactly these.
pub(crate) const SERVED_PROTOCOLS: &[&[u8]] = &[
    protocol::RPC_ALPN,
    coop_state::RAFT_ALPN,
    coop_store::BLOCKS_ALPN,
    coop_orchestra::COMPUTE_ALPN,
    coop_orchestra::EXEC_ALPN,
];

/// What the agent's tasks share.
pub(crate) struct Core {
    pub settings: Settings,
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

    pub(crate) fn store_cloud_key(&self, key: CloudKey) -> Result<()> {
        if self.cloud_key().is_none() {
            key.save(&self.dir.cloud_key())?;
            info!("received the cloud key: this peer can now sign certificates as a steward");
        }
        if let Ok(mut slot) = self.cloud_key.write() {
            *slot = Some(key);
        }
        Ok(())
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COOP_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,iroh=warn,iroh_gossip=warn,openraft=warn,noq=warn,noq_proto=warn",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs `coop up` until SIGINT or SIGTERM.
pub async fn up(global: &GlobalArgs, args: UpArgs) -> Result<()> {
    let settings = Settings::resolve(global, args)?;
    init_logging(settings.json_logs);
    let dir = DataDir::new(settings.data_dir.clone());
    // Bind the API first: a busy port must fail before anything is joined.
    let listener = coop_api::bind(settings.api)
        .await
        .with_context(|| format!("cannot listen for the API on {}", settings.api))?;
    let s3_listener = coop_s3::bind(settings.s3)
        .await
        .with_context(|| format!("cannot listen for S3 on {}", settings.s3))?;
    let liveness = LivenessConfig {
        down_after: Duration::from_secs(settings.down_after.max(4)),
        ..LivenessConfig::default()
    };
    let started = bootstrap::start(&settings, &dir, liveness).await?;
    let core = Arc::new(Core {
        settings: settings.clone(),
        dir: dir.clone(),
        key: started.key.clone(),
        cloud: started.cloud,
        mesh: started.mesh.clone(),
        control: started.control.clone(),
        cloud_key: RwLock::new(started.cloud_key),
    });
    core.mesh.serve(services::JoinService(core.clone()));
    core.mesh.serve(services::RpcService(core.clone()));

    let storage = storage::start(&settings, &core.mesh)?;
    let compute = containers::start(&core, storage.stripes.clone())?;
    let tasks = vec![
        tokio::spawn(compute.clone().reconcile()),
        storage::spawn_upkeep(&storage, &settings, &core.control),
        loops::spawn_store_sync(core.clone()),
        core.mesh.start_liveness(
            core.key.clone(),
            Arc::new(status::HostStatus {
                id: core.key.id(),
                name: settings.name.clone(),
                zone: settings.zone.clone(),
                boot: unix_now(),
                relay: settings.relay,
                disks: storage.disks.clone(),
                mesh: core.mesh.clone(),
            }),
        ),
        loops::spawn_membership(core.clone()),
        loops::spawn_addr_report(core.clone()),
    ];

    ensure_api_token(&core).await?;
    let state = AppState::new(
        core.key.clone(),
        core.cloud,
        core.control.clone(),
        core.mesh.clone(),
    )
    .with_storage(
        storage.stripes.clone(),
        storage.disks.clone(),
        storage.metrics.clone(),
    )
    .with_compute(compute);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api_task = tokio::spawn(coop_api::serve_on(listener, state, async move {
        let _ = stop_rx.await;
    }));
    let s3 = coop_s3::CoopS3::new(
        core.control.clone(),
        storage.stripes.clone(),
        coop_s3::S3Limits {
            max_body_bytes: settings.s3_max_body,
            ..coop_s3::S3Limits::default()
        },
    );
    let (s3_stop_tx, s3_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let s3_task = tokio::spawn(coop_s3::serve_on(
        s3_listener,
        s3,
        settings.s3_domains.clone(),
        async move {
            let _ = s3_stop_rx.await;
        },
    ));
    let url = format!("http://{}", settings.api);
    dir.write_api_info(&ApiInfo {
        url: url.clone(),
        peer: core.key.id().to_string(),
        pid: std::process::id(),
    })?;
    print_banner(&core, &url);

    wait_for_stop().await;
    info!("stopping");
    let _ = stop_tx.send(());
    let _ = s3_stop_tx.send(());
    let _ = api_task.await;
    let _ = s3_task.await;
    for task in tasks {
        task.abort();
    }
    core.control.shutdown().await;
    core.mesh.shutdown().await;
    Ok(())
}

/// Makes sure this peer has an admin token in the control plane and in
/// `api.token`. The file is written only after the control plane took the
/// token, so a token in the file always works.
async fn ensure_api_token(core: &Core) -> Result<()> {
    let path = core.dir.api_token();
    if let Ok(existing) = core.dir.read_token()
        && core
            .control
            .store()
            .token(&coop_api::token_hash(&existing))?
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
        .context("cannot register this peer's admin API token with the control plane")?;
    coop_identity::write_secret_file(&path, format!("{token}\n").as_bytes())?;
    Ok(())
}

fn print_banner(core: &Core, url: &str) {
    let s = &core.settings;
    println!("coop peer `{}` is up", s.name);
    println!("  peer id   {}", core.key.id());
    println!("  cloud id  {}", core.cloud);
    println!("  zone      {}", s.zone);
    println!("  api       {url}  (web console at the same address)");
    println!("  s3        http://{}  (region coop)", s.s3);
    for disk in &s.disks {
        match disk.capacity {
            Some(cap) => println!("  disk      {} (up to {cap} bytes)", disk.path.display()),
            None => println!("  disk      {}", disk.path.display()),
        }
    }
    println!(
        "  mesh      udp {}  ({})",
        s.listen,
        core.mesh.local_addrs().join(", ")
    );
    println!("  data dir  {}", s.data_dir.display());
    println!(
        "to add a peer: run `coop invite` here, then `coop up --join <token>` on the new machine"
    );
}

async fn wait_for_stop() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                warn!(%err, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
