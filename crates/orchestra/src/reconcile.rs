//! The reconcile loop: recovers the runtime's containers after a restart,
//! then keeps this peer's containers as the control plane says: starts
//! what should run (restart policies, with backoff), stops what should
//! not, and removes containers the cloud no longer knows.
//!
//! Each container is handled under its own lock, so the loop never races
//! an operator's `stop` or `rm` of the same container, and a container
//! busy with an operation is simply looked at again next pass.
//!
//! Fencing: a peer that has not reached the control-plane leader (a read
//! barrier the leader confirms with a quorum) for `fence_after` stops the
//! environment replicas it runs and starts none, because the leader will
//! soon place them elsewhere. Back in touch, the pass first catches up
//! with the leader, so a replica that moved meanwhile is removed here
//! (its entry names another peer) and one that did not starts again.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use coop_compute::runtime::{ContainerState, ExitStatus};
use coop_state::DesiredState;
use coop_types::{EventView, unix_now};

use crate::host::should_restart;
use crate::service::{Orchestra, STOP_GRACE};

/// How often the loop compares desired and actual state. A restart policy
/// reacts within this; each pass reads local files only.
const RECONCILE_INTERVAL: Duration = Duration::from_millis(1500);
/// A runtime container without a control-plane entry is removed only
/// after this long: a `run` on a peer whose replica lags may have created
/// it before its entry is applied here.
const ORPHAN_GRACE_SECS: u64 = 60;
/// How long a pass waits for this replica to catch up with the leader.
const BARRIER_WAIT: Duration = Duration::from_secs(1);
/// Longest wait between attempts to start a container that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a fenced replica gets between SIGTERM and SIGKILL: short,
/// since another peer is about to start it.
const FENCE_GRACE: Duration = Duration::from_secs(2);

/// Whether this peer is in touch with the control plane, and what it
/// stopped while it was not.
struct Contact {
    last: Instant,
    /// Replicas stopped by fencing, by environment, to report once back.
    fenced: Vec<(String, String, String)>,
}

/// What one container needs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Start,
    Stop,
    Nothing,
}

