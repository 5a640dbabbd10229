//! Health checks of environment replicas, run on the peer that hosts them.
//!
//! Each replica whose service declares a `healthcheck` is checked with an
//! exec in its container, bounded by the check's timeout (a check that
//! overstays it is killed and counts as failed). While a replica has never
//! been healthy since it started, checks come every second at most, so a
//! new replica is known healthy promptly; after that, every `interval`.
//! Failures inside `start_period` of a replica that was never healthy do
//! not count. `retries` failures in a row make it unhealthy: it is
//! restarted here, and after [`RESTARTS_BEFORE_MOVE`] restarts without
//! becoming healthy in between, the control-plane leader is asked to move
//! it to another peer. Every change of state is an environment event.
//!
//! The same watcher runs a replica's setup steps first (see
//! [`crate::setup`]); checks begin once it is set up.
//!
//! What a check found lives in memory on the hosting peer and travels
//! with the container's observed state ([`crate::Observed::health`]); a
//! restarted agent starts over at `starting`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use coop_compute::runtime::{ExecOptions, ExitStatus};
use coop_state::{ContainerEntry, DesiredState};

use crate::blueprint::{HealthCheck, HealthTest, ServiceSpec};
use crate::error::ComputeError;
use crate::protocol::Action;
use crate::service::{Orchestra, RunState};

/// Restarts for failing health checks, without a healthy check between
/// them, before the replica is moved to another peer.
pub const RESTARTS_BEFORE_MOVE: u32 = 3;
/// How often the watcher looks for checks that are due.
const TICK: Duration = Duration::from_millis(250);
/// The most time between checks of a replica that was never healthy.
const EARLY_INTERVAL: Duration = Duration::from_secs(1);
/// How much of a check's output is kept.
const OUTPUT_KEPT: usize = 240;

/// Whether a replica passes its health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthStatus {
    /// Started, not yet passed a check.
    Starting,
    /// The last check passed.
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

impl HealthStatus {
    pub fn name(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// What the health checks of one replica found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    /// Failed checks in a row.
    pub failing: u32,
    /// The last check's output, or why it failed (at most 240 bytes).
    pub last_output: String,
    /// When the last check ended (unix seconds; 0 before the first).
    pub checked_at: u64,
    /// Restarts for failing checks since it was last healthy.
    pub restarts: u32,
}

/// The watcher's record of one replica.
#[derive(Debug)]
pub(crate) struct Tracked {
    health: Health,
    /// The container this record is about (a replica's lease epoch: a new
    /// container of the same name starts a new record).
    epoch: u64,
    /// The start this record is about.
    started_at: u64,
    /// Whether a check passed since that start.
    passed: bool,
    next_due: Instant,
    in_flight: bool,
}

/// One check's result.
struct Outcome {
    passed: bool,
    output: String,
}

/// What to do about a replica after a check.
enum Verdict {
    Nothing,
    Healthy,
    Unhealthy { restart: bool, output: String },
}

/// The checks in flight, owned by the watcher so they end with it.
type Checks = JoinSet<()>;

impl Orchestra {
    /// What the health checks of `name` found in its run that started at
    /// `started_at`, if it is checked here (a run not checked yet is
    /// starting).
    pub fn health_of(&self, name: &str, started_at: u64) -> Option<Health> {
        let table = self.health_table().lock().ok()?;
        let tracked = table.get(name)?;
        if tracked.started_at == started_at {
            return Some(tracked.health.clone());
        }
        Some(Health {
            status: HealthStatus::Starting,
            failing: 0,
            last_output: tracked.health.last_output.clone(),
            checked_at: 0,
            restarts: tracked.health.restarts,
        })
    }

    /// Checks the replicas this peer runs, as their services' health
    /// checks say, until the future is dropped.
    pub async fn watch_health(self) {
        if self.host().runtime().is_err() {
            return;
        }
        let mut checks = Checks::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            while checks.try_join_next().is_some() {}
            self.health_pass(&mut checks).await;
        }
    }

