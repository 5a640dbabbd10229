//! Blueprints: the file that describes an environment, read into typed
//! specs.
//!
//! A blueprint is a Compose Specification file with coop's additions under
//! `x-coop`: a size, zone and spread per service, one-off setup steps, and
//! declared variables with types and defaults. [`parse`] takes the text and
//! the variable values, interpolates every value the way Compose does,
//! checks everything it can (and reports every problem with its path and
//! line at once), and returns a [`Blueprint`]. What coop does not support
//! is refused by name rather than ignored, so a file never deploys
//! differently from what it says.
//!
//! Not here: reading files or the process environment (the caller passes
//! [`Variables`] and an `env_file` loader), scheduling, or anything that
//! runs containers. This module only reads.

mod deploy;
mod digest;
mod dotenv;
mod environment;
mod error;
mod graph;
mod interpolate;
mod ports;
mod read;
mod service;
mod spec;
mod units;
mod variables;
mod words;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use dotenv::{DotenvError, parse_dotenv};
pub use error::{BlueprintError, BlueprintErrors, MissingVariable, ParseFailure};
pub use spec::{
    Blueprint, Comparison, Constraint, Dependency, DependencyCondition, HealthCheck, HealthTest,
    Placement, PortSpec, Protocol, ResourceLimits, RestartPolicy, ServiceSpec, SetupStep, Spread,
    TemplateRef, VariableKind, VariableSpec,
};
pub use variables::Variables;

use error::Report;
use interpolate::interpolate;
use read::{child, field, item, known_keys, mapping, text};
use service::{ServiceContext, read_service};
use yaml::{Node, Value};

/// The keys a blueprint may have at the top besides `x-` extensions.
/// `version` is accepted and ignored, as Compose does.
const TOP_LEVEL_KEYS: &[&str] = &["name", "services", "version", "x-coop"];
/// The keys of the top-level `x-coop`.
const TOP_EXTENSION_KEYS: &[&str] = &["variables"];

/// Reads a blueprint.
///
/// `variables` holds the values from the command line, the `.env` beside
/// the blueprint and the process environment; `load_env_file` returns the
/// text of an `env_file` by the path the blueprint gives (relative paths
/// are the caller's to resolve, usually against the blueprint's folder).
///
/// Fails with [`ParseFailure::MissingVariables`] when declared variables
/// have no value (nothing else is checked until they do), and with
/// [`ParseFailure::Invalid`] listing every problem otherwise.
pub fn parse(
    source: &str,
    variables: &Variables,
    load_env_file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Blueprint, ParseFailure> {
    let mut root = yaml::load(source).map_err(|error| invalid(vec![error]))?;
    let mut report = Report::default();

    let Value::Mapping(entries) = &root.value else {
        report.error(
            "",
            root.line,
            format!(
                "a blueprint is a mapping with `services:` at the top, not {}",
                root.kind()
            ),
        );
        return Err(invalid(report.errors));
    };
    known_keys(entries, TOP_LEVEL_KEYS, true, "", &mut report);
    let mut declarations_node = None;
    if let Some(extension) = field(entries, "x-coop")
        && let Some(extension_entries) = mapping(&extension.value, "x-coop", &mut report)
    {
        known_keys(
            extension_entries,
            TOP_EXTENSION_KEYS,
            false,
            "x-coop",
            &mut report,
        );
        declarations_node = field(extension_entries, "variables").map(|entry| &entry.value);
    }
    let before_declarations = report.mark();
    let declarations =
        variables::read_declarations(declarations_node, "x-coop.variables", &mut report);
    // Values cannot be interpolated without sound declarations; problems
    // elsewhere at the top do not stop the reading.
    if report.failed_since(before_declarations) {
        return Err(invalid(report.errors));
    }
    let (declared, missing) = variables::resolve(&declarations, variables, &mut report);
    if !missing.is_empty() {
        return Err(ParseFailure::MissingVariables(missing));
    }

    let lookup = |name: &str| -> Option<String> {
        match declared.get(name) {
            Some(spec) => spec.value.clone(),
            None => variables.get(name).map(str::to_string),
        }
    };
    let mut interpolation = Interpolation {
        lookup: &lookup,
        declared: &declared,
        warned: BTreeSet::new(),
        report: &mut report,
    };
    interpolation.document(&mut root);

    let Value::Mapping(entries) = &root.value else {
        return Err(invalid(report.errors));
    };
    let name = field(entries, "name").and_then(|entry| {
        let name = text(&entry.value, "name", &mut report)?;
        if units::is_project_name(name) {
            Some(name.to_string())
        } else {
            report.error(
                "name",
                entry.value.line,
                format!("`{name}` is not a blueprint name: use lowercase letters, digits, `-` and `_`, starting with a letter or digit"),
            );
            None
        }
    });
    let context = ServiceContext {
        lookup: &lookup,
        load_env_file,
    };
    let (services, names) = read_services(entries, root.line, &context, &mut report);
    graph::check_dependencies(&services, &names, "services", &mut report);

    if !report.errors.is_empty() {
        return Err(invalid(report.errors));
    }
    Ok(Blueprint {
        name,
        services: services
            .into_iter()
            .map(|(name, service)| (name, service.spec))
            .collect(),
        variables: declared,
        warnings: report.warnings,
    })
}

/// Every problem, in the order of the lines they are on.
fn invalid(mut errors: Vec<BlueprintError>) -> ParseFailure {
    errors.sort_by_key(|error| error.line.unwrap_or(usize::MAX));
    ParseFailure::Invalid(BlueprintErrors(errors))
}

/// The services that read without a problem, and the names of all of
/// them, so a dependency on a service with a problem is not also reported
/// as a dependency on a service that does not exist.
fn read_services(
    entries: &[yaml::Entry],
    root_line: usize,
    context: &ServiceContext<'_>,
    report: &mut Report,
) -> (BTreeMap<String, service::ServiceRead>, BTreeSet<String>) {
    let mut services = BTreeMap::new();
    let mut names = BTreeSet::new();
    let Some(services_entry) = field(entries, "services") else {
        report.error(
            "services",
            root_line,
            "`services` is required: a blueprint runs at least one service",
        );
        return (services, names);
    };
    let Some(service_entries) = mapping(&services_entry.value, "services", report) else {
        return (services, names);
    };
    if service_entries.is_empty() {
        report.error(
            "services",
            services_entry.key_line,
            "no services: a blueprint runs at least one service",
        );
    }
    for entry in service_entries {
        let path = child("services", &entry.key);
        if !units::is_service_name(&entry.key) {
            report.error(
                &path,
                entry.key_line,
                format!("`{}` is not a service name: use lowercase letters, digits and `-` (at most 63), since services are reached by name", entry.key),
            );
            continue;
        }
        names.insert(entry.key.clone());
        if let Some(service) = read_service(&entry.value, &path, entry.key_line, context, report) {
            services.insert(entry.key.clone(), service);
        }
    }
    (services, names)
}

/// Interpolation over the document: every value, never a key, and not the
/// parts Compose or coop do not read (`x-` extensions other than `x-coop`,
/// and the variable declarations, which interpolation itself depends on).
struct Interpolation<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    declared: &'a BTreeMap<String, VariableSpec>,
    /// Variables already warned about: one warning each is enough.
    warned: BTreeSet<String>,
    report: &'a mut Report,
}

