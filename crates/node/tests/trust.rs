//! Join and trust on in-process peers (no root, no separate processes):
//! joining by invite, single-use and forged invites, revocation cutting a
//! peer off, and the cloud key handed to new stewards. The process tests
//! in the `coop` crate check the same through the binary.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use coop_mesh::MeshError;
use coop_node::{AgentReply, AgentRequest, AgentRpc, Node, NodeError};
use coop_testkit::local::{LocalCloud, eventually_async};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_joins_by_invite_and_an_invite_works_once() -> Result<()> {
    let mut cloud = LocalCloud::found("node-join").await?;
    let founder = cloud.peers[0].id();
    let token = cloud.invite(0).await?;

    let mut settings = cloud.settings("p1");
    settings.join = Some(token.clone());
    let joined = Node::start(settings).await.context("p1 joins")?;
    let cert_ok = joined
        .mesh()
        .admission()
        .own_cert()
        .context("a joined peer has a certificate")?
        .verify(
            &cloud.peers[0].cloud(),
            &joined.id(),
            coop_types::unix_now(),
        );
    assert!(cert_ok.is_ok(), "{cert_ok:?}");
    assert_eq!(joined.cloud(), cloud.peers[0].cloud());
    cloud.peers.push(joined);

    // Both replicas list both peers, and the new one answers members.
    let p1 = cloud.peers[1].id();
    eventually_async(WAIT, "p1 to see both peers", || {
        let store = cloud.peers[1].control().store().clone();
        async move {
            let ids: Vec<_> = store.peers()?.iter().map(|r| r.id()).collect();
            Ok((ids.contains(&founder) && ids.contains(&p1)).then_some(()))
        }
    })
    .await?;
    let pong = cloud.peers[0]
        .mesh()
        .call::<AgentRpc>(p1, &AgentRequest::Ping)
        .await?;
    assert!(matches!(pong, AgentReply::Pong), "{pong:?}");

    // The same invite a second time: refused, and nothing is left behind.
    let mut again = cloud.settings("p2");
    again.join = Some(token);
    let dir = again.data_dir.clone();
    match Node::start(again).await {
        Err(NodeError::Join(reason)) => {
            assert!(reason.contains("refused"), "{reason}");
            assert!(!dir.exists(), "a refused join left {}", dir.display());
        }
        Err(other) => bail!("expected a refused join, got {other}"),
        Ok(node) => {
            node.shutdown().await;
            bail!("a used invite was accepted twice");
        }
    }

    // A token altered in transit is caught before anything is dialed: one
    // character in the middle (inside the signed body or the signature)
    // is replaced by another.
    let token = cloud.invite(0).await?;
    let middle = token.len() / 2;
    let swapped = if token.as_bytes()[middle] == b'A' {
        "B"
    } else {
        "A"
    };
    let mut forged_token = token.clone();
    forged_token.replace_range(middle..middle + 1, swapped);
    assert_ne!(forged_token, token);
    let mut forged = cloud.settings("p3");
    forged.join = Some(forged_token);
    let err = Node::start(forged)
        .await
        .err()
        .context("a forged invite was accepted")?;
    assert!(matches!(err, NodeError::Join(_)), "{err}");

    cloud.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_peer_is_cut_off() -> Result<()> {
    let mut cloud = LocalCloud::found("node-revoke").await?;
    cloud.join("p1", 0).await?;
    cloud.join("p2", 0).await?;
    let (founder, p2) = (cloud.peers[0].id(), cloud.peers[2].id());
    // p2 can talk to the founder while it is a member.
    eventually_async(WAIT, "p2 to reach the founder", || {
        let mesh = cloud.peers[2].mesh().clone();
        async move {
            Ok(matches!(
                mesh.call::<AgentRpc>(founder, &AgentRequest::Ping).await,
                Ok(AgentReply::Pong)
            )
            .then_some(()))
        }
    })
    .await?;

    let revoked = cloud
        .api(0, "POST", &format!("/v1/peers/{p2}/revoke"), None)
        .await?;
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    // Every other replica refuses it from then on.
    for observer in [0, 1] {
        let peer = cloud.peers[observer].id();
        eventually_async(WAIT, "the revoked peer to be refused", || {
            let mesh = cloud.peers[2].mesh().clone();
            async move {
                match mesh.call::<AgentRpc>(peer, &AgentRequest::Ping).await {
                    Ok(_) => Ok(None),
                    Err(
                        MeshError::Refused { .. }
                        | MeshError::Unreachable { .. }
                        | MeshError::Request { .. },
                    ) => Ok(Some(())),
                    Err(other) => bail!("unexpected error: {other}"),
                }
            }
        })
        .await?;
    }
    assert!(cloud.peers[0].mesh().admission().is_revoked(&p2));
    cloud.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_stewards_receive_the_cloud_key() -> Result<()> {
    let mut cloud = LocalCloud::found("node-stewards").await?;
    assert!(cloud.peers[0].holds_cloud_key());
    cloud.join("p1", 0).await?;
    cloud.join("p2", 0).await?;
    // Three peers make three stewards; each must be able to sign
    // certificates when it leads, so each gets the key.
    eventually_async(WAIT, "three stewards", || {
        let control = cloud.peers[0].control().clone();
        async move { Ok((control.voters().len() == 3).then_some(())) }
    })
    .await?;
    eventually_async(WAIT, "every steward to hold the cloud key", || {
        let held: Vec<bool> = cloud.peers.iter().map(|p| p.holds_cloud_key()).collect();
        async move { Ok(held.iter().all(|h| *h).then_some(())) }
    })
    .await?;
    // A joiner invited by a steward that is not the founder is admitted:
    // that steward signs with the key it was handed.
    cloud.join("p3", 1).await?;
    let key_file = cloud.peers[1].settings().data_dir.join("cloud.key");
    assert!(key_file.exists(), "the handed key is kept on disk");
    cloud.shutdown().await;
    Ok(())
}
