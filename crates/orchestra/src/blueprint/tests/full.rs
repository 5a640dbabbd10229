//! A whole environment read into typed specs, the forms each key takes,
//! and digests.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::{
    Comparison, Constraint, Dependency, DependencyCondition, HealthCheck, HealthTest, PortSpec,
    Protocol, ResourceLimits, RestartPolicy, SetupStep, Spread, TemplateRef, VariableKind, parse,
};
use super::{doc, parse_ok, parse_with, variables};

/// The shop environment the environments tests deploy: a database with
/// one-off setup, a migration that runs once it is healthy, two API
/// replicas that wait for the migration, three web replicas spread over
/// zones that wait for a healthy API.
const SHOP: &str = r#"
name: shop
x-coop:
  variables:
    DOMAIN:
      description: Public name of the shop
      type: domain
    TIER:
      type: enum
      values: [dev, prod]
      default: dev
    WEB_REPLICAS:
      type: int
      default: 3
x-defaults: &defaults
  restart: always
  environment:
    LOG_LEVEL: info
services:
  db:
    image: postgres:16
    restart: unless-stopped
    environment: {POSTGRES_DB: shop}
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "shop"]
      interval: 5s
    x-coop:
      size: medium
      peer: storage-1
      binpack: true
      setup:
        - run: psql -U shop -c "select 1"
          retries: 5
          interval: 1s
        - file: /etc/shop/tier
          content: "${TIER}\n"
          mode: "0600"
  init:
    image: shop-api:2.1
    entrypoint: ["./migrate", "--once"]
    restart: "no"
    depends_on:
      db: {condition: service_healthy}
  api:
    image: shop-api:2.1
    restart: on-failure:3
    command: ./api --listen :9000 --domain "${DOMAIN}"
    environment:
      - TIER=${TIER}
      - DATABASE_URL=postgres://shop@db/shop
      - API_TOKEN
    env_file: api.env
    healthcheck:
      test: wget -q -O /dev/null http://localhost:9000/health
    depends_on:
      db:
        condition: service_healthy
        restart: true
      init: {condition: service_completed_successfully}
    deploy:
      replicas: 2
      placement:
        constraints: [node.labels.disk==ssd, node.hostname!=old-box]
        preferences: [{spread: node.labels.rack}]
    x-coop: {zone: eu-west, near: eu-west}
  web:
    <<: *defaults
    image: web:1.27
    ports:
      - "8080:80"
      - target: 443
        published: 8443
      - 5353:53/udp
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://localhost/ || exit 1"]
      interval: 10s
      timeout: 3s
      retries: 5
      start_period: 30s
    depends_on:
      api: {condition: service_healthy}
    deploy:
      replicas: ${WEB_REPLICAS}
      resources:
        limits: {cpus: "0.5", memory: 512M, pids: 256}
    x-coop:
      size: small
      spread: zone
    x-notes: ignored by coop, like any x- key
"#;

fn shop_files(path: &str) -> Result<String, String> {
    match path {
        "api.env" => Ok("TIER=from-file\nEXTRA=1\n# comment\n".to_string()),
        other => Err(format!("{other}: no such file")),
    }
}

