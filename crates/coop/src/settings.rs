//! Settings of `coop up`: flags, then `COOP_*` environment variables (both
//! through clap), then `coop.toml` in the data dir, then embedded defaults.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

use crate::GlobalArgs;
use coop_node::{CapacitySettings, NodeSettings, default_data_dir};

/// Flags of `coop up`.
#[derive(Args, Debug, Clone, Default)]
pub struct UpArgs {
    /// Name of this peer [default: the hostname]
    #[arg(long, env = "COOP_NAME")]
    pub name: Option<String>,
    /// Zone (location / failure domain) of this peer [default: default]
    #[arg(long, env = "COOP_ZONE")]
    pub zone: Option<String>,
    /// A label for placement constraints (`node.labels.KEY==VALUE` in a
    /// blueprint). Repeat for more; `zone` and `hostname` are built in
    #[arg(
        long = "label",
        env = "COOP_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
    /// S3 endpoint address [default: 0.0.0.0:7401]
    #[arg(long, env = "COOP_S3", value_name = "ADDR")]
    pub s3: Option<SocketAddr>,
    /// Peer mesh UDP address [default: 0.0.0.0:7402]
    #[arg(long, env = "COOP_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Join the cloud of this invite token (first start only)
    #[arg(long, env = "COOP_JOIN", value_name = "TOKEN", hide_env_values = true)]
    pub join: Option<String>,
    /// Serve as a relay for the cloud's peers
    #[arg(long, env = "COOP_RELAY")]
    pub relay: bool,
    /// Do not look for peers on the local network by mDNS, nor announce this one
    #[arg(long, env = "COOP_NO_MDNS")]
    pub no_mdns: bool,
    /// Seconds of silence after which an unreachable peer counts as down [default: 60]
    #[arg(long, env = "COOP_DOWN_AFTER", value_name = "SECS")]
    pub down_after: Option<u64>,
    /// Seconds an environment replica's peer may be silent before the
    /// replica is started on another peer; a peer cut off from the
    /// control-plane leader for 2/5 of this stops its replicas first
    /// [default: 10]
    #[arg(long, env = "COOP_RESCHEDULE_AFTER", value_name = "SECS")]
    pub reschedule_after: Option<u64>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "COOP_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// A directory to store object shards in, with an optional cap on what
    /// coop may use (e.g. /srv/disk1:500G). Repeat for every disk
    /// [default: the `disk` directory inside the data dir]
    #[arg(
        long = "disk",
        env = "COOP_DISKS",
        value_name = "PATH[:CAPACITY]",
        value_delimiter = ','
    )]
    pub disks: Vec<String>,
    /// Memory for the read cache of recently served blocks (0 turns it off)
    /// [default: 256M]
    #[arg(long, env = "COOP_CACHE_SIZE", value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// Domain under which buckets are addressed virtual-host style
    /// (`bucket.DOMAIN`); repeatable [default: localhost]
    #[arg(
        long = "s3-domain",
        env = "COOP_S3_DOMAINS",
        value_name = "DOMAIN",
        value_delimiter = ','
    )]
    pub s3_domains: Vec<String>,
    /// Seconds between repair passes, which rebuild lost shards and move
    /// shards off peers that are down for good [default: 30]
    #[arg(long, env = "COOP_REPAIR_INTERVAL", value_name = "SECS")]
    pub repair_interval: Option<u64>,
    /// Seconds between scrub passes, which read every local shard to find
    /// bit rot [default: 86400]
    #[arg(long, env = "COOP_SCRUB_INTERVAL", value_name = "SECS")]
    pub scrub_interval: Option<u64>,
    /// Seconds an unneeded shard (of a deleted object, or left by a failed
    /// write) is kept before garbage collection deletes it [default: 3600]
    #[arg(long, env = "COOP_GC_GRACE", value_name = "SECS")]
    pub gc_grace: Option<u64>,
    /// Seconds after which a multipart upload that was neither completed
    /// nor aborted is aborted and its parts collected [default: 604800, a week]
    #[arg(long, env = "COOP_UPLOAD_EXPIRY", value_name = "SECS")]
    pub upload_expiry: Option<u64>,
    /// Largest body of one S3 request (single PUT or one part) [default: 5G]
    #[arg(long, env = "COOP_S3_MAX_BODY", value_name = "SIZE")]
    pub s3_max_body: Option<String>,
    /// CPUs this peer lends to containers, e.g. 2 or 1.5 [default: all cores].
    /// A container is accepted (locally or from another peer with --peer)
    /// only while the CPUs, memory and disk of this peer's containers fit
    #[arg(long, env = "COOP_CAPACITY_CPUS", value_name = "CPUS")]
    pub capacity_cpus: Option<String>,
    /// Memory this peer lends to containers, e.g. 8G [default: all memory
    /// but 512 MiB]
    #[arg(long, env = "COOP_CAPACITY_MEMORY", value_name = "SIZE")]
    pub capacity_memory: Option<String>,
    /// Disk this peer lends to containers' writable layers, e.g. 200G
    /// [default: 90% of the data dir's filesystem]
    #[arg(long, env = "COOP_CAPACITY_DISK", value_name = "SIZE")]
    pub capacity_disk: Option<String>,
    /// Container networking and cgroup names; hidden, so tests (or two
    /// agents on one machine) can keep their bridges, nft tables and
    /// cgroups apart. See [`ContainerArgs`].
    #[command(flatten)]
    pub containers: ContainerArgs,
}

