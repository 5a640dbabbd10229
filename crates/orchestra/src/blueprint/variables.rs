//! Where variable values come from, and the variables a blueprint declares.
//!
//! The sources, strongest first: `--var K=V` on the command line, the
//! `.env` file beside the blueprint, the process environment. Compose puts
//! the process environment above `.env`; coop puts the file the author
//! ships with the blueprint above whatever happens to be exported in the
//! deploying shell, so one blueprint and its `.env` deploy the same way
//! from any terminal. The caller fills [`Variables`]: the parser reads no
//! file and no environment itself.
//!
//! A declaration (`x-coop.variables.NAME`) adds a type, a default and
//! whether a value is required; declared values are checked against their
//! type. Declarations are read as written, never interpolated: they are
//! what interpolation needs first.

use std::collections::BTreeMap;

use super::error::{MissingVariable, Report};
use super::interpolate::is_variable_name;
use super::read::{boolean, child, field, known_keys, mapping, sequence, text};
use super::spec::{VariableKind, VariableSpec};
use super::units::is_dns_name;
use super::yaml::Node;

const DECLARATION_KEYS: &[&str] = &["description", "type", "values", "default", "required"];

/// The values variables can take, one map per source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    /// `--var NAME=VALUE` from the command line; the strongest source.
    pub cli: BTreeMap<String, String>,
    /// The `.env` file beside the blueprint, parsed with
    /// [`parse_dotenv`](super::parse_dotenv).
    pub dotenv: BTreeMap<String, String>,
    /// The process environment of whoever deploys; the weakest source.
    pub env: BTreeMap<String, String>,
}

impl Variables {
    /// The value of `name` from the strongest source that sets it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cli
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .or_else(|| self.env.get(name))
            .map(String::as_str)
    }
}

/// A declaration and where it was written, for messages about its value.
#[derive(Debug, Clone)]
pub(crate) struct Declaration {
    pub spec: VariableSpec,
    pub path: String,
    pub line: usize,
}

/// Reads `x-coop.variables` (the node may be absent).
pub(crate) fn read_declarations(
    node: Option<&Node>,
    path: &str,
    report: &mut Report,
) -> BTreeMap<String, Declaration> {
    let mut declarations = BTreeMap::new();
    let Some(node) = node else {
        return declarations;
    };
    let Some(entries) = mapping(node, path, report) else {
        return declarations;
    };
    for entry in entries {
        let entry_path = child(path, &entry.key);
        if !is_variable_name(&entry.key) {
            report.error(
                &entry_path,
                entry.key_line,
                "a variable name starts with a letter or `_` and holds letters, digits and `_`",
            );
            continue;
        }
        if let Some(spec) = read_declaration(&entry.value, &entry_path, report) {
            declarations.insert(
                entry.key.clone(),
                Declaration {
                    spec,
                    path: entry_path,
                    line: entry.key_line,
                },
            );
        }
    }
    declarations
}

fn read_declaration(node: &Node, path: &str, report: &mut Report) -> Option<VariableSpec> {
    let mark = report.mark();
    // `NAME:` with nothing under it declares a required string.
    let empty = Vec::new();
    let entries = if node.is_null() {
        &empty[..]
    } else {
        mapping(node, path, report)?
    };
    known_keys(entries, DECLARATION_KEYS, false, path, report);
    let description = field(entries, "description")
        .and_then(|entry| text(&entry.value, &child(path, "description"), report))
        .map(str::to_string);
    let kind_name = field(entries, "type").map(|entry| {
        (
            text(&entry.value, &child(path, "type"), report),
            entry.value.line,
        )
    });
    let values = field(entries, "values").map(|entry| {
        let values_path = child(path, "values");
        let items = sequence(&entry.value, &values_path, report).unwrap_or_default();
        let values: Vec<String> = items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| text(item, &format!("{values_path}[{index}]"), report))
            .map(str::to_string)
            .collect();
        (values, entry.value.line)
    });
    let kind = match (kind_name, values) {
        (None | Some((Some("string"), _)), None) => Some(VariableKind::String),
        (Some((Some("int"), _)), None) => Some(VariableKind::Int),
        (Some((Some("domain"), _)), None) => Some(VariableKind::Domain),
        (Some((Some("enum"), line)), None) => {
            report.error(path, line, "an `enum` variable lists its `values`");
            None
        }
        (Some((Some("enum"), _)), Some((values, line))) => {
            if values.is_empty() {
                report.error(&child(path, "values"), line, "list at least one value");
            }
            Some(VariableKind::Enum { values })
        }
        (None | Some((Some("string" | "int" | "domain"), _)), Some((_, line))) => {
            report.error(
                &child(path, "values"),
                line,
                "`values` belongs to `type: enum`",
            );
            None
        }
        (Some((Some(other), line)), _) => {
            report.error(
                &child(path, "type"),
                line,
                format!("`{other}` is not a variable type: use string, int, enum or domain"),
            );
            None
        }
        // The type was not a single value; already reported.
        (Some((None, _)), _) => None,
    };
    let default = field(entries, "default")
        .and_then(|entry| text(&entry.value, &child(path, "default"), report))
        .map(str::to_string);
    let required = match field(entries, "required") {
        Some(entry) => boolean(&entry.value, &child(path, "required"), report),
        None => Some(default.is_none()),
    };
    let kind = kind?;
    if let (Some(default), Some(entry)) = (&default, field(entries, "default"))
        && let Err(message) = check_value(&kind, default)
    {
        report.error(&child(path, "default"), entry.value.line, message);
    }
    if report.failed_since(mark) {
        return None;
    }
    Some(VariableSpec {
        description,
        kind,
        default,
        required: required?,
        value: None,
    })
}

