//! `coop container`: run, list, show, start, stop, restart, remove, exec,
//! logs and stats of containers, as clients of `/v1/containers`.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::json;

use coop_api::compute::{ComputeView, ContainerView, RunRequest, StatsView, exit_code_of};
use coop_orchestra::LogStart;

use crate::GlobalArgs;
use crate::client::{Client, human_bytes, print_json, short, urlencode};
use crate::stream_cli::{self, exit_with};

/// `coop container run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Template: NAME or NAME:VERSION
    template: String,
    /// Container name [default: TEMPLATE-xxxxxx]
    #[arg(long)]
    name: Option<String>,
    /// tiny, small, medium, large or huge [default: the template's]
    #[arg(long)]
    size: Option<String>,
    /// CPUs, overriding the size's: 0.5, 2, 500m
    #[arg(long)]
    cpus: Option<String>,
    /// Memory, overriding the size's: 512M, 1G
    #[arg(long)]
    memory: Option<String>,
    /// Disk, overriding the size's: 4G
    #[arg(long)]
    disk: Option<String>,
    /// Process limit, overriding the size's
    #[arg(long)]
    pids: Option<String>,
    /// Publish a port: HOST:CONT[/tcp|udp] (repeatable)
    #[arg(short = 'p', long = "publish", value_name = "HOST:CONT")]
    ports: Vec<String>,
    /// Set an environment variable: K=V (repeatable)
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Restart policy: no, on-failure, always
    #[arg(long, default_value = "no")]
    restart: String,
    /// Join a private network: NAME, or NAME:ADDRESS for a fixed address
    /// (repeatable; see `coop network`). The container keeps its address
    /// there across restarts.
    #[arg(long = "network", value_name = "NAME[:ADDRESS]")]
    networks: Vec<String>,
    /// The container's address on the one --network given
    #[arg(long, value_name = "ADDRESS")]
    ip: Option<String>,
    /// Run on this peer (name, id or unique id prefix) instead of the one
    /// the CLI talks to; the peer accepts only what fits its free capacity
    #[arg(long, value_name = "PEER")]
    peer: Option<String>,
    /// Return at once instead of following the output until it exits
    #[arg(short = 'd', long)]
    detach: bool,
    /// Command and arguments [default: the template's entrypoint]
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ContainerAction {
    /// Run a container from a template on this peer or, with --peer, on another
    Run(Box<RunArgs>),
    /// List containers (running ones; all with --all)
    Ls {
        #[arg(short, long)]
        all: bool,
    },
    /// Show a container: spec, state, exit status, OOM kills
    Show { name: String },
    /// Start a stopped or exited container
    Start { name: String },
    /// Stop a container (SIGTERM, then SIGKILL after --timeout seconds)
    Stop {
        name: String,
        /// Seconds the container gets to exit after SIGTERM
        #[arg(short = 't', long, value_name = "SECS", default_value_t = 10)]
        timeout: u32,
    },
    /// Stop and start a container
    Restart { name: String },
    /// Remove a container
    Rm {
        name: String,
        /// Kill it first if it runs
        #[arg(short, long)]
        force: bool,
    },
    /// Run a command in a running container
    Exec {
        /// Keep stdin open and give the command a terminal (-it)
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Allocate a pty (same as -i; both together as -it)
        #[arg(short = 't', long)]
        tty: bool,
        name: String,
        /// The command and its arguments
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print a container's output
    ///
    /// The log is the container's stdout and stderr as it wrote them, kept
    /// across restarts, with no times on its lines.
    #[command(verbatim_doc_comment)]
    Logs {
        /// The container's name
        name: String,
        /// Keep printing new output until the container exits
        #[arg(short, long)]
        follow: bool,
        /// Skip output of runs that were over before this time: a duration
        /// back from now (90s, 30m, 1h, 2d) or an RFC 3339 time
        /// (2025-05-01T10:00:00Z). The log has no times on its lines, so
        /// this goes by runs: the run going at that time is shown whole
        #[arg(long, value_name = "DURATION|TIME", value_parser = crate::since::parse_since)]
        since: Option<u64>,
    },
    /// CPU, memory, processes, network and disk use
    Stats { name: String },
}

pub async fn run(global: &GlobalArgs, action: ContainerAction) -> Result<()> {
    let client = Client::new(global)?;
    let path = |name: &str, tail: &str| format!("/v1/containers/{}{tail}", urlencode(name));
    match action {
        ContainerAction::Run(args) => {
            let RunArgs {
                template,
                name,
                size,
                cpus,
                memory,
                disk,
                pids,
                ports,
                env,
                restart,
                mut networks,
                ip,
                peer,
                detach,
                command,
            } = *args;
            if let Some(ip) = ip {
                match networks.as_mut_slice() {
                    [only] if !only.contains(':') => *only = format!("{only}:{ip}"),
                    _ => anyhow::bail!(
                        "--ip goes with exactly one --network NAME; for several, write --network NAME:ADDRESS each"
                    ),
                }
            }
            let request = RunRequest {
                template,
                name,
                size,
                cpus,
                memory,
                disk,
                pids,
                ports,
                env,
                restart: Some(restart),
                argv: command,
                peer,
                networks,
            };
            let view: ContainerView = client
                .call(
                    reqwest::Method::POST,
                    "/v1/containers",
                    Some(serde_json::to_value(&request)?),
                )
                .await?;
            if detach {
                if global.json {
                    return print_json(&view);
                }
                println!("{}", view.name);
                return Ok(());
            }
            stream_cli::logs(&client, &view.name, true, LogStart::Offset(0)).await?;
            let done = wait_exited(&client, &view.name).await?;
            if done.oom_killed {
                eprintln!("coop: container `{}` was OOM-killed", done.name);
            }
            exit_with(exit_code_of(done.exit_code, done.exit_signal));
        }
        ContainerAction::Ls { all } => {
            let views: Vec<ContainerView> =
                client.get(&format!("/v1/containers?all={all}")).await?;
            print_list(global, &views)?;
            if !global.json {
                let here: ComputeView = client.get("/v1/compute").await?;
                if let Some(reason) = here.reason {
                    eprintln!(
                        "note: containers cannot run on this peer ({reason}); run them on another with --peer"
                    );
                }
            }
            Ok(())
        }
        ContainerAction::Show { name } => {
            let view: ContainerView = client.get(&path(&name, "")).await?;
            if global.json {
                return print_json(&view);
            }
            print_container(&view);
            Ok(())
        }
        ContainerAction::Start { name } => {
            act(global, &client, &path(&name, "/start"), "started").await
        }
        ContainerAction::Stop { name, timeout } => {
            let path = format!("{}?timeout={timeout}", path(&name, "/stop"));
            act(global, &client, &path, "stopped").await
        }
        ContainerAction::Restart { name } => {
            act(global, &client, &path(&name, "/restart"), "restarted").await
        }
        ContainerAction::Rm { name, force } => {
            let view: ContainerView = client
                .call(
                    reqwest::Method::DELETE,
                    &format!("{}?force={force}", path(&name, "")),
                    None,
                )
                .await?;
            if global.json {
                return print_json(&view);
            }
            println!("removed container {}", view.name);
            Ok(())
        }
        ContainerAction::Exec {
            interactive,
            tty,
            name,
            command,
        } => {
            let code = stream_cli::exec(&client, &name, &command, interactive || tty).await?;
            exit_with(code);
        }
        ContainerAction::Logs {
            name,
            follow,
            since,
        } => {
            let start = since.map_or(LogStart::Offset(0), LogStart::Since);
            stream_cli::logs(&client, &name, follow, start).await
        }
        ContainerAction::Stats { name } => {
            let stats: StatsView = client.get(&path(&name, "/stats")).await?;
            if global.json {
                return print_json(&stats);
            }
            println!("container  {}", stats.name);
            println!("cpu        {:.3} s", stats.cpu_usage_ns as f64 / 1e9);
            println!(
                "memory     {} of {}",
                human_bytes(stats.memory_bytes),
                human_bytes(stats.memory_limit_bytes)
            );
            println!("pids       {}", stats.pids);
            println!(
                "network    {} in, {} out",
                human_bytes(stats.net_rx_bytes),
                human_bytes(stats.net_tx_bytes)
            );
            println!("disk       {}", human_bytes(stats.disk_used_bytes));
            Ok(())
        }
    }
}

async fn act(global: &GlobalArgs, client: &Client, path: &str, done: &str) -> Result<()> {
    let view: ContainerView = client
        .call(reqwest::Method::POST, path, Some(json!({})))
        .await?;
    if global.json {
        return print_json(&view);
    }
    println!("{done} container {} ({})", view.name, view.state);
    Ok(())
}

/// After the output stream ended: waits until the agent reports the exit.
async fn wait_exited(client: &Client, name: &str) -> Result<ContainerView> {
    for _ in 0..100 {
        let view: ContainerView = client
            .get(&format!("/v1/containers/{}", urlencode(name)))
            .await?;
        if view.state != "running" {
            return Ok(view);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "container `{name}` still runs after its output ended; follow it with `coop container logs -f {name}`"
    )
}

/// An uptime in its largest sensible unit: `42s`, `5m`, `3h`, `2d`.
pub(crate) fn uptime(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86400),
    }
}

