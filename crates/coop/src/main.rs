//! `coop`: one binary that runs the agent (`coop up`) and drives it (every
//! other subcommand is a thin client of the agent's REST API).

mod agent;
mod backup_cli;
mod client;
mod container_cli;
mod env_cli;
mod env_logs_cli;
mod env_replica_cli;
mod friend_cli;
mod history_cli;
mod network_cli;
mod object_cli;
mod path_cli;
mod probe;
mod settings;
mod since;
mod storage_cli;
mod stream_cli;
mod template_cli;
mod upload;

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
    Up(Box<settings::UpArgs>),
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
    /// What happened in the cloud lately, newest first
    ///
    /// Joins and revocations, every environment's events (replicas placed,
    /// started, moved, restarted, unhealthy, fenced), the other peers'
    /// liveness changes as this peer saw them (unreachable, down, back),
    /// and what every peer that is up did on its own: storage repairs
    /// (repaired, rebalanced, corrupt) and containers started again by
    /// their restart policy (restarted). Peers keep their events in memory
    /// for an hour. The console's overview shows the same.
    #[command(verbatim_doc_comment)]
    Events {
        /// How far back: `90s`, `30m`, `1h`, `2d`, or an RFC 3339 time
        #[arg(long, default_value = "1h")]
        since: String,
    },
    /// A peer's load over the last hour, as the console's charts show it
    ///
    /// Each peer samples itself every 10 s and keeps an hour in memory:
    /// CPU use, memory, traffic on its interfaces, coop's disks, the S3
    /// requests and bytes it served, and each running container's CPU and
    /// memory. Another peer's history is asked of it over the mesh.
    #[command(verbatim_doc_comment)]
    History {
        /// A peer's name, id or unique id prefix; the peer the CLI talks to
        /// when absent
        #[arg(long)]
        peer: Option<String>,
        /// How far back: `90s`, `30m`, `1h` (an hour is all there is)
        #[arg(long, default_value = "5m", value_parser = parse_duration_secs)]
        last: u64,
    },
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
    /// S3 access keys
    S3 {
        #[command(subcommand)]
        action: S3Action,
    },
    /// Buckets of the cloud's S3 storage and who may use them
    Bucket {
        #[command(subcommand)]
        action: BucketAction,
    },
    /// A bucket's objects: list by folder, upload, download, delete
    Object {
        #[command(subcommand)]
        action: object_cli::ObjectAction,
    },
    /// Storage health: disks per peer, layout, object and block health, repair progress
    Storage {
        #[command(subcommand)]
        action: StorageAction,
    },
    /// Read and change cloud-wide settings (replicated to every peer)
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Templates: root filesystems containers are made from
    Template {
        #[command(subcommand)]
        action: template_cli::TemplateAction,
    },
    /// Containers on this peer
    Container {
        #[command(subcommand)]
        action: container_cli::ContainerAction,
    },
    /// Environments: many containers over many peers, from one blueprint
    Env {
        #[command(subcommand)]
        action: env_cli::EnvAction,
    },
    /// Private networks: subnets of the cloud that containers join
    ///
    /// Members of a network reach each other on whatever peer they run,
    /// through NATs and the cloud's relays; nobody else reaches them.
    /// Inside a container on a network, `NAME` and `NAME.NETWORK.coop`
    /// resolve to the member of that name, and on an environment's network
    /// (named after the environment) a service's name resolves to its
    /// healthy replicas. The resolver is the network's gateway (its `.1`);
    /// other names go to the host's resolvers.
    #[command(verbatim_doc_comment)]
    Network {
        #[command(subcommand)]
        action: network_cli::NetworkAction,
    },
    /// Backups: encrypted, incremental copies of buckets in restic repositories
    ///
    /// A backup sends a bucket's objects, with their metadata, into a
    /// restic repository at an S3 target (another coop cloud, Garage,
    /// MinIO, AWS): encrypted and authenticated before they leave, cut
    /// into content-defined chunks so each run sends only what changed.
    /// The repository's password is kept sealed in the control plane;
    /// `coop backup key export` prints it, and with it `restic` itself
    /// reads and restores the repository.
    #[command(verbatim_doc_comment)]
    Backup {
        #[command(subcommand)]
        action: backup_cli::BackupAction,
    },
    /// Friends: other clouds that keep this cloud's backups, or whose backups this one keeps
    ///
    /// A friend keeps only ciphertext, in a bucket of its own with a
    /// quota, reached over the mesh through NATs and relays; it is not a
    /// member and reaches nothing else.
    #[command(verbatim_doc_comment)]
    Friend {
        #[command(subcommand)]
        action: friend_cli::FriendAction,
    },
    /// Runs one container or holds its namespaces (the runtime starts it; not for people)
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Troubleshooting tools: the path to a peer and why, a timed transfer, a raw dial
    Debug {
        #[command(subcommand)]
        action: DebugAction,
    },
}

