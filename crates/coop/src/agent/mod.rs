//! `coop up`: resolves the settings, sets up logging, starts the peer
//! ([`coop_node::Node`]) and runs it until SIGINT or SIGTERM.

use anyhow::Result;
use tracing::warn;

use coop_node::{Node, NodeHandle};

use crate::GlobalArgs;
use crate::settings::{Settings, UpArgs};

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
    let node = Node::start(settings.node).await?;
    print_banner(&node);
    wait_for_stop().await;
    node.shutdown().await;
    Ok(())
}

fn print_banner(node: &NodeHandle) {
    let s = node.settings();
    // The cloud's brand (`coop config set brand.name`), once this peer has
    // the cloud's settings.
    let brand = node
        .control()
        .store()
        .config()
        .ok()
        .and_then(|c| c.get("brand.name").cloned())
        .unwrap_or_else(|| "coop".into());
    println!("{brand} peer `{}` is up", s.name);
    println!("  peer id   {}", node.id());
    println!("  cloud id  {}", node.cloud());
    println!("  zone      {}", s.zone);
    println!(
        "  api       http://{}  (web console at the same address)",
        node.api_addr()
    );
    println!("  s3        http://{}  (region coop)", node.s3_addr());
    for disk in &s.disks {
        match disk.capacity {
            Some(cap) => println!("  disk      {} (up to {cap} bytes)", disk.path.display()),
            None => println!("  disk      {}", disk.path.display()),
        }
    }
    println!(
        "  mesh      udp {}  ({})",
        s.listen,
        node.mesh().local_addrs().join(", ")
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
