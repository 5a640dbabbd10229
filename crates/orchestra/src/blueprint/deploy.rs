//! Where a service's replicas run and what they may use: Compose's
//! `deploy` (replicas, resource limits, placement) and coop's own
//! per-service `x-coop` (size, zone, peer, near, spread, binpack, setup).
//!
//! CPU, memory and process limits go through `coop_compute`'s parsers, the
//! same ones `--cpus`, `--memory` and sizes use, so the units and bounds
//! agree with the command line.

use std::str::FromStr;
use std::time::Duration;

use coop_compute::{Overrides, Size, parse_cpus, parse_memory};

use super::error::Report;
use super::read::{boolean, child, field, item, known_keys, mapping, number, sequence, text};
use super::service::read_argv;
use super::spec::{Comparison, Constraint, ResourceLimits, SetupStep, Spread};
use super::units::{parse_duration, parse_mode};
use super::yaml::Node;

const DEPLOY_KEYS: &[&str] = &["replicas", "resources", "placement"];
const RESOURCES_KEYS: &[&str] = &["limits"];
const LIMITS_KEYS: &[&str] = &["cpus", "memory", "pids"];
const PLACEMENT_KEYS: &[&str] = &["constraints", "preferences"];
const PREFERENCE_KEYS: &[&str] = &["spread"];
const EXTENSION_KEYS: &[&str] = &["size", "zone", "peer", "near", "spread", "binpack", "setup"];
const RUN_STEP_KEYS: &[&str] = &["run", "retries", "interval"];
const FILE_STEP_KEYS: &[&str] = &["file", "content", "mode"];

/// A service with more replicas than this is almost surely a typo, and
/// would swamp the scheduler of a micro cloud.
pub(crate) const MAX_REPLICAS: u32 = 1000;

/// The most retries a setup step may ask for; beyond it, a step is waiting
/// for something that is not coming.
const MAX_SETUP_RETRIES: u32 = 1000;

/// Time between tries of a failing setup step when the blueprint does not
/// say: long enough for a database to finish starting between two tries,
/// short enough that a ready service is not kept waiting.
const DEFAULT_SETUP_INTERVAL: Duration = Duration::from_secs(2);

/// Mode of a setup file when none is given: readable by all, like a file a
/// package installs.
const DEFAULT_FILE_MODE: u32 = 0o644;

const LABEL_PREFIX: &str = "node.labels.";
const HOSTNAME: &str = "node.hostname";

/// What `deploy` says.
pub(crate) struct Deploy {
    pub replicas: u32,
    pub limits: ResourceLimits,
    pub constraints: Vec<Constraint>,
    pub spread: Vec<Spread>,
}

impl Default for Deploy {
    /// One replica and no placement rules, as Compose runs a service that
    /// has no `deploy`.
    fn default() -> Self {
        Deploy {
            replicas: 1,
            limits: ResourceLimits::default(),
            constraints: Vec::new(),
            spread: Vec::new(),
        }
    }
}

/// What a service's `x-coop` says.
#[derive(Default)]
pub(crate) struct ServiceExtension {
    pub size: Option<String>,
    pub constraints: Vec<Constraint>,
    pub spread: Vec<Spread>,
    pub near: Option<String>,
    pub binpack: bool,
    /// Where `binpack` was written, to point at it when it clashes.
    pub binpack_line: usize,
    pub setup: Vec<SetupStep>,
}

/// Reads `deploy`.
pub(crate) fn read_deploy(node: &Node, path: &str, report: &mut Report) -> Deploy {
    let mut deploy = Deploy::default();
    let Some(entries) = mapping(node, path, report) else {
        return deploy;
    };
    known_keys(entries, DEPLOY_KEYS, false, path, report);
    if let Some(entry) = field(entries, "replicas")
        && let Some(replicas) = number(
            &entry.value,
            &child(path, "replicas"),
            report,
            0..=MAX_REPLICAS,
        )
    {
        deploy.replicas = replicas;
    }
    if let Some(entry) = field(entries, "resources") {
        let resources_path = child(path, "resources");
        if let Some(resources) = mapping(&entry.value, &resources_path, report) {
            known_keys(resources, RESOURCES_KEYS, false, &resources_path, report);
            if let Some(limits) = field(resources, "limits") {
                deploy.limits =
                    read_limits(&limits.value, &child(&resources_path, "limits"), report);
            }
        }
    }
    if let Some(entry) = field(entries, "placement") {
        read_placement(&entry.value, &child(path, "placement"), &mut deploy, report);
    }
    deploy
}