/// `coop.toml`: the same settings, all optional.
/// Names the container runtime uses on the host. The defaults (bridge
/// `coop0` on 10.88.0.0/16, nft table `coop`, veths `coopv…`, namespaces
/// `coop-…`, cgroups under `/coop`) suit one agent per machine.
#[derive(Args, Debug, Clone, Default)]
pub struct ContainerArgs {
    /// Host bridge of the containers
    #[arg(long, env = "COOP_CONTAINER_BRIDGE", hide = true, value_name = "NAME")]
    pub container_bridge: Option<String>,
    /// Subnet of the containers, e.g. 10.88.0.0/16
    #[arg(long, env = "COOP_CONTAINER_SUBNET", hide = true, value_name = "CIDR")]
    pub container_subnet: Option<String>,
    /// nftables table (family ip) of the containers' NAT and ports
    #[arg(
        long,
        env = "COOP_CONTAINER_NFT_TABLE",
        hide = true,
        value_name = "NAME"
    )]
    pub container_nft_table: Option<String>,
    /// Prefix of host-side veth names (at most 9 characters)
    #[arg(
        long,
        env = "COOP_CONTAINER_VETH_PREFIX",
        hide = true,
        value_name = "PREFIX"
    )]
    pub container_veth_prefix: Option<String>,
    /// Prefix of network namespace names
    #[arg(
        long,
        env = "COOP_CONTAINER_NETNS_PREFIX",
        hide = true,
        value_name = "PREFIX"
    )]
    pub container_netns_prefix: Option<String>,
    /// Parent cgroup of the containers
    #[arg(long, env = "COOP_CONTAINER_CGROUP", hide = true, value_name = "NAME")]
    pub container_cgroup: Option<String>,
    /// Run containers without a user namespace, so their root is the
    /// host's root. By default a container's root is host uid 1073741824
    /// (ids 0-65535 map from there) wherever the host supports it
    #[arg(long, env = "COOP_NO_CONTAINER_USERNS")]
    pub no_container_userns: bool,
}

