//! `coop network`: the cloud's private networks.

use anyhow::Result;
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::json;

use coop_api::networks::NetworkView;

use crate::GlobalArgs;
use crate::client::{Client, print_json, urlencode};

#[derive(Subcommand, Debug)]
pub enum NetworkAction {
    /// Create a private network
    ///
    /// Without --subnet, the network gets the next free /24 of
    /// 10.210.0.0/16. A subnet may overlap no other network of the cloud,
    /// nor the containers' bridge or the routes of the peer that creates
    /// it. Its `.1` is the network's gateway on every peer.
    #[command(verbatim_doc_comment)]
    Create {
        /// 1-63 characters of a-z, 0-9 and `-`, starting with a letter
        name: String,
        /// The network's subnet, e.g. 10.30.0.0/24 (a prefix from /8 to /30)
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
    },
    /// List the private networks with their subnets and member counts
    Ls,
    /// Show a network: subnet, gateway, and each member with its address and peer
    Show {
        /// The network's name
        name: String,
    },
    /// Remove a network; refused while a container is on it
    Rm {
        /// The network's name
        name: String,
    },
}

pub async fn run(global: &GlobalArgs, action: NetworkAction) -> Result<()> {
    let client = Client::new(global)?;
    match action {
        NetworkAction::Create { name, subnet } => {
            let body = json!({ "name": name, "subnet": subnet });
            let network: NetworkView = client
                .call(reqwest::Method::POST, "/v1/networks", Some(body))
                .await?;
            if global.json {
                return print_json(&network);
            }
            println!(
                "network {} created: {} (gateway {})",
                network.name, network.subnet, network.gateway
            );
            Ok(())
        }
        NetworkAction::Ls => {
            let networks: Vec<NetworkView> = client.get("/v1/networks").await?;
            if global.json {
                return print_json(&networks);
            }
            let mut table = Table::new();
            table.load_style(UTF8_BORDERS_ONLY);
            table.set_header(vec!["NAME", "SUBNET", "GATEWAY", "MEMBERS", "ENVIRONMENT"]);
            for network in &networks {
                table.add_row(vec![
                    network.name.clone(),
                    network.subnet.clone(),
                    network.gateway.clone(),
                    network.members.len().to_string(),
                    network.environment.clone().unwrap_or_default(),
                ]);
            }
            println!("{table}");
            Ok(())
        }
        NetworkAction::Show { name } => {
            let network: NetworkView = client
                .get(&format!("/v1/networks/{}", urlencode(&name)))
                .await?;
            if global.json {
                return print_json(&network);
            }
            println!(
                "network {} (id {}): {}, gateway {}",
                network.name, network.id, network.subnet, network.gateway
            );
            if let Some(env) = &network.environment {
                println!("belongs to environment {env}");
            }
            let mut table = Table::new();
            table.load_style(UTF8_BORDERS_ONLY);
            table.set_header(vec!["CONTAINER", "ADDRESS", "PEER"]);
            for member in &network.members {
                table.add_row(vec![
                    member.container.clone(),
                    member.address.clone(),
                    member
                        .peer_name
                        .clone()
                        .unwrap_or_else(|| member.peer.clone()),
                ]);
            }
            println!("{table}");
            Ok(())
        }
        NetworkAction::Rm { name } => {
            let removed: serde_json::Value = client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/networks/{}", urlencode(&name)),
                    None,
                )
                .await?;
            if global.json {
                return print_json(&removed);
            }
            println!("network {name} removed");
            Ok(())
        }
    }
}
