//! Whole blueprints through [`parse`]: a full environment, interpolation
//! and its sources, every class of error with its path and line, digests,
//! and odd input that must give errors rather than panics.

mod errors;
mod full;
mod robustness;
mod variables;

use super::{Blueprint, BlueprintError, BlueprintErrors, ParseFailure, Variables, parse};

/// Test sources are raw strings that open on a line of their own; this
/// drops that first newline so line 1 is the first line written.
fn doc(source: &str) -> &str {
    source.strip_prefix('\n').unwrap_or(source)
}

/// A loader for blueprints that name no `env_file`.
fn no_files(path: &str) -> Result<String, String> {
    Err(format!("no file {path} in this test"))
}

fn parse_ok(source: &str) -> Blueprint {
    parse_with(source, &Variables::default())
}

fn parse_with(source: &str, variables: &Variables) -> Blueprint {
    match parse(doc(source), variables, &no_files) {
        Ok(blueprint) => blueprint,
        Err(failure) => panic!("blueprint refused:\n{failure}"),
    }
}

fn errors_of(source: &str) -> Vec<BlueprintError> {
    errors_with(source, &Variables::default())
}

fn errors_with(source: &str, variables: &Variables) -> Vec<BlueprintError> {
    match parse(doc(source), variables, &no_files) {
        Err(ParseFailure::Invalid(BlueprintErrors(errors))) => errors,
        other => panic!("expected errors, got {other:?}"),
    }
}

/// Asserts that `errors` holds one at `path` on `line` whose message
/// contains `fragment`.
#[track_caller]
fn assert_error(errors: &[BlueprintError], path: &str, line: usize, fragment: &str) {
    let found = errors.iter().any(|error| {
        error.path == path && error.line == Some(line) && error.message.contains(fragment)
    });
    let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        found,
        "no error at {path} line {line} containing {fragment:?}; got:\n{}",
        listed.join("\n")
    );
}

fn variables(cli: &[(&str, &str)], dotenv: &[(&str, &str)], env: &[(&str, &str)]) -> Variables {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    };
    Variables {
        cli: map(cli),
        dotenv: map(dotenv),
        env: map(env),
    }
}
