//! `coop env`: environments from blueprints (Compose files with coop's
//! `x-coop` extensions).
//!
//! The blueprint is read here first, so its errors (with their lines) and
//! missing variables show before anything is sent; a terminal is asked for
//! missing variables. What goes to the peer is the file's text, the
//! variable values resolved here (`--var`, then the `.env` beside the
//! file, then the variables of this shell the file refers to) and the
//! texts of its `env_file`s; the peer reads it again the same way.
//!
//! The commands on an environment's replicas one by one (`ps`, `exec`,
//! `restart`) are in `env_replica_cli`, its merged logs in `env_logs_cli`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::json;

use coop_api::compute::{EnvPlanView, EnvView};
use coop_orchestra::blueprint::{self, ParseFailure, Variables};

use crate::GlobalArgs;
use crate::client::{Client, print_json, short, urlencode};
use crate::{env_logs_cli, env_replica_cli};

#[derive(Subcommand, Debug)]
pub enum EnvAction {
    /// Show where each replica of a blueprint would run, or why it fits nowhere; changes nothing
    ///
    /// Reads the blueprint (a Compose file; coop's additions go under
    /// `x-coop`), fills in its variables from --var, then a `.env` file
    /// beside it, then this shell's environment, asks on a terminal for
    /// declared variables that are still missing, and asks the peer to
    /// place every replica on the cloud as it is now: spread over zones
    /// by default, within each peer's free cpu, memory, disk and pids,
    /// honouring placement constraints and published ports.
    #[command(verbatim_doc_comment)]
    Plan(BlueprintArgs),
    /// Create an environment from a blueprint, or update it to the blueprint
    ///
    /// Reads the blueprint as `plan` does.
    ///
    /// A new environment: every replica must fit somewhere before anything
    /// is created; then each runs where the scheduler places it, the
    /// services it depends on first (waiting for the `condition` each
    /// `depends_on` names: started, healthy, or completed successfully).
    /// A peer that refuses a replica's lease gets it placed elsewhere; a
    /// replica that cannot start at all removes what was created, and the
    /// error says which replica failed and why.
    ///
    /// An existing environment is updated: only services whose definition
    /// changed are replaced, one replica at a time (removed, then started
    /// with the new definition, on the same peer when it still fits), and
    /// each must be ready (healthy when it has a health check) before the
    /// next is touched. The first replica that is not ready in time stops
    /// the update with its name and reason; `--rollback` goes back to the
    /// version before the last update the same way.
    ///
    /// Then, unless --detach, waits until every replica is ready, printing
    /// a line per service as it gets there.
    #[command(verbatim_doc_comment)]
    Up(UpArgs),
    /// List environments with their desired and running replicas
    Ls,
    /// Show an environment: services, each replica's peer and state, recent events
    Show {
        /// The environment's name
        name: String,
    },
    /// Take an environment down: stop and remove every replica, then the environment
    ///
    /// Every replica gets SIGTERM and --timeout seconds to exit, all at
    /// once, then SIGKILL; then the replicas and the environment are
    /// removed. The leader stops healing the environment first, so nothing
    /// comes back meanwhile.
    #[command(verbatim_doc_comment)]
    Down {
        /// The environment's name
        name: String,
        /// Seconds each replica gets to exit after SIGTERM
        #[arg(short = 't', long, value_name = "SECS", default_value_t = 10)]
        timeout: u32,
    },
    /// Set how many replicas services run: `coop env scale shop web=5 api=2`
    ///
    /// Scaling down removes the highest-numbered replicas first; scaling
    /// up places and starts new ones as `up` does. The environment keeps
    /// the new counts (healing keeps them running).
    #[command(verbatim_doc_comment)]
    Scale {
        /// The environment's name
        name: String,
        /// SERVICE=COUNT, one or more
        #[arg(required = true, value_name = "SERVICE=COUNT")]
        counts: Vec<String>,
    },
    /// List an environment's replicas: service, peer, state, ports, uptime
    ///
    /// One row per replica, by service and index, as its peer reports it
    /// now; a replica whose peer does not answer shows as `unknown`. With
    /// --json, one object per replica with the peer's full id and the
    /// start time in unix seconds.
    #[command(verbatim_doc_comment)]
    Ps {
        /// The environment's name
        name: String,
    },
    /// Print the output of an environment's replicas, merged: `coop env logs shop web -f`
    ///
    /// Reads the log of every replica (or of one service's) and prints it
    /// line by line, each line prefixed with its replica's name
    /// (`shop-web-0 | ...`), in a colour per replica on a terminal. The
    /// logs have no times on their lines, so lines of different replicas
    /// are merged in the order they arrive, not strictly the order they
    /// were written. With --json, one object per line: replica, service,
    /// line.
    ///
    /// With -f, follows until Ctrl-C: a replica that stops does not end
    /// the others, and one that runs again (restarted, moved to another
    /// peer, added by `scale`) is followed again from where it left off.
    #[command(verbatim_doc_comment)]
    Logs(env_logs_cli::EnvLogsArgs),
    /// Run a command in a replica: `coop env exec shop web -- sh -c 'ls /'`
    ///
    /// Runs in replica N of the service with SERVICE.N, else in its
    /// lowest-numbered running replica, wherever it runs in the cloud.
    /// The command's output is passed through and `coop` exits with its
    /// exit code (128 + the signal when a signal ended it), as `coop
    /// container exec` does; -it gives it this terminal.
    #[command(verbatim_doc_comment)]
    Exec(env_replica_cli::EnvExecArgs),
    /// Restart an environment's replicas (all, or one service's) one at a time
    ///
    /// Each replica is stopped (SIGTERM, then SIGKILL after 10 s) and
    /// started again on the peer it runs on before the next one is
    /// touched, by service and index, so a service with several replicas
    /// keeps serving meanwhile. Each restart is noted in the environment's
    /// events (`coop env show`). A replica that cannot restart stops the
    /// command and the ones after it are left alone; the error names it.
    /// Prints the environment afterwards, as `show` does.
    #[command(verbatim_doc_comment)]
    Restart {
        /// The environment's name
        name: String,
        /// Only this service's replicas [default: every service's]
        service: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The blueprint file
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        required_unless_present = "rollback"
    )]
    pub file: Option<PathBuf>,
    /// The environment's name [default: the blueprint's `name`, else the file's name]
    #[arg(long, required_if_eq("rollback", "true"))]
    pub name: Option<String>,
    /// A variable's value; repeatable, stronger than `.env` and the shell
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Go back to the version before the last update of --name (no file)
    #[arg(long, conflicts_with_all = ["file", "vars"])]
    pub rollback: bool,
    /// Return once every replica is started, without waiting for them to be ready
    #[arg(long)]
    pub detach: bool,
    /// How long to wait for every replica to be ready
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub wait: u64,
}

