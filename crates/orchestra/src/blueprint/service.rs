//! One entry of `services:` into a [`ServiceSpec`]: what runs and how.
//!
//! Where replicas run and what they may use (`deploy`, `x-coop`) is read in
//! [`super::deploy`]; checks that need every service (dependencies that
//! exist, cycles) are in [`super::graph`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::deploy::{read_deploy, read_service_extension};
use super::environment;
use super::error::Report;
use super::ports::read_ports;
use super::read::{
    boolean, child, field, item, known_keys, mapping, number, sequence, string_list, text,
};
use super::spec::{
    Dependency, DependencyCondition, HealthCheck, HealthTest, Placement, RestartPolicy,
    ServiceSpec, TemplateRef,
};
use super::units::parse_duration;
use super::words::split_words;
use super::yaml::{Node, Value};

const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "restart",
    "healthcheck",
    "depends_on",
    "deploy",
    "x-coop",
];
const HEALTHCHECK_KEYS: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "disable",
];
const DEPENDENCY_KEYS: &[&str] = &["condition", "required", "restart"];

/// Compose's health check timing when the blueprint leaves it out: a check
/// every 30 s, each allowed 30 s, unhealthy after 3 failures in a row, no
/// grace period. Kept equal to Compose's so a file behaves the same.
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HEALTH_RETRIES: u32 = 3;

/// More restarts than this for `on-failure:N` is a typo; `always` exists
/// for "never give up".
const MAX_RESTART_RETRIES: u32 = 1000;

/// What reading a service needs from outside the document.
pub(crate) struct ServiceContext<'a> {
    /// A variable's value (for `environment` entries without one).
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// The text of an `env_file`, by the path written in the blueprint.
    pub load_env_file: &'a dyn Fn(&str) -> Result<String, String>,
}

/// A service read from the document, with the lines the checks across
/// services need.
pub(crate) struct ServiceRead {
    pub spec: ServiceSpec,
    /// The line each `depends_on` entry was written on.
    pub dependency_lines: BTreeMap<String, usize>,
}

/// Reads the service at `path`; `None` if anything in it is wrong (every
/// problem is in `report`).
pub(crate) fn read_service(
    node: &Node,
    path: &str,
    key_line: usize,
    context: &ServiceContext<'_>,
    report: &mut Report,
) -> Option<ServiceRead> {
    let entries = mapping(node, path, report)?;
    let mark = report.mark();
    known_keys(entries, SERVICE_KEYS, true, path, report);

    let image = match field(entries, "image") {
        Some(entry) => text(&entry.value, &child(path, "image"), report).and_then(|raw| {
            parse_template(raw)
                .map_err(|message| report.error(&child(path, "image"), entry.value.line, message))
                .ok()
        }),
        None => {
            report.error(
                path,
                key_line,
                "`image` is required: name a coop template as `name` or `name:version`",
            );
            None
        }
    };
    let command = field(entries, "command")
        .and_then(|entry| read_argv(&entry.value, &child(path, "command"), report));
    let entrypoint = field(entries, "entrypoint")
        .and_then(|entry| read_argv(&entry.value, &child(path, "entrypoint"), report));

    let mut environment = BTreeMap::new();
    if let Some(entry) = field(entries, "env_file") {
        environment::read_env_files(
            &entry.value,
            &child(path, "env_file"),
            context,
            &mut environment,
            report,
        );
    }
    if let Some(entry) = field(entries, "environment") {
        let own = environment::read_environment(
            &entry.value,
            &child(path, "environment"),
            context,
            report,
        );
        environment.extend(own);
    }

    let ports = field(entries, "ports")
        .map(|entry| read_ports(&entry.value, &child(path, "ports"), report))
        .unwrap_or_default();
    let restart = match field(entries, "restart") {
        Some(entry) => text(&entry.value, &child(path, "restart"), report).and_then(|raw| {
            parse_restart(raw)
                .map_err(|message| report.error(&child(path, "restart"), entry.value.line, message))
                .ok()
        }),
        None => Some(RestartPolicy::No),
    };
    let healthcheck = field(entries, "healthcheck").and_then(|entry| {
        read_healthcheck(
            &entry.value,
            &child(path, "healthcheck"),
            entry.key_line,
            report,
        )
    });
    let (depends_on, dependency_lines) = field(entries, "depends_on")
        .map(|entry| read_depends_on(&entry.value, &child(path, "depends_on"), report))
        .unwrap_or_default();
    let deploy = field(entries, "deploy")
        .map(|entry| read_deploy(&entry.value, &child(path, "deploy"), report))
        .unwrap_or_default();
    let extension = field(entries, "x-coop")
        .map(|entry| read_service_extension(&entry.value, &child(path, "x-coop"), report))
        .unwrap_or_default();

    if report.failed_since(mark) {
        return None;
    }
    let mut constraints = deploy.constraints;
    constraints.extend(extension.constraints);
    let mut spread = extension.spread;
    spread.extend(deploy.spread);
    if extension.binpack && !spread.is_empty() {
        report.error(
            &child(path, "x-coop.binpack"),
            extension.binpack_line,
            "binpack fills peers one by one and spread scatters replicas; keep one of them",
        );
        return None;
    }
    Some(ServiceRead {
        spec: ServiceSpec {
            image: image?,
            command,
            entrypoint,
            environment,
            ports,
            restart: restart?,
            healthcheck: healthcheck.flatten(),
            depends_on,
            replicas: deploy.replicas,
            size: extension.size,
            limits: deploy.limits,
            placement: Placement {
                constraints,
                spread,
                near: extension.near,
                binpack: extension.binpack,
            },
            setup: extension.setup,
        },
        dependency_lines,
    })
}

