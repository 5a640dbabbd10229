//! Small readers that turn YAML nodes into typed values or report, with
//! path and line, why they cannot.
//!
//! Each returns `None` after recording its problem, so the caller carries
//! on with the next key and the user sees every problem at once.

use std::str::FromStr;

use super::error::Report;
use super::yaml::{Entry, Node, Value};

/// `path.key`, or `key` at the top.
pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[index]`.
pub(crate) fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The entries of a mapping.
pub(crate) fn mapping<'n>(node: &'n Node, path: &str, report: &mut Report) -> Option<&'n [Entry]> {
    match &node.value {
        Value::Mapping(entries) => Some(entries),
        _ => {
            report.error(
                path,
                node.line,
                format!("expected a mapping, found {}", node.kind()),
            );
            None
        }
    }
}

/// The items of a list.
pub(crate) fn sequence<'n>(node: &'n Node, path: &str, report: &mut Report) -> Option<&'n [Node]> {
    match &node.value {
        Value::Sequence(items) => Some(items),
        _ => {
            report.error(
                path,
                node.line,
                format!("expected a list, found {}", node.kind()),
            );
            None
        }
    }
}

/// The text of a single value that is not null.
pub(crate) fn text<'n>(node: &'n Node, path: &str, report: &mut Report) -> Option<&'n str> {
    match &node.value {
        Value::Scalar(scalar) if !node.is_null() => Some(&scalar.text),
        _ => {
            report.error(
                path,
                node.line,
                format!("expected a value, found {}", node.kind()),
            );
            None
        }
    }
}

/// The text of a single value, or `None` without complaint if it is not one.
pub(crate) fn scalar_text(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar(scalar) if !node.is_null() => Some(&scalar.text),
        _ => None,
    }
}

/// A list of single values (numbers read as their text).
pub(crate) fn string_list(node: &Node, path: &str, report: &mut Report) -> Option<Vec<String>> {
    let items = sequence(node, path, report)?;
    let mark = report.mark();
    let words: Vec<String> = items
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| text(entry, &item(path, index), report).map(str::to_string))
        .collect();
    (!report.failed_since(mark)).then_some(words)
}

/// `true` or `false` (YAML's spellings of them).
pub(crate) fn boolean(node: &Node, path: &str, report: &mut Report) -> Option<bool> {
    match text(node, path, report)? {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        other => {
            report.error(path, node.line, format!("`{other}` is not true or false"));
            None
        }
    }
}

/// A whole number in `range`.
pub(crate) fn number<T>(
    node: &Node,
    path: &str,
    report: &mut Report,
    range: std::ops::RangeInclusive<T>,
) -> Option<T>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let raw = text(node, path, report)?;
    match raw.trim().parse::<T>() {
        Ok(value) if range.contains(&value) => Some(value),
        _ => {
            report.error(
                path,
                node.line,
                format!(
                    "`{raw}` is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

/// The entry for `key`, if present.
pub(crate) fn field<'n>(entries: &'n [Entry], key: &str) -> Option<&'n Entry> {
    entries.iter().find(|entry| entry.key == key)
}

/// Reports every key of `entries` that is not in `allowed`. With
/// `extensions`, `x-` keys pass too (Compose's rule for extension fields),
/// except `x-coop` unless it is listed.
pub(crate) fn known_keys(
    entries: &[Entry],
    allowed: &[&str],
    extensions: bool,
    path: &str,
    report: &mut Report,
) {
    for entry in entries {
        let key = entry.key.as_str();
        let is_extension = extensions && key.starts_with("x-") && key != "x-coop";
        if !allowed.contains(&key) && !is_extension {
            report.error(
                &child(path, key),
                entry.key_line,
                format!("not supported by coop; coop reads {}", allowed.join(", ")),
            );
        }
    }
}
