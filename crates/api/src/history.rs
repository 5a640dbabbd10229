//! A short memory of how busy this peer and its containers were, for the
//! console's charts: one sample every [`INTERVAL`] for the last hour, in a
//! ring in memory (nothing on disk; a restarted peer starts afresh).
//!
//! Each sample holds this host's CPU use, memory, network traffic (its
//! interfaces but loopback), coop's disks, and the S3 requests and bytes
//! served here; and each running container's CPU use and memory. Rates are
//! differences of the kernel's and the S3 front's counters between two
//! samples. `GET /v1/history` serves them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use coop_mesh::{Protocol, Service};
pub use coop_types::S3Counters;
use coop_types::{PeerId, unix_now};

use crate::AppState;
use crate::error::ApiError;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept: an hour's.
pub const KEPT: usize = 360;

/// This peer at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerSample {
    /// Unix seconds.
    pub at: u64,
    /// Share of all CPUs in use since the last sample, in percent.
    pub cpu_pct: f32,
    pub memory_used: u64,
    pub memory_total: u64,
    /// Bytes per second received and sent on the host's interfaces.
    pub net_rx_bps: u64,
    pub net_tx_bps: u64,
    /// Bytes of shards on coop's disks here, and the disks' capacity.
    pub disk_used: u64,
    pub disk_total: u64,
    /// S3 requests per second served here, and body bytes per second in
    /// and out.
    pub s3_requests_ps: f32,
    pub s3_in_bps: u64,
    pub s3_out_bps: u64,
}

/// A container at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContainerSample {
    pub at: u64,
    /// CPU use since the last sample, in percent of one CPU.
    pub cpu_pct: f32,
    pub memory: u64,
}

/// The last hour of this peer and its containers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// This peer's id.
    pub peer: String,
    pub interval_secs: u64,
    /// Oldest first.
    pub samples: Vec<PeerSample>,
    /// By container name, oldest first; containers that ran in the hour.
    pub containers: BTreeMap<String, Vec<ContainerSample>>,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub struct History(Mutex<Rings>);

#[derive(Debug, Default)]
struct Rings {
    samples: VecDeque<PeerSample>,
    containers: BTreeMap<String, VecDeque<ContainerSample>>,
}

impl History {
    fn push(&self, sample: PeerSample, containers: Vec<(String, ContainerSample)>) {
        let Ok(mut rings) = self.0.lock() else {
            return;
        };
        let oldest = sample.at.saturating_sub(INTERVAL.as_secs() * KEPT as u64);
        if rings.samples.len() >= KEPT {
            rings.samples.pop_front();
        }
        rings.samples.push_back(sample);
        for (name, point) in containers {
            let ring = rings.containers.entry(name).or_default();
            if ring.len() >= KEPT {
                ring.pop_front();
            }
            ring.push_back(point);
        }
        for ring in rings.containers.values_mut() {
            while ring.front().is_some_and(|p| p.at < oldest) {
                ring.pop_front();
            }
        }
        rings.containers.retain(|_, ring| !ring.is_empty());
    }