#[derive(Args, Debug)]
pub struct BlueprintArgs {
    /// The blueprint file
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// The environment's name [default: the blueprint's `name`, else the file's name]
    #[arg(long)]
    pub name: Option<String>,
    /// A variable's value; repeatable, stronger than `.env` and the shell
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

pub async fn run(global: &GlobalArgs, action: EnvAction) -> Result<()> {
    match action {
        EnvAction::Plan(args) => plan(global, args).await,
        EnvAction::Up(args) => up(global, args).await,
        EnvAction::Ls => list(global).await,
        EnvAction::Show { name } => show(global, &name).await,
        EnvAction::Down { name, timeout } => down(global, &name, timeout).await,
        EnvAction::Scale { name, counts } => scale(global, &name, &counts).await,
        EnvAction::Ps { name } => env_replica_cli::ps(global, &name).await,
        EnvAction::Logs(args) => env_logs_cli::logs(global, args).await,
        EnvAction::Exec(args) => env_replica_cli::exec(global, args).await,
        EnvAction::Restart { name, service } => {
            env_replica_cli::restart(global, &name, service.as_deref()).await
        }
    }
}

/// A blueprint read here, ready to send.
struct Prepared {
    name: String,
    source: String,
    vars: BTreeMap<String, String>,
    env_files: BTreeMap<String, String>,
}

/// Names `$NAME` and `${NAME...}` the text refers to, so only those
/// variables of the shell leave this machine.
fn referenced_names(source: &str) -> Vec<String> {
    let bytes = source.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = if bytes.get(i + 1) == Some(&b'{') {
                i + 2
            } else {
                i + 1
            };
            let end = bytes[start.min(bytes.len())..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .map_or(bytes.len(), |n| start + n);
            if end > start {
                names.push(source[start..end].to_string());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    names.sort();
    names.dedup();
    names
}

fn parse_vars(texts: &[String]) -> Result<BTreeMap<String, String>> {
    texts
        .iter()
        .map(|text| match text.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => bail!("invalid --var `{text}`: write NAME=VALUE"),
        })
        .collect()
}

/// The name an environment gets from a file name: lower case, runs of
/// other characters turned into `-`.
fn name_from_file(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name = String::new();
    for c in stem.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    name.trim_end_matches('-').to_string()
}

fn prepare(args: &BlueprintArgs) -> Result<Prepared> {
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read the blueprint {}", args.file.display()))?;
    let dir = args
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dotenv_path = dir.join(".env");
    let dotenv = match std::fs::read_to_string(&dotenv_path) {
        Ok(text) => blueprint::parse_dotenv(&text).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            anyhow::anyhow!(
                "{} is not a valid .env file:\n{}",
                dotenv_path.display(),
                lines.join("\n")
            )
        })?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", dotenv_path.display()));
        }
    };
    let env: BTreeMap<String, String> = referenced_names(&source)
        .into_iter()
        .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
        .collect();
    let mut variables = Variables {
        cli: parse_vars(&args.vars)?,
        dotenv,
        env,
    };
    let env_files = std::cell::RefCell::new(BTreeMap::new());
    let load = |path: &str| -> Result<String, String> {
        let full = dir.join(path);
        let text = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        env_files
            .borrow_mut()
            .insert(path.to_string(), text.clone());
        Ok(text)
    };
    let parsed = loop {
        match blueprint::parse(&source, &variables, &load) {
            Ok(parsed) => break parsed,
            Err(ParseFailure::MissingVariables(missing)) if std::io::stdin().is_terminal() => {
                let stdin = std::io::stdin();
                for variable in missing {
                    let about = variable.description.as_deref().unwrap_or("");
                    let suggested = variable.default.as_deref().unwrap_or("");
                    print!(
                        "{} ({}) {about} [{suggested}]: ",
                        variable.name, variable.kind
                    );
                    std::io::stdout().flush()?;
                    let mut answer = String::new();
                    stdin.lock().read_line(&mut answer)?;
                    let answer = answer.trim();
                    let value = if answer.is_empty() { suggested } else { answer };
                    variables.cli.insert(variable.name, value.to_string());
                }
            }
            Err(failure) => bail!("{}: {failure}", args.file.display()),
        }
    };
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    let name = args
        .name
        .clone()
        .or(parsed.name.clone())
        .unwrap_or_else(|| name_from_file(&args.file));
    let mut vars = variables.env;
    vars.extend(variables.dotenv);
    vars.extend(variables.cli);
    Ok(Prepared {
        name,
        source,
        vars,
        env_files: env_files.into_inner(),
    })
}

