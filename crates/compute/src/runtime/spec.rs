//! What a caller asks for: [`ContainerSpec`] and its parts, checked before
//! anything is created.
//!
//! Every field is outside input (it comes from the API or a blueprint), so
//! [`ContainerSpec::validate`] checks ids, argv, environment, paths, users
//! and ports up front; the runtime never starts half of a bad request.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use coop_types::Limits;

/// Longest container id: ids name cgroups, network namespaces and state
/// directories, and 63 keeps all of them well inside the kernel's limits.
pub const MAX_ID_LEN: usize = 63;

/// What to run and under which limits: the input of [`crate::runtime::Runtime::create`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique name on this peer: 1-63 of `a-z 0-9 - _`, starting with a letter or digit.
    pub id: String,
    /// The cached template rootfs ([`crate::rootfs_path`]); the read-only lower layer.
    pub rootfs_lower: PathBuf,
    /// CPU, memory, disk and process limits.
    pub resources: Limits,
    /// Environment as `(name, value)` pairs; `PATH` defaults to the usual one.
    pub env: Vec<(String, String)>,
    /// The command and its arguments; `argv[0]` is looked up in `PATH` if relative.
    pub argv: Vec<String>,
    /// Working directory inside the container (absolute); `/` if `None`.
    pub workdir: Option<String>,
    /// `uid[:gid]` or a user name from the rootfs's `/etc/passwd`; root if `None`.
    pub user: Option<String>,
    /// Host ports published to the container.
    pub ports: Vec<PortMapping>,
    /// Host name inside the container; the id if `None`.
    pub hostname: Option<String>,
    /// Private networks it joins, each as one more interface (`eth1`, ...).
    #[serde(default)]
    pub networks: Vec<NetworkAttach>,
}

/// A private network a container joins on this host: the network's bridge
/// (made on first use, with the gateway address) and the container's
/// address there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttach {
    /// The network's number in the cloud; its bridge is named after it.
    pub id: u32,
    pub subnet: coop_types::Ipv4Subnet,
    pub address: Ipv4Addr,
    /// The interface's MTU, so a full packet fits in one datagram between
    /// peers; the default when 0.
    #[serde(default)]
    pub mtu: u16,
}

/// A transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default when a mapping names none).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as nftables and users write it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A published port, `HOST:CONT[/tcp|udp]`: traffic to `host_port` on any
/// of the peer's addresses reaches `container_port` in the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the peer (1-65535).
    pub host_port: u16,
    /// Port inside the container (1-65535).
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.name()
        )
    }
}

impl FromStr for PortMapping {
    type Err = SpecError;

    /// Parses `HOST:CONT`, `HOST:CONT/tcp` or `HOST:CONT/udp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SpecError::BadPort(s.to_string());
        let (ports, protocol) = match s.trim().split_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(bad()),
            None => (s.trim(), Protocol::Tcp),
        };
        let (host, container) = ports.split_once(':').ok_or_else(bad)?;
        let port = |text: &str| {
            text.parse::<u16>()
                .ok()
                .filter(|&p| p != 0 && text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(bad)
        };
        Ok(PortMapping {
            host_port: port(host)?,
            container_port: port(container)?,
            protocol,
        })
    }
}

/// A spec that cannot run, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "container id `{0}` is invalid: use 1-{MAX_ID_LEN} characters of a-z, 0-9, `-` and `_`, starting with a letter or digit"
    )]
    BadId(String),
    #[error("container `{0}` has no command: give at least argv[0]")]
    NoCommand(String),
    #[error("argument {index} of the command contains a NUL byte; remove it")]
    NulInArgument { index: usize },
    #[error(
        "environment variable `{0}` is invalid: names are non-empty, without `=` or NUL, and values have no NUL"
    )]
    BadEnv(String),
    #[error("working directory `{0}` must be an absolute path without NUL bytes")]
    BadWorkdir(String),
    #[error("host name `{0}` is invalid: use 1-63 characters of a-z, A-Z, 0-9 and `-`")]
    BadHostname(String),
    #[error(
        "`{0}` is not a port mapping: write HOST:CONT or HOST:CONT/tcp or HOST:CONT/udp with ports 1-65535"
    )]
    BadPort(String),
    #[error("host port {port}/{protocol} is published twice in this container; publish it once")]
    DuplicatePort { port: u16, protocol: &'static str },
    #[error("template rootfs {0} is not a directory: unpack the template first")]
    NoRootfs(String),
    #[error(
        "path {0} cannot be used for an overlay layer: it must be absolute and free of `,`, `:`, `\\` and whitespace"
    )]
    UnsafePath(String),
    #[error("user `{user}` is invalid: {reason}")]
    BadUser { user: String, reason: String },
    #[error("{what} limit of 0 cannot run anything; give a positive {what} limit")]
    ZeroLimit { what: &'static str },
}

