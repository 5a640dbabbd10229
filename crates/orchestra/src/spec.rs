//! [`RunSpec`]: what a user asks to run, and how it becomes the
//! container entry the control plane records.

use std::str::FromStr;

use coop_compute::runtime::PortMapping;
use coop_compute::{Overrides, Size};
use std::net::Ipv4Addr;

use coop_state::{
    Attachment, ContainerEntry, DesiredState, RestartPolicy, StateStore, TemplateEntry,
};
use coop_types::{PeerId, unix_now};

use crate::error::ComputeError;
use crate::host::verify_template;
use crate::service::Orchestra;

/// What a user asks to run, unchecked (as typed on the command line or
/// sent to the API).
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// `NAME` or `NAME:VERSION`; without a version, `latest` or else the
    /// most recently imported version.
    pub template: String,
    /// Generated from the template's name when absent.
    pub name: Option<String>,
    /// tiny, small, medium, large or huge; the template's default when absent.
    pub size: Option<String>,
    /// CPUs (`0.5`, `2`, `500m`), overriding the size's.
    pub cpus: Option<String>,
    /// Memory (`512M`, `1G`), overriding the size's.
    pub memory: Option<String>,
    /// Disk (`4G`), overriding the size's.
    pub disk: Option<String>,
    /// Process limit, overriding the size's.
    pub pids: Option<String>,
    /// Published ports, `HOST:CONT[/tcp|udp]`.
    pub ports: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// no, on-failure or always (default no).
    pub restart: Option<String>,
    /// Command and arguments; the template's entrypoint when empty.
    pub argv: Vec<String>,
    /// Private networks to join: `NAME` (any free address) or
    /// `NAME:ADDRESS`.
    pub networks: Vec<String>,
}

fn bad(err: impl std::fmt::Display) -> ComputeError {
    ComputeError::Invalid(err.to_string())
}

/// Picks the template a run names: `NAME:VERSION`, or `NAME` meaning
/// `latest` if there is one, else the most recently imported version.
fn resolve_template(store: &StateStore, wanted: &str) -> Result<TemplateEntry, ComputeError> {
    let (name, version) = match wanted.split_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (wanted, None),
    };
    let versions: Vec<TemplateEntry> = store
        .templates()?
        .into_iter()
        .filter(|t| t.name == name)
        .collect();
    let found = match version {
        Some(v) => versions.into_iter().find(|t| t.version == v),
        None => {
            let latest = versions
                .iter()
                .find(|t| t.version == coop_compute::DEFAULT_VERSION)
                .cloned();
            latest.or_else(|| versions.into_iter().max_by_key(|t| t.imported_at))
        }
    };
    found.ok_or_else(|| {
        ComputeError::NotFound(format!(
            "no template `{wanted}`; import one with `coop template import {name} PATH` or list them with `coop template ls`"
        ))
    })
}

impl Orchestra {
    /// The entry to record for running `request` on `peer`, every field
    /// checked: the template resolved and verified, the size and overrides
    /// parsed, the template's environment under the request's.
    pub fn entry_for(
        &self,
        peer: PeerId,
        request: RunSpec,
    ) -> Result<ContainerEntry, ComputeError> {
        let template = resolve_template(self.control().store(), &request.template)?;
        let record = verify_template(&template).map_err(|e| {
            ComputeError::Conflict(format!(
                "template {}:{} does not verify: {e}",
                template.name, template.version
            ))
        })?;
        let size = match &request.size {
            Some(text) => Size::from_str(text).map_err(bad)?,
            None => record.manifest.default_size,
        };
        let mut overrides = Overrides::parse(
            request.cpus.as_deref(),
            request.memory.as_deref(),
            request.disk.as_deref(),
        )
        .map_err(bad)?;
        if let Some(pids) = &request.pids {
            overrides = overrides.with_pids(pids).map_err(bad)?;
        }
        let limits = overrides.apply(size.limits());
        let ports = request
            .ports
            .iter()
            .map(|p| PortMapping::from_str(p).map(|m| m.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let mut env: Vec<(String, String)> = record.manifest.env.clone().into_iter().collect();
        for pair in &request.env {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                ComputeError::Invalid(format!("environment `{pair}` must be written K=V"))
            })?;
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        let restart = match &request.restart {
            None => RestartPolicy::No,
            Some(text) => RestartPolicy::parse(text).ok_or_else(|| {
                ComputeError::Invalid(format!(
                    "restart policy `{text}` is unknown: use no, on-failure or always"
                ))
            })?,
        };
        let name = match request.name {
            Some(name) => name,
            None => format!(
                "{}-{}",
                template.name,
                data_encoding::HEXLOWER.encode(&rand::random::<[u8; 3]>())
            ),
        };
        let networks = request
            .networks
            .iter()
            .map(|text| attachment(self.control().store(), text))
            .collect::<Result<Vec<_>, _>>()?;
        let argv = if request.argv.is_empty() {
            record.manifest.entrypoint.clone()
        } else {
            request.argv
        };
        Ok(ContainerEntry {
            name,
            peer,
            template: template.name,
            version: template.version,
            content_id: template.content_id,
            size: size.name().to_string(),
            limits,
            argv,
            env,
            workdir: record.manifest.workdir.clone(),
            user: record.manifest.user.clone(),
            ports,
            restart,
            desired: DesiredState::Running,
            created_at: unix_now(),
            owner: None,
            networks,
        })
    }
}

/// A network to join, `NAME` or `NAME:ADDRESS`, checked against the
/// network's record (the state machine checks again when the entry is
/// written, and hands out the address when none is given).
fn attachment(store: &StateStore, text: &str) -> Result<Attachment, ComputeError> {
    let (name, address) = match text.split_once(':') {
        Some((name, address)) => {
            let address: Ipv4Addr = address.parse().map_err(|_| {
                ComputeError::Invalid(format!(
                    "network `{text}`: write NAME or NAME:ADDRESS with an IPv4 address"
                ))
            })?;
            (name, address)
        }
        None => (text, Attachment::ANY),
    };
    let Some(network) = store.network(name)? else {
        return Err(ComputeError::NotFound(format!(
            "no network named `{name}`; create it with `coop network create {name}` or list them with `coop network ls`"
        )));
    };
    let usable = network
        .subnet
        .host_number(address)
        .is_some_and(|n| network.subnet.container_hosts().contains(&n));
    if address != Attachment::ANY && !usable {
        return Err(ComputeError::Invalid(format!(
            "{address} is not a container address of network `{name}` ({}; .1 is its gateway)",
            network.subnet
        )));
    }
    Ok(Attachment {
        network: name.to_string(),
        address,
    })
}