impl Prepared {
    fn body(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "blueprint": self.source,
            "vars": self.vars,
            "env_files": self.env_files,
        })
    }
}

async fn plan(global: &GlobalArgs, args: BlueprintArgs) -> Result<()> {
    let prepared = prepare(&args)?;
    let client = Client::new(global)?;
    let plan: EnvPlanView = client
        .call(
            reqwest::Method::POST,
            "/v1/environments/plan",
            Some(prepared.body()),
        )
        .await?;
    if global.json {
        return print_json(&plan);
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(vec!["SERVICE", "REPLICA", "PEER", "NOTE"]);
    let mut unplaced = 0;
    for replica in &plan.replicas {
        let note = match (&replica.reason, &replica.current, &replica.peer) {
            (Some(reason), _, _) => {
                unplaced += 1;
                format!("fits nowhere: {reason}")
            }
            (None, Some(current), Some(peer)) if current == peer => "stays".to_string(),
            (None, Some(_), Some(_)) => "moves".to_string(),
            _ => "new".to_string(),
        };
        table.add_row(vec![
            replica.service.clone(),
            replica.name.clone(),
            replica.peer_name.clone().unwrap_or_else(|| "-".into()),
            note,
        ]);
    }
    println!("environment {}", plan.name);
    println!("{table}");
    if unplaced > 0 {
        println!("{unplaced} replica(s) fit nowhere; `--json` lists every peer's reason");
    }
    Ok(())
}

async fn up(global: &GlobalArgs, args: UpArgs) -> Result<()> {
    let client = Client::new(global)?;
    let env = if args.rollback {
        let name = args.name.clone().unwrap_or_default();
        if !global.json {
            eprintln!("rolling environment {name} back to its previous version ...");
        }
        let path = format!("/v1/environments/{}/rollback", urlencode(&name));
        post_waiting(&client, &path, &json!({})).await?
    } else {
        let Some(file) = args.file.clone() else {
            bail!("give the blueprint with -f FILE, or --rollback with --name");
        };
        let prepared = prepare(&BlueprintArgs {
            file,
            name: args.name.clone(),
            vars: args.vars.clone(),
        })?;
        if !global.json {
            let exists = client
                .get::<EnvView>(&format!("/v1/environments/{}", urlencode(&prepared.name)))
                .await
                .is_ok();
            let doing = if exists { "updating" } else { "creating" };
            eprintln!("{doing} environment {} ...", prepared.name);
        }
        post_waiting(&client, "/v1/environments", &prepared.body()).await?
    };
    let env = if args.detach {
        env
    } else {
        wait_until_ready(global, &client, &env.name, Duration::from_secs(args.wait)).await?
    };
    output_env(global, &env)
}

/// Whether a replica is where its service wants it: running and healthy
/// (or without a health check), or a one-off task that finished well.
fn replica_ready(replica: &coop_api::compute::ContainerView) -> bool {
    match replica.state.as_str() {
        "running" => {
            replica.health.as_deref().is_none_or(|h| h == "healthy")
                && replica.setup.as_deref().is_none_or(|s| s == "done")
        }
        "exited" => replica.restart == "no" && replica.exit_code == Some(0),
        _ => false,
    }
}

/// Why a replica is not ready, in a few words.
fn not_ready_because(replica: &coop_api::compute::ContainerView) -> String {
    if let Some(why) = &replica.setup_error {
        return format!("setup failed: {why}");
    }
    if replica.state == "running" && replica.setup.as_deref().is_some_and(|s| s != "done") {
        return "being set up".to_string();
    }
    match (replica.state.as_str(), replica.health.as_deref()) {
        ("running", Some(health)) => match replica.health_output.as_deref() {
            Some(output) if !output.is_empty() => format!("{health}: {output}"),
            _ => health.to_string(),
        },
        ("exited", _) => match (replica.exit_code, replica.exit_signal) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "exited".to_string(),
        },
        (state, _) => state.to_string(),
    }
}