/// Whether `id` is a valid container id.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `path` can appear in overlayfs mount options unescaped.
pub fn overlay_safe(path: &std::path::Path) -> bool {
    let Some(text) = path.to_str() else {
        return false;
    };
    path.is_absolute()
        && !text
            .chars()
            .any(|c| matches!(c, ',' | ':' | '\\' | '\0') || c.is_whitespace())
}

impl ContainerSpec {
    /// A spec with the given id, rootfs and command, the `small` size and no ports.
    pub fn new(id: impl Into<String>, rootfs_lower: impl Into<PathBuf>, argv: &[&str]) -> Self {
        ContainerSpec {
            id: id.into(),
            rootfs_lower: rootfs_lower.into(),
            resources: crate::size::Size::Small.limits(),
            env: Vec::new(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            workdir: None,
            user: None,
            ports: Vec::new(),
            hostname: None,
            networks: Vec::new(),
        }
    }

    /// Checks everything that can be checked without touching the host.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !valid_id(&self.id) {
            return Err(SpecError::BadId(self.id.clone()));
        }
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(SpecError::NoCommand(self.id.clone()));
        }
        if let Some(index) = self.argv.iter().position(|a| a.contains('\0')) {
            return Err(SpecError::NulInArgument { index });
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(SpecError::BadEnv(name.clone()));
            }
        }
        if let Some(dir) = &self.workdir
            && (!dir.starts_with('/') || dir.contains('\0'))
        {
            return Err(SpecError::BadWorkdir(dir.clone()));
        }
        if let Some(name) = &self.hostname
            && !valid_hostname(name)
        {
            return Err(SpecError::BadHostname(name.clone()));
        }
        let mut seen = std::collections::HashSet::new();
        for port in &self.ports {
            if port.host_port == 0 || port.container_port == 0 {
                return Err(SpecError::BadPort(port.to_string()));
            }
            if !seen.insert((port.host_port, port.protocol)) {
                return Err(SpecError::DuplicatePort {
                    port: port.host_port,
                    protocol: port.protocol.name(),
                });
            }
        }
        let r = &self.resources;
        for (what, zero) in [
            ("cpu", r.cpus_milli == 0),
            ("memory", r.memory_bytes == 0),
            ("disk", r.disk_bytes == 0),
            ("process", r.pids == 0),
        ] {
            if zero {
                return Err(SpecError::ZeroLimit { what });
            }
        }
        if !overlay_safe(&self.rootfs_lower) {
            return Err(SpecError::UnsafePath(
                self.rootfs_lower.display().to_string(),
            ));
        }
        if !self.rootfs_lower.is_dir() {
            return Err(SpecError::NoRootfs(self.rootfs_lower.display().to_string()));
        }
        Ok(())
    }

    /// The host name the container sees.
    pub fn effective_hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.id)
    }
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        let p: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (8080, 80, Protocol::Tcp)
        );
        let p: PortMapping = "53:5353/udp".parse().unwrap();
        assert_eq!(p.protocol, Protocol::Udp);
        assert_eq!(p.to_string(), "53:5353/udp");
        for bad in [
            "",
            "80",
            "0:80",
            "80:0",
            "80:80/sctp",
            "x:1",
            "70000:1",
            "+1:2",
        ] {
            assert!(bad.parse::<PortMapping>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_checked() {
        for good in ["a", "web-1", "db_2", "0abc"] {
            assert!(valid_id(good), "{good}");
        }
        for bad in ["", "-a", "A", "a/b", "a.b", &"x".repeat(64)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn specs_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = ContainerSpec::new("ok", dir.path(), &["/bin/sh"]);
        spec.validate().unwrap();
        spec.env.push(("A=B".into(), "c".into()));
        assert!(matches!(spec.validate(), Err(SpecError::BadEnv(_))));
        spec.env.clear();
        spec.workdir = Some("relative".into());
        assert!(matches!(spec.validate(), Err(SpecError::BadWorkdir(_))));
        spec.workdir = None;
        spec.ports = vec!["80:80".parse().unwrap(), "80:81".parse().unwrap()];
        assert!(matches!(
            spec.validate(),
            Err(SpecError::DuplicatePort { port: 80, .. })
        ));
        spec.ports.clear();
        spec.argv.clear();
        assert!(matches!(spec.validate(), Err(SpecError::NoCommand(_))));
        let spec = ContainerSpec::new("ok", "/no/such/dir", &["/bin/sh"]);
        assert!(matches!(spec.validate(), Err(SpecError::NoRootfs(_))));
        let spec = ContainerSpec::new("ok", "/a,b", &["/bin/sh"]);
        assert!(matches!(spec.validate(), Err(SpecError::UnsafePath(_))));
    }
}
