//! Updating an environment to a new blueprint, one replica at a time, and
//! rolling the last update back; waiting for services to reach the state
//! their dependants ask for.
//!
//! An update replaces only the replicas whose definition changed (each
//! replica records the digest of the definition it runs), in dependency
//! order, so an update that stopped half-way, or its rollback, touches
//! only what differs. Each
//! replica is removed and started again with the new definition (on the
//! same peer when it still fits) and must be ready before the next one is
//! touched: healthy when its service has a health check, finished with
//! status 0 for a one-off task, running otherwise. The first replica that
//! is not ready in time stops the update, and the error says which and
//! why. The environment keeps the version it was updated from, so
//! `rollback` can go back to it the same way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coop_state::{
    ContainerEntry, EnvPhase, EnvVersion, EnvironmentRecord, ReplicaOf, ServiceEntry,
};

use super::{EnvironmentStatus, constraints_of, replica_name, request_for, run_spec};
use crate::blueprint::{Blueprint, DependencyCondition, RestartPolicy, ServiceSpec};
use crate::error::ComputeError;
use crate::scheduler::Placement;
use crate::service::{ContainerStatus, Orchestra, RunState};

/// How long a one-off task may run before its dependants give up on it.
const TASK_WAIT: Duration = Duration::from_secs(600);
/// How long a service without a health check may take to run.
const START_WAIT: Duration = Duration::from_secs(120);
/// On top of what a health check needs to pass: fetching the template and
/// starting the container.
const START_SLACK: Duration = Duration::from_secs(60);
/// How long an exit whose status is unknown may still turn out known.
const UNKNOWN_EXIT_GRACE: u64 = 10;
/// How often a wait looks at the replicas again.
const POLL: Duration = Duration::from_millis(500);
/// An update that has not moved on for this long is taken to have died
/// with the peer that ran it: the leader heals the environment again.
pub const UPDATE_STALE: Duration = Duration::from_secs(600);

/// What a wait asks of a replica besides its condition.
#[derive(Clone, Copy)]
struct Wants {
    /// Its service has a health check.
    checked: bool,
    /// Its service has setup steps, which must be done.
    setup: bool,
    /// An unhealthy replica has failed rather than being waited for.
    strict: bool,
}

/// Where one replica stands for those waiting on it.
enum Readiness {
    Waiting(String),
    Ready,
    Failed(String),
}

/// What a replica of a service must reach before the next one is touched.
fn own_condition(spec: &ServiceSpec) -> DependencyCondition {
    if spec.healthcheck.is_some() {
        DependencyCondition::ServiceHealthy
    } else if spec.restart == RestartPolicy::No {
        DependencyCondition::ServiceCompletedSuccessfully
    } else {
        DependencyCondition::ServiceStarted
    }
}

/// How long `condition` may take for a replica of `spec`.
fn limit_for(spec: &ServiceSpec, condition: DependencyCondition) -> Duration {
    match (condition, &spec.healthcheck) {
        (DependencyCondition::ServiceCompletedSuccessfully, _) => TASK_WAIT,
        (DependencyCondition::ServiceHealthy, Some(check)) => {
            check.start_period
                + (check.interval + check.timeout) * (check.retries.max(1) + 1)
                + START_SLACK
        }
        _ => START_WAIT,
    }
}