/// `name` or `name:version`, checked by the same rules templates are
/// imported under.
pub(crate) fn parse_template(raw: &str) -> Result<TemplateRef, String> {
    if raw.contains('@') || raw.contains('/') {
        return Err(format!(
            "`{raw}` is a registry image; coop runs templates imported with `coop template import`: write `name` or `name:version`"
        ));
    }
    let (name, version) = match raw.split_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (raw, None),
    };
    coop_compute::validate_name(name).map_err(|error| error.to_string())?;
    if let Some(version) = version {
        coop_compute::validate_version(version).map_err(|error| error.to_string())?;
    }
    Ok(TemplateRef {
        name: name.to_string(),
        version: version.map(str::to_string),
    })
}

/// A command as a string (split into words like a shell would) or a list.
pub(crate) fn read_argv(node: &Node, path: &str, report: &mut Report) -> Option<Vec<String>> {
    match &node.value {
        Value::Sequence(_) => string_list(node, path, report),
        _ => {
            let raw = text(node, path, report)?;
            split_words(raw)
                .map_err(|error| {
                    report.error(
                        path,
                        node.line,
                        format!("cannot split `{raw}` into words: {error}"),
                    )
                })
                .ok()
        }
    }
}

/// `no`, `always`, `on-failure[:N]`, `unless-stopped`.
pub(crate) fn parse_restart(raw: &str) -> Result<RestartPolicy, String> {
    let bad = || {
        format!(
            "`{raw}` is not a restart policy: use no, always, on-failure, on-failure:N or unless-stopped"
        )
    };
    match raw.trim() {
        "no" => Ok(RestartPolicy::No),
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: None }),
        other => {
            let count = other.strip_prefix("on-failure:").ok_or_else(bad)?;
            let max_retries = count
                .parse::<u32>()
                .ok()
                .filter(|count| *count <= MAX_RESTART_RETRIES)
                .ok_or_else(|| {
                    format!("`{count}` is not a number of restarts from 0 to {MAX_RESTART_RETRIES}")
                })?;
            Ok(RestartPolicy::OnFailure {
                max_retries: Some(max_retries),
            })
        }
    }
}

/// A health check. `Some(None)` when it is disabled (`disable: true` or
/// `test: ["NONE"]`).
fn read_healthcheck(
    node: &Node,
    path: &str,
    key_line: usize,
    report: &mut Report,
) -> Option<Option<HealthCheck>> {
    let entries = mapping(node, path, report)?;
    known_keys(entries, HEALTHCHECK_KEYS, false, path, report);
    let mark = report.mark();
    let disabled = match field(entries, "disable") {
        Some(entry) => boolean(&entry.value, &child(path, "disable"), report)?,
        None => false,
    };
    let duration = |key: &str, default: Duration, report: &mut Report| match field(entries, key) {
        Some(entry) => text(&entry.value, &child(path, key), report).and_then(|raw| {
            parse_duration(raw)
                .map_err(|message| report.error(&child(path, key), entry.value.line, message))
                .ok()
        }),
        None => Some(default),
    };
    let interval = duration("interval", DEFAULT_HEALTH_INTERVAL, report);
    let timeout = duration("timeout", DEFAULT_HEALTH_TIMEOUT, report);
    let start_period = duration("start_period", Duration::ZERO, report);
    let retries = match field(entries, "retries") {
        Some(entry) => number(&entry.value, &child(path, "retries"), report, 0..=u32::MAX),
        None => Some(DEFAULT_HEALTH_RETRIES),
    };
    if disabled {
        return Some(None);
    }
    let test = match field(entries, "test") {
        Some(entry) => read_health_test(&entry.value, &child(path, "test"), report)?,
        None => {
            report.error(
                path,
                key_line,
                "`test` is required: templates bring no health check of their own",
            );
            return None;
        }
    };
    if report.failed_since(mark) {
        return None;
    }
    Some(test.map(|test| HealthCheck {
        test,
        interval: interval.unwrap_or(DEFAULT_HEALTH_INTERVAL),
        timeout: timeout.unwrap_or(DEFAULT_HEALTH_TIMEOUT),
        retries: retries.unwrap_or(DEFAULT_HEALTH_RETRIES),
        start_period: start_period.unwrap_or_default(),
    }))
}

