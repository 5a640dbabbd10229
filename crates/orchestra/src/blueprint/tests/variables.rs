//! Interpolation inside a blueprint, where values come from, and declared
//! variables: their types, defaults, and the list of those missing.

use super::super::{MissingVariable, ParseFailure, VariableKind, parse};
use super::{assert_error, doc, errors_with, no_files, parse_ok, parse_with, variables};

#[test]
fn every_interpolation_form_in_a_blueprint() {
    let sources = variables(&[("SET", "value"), ("EMPTY", "")], &[], &[]);
    let blueprint = parse_with(
        r#"
services:
  app:
    image: app
    environment:
      PLAIN: $SET
      BRACED: x-${SET}-y
      DEFAULT_UNSET: ${NOPE:-fallback}
      DEFAULT_EMPTY: ${EMPTY:-fallback}
      DASH_EMPTY: ${EMPTY-fallback}
      DASH_UNSET: ${NOPE-fallback}
      ALT_SET: ${SET:+alt}
      ALT_EMPTY: ${EMPTY:+alt}
      PLUS_EMPTY: ${EMPTY+alt}
      REQUIRED: ${SET:?must be set}
      ESCAPED: $$SET costs $$5
      NESTED: ${NOPE:-${SET}}
      ${KEY_NOT_INTERPOLATED}: kept
"#,
        &sources,
    );
    let environment = &blueprint.services["app"].environment;
    let expected = [
        ("PLAIN", "value"),
        ("BRACED", "x-value-y"),
        ("DEFAULT_UNSET", "fallback"),
        ("DEFAULT_EMPTY", "fallback"),
        ("DASH_EMPTY", ""),
        ("DASH_UNSET", "fallback"),
        ("ALT_SET", "alt"),
        ("ALT_EMPTY", ""),
        ("PLUS_EMPTY", "alt"),
        ("REQUIRED", "value"),
        ("ESCAPED", "$SET costs $5"),
        ("NESTED", "value"),
    ];
    for (key, value) in expected {
        assert_eq!(environment[key], value, "{key}");
    }
    // Keys are never interpolated (and this one is not a valid name).
    assert!(environment.contains_key("${KEY_NOT_INTERPOLATED}"));
    assert!(blueprint.warnings.is_empty(), "{:?}", blueprint.warnings);
}

#[test]
fn sources_rank_cli_then_dotenv_then_environment_then_default() {
    let source = r#"
x-coop:
  variables:
    LEVEL: {default: from-default}
services:
  app:
    image: app
    environment:
      LEVEL: ${LEVEL}
      UNDECLARED: ${UNDECLARED}
"#;
    let level = |sources| {
        parse_with(source, &sources).services["app"]
            .environment
            .clone()
    };
    let all = variables(
        &[("LEVEL", "cli"), ("UNDECLARED", "cli")],
        &[("LEVEL", "dotenv"), ("UNDECLARED", "dotenv")],
        &[("LEVEL", "env"), ("UNDECLARED", "env")],
    );
    assert_eq!(level(all)["LEVEL"], "cli");
    let no_cli = variables(
        &[],
        &[("LEVEL", "dotenv"), ("UNDECLARED", "dotenv")],
        &[("LEVEL", "env")],
    );
    let environment = level(no_cli);
    assert_eq!(environment["LEVEL"], "dotenv");
    assert_eq!(environment["UNDECLARED"], "dotenv");
    let env_only = variables(&[], &[], &[("LEVEL", "env"), ("UNDECLARED", "env")]);
    assert_eq!(level(env_only)["LEVEL"], "env");
    let none = parse_with(source, &variables(&[], &[], &[]));
    assert_eq!(none.services["app"].environment["LEVEL"], "from-default");
    assert_eq!(none.services["app"].environment["UNDECLARED"], "");
}

#[test]
fn an_unset_variable_becomes_empty_with_one_warning() {
    let blueprint = parse_ok(
        r#"
services:
  app:
    image: app
    command: echo $GHOST ${GHOST}
    environment:
      A: ${GHOST}
"#,
    );
    assert_eq!(
        blueprint.services["app"].command,
        Some(vec!["echo".to_string()])
    );
    assert_eq!(
        blueprint.warnings,
        [
            "services.app.command: variable GHOST is not set; it is replaced by an empty string (line 4)"
        ]
    );
}

#[test]
fn a_required_reference_fails_with_its_message_path_and_line() {
    let errors = errors_with(
        r#"
services:
  app:
    image: app
    environment:
      - TOKEN=${TOKEN:?set TOKEN to the API token}
      - BAD=${}
"#,
        &variables(&[], &[], &[]),
    );
    assert_error(
        &errors,
        "services.app.environment[0]",
        5,
        "variable TOKEN is required: set TOKEN to the API token",
    );
    assert_error(
        &errors,
        "services.app.environment[1]",
        6,
        "not a valid variable reference",
    );
}