/// Gives each declared variable its value: the strongest source, else the
/// default. Returns the declared variables with their values, and those
/// that are required and have none.
pub(crate) fn resolve(
    declarations: &BTreeMap<String, Declaration>,
    variables: &Variables,
    report: &mut Report,
) -> (BTreeMap<String, VariableSpec>, Vec<MissingVariable>) {
    let mut resolved = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, declaration) in declarations {
        let mut spec = declaration.spec.clone();
        let given = variables.get(name).map(str::to_string);
        if spec.required && given.is_none() {
            missing.push(MissingVariable {
                name: name.clone(),
                description: spec.description.clone(),
                kind: spec.kind.clone(),
                default: spec.default.clone(),
            });
            continue;
        }
        if let Some(value) = &given
            && let Err(message) = check_value(&spec.kind, value)
        {
            report.error(
                &declaration.path,
                declaration.line,
                format!("the value given for {name} is wrong: {message}"),
            );
        }
        spec.value = given.or_else(|| spec.default.clone());
        resolved.insert(name.clone(), spec);
    }
    (resolved, missing)
}

/// Checks `value` against `kind`; the error says what was expected.
pub(crate) fn check_value(kind: &VariableKind, value: &str) -> Result<(), String> {
    match kind {
        VariableKind::String => Ok(()),
        VariableKind::Int => value
            .trim()
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| format!("`{value}` is not an integer")),
        VariableKind::Enum { values } => {
            if values.iter().any(|allowed| allowed == value) {
                Ok(())
            } else {
                Err(format!("`{value}` is not one of {}", values.join(", ")))
            }
        }
        VariableKind::Domain => {
            if is_dns_name(value) {
                Ok(())
            } else {
                Err(format!(
                    "`{value}` is not a DNS name such as shop.example.com"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_in_order_of_strength() {
        let mut variables = Variables::default();
        variables.env.insert("A".into(), "env".into());
        assert_eq!(variables.get("A"), Some("env"));
        variables.dotenv.insert("A".into(), "dotenv".into());
        assert_eq!(variables.get("A"), Some("dotenv"));
        variables.cli.insert("A".into(), "cli".into());
        assert_eq!(variables.get("A"), Some("cli"));
        assert_eq!(variables.get("B"), None);
    }

    #[test]
    fn values_are_checked_against_their_kind() {
        assert!(check_value(&VariableKind::Int, "-42").is_ok());
        assert!(check_value(&VariableKind::Int, "4.2").is_err());
        let kind = VariableKind::Enum {
            values: vec!["dev".into(), "prod".into()],
        };
        assert!(check_value(&kind, "prod").is_ok());
        assert_eq!(
            check_value(&kind, "staging").unwrap_err(),
            "`staging` is not one of dev, prod"
        );
        assert!(check_value(&VariableKind::Domain, "shop.example.com").is_ok());
        assert!(check_value(&VariableKind::Domain, "not a domain").is_err());
        assert!(check_value(&VariableKind::String, "").is_ok());
    }
}
