//! Each class of problem, with the path and line it is reported at, and
//! several problems reported together.

use super::super::{BlueprintError, BlueprintErrors, ParseFailure, parse};
use super::{assert_error, doc, errors_of, no_files};

#[test]
fn an_unsupported_key_names_its_path_and_line() {
    let errors = errors_of(
        r#"
services:
  web:
    image: web
    build: .
"#,
    );
    assert_eq!(errors.len(), 1);
    let shown = errors[0].to_string();
    assert!(
        shown.starts_with("services.web.build: not supported by coop; coop reads image, command"),
        "{shown}"
    );
    assert!(shown.ends_with("(line 4)"), "{shown}");
}

#[test]
fn unsupported_keys_everywhere_are_refused_and_extensions_pass() {
    let errors = errors_of(
        r#"
volumes: {data: {}}
x-anything: {ignored: true}
services:
  web:
    image: web
    x-team: frontend
    healthcheck: {test: "true", start_interval: 1s}
    deploy:
      mode: global
      resources: {reservations: {cpus: "1"}}
      placement: {max_replicas_per_node: 1}
    x-coop: {colour: blue}
"#,
    );
    assert_error(&errors, "volumes", 1, "not supported by coop");
    assert_error(
        &errors,
        "services.web.healthcheck.start_interval",
        7,
        "not supported",
    );
    assert_error(&errors, "services.web.deploy.mode", 9, "not supported");
    assert_error(
        &errors,
        "services.web.deploy.resources.reservations",
        10,
        "not supported",
    );
    assert_error(
        &errors,
        "services.web.deploy.placement.max_replicas_per_node",
        11,
        "not supported",
    );
    assert_error(&errors, "services.web.x-coop.colour", 12, "not supported");
    assert_eq!(errors.len(), 6, "{errors:?}");
}