#[test]
fn the_shop_blueprint_reads_into_typed_specs() {
    let sources = variables(
        &[("API_TOKEN", "secret")],
        &[("DOMAIN", "shop.example.com")],
        &[],
    );
    let blueprint = parse(doc(SHOP), &sources, &shop_files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blueprint.name.as_deref(), Some("shop"));
    assert!(blueprint.warnings.is_empty(), "{:?}", blueprint.warnings);
    let names: Vec<&str> = blueprint.services.keys().map(String::as_str).collect();
    assert_eq!(names, ["api", "db", "init", "web"]);

    let db = &blueprint.services["db"];
    assert_eq!(
        db.image,
        TemplateRef {
            name: "postgres".into(),
            version: Some("16".into())
        }
    );
    assert_eq!(db.restart, RestartPolicy::UnlessStopped);
    assert_eq!(db.replicas, 1);
    assert_eq!(db.environment["POSTGRES_DB"], "shop");
    assert_eq!(
        db.healthcheck,
        Some(HealthCheck {
            test: HealthTest::Command(vec!["pg_isready".into(), "-U".into(), "shop".into()]),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            retries: 3,
            start_period: Duration::ZERO,
        })
    );
    assert_eq!(db.size.as_deref(), Some("medium"));
    assert_eq!(
        db.placement.constraints,
        [Constraint::Peer("storage-1".into())]
    );
    assert!(db.placement.binpack);
    assert_eq!(
        db.setup,
        [
            SetupStep::Run {
                argv: vec![
                    "psql".into(),
                    "-U".into(),
                    "shop".into(),
                    "-c".into(),
                    "select 1".into()
                ],
                retries: 5,
                interval: Duration::from_secs(1),
            },
            SetupStep::File {
                path: "/etc/shop/tier".into(),
                content: "dev\n".into(),
                mode: 0o600,
            },
        ]
    );

    let init = &blueprint.services["init"];
    assert_eq!(init.restart, RestartPolicy::No);
    assert_eq!(
        init.entrypoint,
        Some(vec!["./migrate".into(), "--once".into()])
    );
    assert_eq!(init.command, None);
    assert_eq!(
        init.depends_on["db"].condition,
        DependencyCondition::ServiceHealthy
    );

    let api = &blueprint.services["api"];
    assert_eq!(api.replicas, 2);
    assert_eq!(
        api.restart,
        RestartPolicy::OnFailure {
            max_retries: Some(3)
        }
    );
    assert_eq!(
        api.command,
        Some(
            ["./api", "--listen", ":9000", "--domain", "shop.example.com"]
                .map(String::from)
                .to_vec()
        )
    );
    // environment wins over env_file; a bare name takes the variable.
    let expected: BTreeMap<String, String> = [
        ("API_TOKEN", "secret"),
        ("DATABASE_URL", "postgres://shop@db/shop"),
        ("EXTRA", "1"),
        ("TIER", "dev"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect();
    assert_eq!(api.environment, expected);
    assert_eq!(
        api.healthcheck.as_ref().map(|check| &check.test),
        Some(&HealthTest::Shell(
            "wget -q -O /dev/null http://localhost:9000/health".into()
        ))
    );
    assert_eq!(
        api.depends_on["db"],
        Dependency {
            condition: DependencyCondition::ServiceHealthy,
            required: true,
            restart: true
        }
    );
    assert_eq!(
        api.depends_on["init"].condition,
        DependencyCondition::ServiceCompletedSuccessfully
    );
    assert_eq!(
        api.placement.constraints,
        [
            Constraint::Label {
                key: "disk".into(),
                comparison: Comparison::Equal,
                value: "ssd".into()
            },
            Constraint::Hostname {
                comparison: Comparison::NotEqual,
                value: "old-box".into()
            },
            Constraint::Zone("eu-west".into()),
        ]
    );
    assert_eq!(api.placement.spread, [Spread::Label("rack".into())]);
    assert_eq!(api.placement.near.as_deref(), Some("eu-west"));

    let web = &blueprint.services["web"];
    assert_eq!(web.replicas, 3);
    assert_eq!(web.restart, RestartPolicy::Always, "merged from x-defaults");
    assert_eq!(web.environment["LOG_LEVEL"], "info");
    assert_eq!(
        web.ports,
        [
            PortSpec {
                host: 8080,
                container: 80,
                protocol: Protocol::Tcp
            },
            PortSpec {
                host: 8443,
                container: 443,
                protocol: Protocol::Tcp
            },
            PortSpec {
                host: 5353,
                container: 53,
                protocol: Protocol::Udp
            },
        ]
    );
    let check = web.healthcheck.as_ref().expect("web has a health check");
    assert_eq!(
        check.test,
        HealthTest::Shell("wget -q -O /dev/null http://localhost/ || exit 1".into())
    );
    assert_eq!(
        (
            check.interval,
            check.timeout,
            check.retries,
            check.start_period
        ),
        (
            Duration::from_secs(10),
            Duration::from_secs(3),
            5,
            Duration::from_secs(30)
        )
    );
    assert_eq!(
        web.depends_on["api"].condition,
        DependencyCondition::ServiceHealthy
    );
    assert_eq!(
        web.limits,
        ResourceLimits {
            cpus_milli: Some(500),
            memory_bytes: Some(512 * 1024 * 1024),
            pids: Some(256)
        }
    );
    assert_eq!(web.size.as_deref(), Some("small"));
    assert_eq!(web.placement.spread, [Spread::Zone]);

    let domain = &blueprint.variables["DOMAIN"];
    assert_eq!(domain.kind, VariableKind::Domain);
    assert!(domain.required);
    assert_eq!(domain.value.as_deref(), Some("shop.example.com"));
    let tier = &blueprint.variables["TIER"];
    assert!(!tier.required);
    assert_eq!(tier.value.as_deref(), Some("dev"));
}

#[test]
fn a_blueprint_survives_a_round_trip_through_json() {
    let sources = variables(&[("API_TOKEN", "t"), ("DOMAIN", "a.example")], &[], &[]);
    let blueprint = parse(doc(SHOP), &sources, &shop_files).unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_string(&blueprint).unwrap();
    let back: super::super::Blueprint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, blueprint);
}

#[test]
fn digests_ignore_key_order_and_follow_every_change() {
    let one = parse_ok(
        r#"
services:
  web:
    image: web:1
    environment: {A: "1", B: "2"}
    ports: ["80:80"]
    deploy: {replicas: 2}
"#,
    );
    let reordered = parse_ok(
        r#"
services:
  web:
    deploy: {replicas: 2}
    ports: ["80:80"]
    environment:
      - B=2
      - A=1
    image: web:1
"#,
    );
    let web = &one.services["web"];
    assert_eq!(web.digest(), reordered.services["web"].digest());
    assert_eq!(web.digest(), web.clone().digest(), "the digest is stable");

    let mut changed = web.clone();
    changed.replicas = 3;
    assert_ne!(changed.digest(), web.digest());
    let mut changed = web.clone();
    changed.environment.insert("A".into(), "other".into());
    assert_ne!(changed.digest(), web.digest());
    let mut changed = web.clone();
    changed.image.version = None;
    assert_ne!(changed.digest(), web.digest());
    let mut changed = web.clone();
    changed.command = Some(Vec::new());
    assert_ne!(
        changed.digest(),
        web.digest(),
        "an empty command is not no command"
    );
    let mut changed = web.clone();
    changed.ports[0].protocol = Protocol::Udp;
    assert_ne!(changed.digest(), web.digest());
}

#[test]
fn commands_as_strings_or_lists() {
    let blueprint = parse_ok(
        r#"
services:
  a:
    image: app
    command: sh -c 'echo "hi there" && sleep 1'
    entrypoint: []
  b:
    image: app
    command: [sleep, 10]
"#,
    );
    assert_eq!(
        blueprint.services["a"].command,
        Some(vec![
            "sh".into(),
            "-c".into(),
            "echo \"hi there\" && sleep 1".into()
        ])
    );
    assert_eq!(blueprint.services["a"].entrypoint, Some(Vec::new()));
    assert_eq!(
        blueprint.services["b"].command,
        Some(vec!["sleep".into(), "10".into()])
    );
}

#[test]
fn health_checks_can_be_disabled() {
    let blueprint = parse_ok(
        r#"
services:
  a:
    image: app
    healthcheck: {test: ["NONE"]}
  b:
    image: app
    healthcheck: {disable: true}
  c:
    image: app
    healthcheck: {test: "true", retries: 0}
"#,
    );
    assert_eq!(blueprint.services["a"].healthcheck, None);
    assert_eq!(blueprint.services["b"].healthcheck, None);
    let check = blueprint.services["c"].healthcheck.as_ref().unwrap();
    assert_eq!(check.test, HealthTest::Shell("true".into()));
    assert_eq!(check.retries, 0);
}

#[test]
fn short_depends_on_and_optional_env_files() {
    let files = |path: &str| -> Result<String, String> {
        match path {
            "base.env" => Ok("A=base\nB=base\n".into()),
            "override.env" => Ok("B=override\n".into()),
            other => Err(format!("{other} not found")),
        }
    };
    let source = r#"
services:
  db: {image: db}
  app:
    image: app
    depends_on: [db]
    env_file:
      - base.env
      - override.env
      - path: local.env
        required: false
"#;
    let blueprint =
        parse(doc(source), &Default::default(), &files).unwrap_or_else(|e| panic!("{e}"));
    let app = &blueprint.services["app"];
    assert_eq!(
        app.depends_on["db"],
        Dependency {
            condition: DependencyCondition::ServiceStarted,
            required: true,
            restart: false
        }
    );
    assert_eq!(app.environment["A"], "base");
    assert_eq!(app.environment["B"], "override");
    assert_eq!(blueprint.warnings.len(), 1, "{:?}", blueprint.warnings);
    assert!(blueprint.warnings[0].contains("local.env"));
}

#[test]
fn environment_entries_without_a_value_take_the_variable() {
    let sources = variables(&[], &[], &[("FROM_ENV", "e")]);
    let blueprint = parse_with(
        r#"
services:
  app:
    image: app
    environment:
      FROM_ENV:
      EMPTY: ""
      NUMBER: 5
      UNSET_HERE:
"#,
        &sources,
    );
    let environment = &blueprint.services["app"].environment;
    assert_eq!(environment["FROM_ENV"], "e");
    assert_eq!(environment["EMPTY"], "");
    assert_eq!(environment["NUMBER"], "5");
    assert!(!environment.contains_key("UNSET_HERE"));
    assert_eq!(blueprint.warnings.len(), 1);
    assert!(
        blueprint.warnings[0]
            .starts_with("services.app.environment.UNSET_HERE: UNSET_HERE has no value"),
        "{}",
        blueprint.warnings[0]
    );
}

#[test]
fn defaults_apply_when_keys_are_left_out() {
    let blueprint = parse_ok("\nname: tiny\nversion: '3.9'\nservices:\n  one: {image: app}\n");
    let one = &blueprint.services["one"];
    assert_eq!(one.replicas, 1);
    assert_eq!(one.restart, RestartPolicy::No);
    assert_eq!(one.command, None);
    assert!(one.environment.is_empty());
    assert!(one.ports.is_empty());
    assert_eq!(one.healthcheck, None);
    assert_eq!(one.size, None);
    assert_eq!(one.limits, ResourceLimits::default());
    assert_eq!(one.placement, Default::default());
    assert!(one.setup.is_empty());
    assert!(blueprint.variables.is_empty());
}
