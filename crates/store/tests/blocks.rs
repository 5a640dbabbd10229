//! Shards moved between two real mesh endpoints of one cloud, over loopback
//! QUIC with certificates, and the refusals a caller must see.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coop_identity::{Certificate, CertificateBody, CloudKey, PeerKey};
use coop_mesh::{LivenessConfig, Mesh, MeshConfig};
use coop_store::{
    BlockClient, BlockError, BlockService, Codec, DiskSpec, LocalDisks, StoreMetrics,
};

async fn peer(cloud: &CloudKey, name: &str) -> Mesh {
    let key = PeerKey::generate();
    let cert = Certificate::issue(
        cloud,
        CertificateBody {
            cloud: cloud.id(),
            peer: key.id(),
            name: name.into(),
            zone: "default".into(),
            roles: vec![],
            issued_at: 0,
            expires_at: u64::MAX,
        },
    )
    .expect("certificate");
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    Mesh::bind(MeshConfig {
        key,
        cloud: cloud.id(),
        certificate: Some(cert),
        listen,
        liveness: LivenessConfig::default(),
        relay: false,
        mdns: false,
        protocols: vec![coop_store::BLOCKS_ALPN],
    })
    .await
    .expect("mesh binds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_travel_between_peers_and_bad_requests_are_refused() {
    let cloud = CloudKey::generate();
    let writer = peer(&cloud, "writer").await;
    let holder = peer(&cloud, "holder").await;
    let dir = std::env::temp_dir().join(format!("coop-blocks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let disks = LocalDisks::open(
        holder.id(),
        &[DiskSpec {
            path: dir.clone(),
            capacity: None,
        }],
    )
    .unwrap();
    let d0 = disks.iter().next().unwrap().id.clone();
    let disk = disks.get(&d0).unwrap().store.clone();
    BlockService::new(disks.clone(), Arc::new(StoreMetrics::default())).serve(&holder);
    writer.add_peer_addrs(holder.id(), &holder.local_addrs());

    let codec = Codec::new(4, 2).unwrap();
    let block = vec![7u8; 300_000];
    let id = *blake3::hash(&block).as_bytes();
    let shards = codec.encode(&block).unwrap();
    let client = BlockClient::new(writer.clone());
    for s in &shards {
        client.put(holder.id(), &d0, &id, s).await.unwrap();
    }
    // Durable on the holder's disk, and readable back through the mesh.
    assert_eq!(disk.list().unwrap().len(), 6);
    let mut back = Vec::new();
    for i in 0..6 {
        back.push(client.get(holder.id(), &d0, &id, i).await.unwrap().unwrap());
    }
    assert_eq!(codec.decode(&back, block.len()).unwrap(), block);
    assert!(
        client
            .get(holder.id(), &d0, &id, 7)
            .await
            .unwrap()
            .is_none()
    );

    // Unknown disk, and a shard whose checksum lies: refused, nothing stored.
    let err = client
        .put(holder.id(), "nope", &id, &shards[0])
        .await
        .unwrap_err();
    assert!(matches!(err, BlockError::Refused { .. }), "{err}");
    let mut lying = shards[1].clone();
    lying.bytes[0] ^= 1;
    let other_id = [9u8; 32];
    let err = client
        .put(holder.id(), &d0, &other_id, &lying)
        .await
        .unwrap_err();
    assert!(matches!(err, BlockError::Refused { .. }), "{err}");
    assert!(disk.get(&other_id, 1).unwrap().is_none());

    // A deleted shard reads as missing.
    client.delete(holder.id(), &d0, &id, 5).await.unwrap();
    assert!(
        client
            .get(holder.id(), &d0, &id, 5)
            .await
            .unwrap()
            .is_none()
    );

    // A peer of another cloud cannot use the protocol at all.
    let stranger = peer(&CloudKey::generate(), "stranger").await;
    stranger.add_peer_addrs(holder.id(), &holder.local_addrs());
    let outsider = BlockClient::new(stranger.clone());
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        outsider.get(holder.id(), &d0, &id, 0),
    )
    .await
    .expect("refusal comes quickly");
    assert!(refused.is_err(), "a foreign peer read a shard: {refused:?}");

    for m in [writer, holder, stranger] {
        m.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
