//! Apply rules and local reads for environments and their events.
//!
//! Rows of the `sm` table: `env/<name>` and `envevent/<env>/<seq>` with a
//! zero-padded sequence number, so an environment's events are one range
//! in order. Environment names hold no `/`.

use super::{StateStore, StoreError, StrTable, db_err, get_value, put_value, scan, scan_values};
use crate::compute::ContainerEntry;
use crate::environments::{EnvEvent, EnvironmentRecord, MAX_ENV_EVENTS, valid_env_name};
use crate::records::{Command, CommandError};

const ENV_PREFIX: &str = "env/";
const EVENT_PREFIX: &str = "envevent/";
const CONTAINER_PREFIX: &str = "container/";

type Applied = Result<Result<(), CommandError>, StoreError>;

fn env_key(name: &str) -> String {
    format!("{ENV_PREFIX}{name}")
}

fn events_prefix(env: &str) -> String {
    format!("{EVENT_PREFIX}{env}/")
}

/// Applies one environment command. Callers route only these here.
pub(super) fn apply(sm: &mut StrTable<'_>, command: Command) -> Applied {
    match command {
        Command::PutEnvironment {
            record,
            expected_generation,
        } => {
            if !valid_env_name(&record.name) {
                return Ok(Err(CommandError::InvalidRecord(format!(
                    "environment name `{}`: use 1-63 characters of a-z, 0-9 and `-`, starting with a letter",
                    record.name
                ))));
            }
            let row = env_key(&record.name);
            let current = get_value::<EnvironmentRecord>(sm, &row)?;
            let found = current.as_ref().map_or(0, |c| c.generation);
            if found != expected_generation {
                return Ok(Err(CommandError::EnvironmentChanged {
                    env: record.name,
                    expected: expected_generation,
                    found,
                }));
            }
            let mut record = record;
            record.generation = found + 1;
            if let Some(current) = current {
                record.created_at = current.created_at;
            }
            put_value(sm, &row, &record)?;
        }
        Command::DeleteEnvironment { name } => {
            let row = env_key(&name);
            if get_value::<EnvironmentRecord>(sm, &row)?.is_none() {
                return Ok(Err(CommandError::EnvironmentUnknown(name)));
            }
            let containers: Vec<ContainerEntry> = scan_values(sm, CONTAINER_PREFIX)?;
            if let Some(replica) = containers
                .iter()
                .find(|c| c.owner.as_ref().is_some_and(|o| o.env == name))
            {
                return Ok(Err(CommandError::EnvironmentInUse {
                    env: name,
                    container: replica.name.clone(),
                }));
            }
            sm.remove(row.as_str())
                .map_err(db_err("removing an environment"))?;
            let events: Vec<(String, EnvEvent)> = scan(sm, &events_prefix(&name))?;
            for (key, _) in events {
                sm.remove(key.as_str())
                    .map_err(db_err("removing an environment event"))?;
            }
        }
        Command::RecordEnvEvent { env, event } => {
            if get_value::<EnvironmentRecord>(sm, &env_key(&env))?.is_none() {
                return Ok(Err(CommandError::EnvironmentUnknown(env)));
            }
            let prefix = events_prefix(&env);
            let events: Vec<(String, EnvEvent)> = scan(sm, &prefix)?;
            let next = events
                .last()
                .and_then(|(key, _)| key[prefix.len()..].parse::<u64>().ok())
                .map_or(0, |seq| seq + 1);
            put_value(sm, &format!("{prefix}{next:020}"), &event)?;
            let excess = (events.len() + 1).saturating_sub(MAX_ENV_EVENTS);
            for (key, _) in events.iter().take(excess) {
                sm.remove(key.as_str())
                    .map_err(db_err("dropping an old environment event"))?;
            }
        }
        other => {
            return Err(StoreError::Inconsistent(format!(
                "environment apply got a foreign command: {other:?}"
            )));
        }
    }
    Ok(Ok(()))
}

impl StateStore {
    /// One environment.
    pub fn environment(&self, name: &str) -> Result<Option<EnvironmentRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &env_key(name)))
    }

    /// Every environment, sorted by name.
    pub fn environments(&self) -> Result<Vec<EnvironmentRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, ENV_PREFIX))
    }

    /// An environment's events, oldest first (at most [`MAX_ENV_EVENTS`]).
    pub fn env_events(&self, env: &str) -> Result<Vec<EnvEvent>, StoreError> {
        self.read_sm(|sm| scan_values(sm, &events_prefix(env)))
    }

    /// The containers that are replicas of `env`, sorted by name.
    pub fn env_replicas(&self, env: &str) -> Result<Vec<ContainerEntry>, StoreError> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| c.owner.as_ref().is_some_and(|o| o.env == env))
            .collect())
    }
}