#[test]
fn several_errors_come_back_together_in_line_order() {
    let failure = parse(
        doc(r#"
services:
  web:
    image: Web
    ports: ["80"]
    deploy:
      replicas: 5000
      resources:
        limits: {cpus: lots, memory: 12X}
    healthcheck: {test: "true", interval: 10x}
    x-coop: {size: giant}
  db:
    restart: sometimes
"#),
        &Default::default(),
        &no_files,
    )
    .unwrap_err();
    let ParseFailure::Invalid(BlueprintErrors(errors)) = &failure else {
        panic!("{failure:?}");
    };
    assert_error(
        errors,
        "services.web.image",
        3,
        "`Web` is not a template name",
    );
    assert_error(
        errors,
        "services.web.ports[0]",
        4,
        "names only the container port",
    );
    assert_error(errors, "services.web.deploy.replicas", 6, "from 0 to 1000");
    assert_error(
        errors,
        "services.web.deploy.resources.limits.cpus",
        8,
        "`lots` is not a CPU amount",
    );
    assert_error(
        errors,
        "services.web.deploy.resources.limits.memory",
        8,
        "`12X` is not an amount of bytes",
    );
    assert_error(
        errors,
        "services.web.healthcheck.interval",
        9,
        "`10x` is not a duration",
    );
    assert_error(
        errors,
        "services.web.x-coop.size",
        10,
        "`giant` is not a size",
    );
    assert_error(errors, "services.db", 11, "`image` is required");
    assert_error(
        errors,
        "services.db.restart",
        12,
        "`sometimes` is not a restart policy",
    );
    assert_eq!(errors.len(), 9, "{errors:?}");
    let lines: Vec<Option<usize>> = errors.iter().map(|error| error.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    // One per line when shown.
    assert_eq!(failure.to_string().lines().count(), 9);
}

#[test]
fn port_errors() {
    let errors = errors_of(
        r#"
services:
  web:
    image: web
    ports:
      - "8080:80"
      - "8080:81"
      - "8080:80/udp"
      - "0:80"
      - "70000:80"
      - 127.0.0.1:90:90
      - target: 80
      - {target: 80, published: 9090, protocol: sctp}
      - {target: 80, published: 9091, mode: ingress}
"#,
    );
    assert_error(
        &errors,
        "services.web.ports[1]",
        6,
        "host port 8080/tcp is already published at services.web.ports[0]",
    );
    assert_error(
        &errors,
        "services.web.ports[3]",
        8,
        "`0` is not a port number",
    );
    assert_error(
        &errors,
        "services.web.ports[4]",
        9,
        "`70000` is not a port number",
    );
    assert_error(&errors, "services.web.ports[5]", 10, "names a host address");
    assert_error(
        &errors,
        "services.web.ports[6]",
        11,
        "`published` is required",
    );
    assert_error(
        &errors,
        "services.web.ports[7].protocol",
        12,
        "`sctp` is not a protocol",
    );
    assert_error(
        &errors,
        "services.web.ports[8].mode",
        13,
        "only `mode: host`",
    );
    assert_eq!(errors.len(), 7, "{errors:?}");
}

#[test]
fn dependency_errors() {
    let errors = errors_of(
        r#"
services:
  web:
    image: web
    depends_on:
      api: {condition: service_healthy}
      cache: {condition: service_started}
      broken: {condition: service_started}
  api:
    image: api
  broken:
    image: BAD
  job:
    image: job
    depends_on: [web, web]
  task:
    image: task
    depends_on:
      web: {condition: when_ready}
"#,
    );
    assert_error(
        &errors,
        "services.web.depends_on.api",
        5,
        "api has no health check",
    );
    assert_error(
        &errors,
        "services.web.depends_on.cache",
        6,
        "there is no service cache",
    );
    assert_error(&errors, "services.broken.image", 11, "not a template name");
    assert_error(
        &errors,
        "services.job.depends_on[1]",
        14,
        "web is listed twice",
    );
    assert_error(
        &errors,
        "services.task.depends_on.web.condition",
        18,
        "`when_ready` is not a condition",
    );
    // broken has a problem of its own; depending on it is not reported as
    // depending on a service that does not exist.
    assert_eq!(errors.len(), 5, "{errors:?}");
}

#[test]
fn dependency_cycles_are_named() {
    let errors = errors_of(
        r#"
services:
  a: {image: app, depends_on: [b]}
  b: {image: app, depends_on: [c]}
  c: {image: app, depends_on: [a]}
  d: {image: app, depends_on: [d]}
  e: {image: app, depends_on: [a]}
"#,
    );
    assert_error(
        &errors,
        "services.a.depends_on",
        2,
        "dependency cycle: a -> b -> c -> a",
    );
    assert_error(
        &errors,
        "services.d.depends_on",
        5,
        "dependency cycle: d -> d",
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn a_long_chain_of_dependencies_is_fine() {
    let mut source = String::from("services:\n");
    for index in 0..2000 {
        source.push_str(&format!(
            "  s{index}: {{image: app, depends_on: [s{}]}}\n",
            index + 1
        ));
    }
    source.push_str("  s2000: {image: app}\n");
    let blueprint =
        parse(&source, &Default::default(), &no_files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blueprint.services.len(), 2001);
}

#[test]
fn empty_and_missing_services() {
    assert_error(&errors_of("\nservices: {}\n"), "services", 1, "no services");
    assert_error(
        &errors_of("\nname: x\n"),
        "services",
        1,
        "`services` is required",
    );
    assert_error(
        &errors_of("\n- a\n- b\n"),
        "",
        1,
        "a blueprint is a mapping",
    );
    assert_error(
        &errors_of("\nservices:\n  web:\n"),
        "services.web",
        2,
        "expected a mapping, found nothing",
    );
    assert_error(
        &errors_of("\nservices:\n  Web_1: {image: app}\n"),
        "services.Web_1",
        2,
        "is not a service name",
    );
    assert_error(
        &errors_of("\nname: My Shop\nservices:\n  web: {image: app}\n"),
        "name",
        1,
        "is not a blueprint name",
    );
}

#[test]
fn template_references_are_checked() {
    let errors = errors_of(
        r#"
services:
  a: {image: nginx/nginx:1}
  b: {image: "app:"}
  c: {image: "app@sha256:0123"}
  d: {image: [app]}
"#,
    );
    assert_error(&errors, "services.a.image", 2, "registry image");
    assert_error(&errors, "services.b.image", 3, "not a template version");
    assert_error(&errors, "services.c.image", 4, "registry image");
    assert_error(
        &errors,
        "services.d.image",
        5,
        "expected a value, found a list",
    );
}

#[test]
fn placement_and_setup_errors() {
    let errors = errors_of(
        r#"
services:
  web:
    image: web
    deploy:
      placement:
        constraints: [node.role==manager]
        preferences: [{spread: zone}]
    x-coop:
      spread: rack
      setup:
        - run: ""
        - {file: relative/path, content: x, mode: "999"}
        - {file: /etc/x}
        - {run: "true", file: /etc/y}
        - {run: "sleep 'open"}
  api:
    image: api
    x-coop: {spread: zone, binpack: true}
"#,
    );
    assert_error(
        &errors,
        "services.web.deploy.placement.constraints[0]",
        6,
        "`node.role` cannot be constrained",
    );
    assert_error(
        &errors,
        "services.web.deploy.placement.preferences[0].spread",
        7,
        "node.labels.KEY",
    );
    assert_error(
        &errors,
        "services.web.x-coop.spread",
        9,
        "spread over zone or peer",
    );
    assert_error(
        &errors,
        "services.web.x-coop.setup[0].run",
        11,
        "the command is empty",
    );
    assert_error(
        &errors,
        "services.web.x-coop.setup[1].file",
        12,
        "not an absolute path",
    );
    assert_error(
        &errors,
        "services.web.x-coop.setup[1].mode",
        12,
        "not a file mode",
    );
    assert_error(
        &errors,
        "services.web.x-coop.setup[2]",
        13,
        "`content` is required",
    );
    assert_error(&errors, "services.web.x-coop.setup[3]", 14, "either `run`");
    assert_error(
        &errors,
        "services.web.x-coop.setup[4].run",
        15,
        "quote is never closed",
    );
    assert_error(
        &errors,
        "services.api.x-coop.binpack",
        18,
        "keep one of them",
    );
}

#[test]
fn environment_and_env_file_errors() {
    let files = |path: &str| -> Result<String, String> {
        match path {
            "bad.env" => Ok("GOOD=1\nnot a line\n".into()),
            _ => Err("permission denied".into()),
        }
    };
    let failure = parse(
        doc(r#"
services:
  app:
    image: app
    env_file: [bad.env, secret.env]
    environment:
      - "=novalue"
      - "A=1"
      - "A=2"
"#),
        &Default::default(),
        &files,
    )
    .unwrap_err();
    let ParseFailure::Invalid(BlueprintErrors(errors)) = failure else {
        panic!("{failure:?}");
    };
    assert_error(
        &errors,
        "services.app.env_file[0]",
        4,
        "in `bad.env`, line 2: expected KEY=VALUE",
    );
    assert_error(
        &errors,
        "services.app.env_file[1]",
        4,
        "cannot read `secret.env`: permission denied",
    );
    assert_error(
        &errors,
        "services.app.environment[0]",
        6,
        "not an environment variable name",
    );
    assert_error(
        &errors,
        "services.app.environment[2]",
        8,
        "A is given twice",
    );
}

#[test]
fn malformed_yaml_gives_one_error_with_its_line() {
    let errors = errors_of(
        r#"
services:
  web:
    image: web
    ports: ["80:80"
  api:
    image: api
"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.starts_with("malformed YAML"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].line.is_some_and(|line| (4..=6).contains(&line)),
        "{}",
        errors[0]
    );
}

#[test]
fn display_reads_path_message_line() {
    let error = BlueprintError {
        path: "services.web.build".into(),
        line: Some(12),
        message: "not supported by coop".into(),
    };
    assert_eq!(
        error.to_string(),
        "services.web.build: not supported by coop (line 12)"
    );
    let whole = BlueprintErrors(vec![
        error.clone(),
        BlueprintError {
            path: String::new(),
            line: None,
            message: "the blueprint is empty".into(),
        },
    ]);
    assert_eq!(
        whole.to_string(),
        "services.web.build: not supported by coop (line 12)\nthe blueprint is empty"
    );
}