/// Waits until every replica of environment `name` is ready, printing a
/// line per service when its count changes (on stderr, unless --json).
async fn wait_until_ready(
    global: &GlobalArgs,
    client: &Client,
    name: &str,
    limit: Duration,
) -> Result<EnvView> {
    let deadline = std::time::Instant::now() + limit;
    let mut shown: BTreeMap<String, (usize, u32)> = BTreeMap::new();
    let path = format!("/v1/environments/{}", urlencode(name));
    loop {
        let env: EnvView = client.get(&path).await?;
        let mut all_ready = true;
        for service in &env.services {
            let replicas: Vec<&coop_api::compute::ContainerView> = env
                .replicas
                .iter()
                .filter(|r| r.owner.as_ref().is_some_and(|o| o.service == service.name))
                .collect();
            let ready = replicas.iter().filter(|r| replica_ready(r)).count();
            all_ready &= ready as u32 >= service.desired;
            if !global.json && shown.get(&service.name) != Some(&(ready, service.desired)) {
                eprintln!("  {:<16} {ready}/{} ready", service.name, service.desired);
                shown.insert(service.name.clone(), (ready, service.desired));
            }
            // A one-off task that failed will not get better by waiting.
            if let Some(failed) = replicas
                .iter()
                .find(|r| r.state == "exited" && r.restart == "no" && r.exit_code != Some(0))
            {
                bail!(
                    "replica {} of environment {name} {}; see `coop env logs {name} {}`",
                    failed.name,
                    not_ready_because(failed),
                    service.name
                );
            }
        }
        if all_ready {
            return Ok(env);
        }
        if std::time::Instant::now() >= deadline {
            let stuck: Vec<String> = env
                .replicas
                .iter()
                .filter(|r| !replica_ready(r))
                .map(|r| format!("{} ({})", r.name, not_ready_because(r)))
                .collect();
            bail!(
                "environment {name} is not ready after {} s: {}; `coop env show {name}` has its events",
                limit.as_secs(),
                stuck.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// POSTs `body` without the client's overall timeout: creating, scaling
/// and restarting wait for replicas to start, which may fetch templates
/// first (and a restart waits up to 10 s for each replica to stop).
pub(crate) async fn post_waiting(
    client: &Client,
    path: &str,
    body: &serde_json::Value,
) -> Result<EnvView> {
    let request = client.streaming(reqwest::Method::POST, path)?.json(body);
    client
        .send_streaming(request)
        .await?
        .json()
        .await
        .context("unexpected answer from the API")
}

/// Prints `env` as JSON with `--json`, else as tables.
pub(crate) fn output_env(global: &GlobalArgs, env: &EnvView) -> Result<()> {
    if global.json {
        return print_json(env);
    }
    print_env(env);
    Ok(())
}

async fn list(global: &GlobalArgs) -> Result<()> {
    let client = Client::new(global)?;
    let envs: Vec<EnvView> = client.get("/v1/environments").await?;
    if global.json {
        return print_json(&envs);
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(vec!["NAME", "SERVICES", "REPLICAS", "GENERATION"]);
    for env in &envs {
        let desired: u32 = env.services.iter().map(|s| s.desired).sum();
        let running: u32 = env.services.iter().map(|s| s.running).sum();
        table.add_row(vec![
            env.name.clone(),
            env.services.len().to_string(),
            format!("{running}/{desired} running"),
            env.generation.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn print_env(env: &EnvView) {
    let rollback = if env.can_roll_back {
        ", the previous version kept for --rollback"
    } else {
        ""
    };
    println!(
        "environment {} ({}, generation {}{rollback})",
        env.name, env.phase, env.generation
    );
    let mut services = Table::new();
    services.load_style(UTF8_BORDERS_ONLY);
    services.set_header(vec!["SERVICE", "DESIRED", "RUNNING", "HEALTHY"]);
    for service in &env.services {
        services.add_row(vec![
            service.name.clone(),
            service.desired.to_string(),
            service.running.to_string(),
            service.healthy.to_string(),
        ]);
    }
    println!("{services}");
    let mut replicas = Table::new();
    replicas.load_style(UTF8_BORDERS_ONLY);
    replicas.set_header(vec![
        "REPLICA", "PEER", "STATE", "HEALTH", "ADDRESS", "PORTS", "UPTIME",
    ]);
    for replica in &env.replicas {
        replicas.add_row(vec![
            replica.name.clone(),
            short(&replica.peer).to_string(),
            replica.state.clone(),
            replica.health.clone().unwrap_or_else(|| "-".into()),
            replica.address.clone().unwrap_or_default(),
            replica.ports.join(", "),
            replica
                .uptime_secs
                .map(|s| format!("{s} s"))
                .unwrap_or_default(),
        ]);
    }
    println!("{replicas}");
    if !env.pending.is_empty() {
        println!("pending");
        for replica in &env.pending {
            match (&replica.peer_name, &replica.reason) {
                (Some(peer), _) => println!("  {} -> {peer}: not started yet", replica.name),
                (None, Some(reason)) => {
                    println!("  {} fits nowhere: {reason}", replica.name);
                    for (peer, why) in &replica.refusals {
                        println!("    {peer}: {why}");
                    }
                }
                (None, None) => println!("  {}", replica.name),
            }
        }
    }
    if !env.events.is_empty() {
        println!("events");
        for event in env.events.iter().rev().take(10).rev() {
            println!("  {} {:<9} {}", event.at, event.kind, event.message);
        }
    }
}

async fn show(global: &GlobalArgs, name: &str) -> Result<()> {
    let client = Client::new(global)?;
    let env: EnvView = client
        .get(&format!("/v1/environments/{}", urlencode(name)))
        .await?;
    output_env(global, &env)
}

async fn scale(global: &GlobalArgs, name: &str, counts: &[String]) -> Result<()> {
    let services = counts
        .iter()
        .map(|text| {
            let (service, count) = text
                .split_once('=')
                .with_context(|| format!("`{text}`: write SERVICE=COUNT, e.g. web=3"))?;
            let count: u32 = count
                .parse()
                .with_context(|| format!("`{text}`: the count must be a whole number"))?;
            Ok((service.to_string(), count))
        })
        .collect::<Result<BTreeMap<String, u32>>>()?;
    let client = Client::new(global)?;
    let path = format!("/v1/environments/{}/scale", urlencode(name));
    let env = post_waiting(&client, &path, &json!({ "services": services })).await?;
    output_env(global, &env)
}

async fn down(global: &GlobalArgs, name: &str, timeout: u32) -> Result<()> {
    let client = Client::new(global)?;
    let request = client.streaming(
        reqwest::Method::DELETE,
        &format!("/v1/environments/{}?timeout={timeout}", urlencode(name)),
    )?;
    let removed: serde_json::Value = client
        .send_streaming(request)
        .await?
        .json()
        .await
        .context("unexpected answer from the API")?;
    if global.json {
        return print_json(&removed);
    }
    println!(
        "environment {name} is down ({} replica(s) removed)",
        removed["replicas_removed"]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_referenced_shell_variables_are_sent() {
        let names = referenced_names("a: ${TAG:-1} b: $HOST c: $$LITERAL d: ${X}y $");
        assert!(names.contains(&"TAG".to_string()));
        assert!(names.contains(&"HOST".to_string()));
        assert!(names.contains(&"X".to_string()));
        assert!(!names.iter().any(|n| n.is_empty()));
    }

    #[test]
    fn environment_names_come_from_file_names() {
        assert_eq!(name_from_file(Path::new("/x/My Shop.yaml")), "my-shop");
        assert_eq!(name_from_file(Path::new("compose.yml")), "compose");
    }
}