    async fn health_pass(&self, checks: &mut Checks) {
        let store = self.control().store();
        let Ok(entries) = store.containers() else {
            return;
        };
        let me = self.peer();
        let mut specs: HashMap<(String, String, [u8; 32]), Option<Arc<ServiceSpec>>> =
            HashMap::new();
        let mut checked = BTreeSet::new();
        let mut watched = BTreeSet::new();
        for entry in entries {
            if entry.peer != me || entry.desired != DesiredState::Running {
                continue;
            }
            let Some(owner) = entry.owner.clone() else {
                continue;
            };
            let key = (owner.env.clone(), owner.service.clone(), owner.digest);
            let spec = specs
                .entry(key)
                .or_insert_with(|| self.spec_of(&owner.env, &owner.service, &owner.digest))
                .clone();
            let Some(spec) = spec else {
                continue;
            };
            if spec.healthcheck.is_none() && spec.setup.is_empty() {
                continue;
            }
            // Kept while stopped or restarting: restarts for failing
            // checks count across runs.
            watched.insert(entry.name.clone());
            if spec.healthcheck.is_some() {
                checked.insert(entry.name.clone());
            }
            let name = entry.name.clone();
            let Ok(state) = self
                .blocking(move |host| Ok(host.observe(&name).map(|c| RunState::from(&c.state))))
                .await
            else {
                continue;
            };
            let Some(RunState::Running { started_at, .. }) = state else {
                continue;
            };
            if !spec.setup.is_empty() && !self.set_up(&entry.name) {
                // Health checks wait until the replica is set up.
                if self.take_setup(&entry.name, started_at) {
                    let orchestra = self.clone();
                    let steps = spec.setup.clone();
                    checks.spawn(async move {
                        orchestra.run_setup(entry, started_at, steps).await;
                    });
                }
                continue;
            }
            let Some(check) = spec.healthcheck.clone() else {
                continue;
            };
            let epoch = owner.epoch;
            if self.take_if_due(&entry.name, epoch, started_at) {
                let orchestra = self.clone();
                checks.spawn(async move {
                    orchestra.check_once(entry, started_at, check).await;
                });
            }
        }
        if let Ok(mut table) = self.health_table().lock() {
            table.retain(|name, _| checked.contains(name));
        }
        if let Ok(mut table) = self.setup_table().lock() {
            table.retain(|name, _| watched.contains(name));
        }
    }

    /// The spec of `service` in environment `env` with definition `digest`
    /// (the current one, or the one before the last update while replicas
    /// of it still run).
    fn spec_of(&self, env: &str, service: &str, digest: &[u8; 32]) -> Option<Arc<ServiceSpec>> {
        let record = self.control().store().environment(env).ok()??;
        let stored = record
            .services
            .get(service)
            .filter(|s| s.digest == *digest)
            .or_else(|| {
                record
                    .previous
                    .as_ref()?
                    .services
                    .get(service)
                    .filter(|s| s.digest == *digest)
            })?;
        postcard::from_bytes(&stored.spec).ok().map(Arc::new)
    }

    /// Marks a check of `name` (in its start at `started_at`) as running
    /// if one is due and none runs; a new start begins a new record.
    fn take_if_due(&self, name: &str, epoch: u64, started_at: u64) -> bool {
        let Ok(mut table) = self.health_table().lock() else {
            return false;
        };
        let now = Instant::now();
        if table.get(name).is_some_and(|t| t.epoch != epoch) {
            // Another container of this name (moved back, replaced by an
            // update): nothing of the old one's record applies.
            table.remove(name);
        }
        let tracked = table.entry(name.to_string()).or_insert_with(|| Tracked {
            health: Health {
                status: HealthStatus::Starting,
                failing: 0,
                last_output: String::new(),
                checked_at: 0,
                restarts: 0,
            },
            epoch,
            started_at: 0,
            passed: false,
            next_due: now,
            in_flight: false,
        });
        if tracked.started_at != started_at {
            // Restarts for failing checks and the last output carry over;
            // the rest starts over.
            tracked.health = Health {
                status: HealthStatus::Starting,
                failing: 0,
                last_output: std::mem::take(&mut tracked.health.last_output),
                checked_at: 0,
                restarts: tracked.health.restarts,
            };
            tracked.started_at = started_at;
            tracked.passed = false;
            tracked.next_due = now + EARLY_INTERVAL.min(Duration::from_millis(500));
            tracked.in_flight = false;
        }
        if tracked.in_flight || now < tracked.next_due {
            return false;
        }
        tracked.in_flight = true;
        true
    }