impl Orchestra {
    /// Recovers the runtime's containers, then reconciles every
    /// [`RECONCILE_INTERVAL`] until the future is dropped; environment
    /// replicas are fenced after `fence_after` without the leader.
    pub async fn reconcile(self, fence_after: Duration) {
        if self.host().runtime().is_err() {
            return;
        }
        match self.blocking(|host| Ok(host.runtime()?.recover())).await {
            Ok(Ok(containers)) => info!(count = containers.len(), "recovered containers"),
            Ok(Err(err)) => warn!(%err, "container recovery failed"),
            Err(err) => warn!(%err, "container recovery did not run"),
        }
        let mut first_pass = true;
        let mut backoff: HashMap<String, (Duration, Instant)> = HashMap::new();
        let mut contact = Contact {
            last: Instant::now(),
            fenced: Vec::new(),
        };
        let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.reconcile_pass(first_pass, &mut backoff, &mut contact, fence_after)
                .await;
            first_pass = false;
        }
    }

    async fn reconcile_pass(
        &self,
        first_pass: bool,
        backoff: &mut HashMap<String, (Duration, Instant)>,
        contact: &mut Contact,
        fence_after: Duration,
    ) {
        // The barrier waits for this replica to catch up with the leader,
        // briefly: cut off from the leader, the loop goes on with what it
        // has (edge autonomy), except for environment replicas (fencing).
        let in_touch = matches!(
            tokio::time::timeout(BARRIER_WAIT, self.control().read_barrier()).await,
            Ok(Ok(()))
        );
        if in_touch {
            contact.last = Instant::now();
            self.report_fenced(std::mem::take(&mut contact.fenced))
                .await;
        }
        let fenced = contact.last.elapsed() >= fence_after;
        let Ok(entries) = self.control().store().containers() else {
            return;
        };
        let me = self.peer();
        if fenced {
            self.fence(&entries, contact).await;
        }
        for entry in entries
            .iter()
            .filter(|e| e.peer == me)
            .filter(|e| !(fenced && e.owner.is_some()))
        {
            let name = entry.name.clone();
            if backoff
                .get(&name)
                .is_some_and(|(_, at)| Instant::now() < *at)
            {
                continue;
            }
            // Blobs of templates about to start come from the store first,
            // outside the container's lock.
            if entry.desired == DesiredState::Running
                && let Err(err) = self
                    .host()
                    .ensure_template(self.control().store(), entry)
                    .await
            {
                warn!(container = %name, %err, "cannot fetch the container's template");
            }
            let Some(_busy) = self.locks().try_lock(&name) else {
                continue;
            };
            // Read again under the lock: an `rm` or `stop` that held it may
            // have changed the entry, and acting on the old one would start
            // again what was just removed.
            let Ok(Some(entry)) = self.control().store().container(&name) else {
                continue;
            };
            let policy = entry.restart;
            let networks = match self.network_attaches(&entry) {
                Ok(networks) => networks,
                Err(err) => {
                    warn!(container = %name, %err, "cannot name the container's networks");
                    continue;
                }
            };
            let outcome = self
                .blocking(move |host| {
                    let actual = host.observe(&entry.name).map(|c| c.state);
                    // A copy from an older lease is replaced (launch
                    // removes it) before anything else happens to it.
                    let stale = actual.is_some() && host.stale_lease(&entry);
                    let step = match (entry.desired, &actual) {
                        _ if stale && entry.desired == DesiredState::Running => Step::Start,
                        (DesiredState::Running, None | Some(ContainerState::Created)) => Step::Start,
                        (DesiredState::Running, Some(ContainerState::Exited(exit))) => {
                            if should_restart(entry.restart, exit.status, first_pass) {
                                Step::Start
                            } else {
                                Step::Nothing
                            }
                        }
                        (DesiredState::Stopped, Some(ContainerState::Running { .. })) => {
                            Step::Stop
                        }
                        _ => Step::Nothing,
                    };
                    match step {
                        Step::Stop => {
                            if let Err(err) = host.runtime()?.stop(&entry.name, STOP_GRACE) {
                                warn!(container = %entry.name, %err, "cannot stop a container that should be stopped");
                            }
                            Ok(None)
                        }
                        Step::Start => {
                            let exited = match &actual {
                                Some(ContainerState::Exited(exit)) => Some(exit.status),
                                _ => None,
                            };
                            match host.launch(&entry, &networks) {
                                Ok(_) => {
                                    info!(container = %entry.name, policy = entry.restart.name(), "started container");
                                    Ok(Some((true, exited)))
                                }
                                Err(err) => {
                                    warn!(container = %entry.name, %err, "cannot start container");
                                    Ok(Some((false, exited)))
                                }
                            }
                        }
                        Step::Nothing => Ok(None),
                    }
                })
                .await;
            match outcome {
                Ok(Some((true, exited))) => {
                    backoff.remove(&name);
                    if let Some(status) = exited {
                        self.note_restart(&name, policy, status);
                    }
                }
                Ok(Some((false, _))) => {
                    let wait = backoff
                        .get(&name)
                        .map(|(d, _)| (*d * 2).min(MAX_BACKOFF))
                        .unwrap_or(RECONCILE_INTERVAL);
                    backoff.insert(name, (wait, Instant::now() + wait));
                }
                Ok(None) => {}
                Err(err) => warn!(container = %name, %err, "reconcile step failed"),
            }
        }
        self.remove_orphans(&entries).await;
    }

    /// Notes in this peer's events that `entry`'s policy restarted it
    /// after it ended with `status`.
    fn note_restart(&self, name: &str, policy: coop_state::RestartPolicy, status: ExitStatus) {
        let how = match status {
            ExitStatus::Code(code) => format!("exited with code {code}"),
            ExitStatus::Signal(signal) => format!("was killed by signal {signal}"),
            ExitStatus::Unknown => "ended while nothing watched it".to_owned(),
        };
        let peer = self
            .control()
            .store()
            .peer(&self.peer())
            .ok()
            .flatten()
            .map_or_else(|| self.peer().short(), |p| p.cert.body.name.clone());
        self.events().note(EventView::now(
            "restarted",
            name,
            format!(
                "{name} {how} and was started again on {peer} (restart policy {})",
                policy.name()
            ),
        ));
    }

    /// Stops every environment replica this peer runs: it has been cut off
    /// from the leader, which will place them elsewhere.
    async fn fence(&self, entries: &[coop_state::ContainerEntry], contact: &mut Contact) {
        let me = self.peer();
        let silent = contact.last.elapsed().as_secs();
        for entry in entries.iter().filter(|e| e.peer == me) {
            let Some(owner) = entry.owner.clone() else {
                continue;
            };
            let Some(_busy) = self.locks().try_lock(&entry.name) else {
                continue;
            };
            let name = entry.name.clone();
            let stopped = self
                .blocking(move |host| {
                    let running = host.observe(&name).is_some_and(|c| c.state.is_running());
                    if running {
                        host.runtime()?
                            .stop(&name, FENCE_GRACE)
                            .map_err(crate::error::runtime_error)?;
                    }
                    Ok(running)
                })
                .await;
            match stopped {
                Ok(true) => {
                    warn!(container = %entry.name, silent, "cut off from the control plane: replica stopped (fencing)");
                    contact
                        .fenced
                        .push((owner.env, owner.service, entry.name.clone()));
                }
                Ok(false) => {}
                Err(err) => warn!(container = %entry.name, %err, "cannot stop a fenced replica"),
            }
        }
    }

    /// Tells each environment which of its replicas this peer stopped
    /// while it was cut off.
    async fn report_fenced(&self, fenced: Vec<(String, String, String)>) {
        for (env, service, name) in fenced {
            self.note(
                &env,
                Some(&service),
                Some(&name),
                "fenced",
                format!(
                    "{name} was stopped on {} while it was cut off from the control plane",
                    self.peer().short()
                ),
            )
            .await;
        }
    }

    /// Removes runtime containers without a control-plane entry, once they
    /// are older than [`ORPHAN_GRACE_SECS`], and at once those whose entry
    /// now names another peer (an environment replica moved away while
    /// this peer was gone: its copy here must not run twice).
    async fn remove_orphans(&self, entries: &[coop_state::ContainerEntry]) {
        let me = self.peer();
        let known: BTreeSet<String> = entries
            .iter()
            .filter(|e| e.peer == me)
            .map(|e| e.name.clone())
            .collect();
        let moved: BTreeSet<String> = entries
            .iter()
            .filter(|e| e.peer != me)
            .map(|e| e.name.clone())
            .collect();
        let Ok(listed) = self
            .blocking(|host| Ok(host.runtime()?.list().unwrap_or_default()))
            .await
        else {
            return;
        };
        for orphan in listed {
            let elsewhere = moved.contains(&orphan.id);
            if known.contains(&orphan.id)
                || (!elsewhere && unix_now().saturating_sub(orphan.created_at) < ORPHAN_GRACE_SECS)
            {
                continue;
            }
            let Some(_busy) = self.locks().try_lock(&orphan.id) else {
                continue;
            };
            // A lease may have recorded it here since the list was read.
            match self.control().store().container(&orphan.id) {
                Ok(Some(entry)) if entry.peer == me => continue,
                Ok(Some(_)) | Ok(None) => {}
                Err(_) => continue,
            }
            let id = orphan.id.clone();
            match self
                .blocking(move |host| Ok(host.runtime()?.delete(&id, true)))
                .await
            {
                Ok(Ok(())) if elsewhere => {
                    info!(container = %orphan.id, "removed a replica that now runs on another peer")
                }
                Ok(Ok(())) => {
                    info!(container = %orphan.id, "removed a container the cloud no longer knows")
                }
                Ok(Err(err)) => {
                    warn!(container = %orphan.id, %err, "cannot remove an orphaned container")
                }
                Err(err) => {
                    warn!(container = %orphan.id, %err, "cannot remove an orphaned container")
                }
            }
        }
    }
}