impl ContainerArgs {
    /// The runtime configuration: defaults with these names applied.
    pub fn runtime_config(
        &self,
        shim: coop_compute::runtime::ShimCommand,
    ) -> Result<coop_compute::runtime::RuntimeConfig> {
        let mut config = coop_compute::runtime::RuntimeConfig::new(shim);
        config.user_namespaces = !self.no_container_userns;
        let net = &mut config.network;
        if let Some(bridge) = &self.container_bridge {
            net.bridge = bridge.clone();
        }
        if let Some(subnet) = &self.container_subnet {
            net.subnet = subnet.parse().map_err(|e| {
                anyhow::anyhow!(
                    "invalid container subnet `{subnet}`: {e}; write it like 10.88.0.0/16"
                )
            })?;
        }
        if let Some(table) = &self.container_nft_table {
            net.nft_table = table.clone();
        }
        if let Some(prefix) = &self.container_veth_prefix {
            net.veth_prefix = prefix.clone();
        }
        if let Some(prefix) = &self.container_netns_prefix {
            net.netns_prefix = prefix.clone();
        }
        if let Some(cgroup) = &self.container_cgroup {
            config.cgroup_parent = cgroup.clone();
        }
        net.validate()
            .context("invalid container network settings")?;
        Ok(config)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    name: Option<String>,
    zone: Option<String>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    api: Option<SocketAddr>,
    s3: Option<SocketAddr>,
    listen: Option<SocketAddr>,
    relay: Option<bool>,
    mdns: Option<bool>,
    down_after: Option<u64>,
    reschedule_after: Option<u64>,
    log_format: Option<String>,
    disks: Option<Vec<String>>,
    cache_size: Option<String>,
    s3_domains: Option<Vec<String>>,
    s3_max_body: Option<String>,
    repair_interval: Option<u64>,
    scrub_interval: Option<u64>,
    gc_grace: Option<u64>,
    upload_expiry: Option<u64>,
    capacity_cpus: Option<String>,
    capacity_memory: Option<String>,
    capacity_disk: Option<String>,
}

/// The resolved settings of a peer.
/// What `coop up` runs with: the node's settings and how to log.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: NodeSettings,
    pub json_logs: bool,
}

