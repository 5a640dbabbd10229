//! `coop env ps`, `exec` and `restart`: an environment's replicas one by
//! one, as clients of `/v1/environments` and of the container endpoints
//! each replica has as an ordinary container.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;
use serde_json::json;

use coop_api::compute::{ContainerView, EnvView};
use coop_types::PeerView;

use crate::GlobalArgs;
use crate::client::{Client, print_json, urlencode};
use crate::container_cli::{state_text, uptime};
use crate::env_cli::{output_env, post_waiting};
use crate::stream_cli::{self, exit_with};

/// `coop env exec`.
#[derive(Args, Debug)]
pub struct EnvExecArgs {
    /// Keep stdin open and give the command a terminal (-it)
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pty (same as -i; both together as -it)
    #[arg(short = 't', long)]
    tty: bool,
    /// The environment's name
    name: String,
    /// The service, or SERVICE.N for its replica N [default: its
    /// lowest-numbered running replica]
    #[arg(value_name = "SERVICE[.N]")]
    target: String,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// One row of `coop env ps`.
#[derive(Debug, Serialize)]
struct ReplicaRow {
    /// The container's name, `ENV-SERVICE-INDEX`.
    name: String,
    service: String,
    index: u32,
    /// The peer's full id.
    peer: String,
    /// The peer's name, when the cloud knows it.
    peer_name: Option<String>,
    state: String,
    ports: Vec<String>,
    started_at: Option<u64>,
    uptime_secs: Option<u64>,
    /// starting, healthy or unhealthy, when its service has a health
    /// check; the column shows only when some replica has one.
    health: Option<String>,
}

async fn environment(client: &Client, name: &str) -> Result<EnvView> {
    client
        .get(&format!("/v1/environments/{}", urlencode(name)))
        .await
}

/// Peer id to peer name.
async fn peer_names(client: &Client) -> Result<BTreeMap<String, String>> {
    let peers: Vec<PeerView> = client.get("/v1/peers").await?;
    Ok(peers
        .into_iter()
        .map(|p| (p.id.to_string(), p.name))
        .collect())
}

fn row_of(view: &ContainerView, names: &BTreeMap<String, String>) -> ReplicaRow {
    let (service, index) = view
        .owner
        .as_ref()
        .map_or(("-".to_string(), 0), |o| (o.service.clone(), o.index));
    ReplicaRow {
        name: view.name.clone(),
        service,
        index,
        peer: view.peer.clone(),
        peer_name: names.get(&view.peer).cloned(),
        state: state_text(view),
        ports: view.ports.clone(),
        started_at: view.started_at,
        uptime_secs: view.uptime_secs,
        health: view.health.clone(),
    }
}

pub async fn ps(global: &GlobalArgs, name: &str) -> Result<()> {
    let client = Client::new(global)?;
    let env = environment(&client, name).await?;
    let names = peer_names(&client).await?;
    let mut rows: Vec<ReplicaRow> = env.replicas.iter().map(|r| row_of(r, &names)).collect();
    rows.sort_by(|a, b| (&a.service, a.index).cmp(&(&b.service, b.index)));
    if global.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("environment {name} has no replicas");
        return Ok(());
    }
    let with_health = rows.iter().any(|r| r.health.is_some());
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    let mut header = vec!["REPLICA", "SERVICE", "PEER", "STATE", "PORTS", "UPTIME"];
    if with_health {
        header.push("HEALTH");
    }
    table.set_header(header);
    for row in &rows {
        let mut cells = vec![
            row.name.clone(),
            row.service.clone(),
            row.peer_name
                .clone()
                .unwrap_or_else(|| crate::client::short(&row.peer).to_string()),
            row.state.clone(),
            row.ports.join(", "),
            uptime(row.uptime_secs),
        ];
        if with_health {
            cells.push(row.health.clone().unwrap_or_else(|| "-".into()));
        }
        table.add_row(cells);
    }
    println!("{table}");
    Ok(())
}

/// `SERVICE` or `SERVICE.N`.
fn parse_target(text: &str) -> Result<(String, Option<u32>)> {
    let (service, index) = match text.rsplit_once('.') {
        Some((service, index)) => {
            let index: u32 = index.parse().with_context(|| {
                format!("`{text}`: write SERVICE or SERVICE.N with N a replica number, e.g. web.0")
            })?;
            (service, Some(index))
        }
        None => (text, None),
    };
    if service.is_empty() {
        bail!("`{text}`: name the service, e.g. web or web.0");
    }
    Ok((service.to_string(), index))
}

/// A replica of the service `exec` was pointed at.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    index: u32,
    name: String,
    /// As `coop env ps` shows it.
    state: String,
    running: bool,
}