    /// Runs one check of `entry` and acts on what it finds.
    async fn check_once(&self, entry: ContainerEntry, started_at: u64, check: HealthCheck) {
        let outcome = self.run_check(&entry.name, &check).await;
        let Some(outcome) = outcome else {
            // The container went away under the check: nothing to count.
            if let Ok(mut table) = self.health_table().lock()
                && let Some(tracked) = table.get_mut(&entry.name)
            {
                tracked.in_flight = false;
            }
            return;
        };
        let verdict = self.record_check(&entry.name, started_at, &check, outcome);
        let Some(owner) = entry.owner.as_ref() else {
            return;
        };
        let (env, service, name) = (&owner.env, owner.service.as_str(), entry.name.as_str());
        match verdict {
            Verdict::Nothing => {}
            Verdict::Healthy => {
                self.note(
                    env,
                    Some(service),
                    Some(name),
                    "healthy",
                    format!("{name} is healthy"),
                )
                .await;
            }
            Verdict::Unhealthy { restart, output } => {
                let failing = check.retries.max(1);
                self.note(
                    env,
                    Some(service),
                    Some(name),
                    "unhealthy",
                    format!("{name} failed {failing} health check(s) in a row: {output}"),
                )
                .await;
                if !restart && self.ask_to_move(&entry).await {
                    return;
                }
                if !self.still_running(name, started_at).await {
                    // Replaced or restarted meanwhile: the verdict was
                    // about a run that is gone.
                    return;
                }
                match self.act_local(name, Action::Restart).await {
                    Ok(_) => {
                        self.note(
                            env,
                            Some(service),
                            Some(name),
                            "restarted",
                            format!("{name} was restarted because it is unhealthy"),
                        )
                        .await;
                    }
                    Err(err) => {
                        tracing::warn!(container = %name, %err, "cannot restart an unhealthy replica");
                    }
                }
            }
        }
    }

    /// Whether `name`'s run that started at `started_at` still runs.
    pub(crate) async fn still_running(&self, name: &str, started_at: u64) -> bool {
        let id = name.to_string();
        let state = self
            .blocking(move |host| Ok(host.observe(&id).map(|c| RunState::from(&c.state))))
            .await;
        matches!(state, Ok(Some(RunState::Running { started_at: at, .. })) if at == started_at)
    }

    /// Runs the check's command in `name`; `None` when the container no
    /// longer runs.
    async fn run_check(&self, name: &str, check: &HealthCheck) -> Option<Outcome> {
        let argv = match &check.test {
            HealthTest::Command(argv) => argv.clone(),
            HealthTest::Shell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
        };
        let timeout = check.timeout.max(Duration::from_millis(100));
        let id = name.to_string();
        let ran = self
            .blocking(move |host| {
                let options = ExecOptions {
                    argv,
                    ..ExecOptions::default()
                };
                match host.runtime()?.exec(&id, options) {
                    Ok(exec) => Ok(Some(exec.output_within(timeout))),
                    Err(coop_compute::runtime::RuntimeError::NotRunning(_))
                    | Err(coop_compute::runtime::RuntimeError::NotFound(_)) => Ok(None),
                    Err(err) => Ok(Some(Err(err))),
                }
            })
            .await
            .ok()??;
        Some(match ran {
            Ok((output, false)) => {
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                let passed = output.status == ExitStatus::Code(0);
                let text = text.trim();
                Outcome {
                    passed,
                    output: match (passed, output.status) {
                        (true, _) => kept(text),
                        (false, ExitStatus::Code(code)) => kept(&format!("exit {code}: {text}")),
                        (false, status) => kept(&format!("{status:?}: {text}")),
                    },
                }
            }
            Ok((_, true)) => Outcome {
                passed: false,
                output: format!("timed out after {:?}", check.timeout),
            },
            Err(err) => Outcome {
                passed: false,
                output: kept(&format!("the check could not run: {err}")),
            },
        })
    }