impl Interpolation<'_> {
    fn document(&mut self, root: &mut Node) {
        let Value::Mapping(entries) = &mut root.value else {
            return;
        };
        for entry in entries {
            let key = entry.key.as_str();
            match key {
                "x-coop" => {
                    if let Value::Mapping(extension) = &mut entry.value.value {
                        for inner in extension
                            .iter_mut()
                            .filter(|inner| inner.key != "variables")
                        {
                            let path = child("x-coop", &inner.key);
                            self.node(&mut inner.value, &path);
                        }
                    }
                }
                _ if key.starts_with("x-") => {}
                "services" => {
                    let Value::Mapping(services) = &mut entry.value.value else {
                        continue;
                    };
                    for service in services {
                        let service_path = child("services", &service.key);
                        let Value::Mapping(fields) = &mut service.value.value else {
                            continue;
                        };
                        for field in fields {
                            if field.key.starts_with("x-") && field.key != "x-coop" {
                                continue;
                            }
                            let path = child(&service_path, &field.key);
                            self.node(&mut field.value, &path);
                        }
                    }
                }
                _ => {
                    let path = key.to_string();
                    self.node(&mut entry.value, &path);
                }
            }
        }
    }

    fn node(&mut self, node: &mut Node, path: &str) {
        let line = node.line;
        match &mut node.value {
            Value::Scalar(scalar) => {
                if !scalar.text.contains('$') {
                    return;
                }
                match interpolate(&scalar.text, self.lookup) {
                    Ok(expanded) => {
                        for name in expanded.unset {
                            if !self.declared.contains_key(&name)
                                && self.warned.insert(name.clone())
                            {
                                self.report.warn(
                                    path,
                                    line,
                                    format!("variable {name} is not set; it is replaced by an empty string"),
                                );
                            }
                        }
                        *node = Node::string(expanded.text, line);
                    }
                    Err(error) => self.report.error(path, line, error.to_string()),
                }
            }
            Value::Sequence(items) => {
                for (index, inner) in items.iter_mut().enumerate() {
                    self.node(inner, &item(path, index));
                }
            }
            Value::Mapping(entries) => {
                for entry in entries {
                    let inner_path = child(path, &entry.key);
                    self.node(&mut entry.value, &inner_path);
                }
            }
        }
    }
}
