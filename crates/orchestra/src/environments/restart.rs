//! Restarting an environment's replicas, one at a time.
//!
//! Each replica gets the ordinary container restart (stopped, then started
//! again where it runs) before the next one is touched, so a service with
//! several replicas keeps the others serving meanwhile. Nothing is placed
//! again: a restart is not a move.

use coop_state::{ContainerEntry, EnvPhase};

use super::EnvironmentStatus;
use crate::error::ComputeError;
use crate::protocol::Action;
use crate::service::Orchestra;

impl Orchestra {
    /// Restarts the replicas of `env` (only those of `service`, when
    /// given) one at a time, by service and index, noting a `restarted`
    /// event for each. Stops at the first replica that cannot restart:
    /// the error names it and says how many were restarted before it.
    pub async fn restart_environment(
        &self,
        env: &str,
        service: Option<&str>,
    ) -> Result<EnvironmentStatus, ComputeError> {
        let store = self.control().store();
        let Some(record) = store.environment(env)? else {
            return Err(super::env_not_found(env));
        };
        if record.phase != EnvPhase::Ready {
            return Err(ComputeError::Conflict(format!(
                "environment `{env}` is {:?}; restart it once that is done",
                record.phase
            )));
        }
        if let Some(service) = service
            && !record.services.contains_key(service)
        {
            return Err(super::no_such_service(env, service, &record));
        }
        let mut replicas: Vec<ContainerEntry> = store
            .env_replicas(env)?
            .into_iter()
            .filter(|c| {
                c.owner
                    .as_ref()
                    .is_some_and(|o| service.is_none_or(|s| o.service == s))
            })
            .collect();
        replicas.sort_by_key(|c| c.owner.as_ref().map(|o| (o.service.clone(), o.index)));
        let total = replicas.len();
        for (done, replica) in replicas.into_iter().enumerate() {
            let service = replica.owner.as_ref().map(|o| o.service.clone());
            let name = replica.name;
            match self.act(&name, Action::Restart).await {
                Ok(status) => {
                    self.note(
                        env,
                        service.as_deref(),
                        Some(&name),
                        "restarted",
                        format!("{name} restarted on {}", status.entry.peer.short()),
                    )
                    .await;
                }
                Err(err) => {
                    self.note(
                        env,
                        service.as_deref(),
                        Some(&name),
                        "failed",
                        format!("{name} could not restart: {err}"),
                    )
                    .await;
                    return Err(ComputeError::Conflict(format!(
                        "replica {name} could not restart ({done} of {total} restarted before it; the rest were left alone): {err}"
                    )));
                }
            }
        }
        self.environment_status(env).await
    }
}
