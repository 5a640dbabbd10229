//! `coop`: one binary that runs the agent (`coop up`) and drives it (every
//! other subcommand is a thin client of the agent's REST API).

mod agent;
mod client;
mod datadir;
mod probe;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A peer-to-peer micro cloud: combine your own computers into one cloud.
///
/// `coop up` runs a peer. Every other command talks to a running peer's
/// API; by default the one whose data dir is `--data-dir` (or
/// `$COOP_DATA_DIR`), reading its address and admin token from there.
#[derive(Parser, Debug)]
#[command(name = "coop", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts, before or after its name.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// The peer's data directory [default: /var/lib/coop for root, else ~/.local/share/coop]
    #[arg(long, global = true, env = "COOP_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// For `coop up`: the REST API and console address [default: 127.0.0.1:7400].
    /// For other commands: the API URL of the peer to talk to (overrides the data dir's api.json)
    #[arg(long, global = true, env = "COOP_API", value_name = "ADDR|URL")]
    pub api: Option<String>,
    /// API bearer token (overrides the data dir's api.token)
    #[arg(
        long,
        global = true,
        env = "COOP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run this machine as a peer (in the foreground)
    ///
    /// On a fresh data dir without --join, creates a new one-peer cloud. With
    /// --join TOKEN, joins the cloud that issued the invite. Afterwards the
    /// data dir remembers its cloud and `coop up` alone restarts the peer.
    Up(settings::UpArgs),
    /// Create a single-use invite; prints the token alone on stdout
    Invite {
        /// How long the invite is valid: 90s, 30m, 1h, 2d (at most 7d)
        #[arg(long, default_value = "1h", value_parser = parse_duration_secs)]
        ttl: u64,
    },
    /// List every peer of the cloud
    Peers,
    /// Show this peer, the cloud, its stewards and leader, and health
    Status,
    /// Act on one peer
    Peer {
        #[command(subcommand)]
        action: PeerAction,
    },
    /// Print the web console's address, logged in (open it in a browser)
    Console,
    /// Manage API tokens of users
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Read and change cloud-wide settings (replicated to every peer)
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Troubleshooting tools
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        action: DebugAction,
    },
}

#[derive(Subcommand, Debug)]
enum DebugAction {
    /// Dial a peer with this data dir's identity and report whether it admits us
    Probe {
        /// The target peer's full id
        #[arg(long)]
        peer: String,
        /// The target's mesh address, ip:port (without it, the target must be found by mDNS)
        #[arg(long)]
        addr: Option<String>,
        /// Look the target up by mDNS on the local network
        #[arg(long)]
        mdns: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PeerAction {
    /// Cut a peer off for good: its certificate is void on every peer
    Revoke {
        /// Peer id, unique id prefix (4+ characters) or name
        peer: String,
    },
}

#[derive(Subcommand, Debug)]
enum TokenAction {
    /// Create a token for a user; prints the token alone on stdout (shown once)
    Create {
        /// User name: 1-64 characters of a-z, 0-9, `.`, `_` and `-`
        #[arg(long)]
        user: String,
    },
    /// List tokens (ids and users, never the tokens)
    Ls,
    /// Revoke a token by id (8+ characters of it)
    Rm { id: String },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Print every setting, or one
    Get { key: Option<String> },
    /// Set a setting
    Set { key: String, value: String },
    /// Remove a setting
    Unset { key: String },
}

/// Parses `90`, `90s`, `30m`, `1h`, `2d` into seconds.
fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 90s, 30m, 1h or 2d"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit in `{text}`: use s, m, h or d")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too long"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("coop: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("coop: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Up(args) => agent::up(&global, args).await,
        Command::Invite { ttl } => client::invite(&global, ttl).await,
        Command::Peers => client::peers(&global).await,
        Command::Status => client::status(&global).await,
        Command::Peer {
            action: PeerAction::Revoke { peer },
        } => client::revoke(&global, &peer).await,
        Command::Console => client::console(&global),
        Command::Token { action } => match action {
            TokenAction::Create { user } => client::token_create(&global, &user).await,
            TokenAction::Ls => client::token_list(&global).await,
            TokenAction::Rm { id } => client::token_revoke(&global, &id).await,
        },
        Command::Config { action } => match action {
            ConfigAction::Get { key } => client::config_get(&global, key.as_deref()).await,
            ConfigAction::Set { key, value } => client::config_set(&global, &key, &value).await,
            ConfigAction::Unset { key } => client::config_unset(&global, &key).await,
        },
        Command::Debug {
            action: DebugAction::Probe { peer, addr, mdns },
        } => probe::probe(&global, &peer, addr.as_deref(), mdns).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("30m"), Ok(1800));
        assert_eq!(parse_duration_secs("1h"), Ok(3600));
        assert_eq!(parse_duration_secs("2d"), Ok(172800));
        assert!(parse_duration_secs("1y").is_err());
        assert!(parse_duration_secs("h").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