fn read_limits(node: &Node, path: &str, report: &mut Report) -> ResourceLimits {
    let mut limits = ResourceLimits::default();
    let Some(entries) = mapping(node, path, report) else {
        return limits;
    };
    known_keys(entries, LIMITS_KEYS, false, path, report);
    let parse = |key: &str, report: &mut Report| -> Option<(String, usize)> {
        let entry = field(entries, key)?;
        text(&entry.value, &child(path, key), report).map(|raw| (raw.to_string(), entry.value.line))
    };
    if let Some((raw, line)) = parse("cpus", report) {
        match parse_cpus(&raw) {
            Ok(milli) => limits.cpus_milli = Some(milli),
            Err(error) => report.error(&child(path, "cpus"), line, error.to_string()),
        }
    }
    if let Some((raw, line)) = parse("memory", report) {
        match parse_memory(&raw) {
            Ok(bytes) => limits.memory_bytes = Some(bytes),
            Err(error) => report.error(&child(path, "memory"), line, error.to_string()),
        }
    }
    if let Some((raw, line)) = parse("pids", report) {
        match Overrides::default().with_pids(&raw) {
            Ok(overrides) => limits.pids = overrides.pids,
            Err(error) => report.error(&child(path, "pids"), line, error.to_string()),
        }
    }
    limits
}

fn read_placement(node: &Node, path: &str, deploy: &mut Deploy, report: &mut Report) {
    let Some(entries) = mapping(node, path, report) else {
        return;
    };
    known_keys(entries, PLACEMENT_KEYS, false, path, report);
    if let Some(entry) = field(entries, "constraints") {
        let list_path = child(path, "constraints");
        for (index, rule) in sequence(&entry.value, &list_path, report)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let rule_path = item(&list_path, index);
            let Some(raw) = text(rule, &rule_path, report) else {
                continue;
            };
            match parse_constraint(raw) {
                Ok(constraint) => deploy.constraints.push(constraint),
                Err(message) => report.error(&rule_path, rule.line, message),
            }
        }
    }
    if let Some(entry) = field(entries, "preferences") {
        let list_path = child(path, "preferences");
        for (index, preference) in sequence(&entry.value, &list_path, report)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let preference_path = item(&list_path, index);
            let Some(keys) = mapping(preference, &preference_path, report) else {
                continue;
            };
            known_keys(keys, PREFERENCE_KEYS, false, &preference_path, report);
            let Some(spread) = field(keys, "spread") else {
                report.error(
                    &preference_path,
                    preference.line,
                    "write `spread: node.labels.KEY`",
                );
                continue;
            };
            let spread_path = child(&preference_path, "spread");
            let Some(raw) = text(&spread.value, &spread_path, report) else {
                continue;
            };
            match raw
                .trim()
                .strip_prefix(LABEL_PREFIX)
                .filter(|key| !key.is_empty())
            {
                Some(key) => deploy.spread.push(Spread::Label(key.to_string())),
                None => report.error(
                    &spread_path,
                    spread.value.line,
                    format!("`{raw}`: coop spreads over a peer label, written node.labels.KEY"),
                ),
            }
        }
    }
}

/// `node.labels.KEY==VALUE`, `node.hostname!=NAME` and the like.
pub(crate) fn parse_constraint(raw: &str) -> Result<Constraint, String> {
    let (subject, comparison, value) = if let Some((subject, value)) = raw.split_once("==") {
        (subject, Comparison::Equal, value)
    } else if let Some((subject, value)) = raw.split_once("!=") {
        (subject, Comparison::NotEqual, value)
    } else {
        return Err(format!(
            "`{raw}` is not a constraint: write node.labels.KEY==VALUE or node.hostname==NAME (or `!=`)"
        ));
    };
    let (subject, value) = (subject.trim(), value.trim());
    if value.is_empty() {
        return Err(format!(
            "`{raw}` compares with nothing; write a value after the operator"
        ));
    }
    let value = value.to_string();
    if subject == HOSTNAME {
        return Ok(Constraint::Hostname { comparison, value });
    }
    match subject
        .strip_prefix(LABEL_PREFIX)
        .filter(|key| !key.is_empty())
    {
        Some(key) => Ok(Constraint::Label {
            key: key.to_string(),
            comparison,
            value,
        }),
        None => Err(format!(
            "`{subject}` cannot be constrained: coop places by node.labels.KEY and node.hostname"
        )),
    }
}

