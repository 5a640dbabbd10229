//! Prometheus metrics at `/metrics`, read from live state at scrape time
//! so they can never drift from what the API shows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use coop_types::PeerState;

use crate::AppState;
use crate::peers::peer_views;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabel {
    container: String,
}

type ContainerGauge = Family<ContainerLabel, Gauge<u64, AtomicU64>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabel {
    network: String,
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabel {
    network: String,
    reason: String,
}

type NetCounter<L> = Family<L, Counter<u64, AtomicU64>>;

/// The private networks' forwarder counters: traffic with each peer on
/// each network carried here, and the packets dropped, by reason.
struct NetworkCounters {
    packets_in: NetCounter<TrafficLabel>,
    bytes_in: NetCounter<TrafficLabel>,
    packets_out: NetCounter<TrafficLabel>,
    bytes_out: NetCounter<TrafficLabel>,
    dropped: NetCounter<DropLabel>,
}

impl NetworkCounters {
    fn register(registry: &mut Registry) -> Self {
        let mut traffic = |name: &str, help: &str| {
            let family = NetCounter::<TrafficLabel>::default();
            registry.register(name, help, family.clone());
            family
        };
        let packets_in = traffic(
            "network_received_packets",
            "Packets of a private network received from a peer",
        );
        let bytes_in = traffic(
            "network_received_bytes",
            "Bytes of a private network's packets received from a peer",
        );
        let packets_out = traffic(
            "network_sent_packets",
            "Packets of a private network sent to a peer",
        );
        let bytes_out = traffic(
            "network_sent_bytes",
            "Bytes of a private network's packets sent to a peer",
        );
        let dropped = NetCounter::<DropLabel>::default();
        registry.register(
            "network_dropped_packets",
            "Packets of a private network the forwarder dropped, by reason",
            dropped.clone(),
        );
        NetworkCounters {
            packets_in,
            bytes_in,
            packets_out,
            bytes_out,
            dropped,
        }
    }

    /// Mirrors `stats`; networks are named from the control plane's records
    /// (by id when a record is gone).
    fn fill(&self, stats: &coop_net::ForwarderStats, names: &HashMap<u32, String>) {
        let set = |counter: &Counter<u64, AtomicU64>, value: u64| {
            counter.inner().store(value, Ordering::Relaxed);
        };
        for family in [
            &self.packets_in,
            &self.bytes_in,
            &self.packets_out,
            &self.bytes_out,
        ] {
            family.clear();
        }
        self.dropped.clear();
        for net in &stats.networks {
            let network = names
                .get(&net.network.0)
                .cloned()
                .unwrap_or_else(|| net.network.0.to_string());
            for peer in &net.peers {
                let label = TrafficLabel {
                    network: network.clone(),
                    peer: peer.peer.to_string(),
                };
                set(&self.packets_in.get_or_create(&label), peer.packets_in);
                set(&self.bytes_in.get_or_create(&label), peer.bytes_in);
                set(&self.packets_out.get_or_create(&label), peer.packets_out);
                set(&self.bytes_out.get_or_create(&label), peer.bytes_out);
            }
            for (reason, count) in &net.drops.0 {
                let label = DropLabel {
                    network: network.clone(),
                    reason: reason.as_str().to_string(),
                };
                set(&self.dropped.get_or_create(&label), *count);
            }
        }
        for (reason, count) in &stats.unattributed.0 {
            let label = DropLabel {
                network: String::new(),
                reason: reason.as_str().to_string(),
            };
            set(&self.dropped.get_or_create(&label), *count);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackupLabel {
    backup: String,
}

type BackupGauge = Family<BackupLabel, Gauge<u64, AtomicU64>>;

/// The cloud's backups as the control plane records their last runs,
/// refilled at every scrape (every peer shows every backup).
struct BackupGauges {
    last_success: BackupGauge,
    last_ok: BackupGauge,
    duration_ms: BackupGauge,
    bytes_added: BackupGauge,
    files_read: BackupGauge,
}

impl BackupGauges {
    fn register(registry: &mut Registry) -> Self {
        let mut gauge = |name: &str, help: &str| {
            let family = BackupGauge::default();
            registry.register(name, help, family.clone());
            family
        };
        BackupGauges {
            last_success: gauge(
                "backup_last_success_timestamp_seconds",
                "When a backup last saved a snapshot (Unix seconds; 0: never)",
            ),
            last_ok: gauge(
                "backup_last_run_ok",
                "1 when a backup's last run saved a snapshot, 0 when it failed",
            ),
            duration_ms: gauge(
                "backup_last_run_duration_milliseconds",
                "How long a backup's last run took",
            ),
            bytes_added: gauge(
                "backup_last_run_added_bytes",
                "What a backup's last run added to its repository (compressed, encrypted)",
            ),
            files_read: gauge(
                "backup_last_run_files_read",
                "New or changed files a backup's last run read",
            ),
        }
    }

    fn fill(&self, records: &[coop_state::BackupRecord]) {
        for family in [
            &self.last_success,
            &self.last_ok,
            &self.duration_ms,
            &self.bytes_added,
            &self.files_read,
        ] {
            family.clear();
        }
        for record in records {
            let label = BackupLabel {
                backup: record.name.clone(),
            };
            self.last_success
                .get_or_create(&label)
                .set(record.last_success_ms.unwrap_or(0) / 1000);
            let Some(run) = &record.last_run else {
                continue;
            };
            self.duration_ms
                .get_or_create(&label)
                .set(run.finished_ms.saturating_sub(run.started_ms));
            match &run.outcome {
                coop_state::RunOutcome::Saved {
                    bytes_added,
                    files_read,
                    ..
                } => {
                    self.last_ok.get_or_create(&label).set(1);
                    self.bytes_added.get_or_create(&label).set(*bytes_added);
                    self.files_read.get_or_create(&label).set(*files_read);
                }
                coop_state::RunOutcome::Failed { .. } => {
                    self.last_ok.get_or_create(&label).set(0);
                }
            }
        }
    }
}

/// Per-container gauges of this peer's running containers, refilled at
/// every scrape so removed containers disappear.
struct ContainerGauges {
    cpu_ns: ContainerGauge,
    memory: ContainerGauge,
    memory_limit: ContainerGauge,
    pids: ContainerGauge,
    net_rx: ContainerGauge,
    net_tx: ContainerGauge,
}

impl ContainerGauges {
    fn register(registry: &mut Registry) -> Self {
        let mut gauge = |name: &str, help: &str| {
            let family = ContainerGauge::default();
            registry.register(name, help, family.clone());
            family
        };
        ContainerGauges {
            cpu_ns: gauge(
                "container_cpu_usage_nanoseconds",
                "CPU time a container used since it started",
            ),
            memory: gauge("container_memory_bytes", "Memory a container uses"),
            memory_limit: gauge(
                "container_memory_limit_bytes",
                "Memory limit a container runs under",
            ),
            pids: gauge("container_pids", "Processes and threads of a container"),
            net_rx: gauge(
                "container_network_receive_bytes",
                "Bytes a container received",
            ),
            net_tx: gauge("container_network_transmit_bytes", "Bytes a container sent"),
        }
    }

    fn families(&self) -> [&ContainerGauge; 6] {
        [
            &self.cpu_ns,
            &self.memory,
            &self.memory_limit,
            &self.pids,
            &self.net_rx,
            &self.net_tx,
        ]
    }
}

/// The registry and the gauges refreshed on every scrape.
pub(crate) struct Metrics {
    registry: Registry,
    peers: Family<StateLabel, Gauge>,
    is_leader: Gauge,
    is_steward: Gauge,
    term: Gauge<u64, AtomicU64>,
    applied: Gauge<u64, AtomicU64>,
    uptime: Gauge,
    /// Storage counters by name, mirrored from `StoreMetrics` at scrape.
    store: Vec<(&'static str, Counter<u64, AtomicU64>)>,
    containers: ContainerGauges,
    networks: NetworkCounters,
    backups: BackupGauges,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("coop");
        let peers = Family::<StateLabel, Gauge>::default();
        let is_leader = Gauge::default();
        let is_steward = Gauge::default();
        let term = Gauge::<u64, AtomicU64>::default();
        let applied = Gauge::<u64, AtomicU64>::default();
        let uptime = Gauge::default();
        registry.register(
            "peers",
            "Peers of the cloud by liveness state",
            peers.clone(),
        );
        registry.register(
            "raft_leader",
            "1 when this peer leads the control plane",
            is_leader.clone(),
        );
        registry.register(
            "raft_steward",
            "1 when this peer is a voting steward",
            is_steward.clone(),
        );
        registry.register("raft_term", "Current Raft term", term.clone());
        registry.register(
            "raft_applied_index",
            "Last applied Raft log index",
            applied.clone(),
        );
        registry.register(
            "uptime_seconds",
            "Seconds since the agent started",
            uptime.clone(),
        );
        let mut store = Vec::new();
        for (name, help, _) in coop_store::StoreMetrics::default().snapshot() {
            let counter = Counter::<u64, AtomicU64>::default();
            registry.register(name.trim_start_matches("coop_"), help, counter.clone());
            store.push((name, counter));
        }
        let containers = ContainerGauges::register(&mut registry);
        let networks = NetworkCounters::register(&mut registry);
        let backups = BackupGauges::register(&mut registry);
        Metrics {
            backups,
            networks,
            containers,
            store,
            registry,
            peers,
            is_leader,
            is_steward,
            term,
            applied,
            uptime,
        }
    }
}

pub(crate) async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    if let Ok(views) = peer_views(&state) {
        for s in [
            PeerState::Up,
            PeerState::Unreachable,
            PeerState::Down,
            PeerState::Revoked,
        ] {
            let n = views.iter().filter(|v| v.state == s).count();
            m.peers
                .get_or_create(&StateLabel {
                    state: s.to_string(),
                })
                .set(n as i64);
        }
    }
    m.is_leader.set(i64::from(state.control.is_leader()));
    m.is_steward
        .set(i64::from(state.control.voters().contains(&state.key.id())));
    let (term, applied) = state.control.term_and_applied();
    m.term.set(term);
    m.applied.set(applied.unwrap_or(0));
    m.uptime.set(state.started.elapsed().as_secs() as i64);
    if let Some(store) = &state.store_metrics {
        for (name, _, value) in store.snapshot() {
            if let Some((_, counter)) = m.store.iter().find(|(n, _)| *n == name) {
                counter
                    .inner()
                    .store(value, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    if let Some(orchestra) = &state.compute {
        let sampled = orchestra.running_stats().await;
        let g = &m.containers;
        for family in g.families() {
            family.clear();
        }
        for (name, stats) in sampled {
            let label = ContainerLabel { container: name };
            g.cpu_ns.get_or_create(&label).set(stats.cpu_usage_ns);
            g.memory.get_or_create(&label).set(stats.memory_bytes);
            g.memory_limit
                .get_or_create(&label)
                .set(stats.memory_limit_bytes);
            g.pids.get_or_create(&label).set(stats.pids);
            g.net_rx.get_or_create(&label).set(stats.net_rx_bytes);
            g.net_tx.get_or_create(&label).set(stats.net_tx_bytes);
        }
    }
    if let Some(forwarder) = &state.networks {
        let names: HashMap<u32, String> = state
            .control
            .store()
            .networks()
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.id, n.name))
            .collect();
        m.networks.fill(&forwarder.stats(), &names);
    }
    if let Ok(records) = state.control.store().backups() {
        m.backups.fill(&records);
    }
    let mut body = String::new();
    if encode(&mut body, &m.registry).is_err() {
        body.clear();
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