    fn view(&self, peer: String) -> HistoryView {
        let rings = self.0.lock().ok();
        HistoryView {
            peer,
            interval_secs: INTERVAL.as_secs(),
            samples: rings
                .as_ref()
                .map(|r| r.samples.iter().cloned().collect())
                .unwrap_or_default(),
            containers: rings
                .as_ref()
                .map(|r| {
                    r.containers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Counters read at one sample, to make rates at the next.
struct Counters {
    at: Instant,
    /// Busy and total CPU time of the host, in clock ticks.
    cpu: Option<(u64, u64)>,
    net: Option<(u64, u64)>,
    s3: (u64, u64, u64),
    /// Each container's CPU time, in nanoseconds.
    containers: HashMap<String, u64>,
}

/// Busy and total time from the first line of `/proc/stat`.
fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some((total - idle, total))
}

/// Used and total memory from `/proc/meminfo`.
fn memory(meminfo: &str) -> (u64, u64) {
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    let total = field("MemTotal:");
    (total.saturating_sub(field("MemAvailable:")), total)
}

/// Bytes received and sent on every interface but loopback, from
/// `/proc/net/dev`.
fn network(dev: &str) -> Option<(u64, u64)> {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in dev.lines().skip(2) {
        let (name, counters) = line.split_once(':')?;
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        rx += fields.first().copied().unwrap_or(0);
        tx += fields.get(8).copied().unwrap_or(0);
    }
    Some((rx, tx))
}

fn rate(now: u64, before: u64, secs: f64) -> u64 {
    (now.saturating_sub(before) as f64 / secs) as u64
}

/// Samples this peer every [`INTERVAL`] into `state`'s history, until
/// dropped.
pub async fn keep(state: AppState) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Counters> = None;
    loop {
        tick.tick().await;
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let stat = cpu_times(&read("/proc/stat"));
        let (memory_used, memory_total) = memory(&read("/proc/meminfo"));
        let net = network(&read("/proc/net/dev"));
        let s3 = state.s3_counters.as_ref().map_or((0, 0, 0), |c| {
            (
                c.requests.load(Ordering::Relaxed),
                c.bytes_in.load(Ordering::Relaxed),
                c.bytes_out.load(Ordering::Relaxed),
            )
        });
        let (disk_used, disk_total) =
            state
                .mesh
                .liveness()
                .status(&state.key.id())
                .map_or((0, 0), |(status, _)| {
                    status
                        .disks
                        .iter()
                        .fold((0, 0), |(u, t), d| (u + d.used_bytes, t + d.total_bytes))
                });
        let containers: HashMap<String, (u64, u64)> = match &state.compute {
            Some(compute) => compute
                .running_stats()
                .await
                .into_iter()
                .map(|(name, s)| (name, (s.cpu_usage_ns, s.memory_bytes)))
                .collect(),
            None => HashMap::new(),
        };
        let now = Counters {
            at: Instant::now(),
            cpu: stat,
            net,
            s3,
            containers: containers.iter().map(|(k, v)| (k.clone(), v.0)).collect(),
        };
        if let Some(before) = &previous {
            let secs = now.at.duration_since(before.at).as_secs_f64().max(0.001);
            let cpu_pct = match (now.cpu, before.cpu) {
                (Some((busy, total)), Some((busy0, total0))) if total > total0 => {
                    100.0 * busy.saturating_sub(busy0) as f32 / (total - total0) as f32
                }
                _ => 0.0,
            };
            let (net_rx_bps, net_tx_bps) = match (now.net, before.net) {
                (Some((rx, tx)), Some((rx0, tx0))) => (rate(rx, rx0, secs), rate(tx, tx0, secs)),
                _ => (0, 0),
            };
            let at = unix_now();
            let sample = PeerSample {
                at,
                cpu_pct,
                memory_used,
                memory_total,
                net_rx_bps,
                net_tx_bps,
                disk_used,
                disk_total,
                s3_requests_ps: now.s3.0.saturating_sub(before.s3.0) as f32 / secs as f32,
                s3_in_bps: rate(now.s3.1, before.s3.1, secs),
                s3_out_bps: rate(now.s3.2, before.s3.2, secs),
            };
            let points = containers
                .iter()
                .map(|(name, (cpu_ns, memory))| {
                    let cpu_pct = before.containers.get(name).map_or(0.0, |cpu0| {
                        100.0 * cpu_ns.saturating_sub(*cpu0) as f32 / (secs * 1e9) as f32
                    });
                    (
                        name.clone(),
                        ContainerSample {
                            at,
                            cpu_pct,
                            memory: *memory,
                        },
                    )
                })
                .collect();
            state.history.push(sample, points);
        }
        previous = Some(now);
    }
}

/// The ALPN of [`HistoryProtocol`].
pub const HISTORY_ALPN: &[u8] = b"coop/history/1";
/// How long another peer has to send its history.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// `coop/history/1`: a peer's last hour, asked of it by another (the one
/// whose console shows it).
pub struct HistoryProtocol;

impl Protocol for HistoryProtocol {
    const ALPN: &'static [u8] = HISTORY_ALPN;
    type Request = ();
    type Response = HistoryView;
    fn timeout(_: &()) -> Duration {
        ASK_TIMEOUT
    }
}

/// Answers `coop/history/1` from this peer's ring.
pub struct HistoryService {
    pub peer: PeerId,
    pub history: std::sync::Arc<History>,
}

impl Service<HistoryProtocol> for HistoryService {
    fn answer(&self, _from: PeerId, _request: ()) -> BoxFuture<'static, HistoryView> {
        let view = self.history.view(self.peer.to_string());
        Box::pin(async move { view })
    }
}

/// Whose history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// A peer's name, id or unique id prefix; this peer when absent.
    pub peer: Option<String>,
}

/// The last hour of a peer and its containers (this peer's, or one asked
/// of another over the mesh).
#[utoipa::path(
    get,
    path = "/v1/history",
    params(HistoryQuery),
    responses((status = 200, body = HistoryView)),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    let me = state.key.id();
    let peer = match &query.peer {
        None => me,
        Some(wanted) => {
            let peers = state.control.store().peers()?;
            coop_state::find_peer(&peers, wanted)
                .map_err(|e| ApiError::NotFound(e.to_string()))?
                .id()
        }
    };
    if peer == me {
        return Ok(Json(state.history.view(me.to_string())));
    }
    let view = state
        .mesh
        .call::<HistoryProtocol>(peer, &())
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!("cannot ask {} for its history: {e}", peer.short()))
        })?;
    Ok(Json(view))
}

impl AppState {
    /// The service that answers other peers' `coop/history/1` calls.
    pub fn history_service(&self) -> HistoryService {
        HistoryService {
            peer: self.key.id(),
            history: self.history.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_counters_are_read() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n";
        assert_eq!(cpu_times(stat), Some((150, 1000)));
        let meminfo = "MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    400 kB\n";
        assert_eq!(memory(meminfo), (600 * 1024, 1000 * 1024));
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n  eth0: 100 2 0 0 0 0 0 0 40 1 0 0 0 0 0 0\n  eth1: 5 1 0 0 0 0 0 0 6 1 0 0 0 0 0 0\n";
        assert_eq!(network(dev), Some((105, 46)));
    }

    #[test]
    fn the_ring_keeps_an_hour() {
        let history = History::default();
        let sample = |at: u64| PeerSample {
            at,
            cpu_pct: 1.0,
            memory_used: 0,
            memory_total: 0,
            net_rx_bps: 0,
            net_tx_bps: 0,
            disk_used: 0,
            disk_total: 0,
            s3_requests_ps: 0.0,
            s3_in_bps: 0,
            s3_out_bps: 0,
        };
        let point = |at: u64| ContainerSample {
            at,
            cpu_pct: 0.0,
            memory: 1,
        };
        history.push(sample(0), vec![("gone".into(), point(0))]);
        for i in 1..=(KEPT as u64 + 5) {
            history.push(sample(i * 10), vec![("web".into(), point(i * 10))]);
        }
        let view = history.view("p".into());
        assert_eq!(view.samples.len(), KEPT);
        assert_eq!(view.samples[0].at, 60);
        assert_eq!(view.containers["web"].len(), KEPT);
        assert!(
            !view.containers.contains_key("gone"),
            "an hour-old container goes"
        );
    }
}