/// Reads a service's `x-coop`.
pub(crate) fn read_service_extension(
    node: &Node,
    path: &str,
    report: &mut Report,
) -> ServiceExtension {
    let mut extension = ServiceExtension::default();
    let Some(entries) = mapping(node, path, report) else {
        return extension;
    };
    known_keys(entries, EXTENSION_KEYS, false, path, report);
    let word = |key: &str, report: &mut Report| -> Option<(String, usize)> {
        let entry = field(entries, key)?;
        let raw = text(&entry.value, &child(path, key), report)?;
        if raw.trim().is_empty() || raw.contains(char::is_whitespace) {
            report.error(
                &child(path, key),
                entry.value.line,
                format!("`{raw}` is not a name: write it without blanks"),
            );
            return None;
        }
        Some((raw.to_string(), entry.value.line))
    };
    if let Some((raw, line)) = word("size", report) {
        match Size::from_str(&raw) {
            Ok(size) => extension.size = Some(size.name().to_string()),
            Err(error) => report.error(&child(path, "size"), line, error.to_string()),
        }
    }
    if let Some((zone, _)) = word("zone", report) {
        extension.constraints.push(Constraint::Zone(zone));
    }
    if let Some((peer, _)) = word("peer", report) {
        extension.constraints.push(Constraint::Peer(peer));
    }
    extension.near = word("near", report).map(|(zone, _)| zone);
    if let Some((raw, line)) = word("spread", report) {
        match raw.as_str() {
            "zone" => extension.spread.push(Spread::Zone),
            "peer" => extension.spread.push(Spread::Peer),
            _ => report.error(
                &child(path, "spread"),
                line,
                format!("`{raw}`: spread over zone or peer"),
            ),
        }
    }
    if let Some(entry) = field(entries, "binpack") {
        extension.binpack = boolean(&entry.value, &child(path, "binpack"), report).unwrap_or(false);
        extension.binpack_line = entry.key_line;
    }
    if let Some(entry) = field(entries, "setup") {
        let setup_path = child(path, "setup");
        for (index, step) in sequence(&entry.value, &setup_path, report)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(step) = read_setup_step(step, &item(&setup_path, index), report) {
                extension.setup.push(step);
            }
        }
    }
    extension
}

/// `{run, retries, interval}` or `{file, content, mode}`.
fn read_setup_step(node: &Node, path: &str, report: &mut Report) -> Option<SetupStep> {
    let entries = mapping(node, path, report)?;
    let mark = report.mark();
    match (field(entries, "run"), field(entries, "file")) {
        (Some(run), None) => {
            known_keys(entries, RUN_STEP_KEYS, false, path, report);
            let argv = read_argv(&run.value, &child(path, "run"), report);
            if argv.as_ref().is_some_and(Vec::is_empty) {
                report.error(&child(path, "run"), run.value.line, "the command is empty");
            }
            let retries = match field(entries, "retries") {
                Some(entry) => number(
                    &entry.value,
                    &child(path, "retries"),
                    report,
                    0..=MAX_SETUP_RETRIES,
                ),
                None => Some(0),
            };
            let interval = match field(entries, "interval") {
                Some(entry) => {
                    text(&entry.value, &child(path, "interval"), report).and_then(|raw| {
                        parse_duration(raw)
                            .map_err(|message| {
                                report.error(&child(path, "interval"), entry.value.line, message)
                            })
                            .ok()
                    })
                }
                None => Some(DEFAULT_SETUP_INTERVAL),
            };
            if report.failed_since(mark) {
                return None;
            }
            Some(SetupStep::Run {
                argv: argv?,
                retries: retries?,
                interval: interval?,
            })
        }
        (None, Some(file)) => {
            known_keys(entries, FILE_STEP_KEYS, false, path, report);
            let file_path = text(&file.value, &child(path, "file"), report);
            if let Some(file_path) = file_path
                && (!file_path.starts_with('/') || file_path.contains('\0'))
            {
                report.error(
                    &child(path, "file"),
                    file.value.line,
                    format!("`{file_path}` is not an absolute path inside the container"),
                );
            }
            let content = match field(entries, "content") {
                Some(entry) => text(&entry.value, &child(path, "content"), report),
                None => {
                    report.error(path, node.line, "`content` is required: the text to write");
                    None
                }
            };
            let mode = match field(entries, "mode") {
                Some(entry) => text(&entry.value, &child(path, "mode"), report).and_then(|raw| {
                    parse_mode(raw)
                        .map_err(|message| {
                            report.error(&child(path, "mode"), entry.value.line, message)
                        })
                        .ok()
                }),
                None => Some(DEFAULT_FILE_MODE),
            };
            if report.failed_since(mark) {
                return None;
            }
            Some(SetupStep::File {
                path: file_path?.to_string(),
                content: content?.to_string(),
                mode: mode?,
            })
        }
        _ => {
            report.error(
                path,
                node.line,
                "a setup step has either `run` (a command) or `file` (a file to write)",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints() {
        assert_eq!(
            parse_constraint("node.labels.zone==eu-west").unwrap(),
            Constraint::Label {
                key: "zone".into(),
                comparison: Comparison::Equal,
                value: "eu-west".into()
            }
        );
        assert_eq!(
            parse_constraint("node.labels.disk != hdd").unwrap(),
            Constraint::Label {
                key: "disk".into(),
                comparison: Comparison::NotEqual,
                value: "hdd".into()
            }
        );
        assert_eq!(
            parse_constraint("node.hostname!=box-1").unwrap(),
            Constraint::Hostname {
                comparison: Comparison::NotEqual,
                value: "box-1".into()
            }
        );
        for (bad, expected) in [
            ("node.role==manager", "cannot be constrained"),
            ("node.labels.==x", "cannot be constrained"),
            ("node.labels.zone==", "compares with nothing"),
            ("node.labels.zone=eu", "not a constraint"),
        ] {
            let error = parse_constraint(bad).unwrap_err();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }
}
