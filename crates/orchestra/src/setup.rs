//! Setup steps of environment replicas (`x-coop.setup`), run by the peer
//! that hosts a replica once its container first runs: commands (tried
//! again while they fail, as many times as the step allows) and files
//! written into the container, in order. A container is set up once in
//! its life: a marker in its state directory says so, and goes with it.
//! A replica moved to another peer, or replaced by an update, is a new
//! container and is set up again. Health checks wait until setup is done,
//! and so does everything waiting for the replica to be ready.

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use coop_compute::runtime::{ExecOptions, ExitStatus};
use coop_state::ContainerEntry;

use crate::blueprint::SetupStep;
use crate::service::Orchestra;

/// The marker of a container that was set up, in its state directory.
const MARKER: &str = "setup.done";
/// How long one try of one step may take.
const STEP_LIMIT: Duration = Duration::from_secs(300);
/// Writes a file from stdin: `$1` the path, `$2` its mode in octal.
const WRITE_FILE: &str = r#"mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1""#;

/// Where a replica's setup stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupState {
    /// Its steps have not begun yet.
    Pending,
    /// Its steps are running.
    Running,
    /// Every step succeeded.
    Done,
    /// A step failed (after its tries); why.
    Failed(String),
}

impl SetupState {
    pub fn name(&self) -> &'static str {
        match self {
            SetupState::Pending => "pending",
            SetupState::Running => "running",
            SetupState::Done => "done",
            SetupState::Failed(_) => "failed",
        }
    }
}

impl Orchestra {
    /// Whether container `name` was set up (its marker exists).
    pub(crate) fn set_up(&self, name: &str) -> bool {
        self.host()
            .runtime()
            .is_ok_and(|rt| rt.container_path(name).join(MARKER).exists())
    }

    /// Where the setup of `name`'s run that started at `started_at` stands,
    /// if it has begun.
    pub(crate) fn setup_of(&self, name: &str, started_at: u64) -> Option<SetupState> {
        if self.set_up(name) {
            return Some(SetupState::Done);
        }
        let table = self.setup_table().lock().ok()?;
        table
            .get(name)
            .filter(|(at, _)| *at == started_at)
            .map(|(_, state)| state.clone())
    }

    /// Claims the setup of `name`'s run at `started_at` unless it is
    /// running or already failed for that run.
    pub(crate) fn take_setup(&self, name: &str, started_at: u64) -> bool {
        let Ok(mut table) = self.setup_table().lock() else {
            return false;
        };
        if table.get(name).is_some_and(|(at, _)| *at == started_at) {
            return false;
        }
        table.insert(name.to_string(), (started_at, SetupState::Running));
        true
    }

    /// Runs `steps` in replica `entry` (its run at `started_at`), then
    /// marks it set up, or records why it could not be.
    pub(crate) async fn run_setup(
        &self,
        entry: ContainerEntry,
        started_at: u64,
        steps: Vec<SetupStep>,
    ) {
        let name = entry.name.clone();
        let mut outcome = self.setup_steps(&name, &steps).await;
        if outcome.is_err() && !self.still_running(&name, started_at).await {
            // The run ended under the steps (a restart, a replacement):
            // the next run is set up afresh.
            if let Ok(mut table) = self.setup_table().lock() {
                table.remove(&name);
            }
            return;
        }
        if let (Ok(()), Some(owner)) = (&outcome, entry.owner.as_ref()) {
            // Noted before the marker, so the event comes before any
            // health check's.
            let message = format!("{name}: setup done ({} step(s))", steps.len());
            self.note(
                &owner.env,
                Some(&owner.service),
                Some(&name),
                "setup",
                message,
            )
            .await;
        }
        if outcome.is_ok() {
            let marked = self
                .host()
                .runtime()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    std::fs::write(rt.container_path(&name).join(MARKER), b"")
                        .map_err(|e| format!("cannot mark it set up: {e}"))
                });
            outcome = marked;
        }
        let state = match &outcome {
            Ok(()) => SetupState::Done,
            Err(why) => SetupState::Failed(why.clone()),
        };
        if let Ok(mut table) = self.setup_table().lock() {
            table.insert(name.clone(), (started_at, state));
        }
        if let (Err(why), Some(owner)) = (outcome, entry.owner.as_ref()) {
            let message = format!("{name}: setup failed: {why}");
            self.note(
                &owner.env,
                Some(&owner.service),
                Some(&name),
                "failed",
                message,
            )
            .await;
        }
    }

    async fn setup_steps(&self, name: &str, steps: &[SetupStep]) -> Result<(), String> {
        for (number, step) in steps.iter().enumerate().map(|(i, s)| (i + 1, s)) {
            match step {
                SetupStep::Run {
                    argv,
                    retries,
                    interval,
                } => {
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        match self.exec_in(name, argv.clone(), None).await {
                            Ok(()) => break,
                            Err(why) if tries > *retries => {
                                return Err(format!(
                                    "step {number} (`{}`) failed after {tries} tr{}: {why}",
                                    argv.join(" "),
                                    if tries == 1 { "y" } else { "ies" }
                                ));
                            }
                            Err(_) => tokio::time::sleep(*interval).await,
                        }
                    }
                }
                SetupStep::File {
                    path,
                    content,
                    mode,
                } => {
                    let argv = vec![
                        "/bin/sh".to_string(),
                        "-c".to_string(),
                        WRITE_FILE.to_string(),
                        "sh".to_string(),
                        path.clone(),
                        format!("{mode:o}"),
                    ];
                    self.exec_in(name, argv, Some(content.clone().into_bytes()))
                        .await
                        .map_err(|why| format!("step {number} (write {path}) failed: {why}"))?;
                }
            }
        }
        Ok(())
    }

    /// Runs `argv` in container `name` here, with `input` on its stdin;
    /// Ok when it exits with status 0.
    async fn exec_in(
        &self,
        name: &str,
        argv: Vec<String>,
        input: Option<Vec<u8>>,
    ) -> Result<(), String> {
        let id = name.to_string();
        let ran = self
            .blocking(move |host| {
                let options = ExecOptions {
                    argv,
                    ..ExecOptions::default()
                };
                let mut exec = match host.runtime()?.exec(&id, options) {
                    Ok(exec) => exec,
                    Err(err) => return Ok(Err(err.to_string())),
                };
                if let (Some(input), Some(stdin)) = (input, exec.stdin.as_mut()) {
                    let _ = stdin.write_all(&input);
                }
                Ok(exec.output_within(STEP_LIMIT).map_err(|e| e.to_string()))
            })
            .await
            .map_err(|e| e.to_string())?;
        let (output, killed) = ran?;
        if killed {
            return Err(format!("it ran longer than {} s", STEP_LIMIT.as_secs()));
        }
        if output.status == ExitStatus::Code(0) {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        if text.trim().is_empty() {
            text = String::from_utf8_lossy(&output.stdout).into_owned();
        }
        let text: String = text.trim().chars().take(200).collect();
        Err(match output.status {
            ExitStatus::Code(code) => format!("exit {code}: {text}"),
            other => format!("{other:?}: {text}"),
        })
    }
}