    /// Counts one check of `name` and says what it calls for.
    fn record_check(
        &self,
        name: &str,
        started_at: u64,
        check: &HealthCheck,
        outcome: Outcome,
    ) -> Verdict {
        let Ok(mut table) = self.health_table().lock() else {
            return Verdict::Nothing;
        };
        let Some(tracked) = table.get_mut(name) else {
            return Verdict::Nothing;
        };
        if tracked.started_at != started_at {
            // It restarted while the check ran: the check was of the old run.
            return Verdict::Nothing;
        }
        tracked.in_flight = false;
        tracked.health.checked_at = coop_types::unix_now();
        tracked.health.last_output = outcome.output.clone();
        let early = if tracked.passed {
            check.interval
        } else {
            check.interval.min(EARLY_INTERVAL)
        };
        tracked.next_due = Instant::now() + early.max(Duration::from_millis(100));
        if outcome.passed {
            tracked.health.failing = 0;
            tracked.passed = true;
            if tracked.health.status != HealthStatus::Healthy {
                tracked.health.status = HealthStatus::Healthy;
                tracked.health.restarts = 0;
                return Verdict::Healthy;
            }
            return Verdict::Nothing;
        }
        let in_grace = !tracked.passed
            && coop_types::unix_now().saturating_sub(started_at) < check.start_period.as_secs();
        if in_grace {
            return Verdict::Nothing;
        }
        tracked.health.failing += 1;
        if tracked.health.failing < check.retries.max(1)
            || tracked.health.status == HealthStatus::Unhealthy
        {
            return Verdict::Nothing;
        }
        tracked.health.status = HealthStatus::Unhealthy;
        tracked.health.restarts += 1;
        Verdict::Unhealthy {
            restart: tracked.health.restarts <= RESTARTS_BEFORE_MOVE,
            output: outcome.output,
        }
    }

    /// Asks the control-plane leader to move `entry` off this peer; false
    /// when it cannot (then the replica is restarted here once more).
    async fn ask_to_move(&self, entry: &ContainerEntry) -> bool {
        let Some(owner) = entry.owner.as_ref() else {
            return false;
        };
        let why = format!(
            "it stayed unhealthy through {RESTARTS_BEFORE_MOVE} restarts on {}",
            self.peer().short()
        );
        match self.relocate(&entry.name, &why).await {
            Ok(()) => true,
            Err(err) => {
                self.note(
                    &owner.env,
                    Some(&owner.service),
                    Some(&entry.name),
                    "refused",
                    format!("{} cannot move: {err}", entry.name),
                )
                .await;
                if let Ok(mut table) = self.health_table().lock()
                    && let Some(tracked) = table.get_mut(&entry.name)
                {
                    // Try the restarts here again before the next move.
                    tracked.health.restarts = 0;
                }
                false
            }
        }
    }

    /// Asks the leader to move replica `name` from this peer elsewhere.
    async fn relocate(&self, name: &str, why: &str) -> Result<(), ComputeError> {
        let Some(leader) = self.control().leader() else {
            return Err(ComputeError::Unavailable(
                "the control plane has no leader to move it".into(),
            ));
        };
        if leader == self.peer() {
            return self.relocate_replica(name, self.peer(), why).await;
        }
        let call = crate::protocol::ComputeCall::Relocate {
            name: name.to_string(),
            why: why.to_string(),
        };
        crate::protocol::call(self, leader, call).await.map(|_| ())
    }
}

/// At most [`OUTPUT_KEPT`] bytes of `text`, cut at a character boundary.
fn kept(text: &str) -> String {
    if text.len() <= OUTPUT_KEPT {
        return text.to_string();
    }
    let mut end = OUTPUT_KEPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_a_character_boundary() {
        assert_eq!(kept("ok"), "ok");
        let long = "é".repeat(200);
        let cut = kept(&long);
        assert!(cut.len() <= OUTPUT_KEPT + "…".len());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn health_survives_the_wire() {
        let health = Health {
            status: HealthStatus::Unhealthy,
            failing: 3,
            last_output: "exit 1: refused".into(),
            checked_at: 9,
            restarts: 2,
        };
        let bytes = postcard::to_stdvec(&Some(health.clone())).unwrap();
        assert_eq!(
            postcard::from_bytes::<Option<Health>>(&bytes).unwrap(),
            Some(health)
        );
    }
}