/// Where `status` stands for `condition`; with `strict`, an unhealthy
/// replica has failed (an update stops at it) rather than being waited
/// for while its host restarts it (a dependant waits).
fn readiness(status: &ContainerStatus, condition: DependencyCondition, wants: Wants) -> Readiness {
    let Wants {
        checked,
        setup,
        strict,
    } = wants;
    let Some(actual) = &status.actual else {
        return Readiness::Waiting(if status.observed {
            "not created yet".into()
        } else {
            "its peer does not answer".into()
        });
    };
    let exited = match actual.state {
        RunState::Exited { code, signal, .. } => Some((code, signal)),
        _ => None,
    };
    let ended = |code: Option<i32>, signal: Option<i32>| match (code, signal) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "died while nothing watched it".to_string(),
    };
    let one_off = status.entry.restart == coop_state::RestartPolicy::No;
    if let RunState::Exited {
        code: None,
        signal: None,
        finished_at,
        ..
    } = actual.state
        && coop_types::unix_now().saturating_sub(finished_at) < UNKNOWN_EXIT_GRACE
    {
        // Its shim may not have recorded the exit yet.
        return Readiness::Waiting("its exit status is not known yet".into());
    }
    if setup && exited.is_none() {
        match &actual.setup {
            Some(crate::setup::SetupState::Done) => {}
            Some(crate::setup::SetupState::Failed(why)) => {
                return Readiness::Failed(format!("could not be set up: {why}"));
            }
            _ => return Readiness::Waiting("being set up".into()),
        }
    }
    match (condition, exited) {
        (_, Some((Some(0), _))) if one_off => Readiness::Ready,
        (DependencyCondition::ServiceCompletedSuccessfully, Some((code, signal))) => {
            Readiness::Failed(ended(code, signal))
        }
        (DependencyCondition::ServiceCompletedSuccessfully, None) => {
            Readiness::Waiting("still running".into())
        }
        (_, Some((code, signal))) if one_off => Readiness::Failed(ended(code, signal)),
        (_, Some((code, signal))) => Readiness::Waiting(ended(code, signal)),
        (DependencyCondition::ServiceHealthy, None) if checked => match &actual.health {
            Some(health) if health.status == crate::health::HealthStatus::Healthy => {
                Readiness::Ready
            }
            Some(health)
                if strict
                    && (health.status == crate::health::HealthStatus::Unhealthy
                        || health.restarts > 0) =>
            {
                Readiness::Failed(format!("is unhealthy: {}", health.last_output))
            }
            Some(health) if !health.last_output.is_empty() => {
                Readiness::Waiting(format!("{}: {}", health.status.name(), health.last_output))
            }
            Some(health) => Readiness::Waiting(health.status.name().to_string()),
            None => Readiness::Waiting("no health check has run yet".into()),
        },
        _ if actual.state.is_running() => Readiness::Ready,
        _ => Readiness::Waiting("created, not started".into()),
    }
}

