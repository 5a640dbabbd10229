//! What a parsed blueprint says, as plain typed values.
//!
//! Everything here has been interpolated, checked and converted (durations
//! to [`Duration`], memory to bytes, CPUs to thousandths of a core), so a
//! scheduler or updater reads it without parsing anything again. The types
//! serialize, so an environment's blueprint can be kept in the control
//! plane as it was deployed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A parsed blueprint: an environment's services and the variables that
/// filled it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blueprint {
    /// The top-level `name`, if the blueprint gives one.
    pub name: Option<String>,
    /// Each service by name.
    pub services: BTreeMap<String, ServiceSpec>,
    /// The variables declared under `x-coop.variables`, with the value
    /// each one took.
    pub variables: BTreeMap<String, VariableSpec>,
    /// Things worth telling the user that did not stop the blueprint, such
    /// as a variable that was not set and became an empty string.
    pub warnings: Vec<String>,
}

/// One service: what to run, how many, where, and what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The template its containers run.
    pub image: TemplateRef,
    /// Replaces the template's command; `None` keeps it.
    pub command: Option<Vec<String>>,
    /// Replaces the template's entrypoint; `None` keeps it, an empty list
    /// clears it.
    pub entrypoint: Option<Vec<String>>,
    /// The environment, `env_file`s first and `environment` over them.
    pub environment: BTreeMap<String, String>,
    /// Ports published on the peer that runs each replica.
    pub ports: Vec<PortSpec>,
    /// When a stopped container is started again.
    pub restart: RestartPolicy,
    /// How to tell that a container is healthy; `None` when the blueprint
    /// gives no check or disables it (templates carry none of their own, so
    /// the two mean the same).
    pub healthcheck: Option<HealthCheck>,
    /// Services that must reach a state before this one starts.
    pub depends_on: BTreeMap<String, Dependency>,
    /// How many containers run this service (0 keeps it defined but idle).
    pub replicas: u32,
    /// A named size (`tiny` .. `huge`) from `x-coop.size`, validated.
    pub size: Option<String>,
    /// Limits from `deploy.resources.limits`, over the size's.
    pub limits: ResourceLimits,
    /// Where replicas may and should run.
    pub placement: Placement,
    /// Steps run once after the service first starts.
    pub setup: Vec<SetupStep>,
}

/// A template reference: `name` or `name:version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    /// The template's name.
    pub name: String,
    /// The version; `None` means the template's default version.
    pub version: Option<String>,
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(version) = &self.version {
            write!(f, ":{version}")?;
        }
        Ok(())
    }
}

/// A published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The port on the peer.
    pub host: u16,
    /// The port inside the container.
    pub container: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The default.
    Tcp,
    /// Written `/udp`.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// When a container that stopped is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never (Compose's default): a one-off task.
    No,
    /// Whatever the exit status.
    Always,
    /// After a non-zero exit, at most `max_retries` times if given.
    OnFailure {
        /// Restarts allowed before giving up; `None` for no limit.
        max_retries: Option<u32>,
    },
    /// Like `Always`, except after a user stopped it.
    UnlessStopped,
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to run.
    pub test: HealthTest,
    /// Time between checks.
    pub interval: Duration,
    /// How long one check may take before it counts as failed.
    pub timeout: Duration,
    /// Failures in a row before the container is unhealthy.
    pub retries: u32,
    /// Grace after start during which failures do not count.
    pub start_period: Duration,
}

/// The command of a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthTest {
    /// `["CMD", program, args...]`: run directly.
    Command(Vec<String>),
    /// `["CMD-SHELL", "..."]` or a plain string: run with `/bin/sh -c`.
    Shell(String),
}

/// What a service waits for in one of its dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The state the dependency must reach.
    pub condition: DependencyCondition,
    /// If false, a dependency that is missing or fails is only warned about.
    pub required: bool,
    /// Restart this service when the dependency is updated or restarted.
    pub restart: bool,
}

/// A state a dependency must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    /// Its containers have started (the short form's meaning).
    ServiceStarted,
    /// Its health check passes.
    ServiceHealthy,
    /// It ran to completion with exit status 0.
    ServiceCompletedSuccessfully,
}

/// Resource limits given explicitly; `None` keeps the size's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// CPU time in thousandths of a core.
    pub cpus_milli: Option<u32>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Most processes and threads at once.
    pub pids: Option<u32>,
}

/// Where a service's replicas may and should run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Rules every chosen peer must satisfy.
    pub constraints: Vec<Constraint>,
    /// What to spread replicas across, most important first.
    pub spread: Vec<Spread>,
    /// A zone to run in or close to, when it has room (`x-coop.near`).
    pub near: Option<String>,
    /// Fill peers before using new ones, instead of spreading.
    pub binpack: bool,
}

/// A rule a peer must satisfy to run a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// `node.labels.KEY==VALUE` or `!=`.
    Label {
        /// The label's name, after `node.labels.`.
        key: String,
        /// `==` or `!=`.
        comparison: Comparison,
        /// The value compared with.
        value: String,
    },
    /// `node.hostname==NAME` or `!=`.
    Hostname {
        /// `==` or `!=`.
        comparison: Comparison,
        /// The host name compared with.
        value: String,
    },
    /// `x-coop.zone`: only peers in this zone.
    Zone(String),
    /// `x-coop.peer`: only this peer (its name or id).
    Peer(String),
}

/// How a constraint compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

/// Something to spread replicas across.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// The peers' zones (`x-coop.spread: zone`).
    Zone,
    /// The peers themselves (`x-coop.spread: peer`).
    Peer,
    /// The values of a peer label (`preferences: [{spread: node.labels.KEY}]`).
    Label(String),
}

/// A step run once after a service first starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupStep {
    /// Run a command in the container; try again up to `retries` times,
    /// `interval` apart, while it fails.
    Run {
        /// The program and its arguments (a string was split into words).
        argv: Vec<String>,
        /// Further tries after a failure; 0 tries once.
        retries: u32,
        /// Time between tries.
        interval: Duration,
    },
    /// Write a file into the container.
    File {
        /// An absolute path inside the container.
        path: String,
        /// The file's text.
        content: String,
        /// Permission bits, `0o644` unless given.
        mode: u32,
    },
}

/// A variable declared under `x-coop.variables`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableSpec {
    /// What the variable is for, to show when asking for it.
    pub description: Option<String>,
    /// The values it accepts.
    pub kind: VariableKind,
    /// Its value when no source sets it.
    pub default: Option<String>,
    /// Whether it must have a value (true unless a default is given).
    pub required: bool,
    /// The value it took, from a source or the default; `None` for an
    /// optional variable left unset.
    pub value: Option<String>,
}

/// The values a variable accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariableKind {
    /// Any text.
    String,
    /// A whole number.
    Int,
    /// One of a list.
    Enum {
        /// The accepted values, in the author's order.
        values: Vec<String>,
    },
    /// A DNS name such as `shop.example.com`.
    Domain,
}

impl fmt::Display for VariableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariableKind::String => f.write_str("string"),
            VariableKind::Int => f.write_str("integer"),
            VariableKind::Enum { values } => write!(f, "one of {}", values.join(", ")),
            VariableKind::Domain => f.write_str("DNS name"),
        }
    }
}
