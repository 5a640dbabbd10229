//! `coop debug probe`: dial another peer with this data dir's identity and
//! report whether it admits us. For operators checking trust between two
//! machines, and for the tests that prove foreign peers are refused.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use coop_identity::PeerKey;
use coop_mesh::{LivenessConfig, Mesh, MeshConfig};
use coop_types::PeerId;

use crate::GlobalArgs;
use coop_node::{AgentRequest, AgentRpc, DataDir, default_data_dir};

pub async fn probe(global: &GlobalArgs, peer: &str, addr: Option<&str>, mdns: bool) -> Result<()> {
    let dir = DataDir::new(global.data_dir.clone().unwrap_or_else(default_data_dir));
    let membership = dir
        .membership()?
        .context("this data dir has not joined a cloud")?;
    let key = PeerKey::load(&dir.peer_key())?;
    let target: PeerId = peer.parse()?;
    let mesh = Mesh::bind(MeshConfig {
        key,
        cloud: membership.cloud,
        certificate: Some(membership.certificate),
        listen: "0.0.0.0:0".parse()?,
        liveness: LivenessConfig::default(),
        relay: false,
        mdns,
        protocols: Vec::new(),
    })
    .await?;
    // Without an address the peer must be found some other way (mDNS).
    match addr {
        Some(addr) => mesh.add_peer_addrs(target, &[addr.to_string()]),
        None if mdns => match mesh.find_on_lan(target, Duration::from_secs(10)).await {
            Some(addrs) => {
                eprintln!(
                    "found {} on the LAN at {}",
                    target.short(),
                    addrs.join(", ")
                );
                mesh.add_peer_addrs(target, &addrs)
            }
            None => eprintln!(
                "coop: peer {} was not announced on the LAN within 10 s",
                target.short()
            ),
        },
        None => {}
    }
    let hello = match mesh.hello(target).await {
        Ok(_) => "admitted".to_string(),
        Err(err) => err.to_string(),
    };
    // A protected protocol without a successful hello must be refused at
    // the handshake, whatever we send.
    let rpc = match mesh.call::<AgentRpc>(target, &AgentRequest::Ping).await {
        Ok(_) => "answered".to_string(),
        Err(err) => err.to_string(),
    };
    mesh.shutdown().await;
    let report = json!({ "hello": hello, "rpc": rpc });
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("hello: {hello}\nrpc:   {rpc}");
    }
    Ok(())
}