#[derive(Subcommand, Debug)]
enum DebugAction {
    /// Show how this peer reaches another and why the path is relayed when it is
    ///
    /// Lists the connection's paths (direct UDP or through a relay, the
    /// selected one marked `*`), what each side knows of its own NAT (the
    /// public addresses its packets were seen from, by the relay's address
    /// discovery and by other peers), and a verdict: direct, a symmetric NAT
    /// on one side or both (a relay is expected then), a side with no public
    /// address known (outgoing UDP blocked?), or probes unanswered although
    /// both sides have stable public addresses (a firewall between them
    /// drops UDP). A fresh connection starts on the relay and usually turns
    /// direct within seconds.
    #[command(verbatim_doc_comment)]
    Path {
        /// The other peer: name, full id or a unique id prefix
        peer: String,
    },
    /// Send bytes to another peer over the mesh and report the throughput
    Speed {
        /// The other peer: name, full id or a unique id prefix
        peer: String,
        /// How much to send: 64MiB, 1G, ... (at most 1 GiB)
        #[arg(long, default_value = "64MiB")]
        size: String,
    },
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
enum S3Action {
    /// Create, list and delete S3 access keys
    Key {
        #[command(subcommand)]
        action: S3KeyAction,
    },
}

#[derive(Subcommand, Debug)]
enum S3KeyAction {
    /// Create an access key; prints its id and secret (the secret only now)
    Create {
        /// What to call the key: 1-64 letters, digits, `.`, `_` and `-`
        name: String,
        /// Let the key create buckets over S3 (it owns the buckets it creates)
        #[arg(long)]
        create_bucket: bool,
    },
    /// List access keys (never the secrets)
    Ls,
    /// Delete an access key; its grants on buckets go with it
    Rm {
        /// The access key id
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum BucketAction {
    /// Create a bucket
    Create {
        /// 3-63 characters of a-z, 0-9, `.` and `-`
        name: String,
        /// Redundancy: ec:K+M (K data and M parity shards) or replicas:N.
        /// Without it the bucket follows the cloud's default, the widest
        /// ec:K+2 its failure domains allow, widening as the cloud grows
        #[arg(long)]
        policy: Option<String>,
        /// Keep a stripe's shards spread over zones so a lost zone loses nothing
        #[arg(long)]
        zone_spread: bool,
        /// An access key id that owns the bucket (read, write, delete)
        #[arg(long)]
        owner: Option<String>,
        /// The most bytes the bucket's objects may hold together: 500G,
        /// 10MiB, 1T, 1048576 (units are powers of 1024). Writes past it
        /// are refused (S3: 403 QuotaExceeded). Without it: no quota
        #[arg(long, value_name = "SIZE", value_parser = storage_cli::parse_quota_bytes)]
        quota: Option<u64>,
    },
    /// Change a bucket's settings: its quota
    Set {
        /// The bucket's name
        name: String,
        /// The most bytes the bucket's objects may hold together: 500G,
        /// 10MiB, 1T, 1048576 (units are powers of 1024), or `none`.
        /// A quota below what the bucket holds refuses new writes only;
        /// nothing is deleted
        #[arg(long, value_name = "SIZE|none", value_parser = storage_cli::parse_quota)]
        quota: storage_cli::QuotaArg,
    },
    /// List buckets with policy, usage, quota and the keys that may use them
    Ls,
    /// Delete an empty bucket (uploads in progress are aborted)
    Rm { name: String },
    /// Give an access key rights on a bucket
    Allow {
        name: String,
        /// The access key id
        #[arg(long)]
        key: String,
        /// Read and list objects
        #[arg(long)]
        read: bool,
        /// Put, copy and delete objects
        #[arg(long)]
        write: bool,
        /// Everything, including deleting the bucket
        #[arg(long)]
        owner: bool,
    },
    /// Take every right on a bucket away from an access key
    Deny {
        name: String,
        /// The access key id
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand, Debug)]
enum StorageAction {
    /// Disks per peer (capacity, used, state), the default layout, and
    /// healthy / degraded / unavailable blocks
    Status,
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
pub(crate) fn parse_duration_secs(text: &str) -> Result<u64, String> {
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
    // `coop shim` forks container processes, which is only safe while the
    // process has one thread: dispatch it before clap, tokio or anything
    // else can start one.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|first| first == "shim") {
        return coop_compute::shim::main(args.collect());
    }
    let cli = Cli::parse();
    coop_store::tune_allocator();
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
        Command::Up(args) => agent::up(&global, *args).await,
        Command::Invite { ttl } => client::invite(&global, ttl).await,
        Command::Peers => client::peers(&global).await,
        Command::Status => client::status(&global).await,
        Command::Events { since } => client::events(&global, &since).await,
        Command::History { peer, last } => history_cli::show(&global, peer.as_deref(), last).await,
        Command::Peer {
            action: PeerAction::Revoke { peer },
        } => client::revoke(&global, &peer).await,
        Command::Console => client::console(&global),
        Command::Token { action } => match action {
            TokenAction::Create { user } => client::token_create(&global, &user).await,
            TokenAction::Ls => client::token_list(&global).await,
            TokenAction::Rm { id } => client::token_revoke(&global, &id).await,
        },
        Command::S3 {
            action: S3Action::Key { action },
        } => match action {
            S3KeyAction::Create {
                name,
                create_bucket,
            } => storage_cli::key_create(&global, &name, create_bucket).await,
            S3KeyAction::Ls => storage_cli::key_list(&global).await,
            S3KeyAction::Rm { id } => storage_cli::key_remove(&global, &id).await,
        },
        Command::Bucket { action } => match action {
            BucketAction::Create {
                name,
                policy,
                zone_spread,
                owner,
                quota,
            } => {
                storage_cli::bucket_create(
                    &global,
                    &name,
                    policy.as_deref(),
                    zone_spread,
                    owner.as_deref(),
                    quota,
                )
                .await
            }
            BucketAction::Set { name, quota } => {
                storage_cli::bucket_set(&global, &name, quota).await
            }
            BucketAction::Ls => storage_cli::bucket_list(&global).await,
            BucketAction::Rm { name } => storage_cli::bucket_remove(&global, &name).await,
            BucketAction::Allow {
                name,
                key,
                read,
                write,
                owner,
            } => {
                let grant = coop_types::GrantView { read, write, owner };
                storage_cli::check_allow(&grant)?;
                storage_cli::bucket_grant(&global, &name, &key, grant).await
            }
            BucketAction::Deny { name, key } => {
                storage_cli::bucket_grant(&global, &name, &key, coop_types::GrantView::default())
                    .await
            }
        },
        Command::Storage {
            action: StorageAction::Status,
        } => storage_cli::storage_status(&global).await,
        Command::Config { action } => match action {
            ConfigAction::Get { key } => client::config_get(&global, key.as_deref()).await,
            ConfigAction::Set { key, value } => client::config_set(&global, &key, &value).await,
            ConfigAction::Unset { key } => client::config_unset(&global, &key).await,
        },
        Command::Template { action } => template_cli::run(&global, action).await,
        Command::Container { action } => container_cli::run(&global, action).await,
        Command::Env { action } => env_cli::run(&global, action).await,
        Command::Network { action } => network_cli::run(&global, action).await,
        Command::Backup { action } => backup_cli::run(&global, action).await,
        Command::Friend { action } => friend_cli::run(&global, action).await,
        Command::Object { action } => object_cli::run(&global, action).await,
        Command::Shim { .. } => anyhow::bail!(
            "`coop shim` must be the first argument (it is started by the container runtime, not by people)"
        ),
        Command::Debug { action } => match action {
            DebugAction::Probe { peer, addr, mdns } => {
                probe::probe(&global, &peer, addr.as_deref(), mdns).await
            }
            DebugAction::Path { peer } => path_cli::path(&global, &peer).await,
            DebugAction::Speed { peer, size } => path_cli::speed(&global, &peer, &size).await,
        },
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