#[test]
fn missing_declared_variables_are_listed_for_a_prompt() {
    let source = r#"
x-coop:
  variables:
    DOMAIN:
      description: Where the shop is reached
      type: domain
    TIER:
      type: enum
      values: [dev, prod]
      default: dev
      required: true
    OPTIONAL: {required: false}
    PORT: {type: int, default: 8080}
services:
  app:
    image: app
    environment:
      - DOMAIN=${DOMAIN}
      - OPTIONAL=${OPTIONAL}
"#;
    let failure = parse(doc(source), &variables(&[], &[], &[]), &no_files).unwrap_err();
    let ParseFailure::MissingVariables(missing) = &failure else {
        panic!("expected missing variables, got {failure:?}");
    };
    assert_eq!(
        missing,
        &[
            MissingVariable {
                name: "DOMAIN".into(),
                description: Some("Where the shop is reached".into()),
                kind: VariableKind::Domain,
                default: None,
            },
            MissingVariable {
                name: "TIER".into(),
                description: None,
                kind: VariableKind::Enum {
                    values: vec!["dev".into(), "prod".into()]
                },
                default: Some("dev".into()),
            },
        ]
    );
    let text = failure.to_string();
    assert!(
        text.contains("DOMAIN (DNS name): Where the shop is reached"),
        "{text}"
    );
    assert!(
        text.contains("TIER (one of dev, prod) [suggested: dev]"),
        "{text}"
    );

    // With values given, the declared optional one expands quietly to "".
    let sources = variables(&[("DOMAIN", "shop.example"), ("TIER", "prod")], &[], &[]);
    let blueprint = parse_with(source, &sources);
    assert!(blueprint.warnings.is_empty(), "{:?}", blueprint.warnings);
    assert_eq!(blueprint.services["app"].environment["OPTIONAL"], "");
    assert_eq!(blueprint.variables["PORT"].value.as_deref(), Some("8080"));
    assert_eq!(blueprint.variables["OPTIONAL"].value, None);
}

#[test]
fn declared_values_are_checked_against_their_type() {
    let source = r#"
x-coop:
  variables:
    TIER: {type: enum, values: [dev, prod]}
    DOMAIN: {type: domain}
    COUNT: {type: int}
services:
  app: {image: app}
"#;
    let sources = variables(
        &[
            ("TIER", "staging"),
            ("DOMAIN", "not a domain"),
            ("COUNT", "many"),
        ],
        &[],
        &[],
    );
    let errors = errors_with(source, &sources);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_error(
        &errors,
        "x-coop.variables.TIER",
        3,
        "`staging` is not one of dev, prod",
    );
    assert_error(
        &errors,
        "x-coop.variables.DOMAIN",
        4,
        "`not a domain` is not a DNS name",
    );
    assert_error(
        &errors,
        "x-coop.variables.COUNT",
        5,
        "`many` is not an integer",
    );
}

#[test]
fn declarations_themselves_are_checked() {
    let errors = errors_with(
        r#"
x-coop:
  variables:
    KIND: {type: colour}
    CHOICE: {type: enum}
    EMPTY_CHOICE: {type: enum, values: []}
    STRAY: {values: [a]}
    BAD_DEFAULT: {type: int, default: ten}
    1ST: {}
    TYPO: {descripton: x}
  other: 1
services:
  app: {image: app}
"#,
        &variables(&[], &[], &[]),
    );
    assert_error(
        &errors,
        "x-coop.variables.KIND.type",
        3,
        "`colour` is not a variable type",
    );
    assert_error(&errors, "x-coop.variables.CHOICE", 4, "lists its `values`");
    assert_error(
        &errors,
        "x-coop.variables.EMPTY_CHOICE.values",
        5,
        "at least one value",
    );
    assert_error(
        &errors,
        "x-coop.variables.STRAY.values",
        6,
        "belongs to `type: enum`",
    );
    assert_error(
        &errors,
        "x-coop.variables.BAD_DEFAULT.default",
        7,
        "`ten` is not an integer",
    );
    assert_error(
        &errors,
        "x-coop.variables.1ST",
        8,
        "a variable name starts with",
    );
    assert_error(
        &errors,
        "x-coop.variables.TYPO.descripton",
        9,
        "not supported by coop",
    );
    assert_error(
        &errors,
        "x-coop.other",
        10,
        "not supported by coop; coop reads variables",
    );
}