/// The replica to run in: number `index` if given, else the
/// lowest-numbered running one. `replicas` are the service's, any order.
fn choose_replica(
    env: &str,
    service: &str,
    index: Option<u32>,
    mut replicas: Vec<Candidate>,
) -> Result<String> {
    replicas.sort_by_key(|c| c.index);
    let see = format!("see `coop env ps {env}`");
    if replicas.is_empty() {
        bail!(
            "service `{service}` of environment `{env}` has no replicas; give it some with `coop env scale {env} {service}=1`"
        );
    }
    let Some(index) = index else {
        return match replicas.iter().find(|c| c.running) {
            Some(found) => Ok(found.name.clone()),
            None => {
                let states: Vec<String> = replicas
                    .iter()
                    .map(|c| format!("{service}.{} {}", c.index, c.state))
                    .collect();
                bail!(
                    "no replica of `{service}` in environment `{env}` is running ({}); {see}",
                    states.join(", ")
                )
            }
        };
    };
    match replicas.iter().find(|c| c.index == index) {
        Some(found) if found.running => Ok(found.name.clone()),
        Some(found) => bail!(
            "replica {service}.{index} ({}) is {}, not running; {see}",
            found.name,
            found.state
        ),
        None => {
            let have: Vec<String> = replicas
                .iter()
                .map(|c| format!("{service}.{}", c.index))
                .collect();
            bail!(
                "environment `{env}` has no replica {service}.{index} (it has {})",
                have.join(", ")
            )
        }
    }
}

pub async fn exec(global: &GlobalArgs, args: EnvExecArgs) -> Result<()> {
    let (service, index) = parse_target(&args.target)?;
    let client = Client::new(global)?;
    let env = environment(&client, &args.name).await?;
    if !env.services.iter().any(|s| s.name == service) {
        let names: Vec<&str> = env.services.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "environment `{}` has no service `{service}` (it has {})",
            args.name,
            names.join(", ")
        );
    }
    let candidates = env
        .replicas
        .iter()
        .filter_map(|r| {
            let owner = r.owner.as_ref().filter(|o| o.service == service)?;
            Some(Candidate {
                index: owner.index,
                name: r.name.clone(),
                state: state_text(r),
                running: r.state == "running",
            })
        })
        .collect();
    let replica = choose_replica(&args.name, &service, index, candidates)?;
    let code = stream_cli::exec(
        &client,
        &replica,
        &args.command,
        args.interactive || args.tty,
    )
    .await?;
    exit_with(code);
}

pub async fn restart(global: &GlobalArgs, name: &str, service: Option<&str>) -> Result<()> {
    let client = Client::new(global)?;
    let mut path = format!("/v1/environments/{}/restart", urlencode(name));
    if let Some(service) = service {
        path.push_str(&format!("?service={}", urlencode(service)));
    }
    if !global.json {
        let which = service.map_or(String::new(), |s| format!(" `{s}`"));
        eprintln!("restarting the{which} replicas of {name} one at a time ...");
    }
    let env = post_waiting(&client, &path, &json!({})).await?;
    output_env(global, &env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(index: u32, running: bool) -> Candidate {
        Candidate {
            index,
            name: format!("shop-web-{index}"),
            state: if running { "running" } else { "exited (1)" }.to_string(),
            running,
        }
    }

    #[test]
    fn targets_name_a_service_and_maybe_a_replica() {
        assert_eq!(parse_target("web").unwrap(), ("web".to_string(), None));
        assert_eq!(parse_target("web.2").unwrap(), ("web".to_string(), Some(2)));
        assert_eq!(
            parse_target("my-api.10").unwrap(),
            ("my-api".to_string(), Some(10))
        );
        assert!(parse_target("web.x").is_err());
        assert!(parse_target("web.").is_err());
        assert!(parse_target(".1").is_err());
        assert!(parse_target("web.-1").is_err());
    }

    #[test]
    fn the_lowest_running_replica_is_chosen_by_default() {
        let replicas = vec![replica(2, true), replica(0, false), replica(1, true)];
        assert_eq!(
            choose_replica("shop", "web", None, replicas).unwrap(),
            "shop-web-1"
        );
    }

    #[test]
    fn a_named_replica_must_exist_and_run() {
        let replicas = vec![replica(0, false), replica(1, true)];
        assert_eq!(
            choose_replica("shop", "web", Some(1), replicas.clone()).unwrap(),
            "shop-web-1"
        );
        let stopped = choose_replica("shop", "web", Some(0), replicas.clone()).unwrap_err();
        assert!(
            stopped.to_string().contains("is exited (1), not running"),
            "{stopped}"
        );
        let missing = choose_replica("shop", "web", Some(5), replicas).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("has no replica web.5 (it has web.0, web.1)"),
            "{missing}"
        );
        let none = choose_replica("shop", "web", None, vec![replica(0, false)]).unwrap_err();
        assert!(none.to_string().contains("is running"), "{none}");
        let empty = choose_replica("shop", "web", None, Vec::new()).unwrap_err();
        assert!(empty.to_string().contains("has no replicas"), "{empty}");
    }
}