/// The state with how a run ended: `exited (3)`, `killed (signal 9)`.
pub(crate) fn state_text(v: &ContainerView) -> String {
    match v.state.as_str() {
        "exited" => {
            let how = match (v.exit_code, v.exit_signal) {
                (Some(code), _) => format!("exited ({code})"),
                (None, Some(sig)) => format!("killed (signal {sig})"),
                _ => "exited (unknown)".to_string(),
            };
            if v.oom_killed {
                format!("{how}, OOM-killed")
            } else {
                how
            }
        }
        other => other.to_string(),
    }
}

fn print_list(global: &GlobalArgs, views: &[ContainerView]) -> Result<()> {
    if global.json {
        return print_json(&views);
    }
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "NAME", "PEER", "TEMPLATE", "SIZE", "STATE", "PORTS", "UPTIME",
    ]);
    for v in views {
        t.add_row(vec![
            v.name.clone(),
            short(&v.peer).to_string(),
            v.template.clone(),
            v.size.clone(),
            state_text(v),
            v.ports.join(", "),
            uptime(v.uptime_secs),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn print_container(v: &ContainerView) {
    println!("container   {}", v.name);
    println!("peer        {}", v.peer);
    println!("template    {}", v.template);
    println!(
        "size        {} ({} CPU, {} memory, {} disk, {} pids)",
        v.size,
        f64::from(v.cpus_milli) / 1000.0,
        human_bytes(v.memory_bytes),
        human_bytes(v.disk_bytes),
        v.pids_limit
    );
    println!("command     {}", v.argv.join(" "));
    println!("state       {}", state_text(v));
    println!("desired     {} (restart {})", v.desired, v.restart);
    if let Some(address) = &v.address {
        println!("address     {address}");
    }
    if !v.ports.is_empty() {
        println!("ports       {}", v.ports.join(", "));
    }
    if let Some(pid) = v.pid {
        println!("pid         {pid}");
    }
    println!("uptime      {}", uptime(v.uptime_secs));
    println!("oom killed  {}", if v.oom_killed { "yes" } else { "no" });
}
