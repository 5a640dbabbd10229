//! The apply rules of templates and containers: no silent overwrites, no
//! container without its template, no template removed from under a container.

use coop_types::PeerId;

use super::tests::Harness;
use crate::compute::{ContainerEntry, DesiredState, RestartPolicy, TemplateEntry};
use crate::objects::{BlockRef, NewStripe, ShardLocation, StripeLayout, StripeRecord};
use crate::records::{Command, CommandError};

fn template(name: &str, version: &str) -> Command {
    stored_template(name, version, 10, &[])
}

/// A template whose blob of `len` bytes is one new block `n`, or which
/// shares the live blocks `shared`.
fn stored_template(name: &str, version: &str, n: u8, shared: &[u8]) -> Command {
    let fresh = shared.is_empty();
    let ids: Vec<u8> = if fresh { vec![n] } else { shared.to_vec() };
    let blocks: Vec<BlockRef> = ids
        .iter()
        .map(|id| BlockRef {
            id: [*id; 32],
            len: 10,
        })
        .collect();
    let stripes = if fresh {
        vec![NewStripe {
            id: [n; 32],
            stripe: StripeRecord {
                layout: StripeLayout::Replicas { copies: 1 },
                len: 10,
                shard_len: 10,
                shards: vec![ShardLocation {
                    peer: PeerId([9; 32]),
                    disk: "d0".into(),
                    checksum: [n; 32],
                }],
                refs: 0,
                dead_since: None,
            },
        }]
    } else {
        Vec::new()
    };
    Command::PutTemplate {
        entry: TemplateEntry {
            name: name.into(),
            version: version.into(),
            content_id: "ab".repeat(32),
            size_bytes: 10 * blocks.len() as u64,
            imported_by: PeerId([1; 32]),
            imported_at: 1,
            signed: vec![1, 2, 3],
            blocks,
        },
        stripes,
    }
}

fn remove_template(name: &str, version: &str) -> Command {
    Command::DeleteTemplate {
        name: name.into(),
        version: version.into(),
        now: 50,
    }
}

fn container(name: &str, template: &str) -> Command {
    Command::PutContainer(ContainerEntry {
        name: name.into(),
        peer: PeerId([1; 32]),
        template: template.into(),
        version: "latest".into(),
        content_id: "ab".repeat(32),
        size: "tiny".into(),
        limits: coop_types::Limits {
            cpus_milli: 250,
            memory_bytes: 1 << 28,
            disk_bytes: 1 << 32,
            pids: 512,
        },
        argv: vec!["sh".into()],
        env: Vec::new(),
        workdir: None,
        user: None,
        ports: vec!["8080:80/tcp".into()],
        restart: RestartPolicy::Always,
        desired: DesiredState::Running,
        created_at: 1,
    })
}

#[tokio::test]
async fn templates_and_containers_follow_their_rules() {
    let mut h = Harness::new("compute");
    h.run(template("busybox", "latest")).await.unwrap();
    assert_eq!(
        h.run(template("busybox", "latest")).await,
        Err(CommandError::TemplateExists("busybox:latest".into()))
    );
    assert!(matches!(
        h.run(template("a/b", "latest")).await,
        Err(CommandError::InvalidRecord(_))
    ));
    assert_eq!(
        h.run(container("web", "nginx")).await,
        Err(CommandError::TemplateUnknown("nginx:latest".into()))
    );
    h.run(container("web", "busybox")).await.unwrap();
    assert_eq!(
        h.run(container("web", "busybox")).await,
        Err(CommandError::ContainerExists("web".into()))
    );
    assert!(matches!(
        h.run(remove_template("busybox", "latest")).await,
        Err(CommandError::TemplateInUse { .. })
    ));
    h.run(Command::SetContainerDesired {
        name: "web".into(),
        desired: DesiredState::Stopped,
    })
    .await
    .unwrap();
    let web = h.store.container("web").unwrap().unwrap();
    assert_eq!(web.desired, DesiredState::Stopped);
    assert_eq!(h.store.containers().unwrap().len(), 1);
    h.run(Command::DeleteContainer { name: "web".into() })
        .await
        .unwrap();
    assert_eq!(
        h.run(Command::DeleteContainer { name: "web".into() }).await,
        Err(CommandError::ContainerUnknown("web".into()))
    );
    h.run(remove_template("busybox", "latest")).await.unwrap();
    assert!(h.store.templates().unwrap().is_empty());
}

#[tokio::test]
async fn template_blobs_hold_references_on_their_blocks() {
    let mut h = Harness::new("template-blocks");
    h.run(stored_template("busybox", "1", 4, &[]))
        .await
        .unwrap();
    // A second version with the same blob shares the block.
    h.run(stored_template("busybox", "2", 0, &[4]))
        .await
        .unwrap();
    assert_eq!(h.store.stripe(&[4; 32]).unwrap().unwrap().refs, 2);
    assert_eq!(
        h.run(stored_template("other", "1", 0, &[5])).await,
        Err(CommandError::StripeGone)
    );
    assert!(h.store.template("other", "1").unwrap().is_none());
    h.run(remove_template("busybox", "1")).await.unwrap();
    let stripe = h.store.stripe(&[4; 32]).unwrap().unwrap();
    assert_eq!((stripe.refs, stripe.dead_since), (1, None));
    h.run(remove_template("busybox", "2")).await.unwrap();
    let stripe = h.store.stripe(&[4; 32]).unwrap().unwrap();
    assert_eq!((stripe.refs, stripe.dead_since), (0, Some(50)));
    // Sizes must match the blocks.
    let Command::PutTemplate { mut entry, stripes } = stored_template("bad", "1", 6, &[]) else {
        unreachable!()
    };
    entry.size_bytes = 11;
    assert!(matches!(
        h.run(Command::PutTemplate { entry, stripes }).await,
        Err(CommandError::InvalidRecord(_))
    ));
}
