//! Odd and hostile input: errors, never panics; anchors and merge keys as
//! Compose files use them.

use super::super::{ParseFailure, Variables, parse};
use super::{assert_error, errors_of, no_files, parse_ok};

/// Inputs chosen to hit the corners of each stage: YAML syntax, types in
/// the wrong place, interpolation, units, and sheer size.
fn odd_inputs() -> Vec<String> {
    let mut inputs: Vec<String> = [
        "",
        " ",
        "\0",
        "\u{feff}",
        "---",
        "...",
        "~",
        "null",
        "[]",
        "{}",
        "services",
        "services:",
        "services: ~",
        "services: []",
        "services: [a, b]",
        "services: 42",
        "services: {web: 1}",
        "services: {web: []}",
        "services: {web: {image: {}}}",
        "services: {web: {image: app, ports: 80}}",
        "services: {web: {image: app, ports: [[]]}}",
        "services: {web: {image: app, ports: [{}]}}",
        "services: {web: {image: app, environment: 5}}",
        "services: {web: {image: app, environment: [[a]]}}",
        "services: {web: {image: app, environment: {A: [1]}}}",
        "services: {web: {image: app, command: {}}}",
        "services: {web: {image: app, command: [[x]]}}",
        "services: {web: {image: app, healthcheck: []}}",
        "services: {web: {image: app, healthcheck: {test: []}}}",
        "services: {web: {image: app, healthcheck: {test: [CMD]}}}",
        "services: {web: {image: app, healthcheck: {test: {}}}}",
        "services: {web: {image: app, depends_on: 3}}",
        "services: {web: {image: app, depends_on: {a: 3}}}",
        "services: {web: {image: app, deploy: []}}",
        "services: {web: {image: app, deploy: {replicas: -1}}}",
        "services: {web: {image: app, deploy: {replicas: 1.5}}}",
        "services: {web: {image: app, deploy: {resources: {limits: {memory: 99999999999999999999T}}}}}",
        "services: {web: {image: app, x-coop: []}}",
        "services: {web: {image: app, x-coop: {setup: {}}}}",
        "services: {web: {image: app, x-coop: {setup: [1]}}}",
        "services: {web: {image: '${'}}",
        "services: {web: {image: '${A:-${B:-${C'}}",
        "services: {web: {image: '$'}}",
        "services: {web: {image: '${A:?}'}}",
        "services: {web: {image: \"\\0\"}}",
        "x-coop: []",
        "x-coop: {variables: []}",
        "x-coop: {variables: {A: []}}",
        "x-coop: {variables: {A: {type: []}}}",
        "x-coop: {variables: {A: {required: maybe}}}",
        "? a\n: b",
        "? [a, b]\n: c",
        "a: &x 1\nb: *y",
        "&a [*a]",
        "a: !!binary aGk=",
        "a: !custom x",
        "%YAML 1.2\n---\na: 1",
        "%TAG ! tag:example.com:\n---\na: !x 1",
        "'unterminated",
        "\"unterminated",
        "a: |\n  block\n b: x",
        "\t- tab",
        "a:\n\t- tab",
        "{a: 1, a: 2}",
        "- - - - -",
        "{{{{",
        "]]]]",
        ":::::",
        "- &a\n- *a",
        "services:\n  web:\n    <<: 1\n    image: app",
        "services:\n  web:\n    <<: [1]\n    image: app",
        "services:\n  web:\n    <<: *nothing",
        "🙂: 🙂",
        "services: {🙂: {image: app}}",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    inputs.push("[".repeat(10_000));
    inputs.push("{a: ".repeat(10_000));
    inputs.push("- ".repeat(5_000));
    inputs.push(format!(
        "services: {{web: {{image: '{}'}}}}",
        "${A:-".repeat(1_000)
    ));
    inputs.push("a: ".to_string() + &"x".repeat(100_000));
    // Wide rather than deep: many keys, many ports (the last one repeated).
    let keys: String = (0..50_000).map(|index| format!("k{index}: 1\n")).collect();
    inputs.push(keys);
    let ports: Vec<String> = (1..=20_000).map(|port| format!("'{port}:80'")).collect();
    inputs.push(format!(
        "services: {{web: {{image: app, ports: [{}, '1:80']}}}}",
        ports.join(", ")
    ));
    inputs
}

#[test]
fn odd_input_gives_errors_not_panics() {
    let variables = Variables::default();
    for input in odd_inputs() {
        match parse(&input, &variables, &no_files) {
            Ok(blueprint) => panic!("accepted {input:?}: {blueprint:?}"),
            Err(ParseFailure::Invalid(errors)) => assert!(!errors.0.is_empty(), "{input:?}"),
            Err(ParseFailure::MissingVariables(missing)) => {
                panic!("{input:?} asked for {missing:?}")
            }
        }
    }
}

#[test]
fn every_prefix_of_a_real_blueprint_is_handled() {
    // Cutting a valid file anywhere, even inside a character, must give an
    // answer rather than a panic.
    let source = "name: shop\nservices:\n  web:\n    image: web:1 # ✓\n    ports: ['8080:80']\n    environment: {A: \"${A:-x}\"}\n    healthcheck: {test: [CMD-SHELL, 'true']}\n";
    let variables = Variables::default();
    for end in 0..=source.len() {
        if let Some(prefix) = source.get(..end) {
            let _ = parse(prefix, &variables, &no_files);
        }
    }
}

#[test]
fn anchors_and_merge_keys_share_settings_between_services() {
    let blueprint = parse_ok(
        r#"
x-common: &common
  image: app:1
  restart: always
  environment: &env
    LOG: info
services:
  one:
    <<: *common
  two:
    <<: *common
    restart: "no"
    environment:
      <<: *env
      EXTRA: "1"
"#,
    );
    let one = &blueprint.services["one"];
    let two = &blueprint.services["two"];
    assert_eq!(one.image, two.image);
    assert_eq!(one.restart, super::super::RestartPolicy::Always);
    assert_eq!(two.restart, super::super::RestartPolicy::No);
    assert_eq!(two.environment["LOG"], "info");
    assert_eq!(two.environment["EXTRA"], "1");
}

#[test]
fn errors_in_merged_settings_point_at_where_they_are_written() {
    let errors = errors_of(
        r#"
x-common: &common
  image: app:1
  restart: sometimes
services:
  one:
    <<: *common
"#,
    );
    assert_error(
        &errors,
        "services.one.restart",
        3,
        "`sometimes` is not a restart policy",
    );
}
