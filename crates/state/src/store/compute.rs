//! Apply rules and local reads for the compute records: templates and
//! containers.
//!
//! Rows of the `sm` table: `template/<name>/<version>` and
//! `container/<name>`. Template names never hold `/`, so the versions of a
//! template are one contiguous range.

use super::objects::{acquire, release};
use super::{StateStore, StoreError, StrTable, db_err, get_value, put_value, scan_values};
use crate::compute::{ContainerEntry, TemplateEntry};
use crate::records::{Command, CommandError};

const TEMPLATE_PREFIX: &str = "template/";
const CONTAINER_PREFIX: &str = "container/";

/// The outcome of applying one command: storage failure outside, refusal
/// inside.
type Applied = Result<Result<(), CommandError>, StoreError>;

fn template_key(name: &str, version: &str) -> String {
    format!("{TEMPLATE_PREFIX}{name}/{version}")
}

fn container_key(name: &str) -> String {
    format!("{CONTAINER_PREFIX}{name}")
}

fn is_path_safe(text: &str) -> bool {
    !text.is_empty() && !text.contains('/')
}

/// Applies one compute command. Callers route only compute commands here.
pub(super) fn apply(sm: &mut StrTable<'_>, command: Command) -> Applied {
    match command {
        Command::PutTemplate { entry, stripes } => {
            if !is_path_safe(&entry.name) || !is_path_safe(&entry.version) {
                return Ok(Err(CommandError::InvalidRecord(format!(
                    "template name `{}` and version `{}` must be non-empty and free of `/`",
                    entry.name, entry.version
                ))));
            }
            let row = template_key(&entry.name, &entry.version);
            if get_value::<TemplateEntry>(sm, &row)?.is_some() {
                return Ok(Err(CommandError::TemplateExists(format!(
                    "{}:{}",
                    entry.name, entry.version
                ))));
            }
            let stored: u64 = entry.blocks.iter().map(|b| u64::from(b.len)).sum();
            if stored != entry.size_bytes {
                return Ok(Err(CommandError::InvalidRecord(format!(
                    "template blocks hold {stored} bytes but the blob has {}",
                    entry.size_bytes
                ))));
            }
            if let Err(refusal) = acquire(sm, &entry.blocks, stripes)? {
                return Ok(Err(refusal));
            }
            put_value(sm, &row, &entry)?;
        }
        Command::DeleteTemplate { name, version, now } => {
            let row = template_key(&name, &version);
            let label = format!("{name}:{version}");
            let Some(entry) = get_value::<TemplateEntry>(sm, &row)? else {
                return Ok(Err(CommandError::TemplateUnknown(label)));
            };
            let containers: Vec<ContainerEntry> = scan_values(sm, CONTAINER_PREFIX)?;
            if let Some(user) = containers
                .iter()
                .find(|c| c.template == name && c.version == version)
            {
                return Ok(Err(CommandError::TemplateInUse {
                    template: label,
                    container: user.name.clone(),
                }));
            }
            sm.remove(row.as_str())
                .map_err(db_err("removing a template"))?;
            release(sm, &entry.blocks, now)?;
        }
        Command::PutContainer(mut entry) => {
            if !is_path_safe(&entry.name) {
                return Ok(Err(CommandError::InvalidRecord(format!(
                    "container name `{}` must be non-empty and free of `/`",
                    entry.name
                ))));
            }
            let row = container_key(&entry.name);
            if get_value::<ContainerEntry>(sm, &row)?.is_some() {
                return Ok(Err(CommandError::ContainerExists(entry.name)));
            }
            let template = template_key(&entry.template, &entry.version);
            if get_value::<TemplateEntry>(sm, &template)?.is_none() {
                return Ok(Err(CommandError::TemplateUnknown(format!(
                    "{}:{}",
                    entry.template, entry.version
                ))));
            }
            if let Err(refused) = super::networks::assign_addresses(sm, &mut entry)? {
                return Ok(Err(refused));
            }
            put_value(sm, &row, &entry)?;
        }
        Command::SetContainerDesired { name, desired } => {
            let row = container_key(&name);
            let Some(mut entry) = get_value::<ContainerEntry>(sm, &row)? else {
                return Ok(Err(CommandError::ContainerUnknown(name)));
            };
            entry.desired = desired;
            put_value(sm, &row, &entry)?;
        }
        Command::DeleteContainer { name } => {
            let row = container_key(&name);
            if get_value::<ContainerEntry>(sm, &row)?.is_none() {
                return Ok(Err(CommandError::ContainerUnknown(name)));
            }
            sm.remove(row.as_str())
                .map_err(db_err("removing a container"))?;
        }
        other => {
            return Err(StoreError::Inconsistent(format!(
                "compute apply got a foreign command: {other:?}"
            )));
        }
    }
    Ok(Ok(()))
}

impl StateStore {
    /// One version of a template.
    pub fn template(&self, name: &str, version: &str) -> Result<Option<TemplateEntry>, StoreError> {
        self.read_sm(|sm| get_value(sm, &template_key(name, version)))
    }

    /// Every template version, sorted by name then version.
    pub fn templates(&self) -> Result<Vec<TemplateEntry>, StoreError> {
        self.read_sm(|sm| scan_values(sm, TEMPLATE_PREFIX))
    }

    /// One container of the cloud.
    pub fn container(&self, name: &str) -> Result<Option<ContainerEntry>, StoreError> {
        self.read_sm(|sm| get_value(sm, &container_key(name)))
    }

    /// Every container of the cloud, sorted by name.
    pub fn containers(&self) -> Result<Vec<ContainerEntry>, StoreError> {
        self.read_sm(|sm| scan_values(sm, CONTAINER_PREFIX))
    }
}