impl Orchestra {
    /// Waits until every replica of `service` in `env` (or only replica
    /// `only`, which fails as soon as it is unhealthy) reaches `condition`,
    /// at most as long as its spec allows. The error says which replica
    /// did not, and why.
    pub(crate) async fn wait_for_service(
        &self,
        env: &str,
        service: &str,
        spec: &ServiceSpec,
        condition: DependencyCondition,
        only: Option<&str>,
    ) -> Result<(), String> {
        let limit = limit_for(spec, condition);
        let deadline = Instant::now() + limit;
        let checked = spec.healthcheck.is_some();
        let wanted = if only.is_some() {
            1
        } else {
            spec.replicas as usize
        };
        loop {
            let status = self
                .environment_status(env)
                .await
                .map_err(|e| e.to_string())?;
            let replicas: Vec<&ContainerStatus> = status
                .replicas
                .iter()
                .filter(|r| r.service == service)
                .filter(|r| only.is_none_or(|name| r.status.entry.name == name))
                .map(|r| &r.status)
                .collect();
            let mut waiting = None;
            for replica in &replicas {
                let wants = Wants {
                    checked,
                    setup: !spec.setup.is_empty(),
                    strict: only.is_some(),
                };
                match readiness(replica, condition, wants) {
                    Readiness::Ready => {}
                    Readiness::Failed(why) => {
                        return Err(format!("{} {why}", replica.entry.name));
                    }
                    Readiness::Waiting(why) => {
                        waiting.get_or_insert((replica.entry.name.clone(), why));
                    }
                }
            }
            if waiting.is_none() && replicas.len() >= wanted {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let (name, why) = waiting.unwrap_or_else(|| {
                    (
                        service.to_string(),
                        format!("{} of {wanted} replica(s) exist", replicas.len()),
                    )
                });
                return Err(format!(
                    "{name} is not {} after {} s ({why})",
                    condition_name(condition),
                    limit.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for what `service` depends on, as its `depends_on` says; a
    /// dependency that is not required only costs an event when it fails.
    pub(crate) async fn wait_for_dependencies(
        &self,
        env: &str,
        service: &str,
        specs: &BTreeMap<String, ServiceSpec>,
    ) -> Result<(), ComputeError> {
        let Some(spec) = specs.get(service) else {
            return Ok(());
        };
        for (dependency, how) in &spec.depends_on {
            let Some(dependency_spec) = specs.get(dependency) else {
                continue;
            };
            let waited = self
                .wait_for_service(env, dependency, dependency_spec, how.condition, None)
                .await;
            match waited {
                Ok(()) => {}
                Err(why) if how.required => {
                    return Err(ComputeError::Conflict(format!(
                        "{service} depends on {dependency}, which did not get there: {why}"
                    )));
                }
                Err(why) => {
                    self.note(
                        env,
                        Some(service),
                        None,
                        "warning",
                        format!("{service} starts although its optional dependency {dependency} failed: {why}"),
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    /// Updates environment `env` to `blueprint` (its text `source`, filled
    /// in with `vars`): see the module's documentation.
    pub async fn update_environment(
        &self,
        env: &str,
        source: &str,
        vars: &BTreeMap<String, String>,
        blueprint: &Blueprint,
    ) -> Result<EnvironmentStatus, ComputeError> {
        let services = super::lifecycle::encode_services(blueprint)?;
        let target = EnvVersion {
            source: source.to_string(),
            vars: vars.clone(),
            services,
        };
        self.apply_version(env, target, "updated").await
    }

    /// Brings `env` back to the version before its last update, the same
    /// way an update goes.
    pub async fn rollback_environment(&self, env: &str) -> Result<EnvironmentStatus, ComputeError> {
        let record = self.ready_record(env)?;
        let Some(previous) = record.previous else {
            return Err(ComputeError::Conflict(format!(
                "environment `{env}` has not been updated since it was created: there is nothing to roll back to"
            )));
        };
        self.apply_version(env, previous, "rolled back").await
    }

    /// The record of `env` if it exists and no other change runs on it.
    fn ready_record(&self, env: &str) -> Result<EnvironmentRecord, ComputeError> {
        let record = self
            .control()
            .store()
            .environment(env)?
            .ok_or_else(|| super::env_not_found(env))?;
        let stale =
            coop_types::unix_now().saturating_sub(record.updated_at) > UPDATE_STALE.as_secs();
        match record.phase {
            EnvPhase::Ready => Ok(record),
            EnvPhase::Updating if stale => Ok(record),
            phase => Err(ComputeError::Conflict(format!(
                "environment `{env}` is {}; try again once that is done",
                match phase {
                    EnvPhase::Creating => "being created",
                    EnvPhase::Updating => "being updated",
                    _ => "being taken down",
                }
            ))),
        }
    }

    async fn apply_version(
        &self,
        env: &str,
        target: EnvVersion,
        verb: &str,
    ) -> Result<EnvironmentStatus, ComputeError> {
        let mut record = self.ready_record(env)?;
        let specs = decode_specs(&target.services)?;
        let old_specs = decode_specs(&record.services)?;
        // A service changes when its definition does, or when some of its
        // replicas run another one (an update that stopped half-way).
        let replicas = self.control().store().env_replicas(env)?;
        let changed: Vec<String> = target
            .services
            .iter()
            .filter(|(name, entry)| {
                record
                    .services
                    .get(*name)
                    .is_none_or(|old| old.digest != entry.digest)
                    || replicas.iter().any(|c| {
                        c.owner
                            .as_ref()
                            .is_some_and(|o| &o.service == *name && o.digest != entry.digest)
                    })
            })
            .map(|(name, _)| name.clone())
            .collect();
        let removed: Vec<String> = record
            .services
            .keys()
            .filter(|name| !target.services.contains_key(*name))
            .cloned()
            .collect();
        let rescaled: Vec<String> = target
            .services
            .iter()
            .filter(|(name, entry)| {
                record
                    .services
                    .get(*name)
                    .is_some_and(|old| old.digest == entry.digest && old.replicas != entry.replicas)
            })
            .map(|(name, _)| name.clone())
            .collect();
        if changed.is_empty() && removed.is_empty() && rescaled.is_empty() {
            self.note(
                env,
                None,
                None,
                "unchanged",
                "the blueprint changes nothing".into(),
            )
            .await;
            return self.environment_status(env).await;
        }
        let expected_generation = record.generation;
        let before = EnvVersion {
            source: std::mem::replace(&mut record.source, target.source.clone()),
            vars: std::mem::replace(&mut record.vars, target.vars.clone()),
            services: std::mem::replace(&mut record.services, target.services.clone()),
        };
        record.previous = Some(before);
        record.phase = EnvPhase::Updating;
        record.updated_at = coop_types::unix_now();
        {
            // On the leader, no move of a replica runs past this point.
            let _healing = self.healing().await;
            self.control()
                .write(coop_state::Command::PutEnvironment {
                    record,
                    expected_generation,
                })
                .await?;
        }
        let outcome = self
            .replace_services(env, &specs, &old_specs, &changed, &removed)
            .await;
        let still_updating = self
            .control()
            .store()
            .environment(env)?
            .is_some_and(|r| r.phase == EnvPhase::Updating);
        if still_updating {
            self.set_phase(env, EnvPhase::Ready).await?;
        }
        match outcome {
            Ok(()) => {
                let what = if changed.is_empty() {
                    "replica counts".to_string()
                } else {
                    changed.join(", ")
                };
                self.note(env, None, None, verb, format!("environment {verb}: {what}"))
                    .await;
                self.environment_status(env).await
            }
            Err(err) => {
                self.note(
                    env,
                    None,
                    None,
                    "failed",
                    format!("the update stopped: {err}"),
                )
                .await;
                Err(ComputeError::Conflict(format!(
                    "the update of `{env}` stopped: {err}; the replicas before it run the new definition, the rest the old one; `coop env up --rollback {env}` goes back to the previous version"
                )))
            }
        }
    }

    /// The steps of an update once the new version is recorded.
    async fn replace_services(
        &self,
        env: &str,
        specs: &BTreeMap<String, ServiceSpec>,
        old_specs: &BTreeMap<String, ServiceSpec>,
        changed: &[String],
        removed: &[String],
    ) -> Result<(), ComputeError> {
        let store = self.control().store();
        for service in removed {
            for replica in store
                .env_replicas(env)?
                .into_iter()
                .filter(|c| c.owner.as_ref().is_some_and(|o| &o.service == service))
            {
                self.act(&replica.name, crate::Action::Remove { force: true })
                    .await?;
            }
            self.note(
                env,
                Some(service),
                None,
                "removed",
                format!("{service} is no longer in the blueprint"),
            )
            .await;
        }
        for service in super::start_order_of(specs) {
            let spec = &specs[&service];
            let existing: BTreeMap<u32, ContainerEntry> = store
                .env_replicas(env)?
                .into_iter()
                .filter_map(|c| {
                    let owner = c.owner.clone()?;
                    (owner.service == service).then_some((owner.index, c))
                })
                .collect();
            // Past the new count, the highest first.
            for (_, replica) in existing.range(spec.replicas..).rev() {
                self.act(&replica.name, crate::Action::Remove { force: true })
                    .await?;
            }
            let replace = changed.contains(&service);
            let digest = super::definition_digest(spec);
            // Missing, or running another definition: only these are touched.
            let stale = |index: &u32| {
                existing
                    .get(index)
                    .and_then(|c| c.owner.as_ref())
                    .is_none_or(|o| o.digest != digest)
            };
            if !(0..spec.replicas).any(|i| stale(&i)) {
                continue;
            }
            self.wait_for_dependencies(env, &service, specs).await?;
            for index in 0..spec.replicas {
                if !stale(&index) {
                    continue;
                }
                let name = self
                    .replace_replica(env, &service, index, spec, existing.get(&index))
                    .await?;
                self.touch_update(env).await?;
                self.wait_for_service(env, &service, spec, own_condition(spec), Some(&name))
                    .await
                    .map_err(ComputeError::Conflict)?;
            }
            if replace {
                let from = old_specs
                    .get(&service)
                    .map_or("new".to_string(), |s| s.image.to_string());
                self.note(
                    env,
                    Some(&service),
                    None,
                    "updated",
                    format!("{service}: every replica runs the new definition (was {from})"),
                )
                .await;
            }
        }
        Ok(())
    }

    /// Removes replica `index` of `service` (if `old` is it) and starts it
    /// again from `spec`, where it was when it still fits.
    async fn replace_replica(
        &self,
        env: &str,
        service: &str,
        index: u32,
        spec: &ServiceSpec,
        old: Option<&ContainerEntry>,
    ) -> Result<String, ComputeError> {
        let name = replica_name(env, service, index);
        let epoch = old
            .and_then(|c| c.owner.as_ref())
            .map_or(1, |o| o.epoch + 1);
        if old.is_some() {
            self.act(&name, crate::Action::Remove { force: true })
                .await?;
        }
        let records = self.control().store().peers()?;
        let constraints = constraints_of(service, spec, &records)?;
        let mut entry = self.entry_for(self.peer(), run_spec(&name, spec))?;
        self.join_env_network(&mut entry, env, old);
        let request = request_for(env, service, spec, &entry, constraints, old.map(|c| c.peer));
        match self.snapshot(None)?.place(&request) {
            Placement::Placed(peer) => entry.peer = peer,
            Placement::Unplaceable(refusals) => {
                return Err(ComputeError::Short(format!(
                    "{name} fits nowhere: {}",
                    Placement::summary(&refusals)
                )));
            }
        }
        entry.owner = Some(ReplicaOf {
            env: env.to_string(),
            service: service.to_string(),
            index,
            epoch,
            digest: super::definition_digest(spec),
        });
        self.start_replica(env, entry, request).await
    }

    /// Records that the update of `env` still moves on; fails when the
    /// environment left the update meanwhile (it is being taken down).
    async fn touch_update(&self, env: &str) -> Result<(), ComputeError> {
        self.rewrite_env(env, |record| {
            if record.phase != EnvPhase::Updating {
                return Err(ComputeError::Conflict(format!(
                    "environment `{env}` left the update (it is {:?})",
                    record.phase
                )));
            }
            Ok(())
        })
        .await
    }
}

fn condition_name(condition: DependencyCondition) -> &'static str {
    match condition {
        DependencyCondition::ServiceStarted => "running",
        DependencyCondition::ServiceHealthy => "healthy",
        DependencyCondition::ServiceCompletedSuccessfully => "finished successfully",
    }
}

/// The specs of stored services.
pub(crate) fn decode_specs(
    services: &BTreeMap<String, ServiceEntry>,
) -> Result<BTreeMap<String, ServiceSpec>, ComputeError> {
    services
        .iter()
        .map(|(name, stored)| {
            let mut spec: ServiceSpec = postcard::from_bytes(&stored.spec).map_err(|e| {
                ComputeError::Internal(format!("the stored spec of {name} does not decode: {e}"))
            })?;
            // Scaling changes the count the record keeps, not the spec.
            spec.replicas = stored.replicas;
            Ok((name.clone(), spec))
        })
        .collect()
}