/// `["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]` (`Some(None)`), or a
/// string run by the shell.
fn read_health_test(node: &Node, path: &str, report: &mut Report) -> Option<Option<HealthTest>> {
    if !matches!(node.value, Value::Sequence(_)) {
        return text(node, path, report).map(|script| Some(HealthTest::Shell(script.to_string())));
    }
    let words = string_list(node, path, report)?;
    match words.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => {
            Some(Some(HealthTest::Command(rest.to_vec())))
        }
        Some((kind, [script])) if kind == "CMD-SHELL" => {
            Some(Some(HealthTest::Shell(script.clone())))
        }
        Some((kind, [])) if kind == "NONE" => Some(None),
        _ => {
            report.error(
                path,
                node.line,
                "write the test as [\"CMD\", program, args...], [\"CMD-SHELL\", \"command\"], [\"NONE\"] or a command string",
            );
            None
        }
    }
}

/// `depends_on` as a list of names (each waits for the service to start)
/// or a mapping of names to `{condition, required, restart}`.
fn read_depends_on(
    node: &Node,
    path: &str,
    report: &mut Report,
) -> (BTreeMap<String, Dependency>, BTreeMap<String, usize>) {
    let mut dependencies = BTreeMap::new();
    let mut lines = BTreeMap::new();
    let started = Dependency {
        condition: DependencyCondition::ServiceStarted,
        required: true,
        restart: false,
    };
    match &node.value {
        Value::Sequence(_) => {
            let items = sequence(node, path, report).unwrap_or_default();
            for (index, entry) in items.iter().enumerate() {
                let Some(name) = text(entry, &item(path, index), report) else {
                    continue;
                };
                if lines.insert(name.to_string(), entry.line).is_some() {
                    report.error(
                        &item(path, index),
                        entry.line,
                        format!("{name} is listed twice"),
                    );
                }
                dependencies.insert(name.to_string(), started);
            }
        }
        Value::Mapping(entries) => {
            for entry in entries {
                let entry_path = child(path, &entry.key);
                lines.insert(entry.key.clone(), entry.key_line);
                if entry.value.is_null() {
                    dependencies.insert(entry.key.clone(), started);
                    continue;
                }
                if let Some(dependency) = read_dependency(&entry.value, &entry_path, report) {
                    dependencies.insert(entry.key.clone(), dependency);
                }
            }
        }
        Value::Scalar(_) => report.error(
            path,
            node.line,
            format!(
                "expected a list of services or a mapping, found {}",
                node.kind()
            ),
        ),
    }
    (dependencies, lines)
}

fn read_dependency(node: &Node, path: &str, report: &mut Report) -> Option<Dependency> {
    let entries = mapping(node, path, report)?;
    known_keys(entries, DEPENDENCY_KEYS, false, path, report);
    let condition = match field(entries, "condition") {
        Some(entry) => match text(&entry.value, &child(path, "condition"), report)? {
            "service_started" => DependencyCondition::ServiceStarted,
            "service_healthy" => DependencyCondition::ServiceHealthy,
            "service_completed_successfully" => DependencyCondition::ServiceCompletedSuccessfully,
            other => {
                report.error(
                    &child(path, "condition"),
                    entry.value.line,
                    format!("`{other}` is not a condition: use service_started, service_healthy or service_completed_successfully"),
                );
                return None;
            }
        },
        None => DependencyCondition::ServiceStarted,
    };
    let flag = |key: &str, default: bool, report: &mut Report| match field(entries, key) {
        Some(entry) => boolean(&entry.value, &child(path, key), report),
        None => Some(default),
    };
    let required = flag("required", true, report);
    let restart = flag("restart", false, report);
    Some(Dependency {
        condition,
        required: required?,
        restart: restart?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_references() {
        assert_eq!(
            parse_template("postgres:16").unwrap(),
            TemplateRef {
                name: "postgres".into(),
                version: Some("16".into())
            }
        );
        assert_eq!(parse_template("web-app").unwrap().version, None);
        assert!(
            parse_template("library/nginx")
                .unwrap_err()
                .contains("registry image")
        );
        assert!(
            parse_template("app@sha256:abc")
                .unwrap_err()
                .contains("registry image")
        );
        assert!(parse_template("App").unwrap_err().contains("template name"));
        assert!(
            parse_template("app:")
                .unwrap_err()
                .contains("template version")
        );
        assert!(parse_template(":1").unwrap_err().contains("template name"));
    }

    #[test]
    fn restart_policies() {
        assert_eq!(parse_restart("no").unwrap(), RestartPolicy::No);
        assert_eq!(parse_restart("always").unwrap(), RestartPolicy::Always);
        assert_eq!(
            parse_restart("unless-stopped").unwrap(),
            RestartPolicy::UnlessStopped
        );
        assert_eq!(
            parse_restart("on-failure").unwrap(),
            RestartPolicy::OnFailure { max_retries: None }
        );
        assert_eq!(
            parse_restart("on-failure:5").unwrap(),
            RestartPolicy::OnFailure {
                max_retries: Some(5)
            }
        );
        assert!(
            parse_restart("sometimes")
                .unwrap_err()
                .contains("not a restart policy")
        );
        assert!(
            parse_restart("on-failure:x")
                .unwrap_err()
                .contains("number of restarts")
        );
        assert!(parse_restart("on-failure:-1").is_err());
    }
}
