//! The apply rules of templates and containers: no silent overwrites, no
//! container without its template, no template removed from under a container.

use coop_types::PeerId;

use super::tests::Harness;
use crate::compute::{ContainerEntry, ContainerLimits, DesiredState, RestartPolicy, TemplateEntry};
use crate::records::{Command, CommandError};

fn template(name: &str, version: &str) -> Command {
    Command::PutTemplate(TemplateEntry {
        name: name.into(),
        version: version.into(),
        content_id: "ab".repeat(32),
        size_bytes: 10,
        imported_by: PeerId([1; 32]),
        imported_at: 1,
        signed: vec![1, 2, 3],
    })
}

fn container(name: &str, template: &str) -> Command {
    Command::PutContainer(ContainerEntry {
        name: name.into(),
        peer: PeerId([1; 32]),
        template: template.into(),
        version: "latest".into(),
        content_id: "ab".repeat(32),
        size: "tiny".into(),
        limits: ContainerLimits {
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
        h.run(Command::DeleteTemplate {
            name: "busybox".into(),
            version: "latest".into()
        })
        .await,
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
    h.run(Command::DeleteTemplate {
        name: "busybox".into(),
        version: "latest".into(),
    })
    .await
    .unwrap();
    assert!(h.store.templates().unwrap().is_empty());
}