fn parse_size_setting(what: &str, text: &str) -> Result<u64> {
    coop_store::parse_size(text).with_context(|| {
        format!("invalid {what} `{text}`: use a number with an optional K, M, G or T suffix")
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "peer".into())
}

fn read_file_settings(path: &Path) -> Result<FileSettings> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("invalid {}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(FileSettings::default()),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Names and zones end up in certificates, tables and DNS-like places.
fn check_label(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        bail!("invalid {what} `{value}`: use 1-63 characters of letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

/// `KEY=VALUE` pairs of `--label`.
fn parse_labels(texts: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    texts
        .iter()
        .map(|text| match text.split_once('=') {
            Some((key, value)) => Ok((key.to_string(), value.to_string())),
            None => bail!("invalid label `{text}`: write KEY=VALUE, e.g. --label disk=ssd"),
        })
        .collect()
}

/// Labels name placement rules: keys and values like zones, and neither of
/// the built-in keys.
fn check_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<()> {
    for (key, value) in labels {
        if key == "zone" || key == "hostname" {
            bail!("label `{key}` is built in: set it with --zone or --name");
        }
        check_label("label key", key)?;
        check_label("label value", value)?;
    }
    Ok(())
}

/// `coop up --api` takes `ip:port`, or the URL a client would use.
fn parse_listen_addr(text: &str) -> Result<SocketAddr> {
    let bare = text.trim_start_matches("http://").trim_end_matches('/');
    bare.parse().with_context(|| {
        format!("invalid API address `{text}`: expected ip:port, e.g. 127.0.0.1:7400")
    })
}

impl Settings {
    pub fn resolve(global: &GlobalArgs, args: UpArgs) -> Result<Self> {
        let data_dir = global.data_dir.clone().unwrap_or_else(default_data_dir);
        let file = read_file_settings(&coop_node::DataDir::new(data_dir.clone()).config_file())?;
        let name = args.name.or(file.name).unwrap_or_else(hostname);
        let zone = args.zone.or(file.zone).unwrap_or_else(|| "default".into());
        check_label("name", &name)?;
        check_label("zone", &zone)?;
        let labels = if args.labels.is_empty() {
            file.labels.unwrap_or_default()
        } else {
            parse_labels(&args.labels)?
        };
        check_labels(&labels)?;
        let log_format = args
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        let json_logs = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => bail!("unknown log format `{other}`: use text or json"),
        };
        let disk_texts = if args.disks.is_empty() {
            file.disks.unwrap_or_default()
        } else {
            args.disks
        };
        let disks = if disk_texts.is_empty() {
            vec![coop_store::DiskSpec {
                path: data_dir.join("disk"),
                capacity: None,
            }]
        } else {
            disk_texts
                .iter()
                .map(|t| {
                    t.parse::<coop_store::DiskSpec>()
                        .map_err(anyhow::Error::from)
                })
                .collect::<Result<Vec<_>>>()?
        };
        let cache_bytes = parse_size_setting(
            "cache size",
            &args
                .cache_size
                .or(file.cache_size)
                .unwrap_or_else(|| "256M".into()),
        )?;
        let s3_max_body = parse_size_setting(
            "S3 body limit",
            &args
                .s3_max_body
                .or(file.s3_max_body)
                .unwrap_or_else(|| "5G".into()),
        )?;
        let s3_domains = if args.s3_domains.is_empty() {
            file.s3_domains
                .unwrap_or_else(|| vec!["localhost".to_owned()])
        } else {
            args.s3_domains
        };
        let capacity = CapacitySettings {
            cpus_milli: args
                .capacity_cpus
                .or(file.capacity_cpus)
                .map(|t| coop_compute::parse_cpus(&t))
                .transpose()
                .context("invalid --capacity-cpus")?,
            memory_bytes: args
                .capacity_memory
                .or(file.capacity_memory)
                .map(|t| coop_compute::parse_bytes(&t))
                .transpose()
                .context("invalid --capacity-memory")?,
            disk_bytes: args
                .capacity_disk
                .or(file.capacity_disk)
                .map(|t| coop_compute::parse_bytes(&t))
                .transpose()
                .context("invalid --capacity-disk")?,
        };
        let defaults =
            |s: &str| -> SocketAddr { s.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))) };
        let shim = coop_compute::runtime::ShimCommand::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find this executable to run `coop shim`: {e}"))?;
        let containers = Some(args.containers.runtime_config(shim)?);
        let node = NodeSettings {
            data_dir,
            name,
            zone,
            labels,
            api: match &global.api {
                Some(text) => parse_listen_addr(text)?,
                None => file.api.unwrap_or_else(|| defaults("127.0.0.1:7400")),
            },
            s3: args
                .s3
                .or(file.s3)
                .unwrap_or_else(|| defaults("0.0.0.0:7401")),
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| defaults("0.0.0.0:7402")),
            join: args.join,
            relay: args.relay || file.relay.unwrap_or(false),
            mdns: !args.no_mdns && file.mdns.unwrap_or(true),
            down_after: args.down_after.or(file.down_after).unwrap_or(60),
            reschedule_after: args
                .reschedule_after
                .or(file.reschedule_after)
                .unwrap_or(10),
            disks,
            cache_bytes,
            s3_domains,
            s3_max_body,
            containers,
            repair_interval: args.repair_interval.or(file.repair_interval).unwrap_or(30),
            scrub_interval: args.scrub_interval.or(file.scrub_interval).unwrap_or(86400),
            gc_grace: args.gc_grace.or(file.gc_grace).unwrap_or(3600),
            upload_expiry: args
                .upload_expiry
                .or(file.upload_expiry)
                .unwrap_or(7 * 24 * 3600),
            capacity,
        };
        Ok(Settings { node, json_logs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_refuse_the_built_in_keys_and_odd_text() {
        let labels = parse_labels(&["disk=ssd".into(), "rack=r1".into()]).unwrap();
        assert_eq!(labels.get("disk").map(String::as_str), Some("ssd"));
        check_labels(&labels).unwrap();
        assert!(parse_labels(&["disk".into()]).is_err());
        for bad in ["zone=eu", "hostname=a", "=x", "disk=", "di sk=ssd"] {
            let parsed = parse_labels(&[bad.to_string()]).unwrap();
            assert!(check_labels(&parsed).is_err(), "{bad}");
        }
    }
}
