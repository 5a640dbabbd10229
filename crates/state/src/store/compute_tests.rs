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
        owner: None,
        networks: Vec::new(),
    })
}

/// `container` on `networks` (name, address; `0.0.0.0` for any).
fn on_networks(name: &str, networks: &[(&str, [u8; 4])]) -> Command {
    let Command::PutContainer(mut entry) = container(name, "busybox") else {
        unreachable!()
    };
    entry.networks = networks
        .iter()
        .map(|(network, address)| crate::Attachment {
            network: network.to_string(),
            address: std::net::Ipv4Addr::from(*address),
        })
        .collect();
    Command::PutContainer(entry)
}

/// The address container `name` holds on `network`.
fn address(h: &Harness, name: &str, network: &str) -> Option<String> {
    h.store
        .container(name)
        .unwrap()
        .unwrap()
        .networks
        .iter()
        .find(|a| a.network == network)
        .map(|a| a.address.to_string())
}

fn create_network(name: &str, subnet: Option<&str>) -> Command {
    Command::CreateNetwork {
        name: name.into(),
        subnet: subnet.map(|s| s.parse().unwrap()),
        avoid: vec!["10.88.0.0/16".parse().unwrap()],
        env: None,
        now: 5,
    }
}

#[tokio::test]
async fn networks_get_their_own_subnets_and_addresses_stay_unique() {
    let mut h = Harness::new("networks");
    h.run(template("busybox", "latest")).await.unwrap();
    // From the pool, a /24 each, never the same twice.
    h.run(create_network("n1", None)).await.unwrap();
    h.run(create_network("n2", None)).await.unwrap();
    let n1 = h.store.network("n1").unwrap().unwrap();
    let n2 = h.store.network("n2").unwrap().unwrap();
    assert_eq!(n1.subnet.to_string(), "10.210.0.0/24");
    assert_eq!(n2.subnet.to_string(), "10.210.1.0/24");
    assert_ne!(n1.id, n2.id);
    // Chosen subnets may overlap nothing: a network, or what the peer uses.
    assert!(matches!(
        h.run(create_network("n3", Some("10.210.1.128/25"))).await,
        Err(CommandError::NetworkOverlap { .. })
    ));
    assert!(matches!(
        h.run(create_network("n3", Some("10.88.5.0/24"))).await,
        Err(CommandError::NetworkOverlap { .. })
    ));
    assert!(matches!(
        h.run(create_network("n3", Some("10.9.0.0/31"))).await,
        Err(CommandError::InvalidRecord(_))
    ));
    assert_eq!(
        h.run(create_network("n1", None)).await,
        Err(CommandError::NetworkExists("n1".into()))
    );
    h.run(create_network("tiny", Some("10.9.0.0/30")))
        .await
        .unwrap();

    // Addresses: the lowest free by default, a chosen one if free.
    h.run(on_networks("a", &[("n1", [0, 0, 0, 0])]))
        .await
        .unwrap();
    h.run(on_networks(
        "b",
        &[("n1", [10, 210, 0, 9]), ("n2", [0, 0, 0, 0])],
    ))
    .await
    .unwrap();
    h.run(on_networks("c", &[("n1", [0, 0, 0, 0])]))
        .await
        .unwrap();
    assert_eq!(address(&h, "a", "n1").as_deref(), Some("10.210.0.2"));
    assert_eq!(address(&h, "b", "n1").as_deref(), Some("10.210.0.9"));
    assert_eq!(address(&h, "b", "n2").as_deref(), Some("10.210.1.2"));
    assert_eq!(address(&h, "c", "n1").as_deref(), Some("10.210.0.3"));
    let members = h.store.network_members("n1").unwrap();
    assert_eq!(members.len(), 3);
    // Taken, outside, the gateway, unknown networks, twice the same one.
    assert!(matches!(
        h.run(on_networks("d", &[("n1", [10, 210, 0, 9])])).await,
        Err(CommandError::AddressTaken { container, .. }) if container == "b"
    ));
    for outside in [[10, 210, 1, 5], [10, 210, 0, 1], [10, 210, 0, 255]] {
        assert!(matches!(
            h.run(on_networks("d", &[("n1", outside)])).await,
            Err(CommandError::AddressOutside { .. })
        ));
    }
    assert_eq!(
        h.run(on_networks("d", &[("nope", [0, 0, 0, 0])])).await,
        Err(CommandError::NetworkUnknown("nope".into()))
    );
    assert!(matches!(
        h.run(on_networks(
            "d",
            &[("n1", [0, 0, 0, 0]), ("n1", [0, 0, 0, 0])]
        ))
        .await,
        Err(CommandError::InvalidRecord(_))
    ));
    assert!(h.store.container("d").unwrap().is_none());
    // A /30 holds one container.
    h.run(on_networks("t1", &[("tiny", [0, 0, 0, 0])]))
        .await
        .unwrap();
    assert_eq!(
        h.run(on_networks("t2", &[("tiny", [0, 0, 0, 0])])).await,
        Err(CommandError::NetworkFull("tiny".into()))
    );
    // In use until its containers are gone.
    assert!(matches!(
        h.run(Command::DeleteNetwork { name: "n2".into() }).await,
        Err(CommandError::NetworkInUse { container, .. }) if container == "b"
    ));
    h.run(Command::DeleteContainer { name: "b".into() })
        .await
        .unwrap();
    h.run(Command::DeleteNetwork { name: "n2".into() })
        .await
        .unwrap();
    assert!(h.store.network("n2").unwrap().is_none());
    // Its freed address goes to the next container that asks.
    h.run(on_networks("e", &[("n1", [0, 0, 0, 0])]))
        .await
        .unwrap();
    assert_eq!(address(&h, "e", "n1").as_deref(), Some("10.210.0.4"));
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

fn environment(name: &str, at: u64) -> crate::EnvironmentRecord {
    crate::EnvironmentRecord {
        name: name.into(),
        source: "services: {}".into(),
        vars: Default::default(),
        services: [(
            "web".to_string(),
            crate::ServiceEntry {
                spec: vec![1, 2, 3],
                digest: [7; 32],
                replicas: 2,
            },
        )]
        .into(),
        generation: 0,
        phase: crate::EnvPhase::Ready,
        created_at: at,
        updated_at: at,
        previous: None,
    }
}

fn event(n: u64) -> crate::EnvEvent {
    crate::EnvEvent {
        at: n,
        service: Some("web".into()),
        replica: None,
        kind: "placed".into(),
        message: format!("event {n}"),
    }
}

#[tokio::test]
async fn environments_update_by_generation_and_keep_their_replicas_and_events() {
    let mut h = Harness::new("environments");
    let put = |record, expected_generation| Command::PutEnvironment {
        record,
        expected_generation,
    };
    assert!(matches!(
        h.run(put(environment("Shop", 1), 0)).await,
        Err(CommandError::InvalidRecord(_))
    ));
    h.run(put(environment("shop", 1), 0)).await.unwrap();
    assert_eq!(
        h.run(put(environment("shop", 2), 0)).await,
        Err(CommandError::EnvironmentChanged {
            env: "shop".into(),
            expected: 0,
            found: 1
        })
    );
    h.run(put(environment("shop", 5), 1)).await.unwrap();
    let shop = h.store.environment("shop").unwrap().unwrap();
    assert_eq!(
        (shop.generation, shop.created_at, shop.updated_at),
        (2, 1, 5)
    );

    // A replica of the environment holds it until it is gone.
    h.run(template("busybox", "latest")).await.unwrap();
    let Command::PutContainer(mut replica) = container("shop-web-0", "busybox") else {
        unreachable!()
    };
    replica.owner = Some(crate::ReplicaOf {
        env: "shop".into(),
        service: "web".into(),
        index: 0,
        epoch: 1,
        digest: [7; 32],
    });
    h.run(Command::PutContainer(replica)).await.unwrap();
    h.run(container("loose", "busybox")).await.unwrap();
    let replicas = h.store.env_replicas("shop").unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].name, "shop-web-0");
    let delete = || Command::DeleteEnvironment {
        name: "shop".into(),
    };
    assert_eq!(
        h.run(delete()).await,
        Err(CommandError::EnvironmentInUse {
            env: "shop".into(),
            container: "shop-web-0".into()
        })
    );

    // Events stay in order, at most MAX_ENV_EVENTS of them.
    let extra = 5;
    for n in 0..(crate::MAX_ENV_EVENTS as u64 + extra) {
        h.run(Command::RecordEnvEvent {
            env: "shop".into(),
            event: event(n),
        })
        .await
        .unwrap();
    }
    let events = h.store.env_events("shop").unwrap();
    assert_eq!(events.len(), crate::MAX_ENV_EVENTS);
    assert_eq!(events[0].at, extra);
    assert!(events.windows(2).all(|w| w[0].at < w[1].at));
    assert_eq!(
        h.run(Command::RecordEnvEvent {
            env: "nowhere".into(),
            event: event(0)
        })
        .await,
        Err(CommandError::EnvironmentUnknown("nowhere".into()))
    );

    h.run(Command::DeleteContainer {
        name: "shop-web-0".into(),
    })
    .await
    .unwrap();
    h.run(delete()).await.unwrap();
    assert!(h.store.environment("shop").unwrap().is_none());
    assert!(h.store.env_events("shop").unwrap().is_empty());
    assert_eq!(
        h.run(delete()).await,
        Err(CommandError::EnvironmentUnknown("shop".into()))
    );
    assert_eq!(h.store.environments().unwrap().len(), 0);
}
