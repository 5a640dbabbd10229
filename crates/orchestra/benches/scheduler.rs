//! Placement speed: 10,000 replicas onto 1,000 simulated peers in 5 zones,
//! on one core. Peers differ in size, labels and what they already hold;
//! services differ in size, strategy (spread over zones, over peers,
//! binpack), constraints, `near` and published ports. Prints placements
//! per second and the p50, p99 and max time of one placement; asserts
//! nothing.
//!
//! Run: `cargo bench -p coop-orchestra --bench scheduler`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use coop_orchestra::scheduler::{
    Constraint, PeerSlot, Placement, ReplicaRequest, Snapshot, Strategy,
};
use coop_types::{PeerId, PeerState, Resources};

const PEERS: usize = 1_000;
const ZONES: usize = 5;
const REPLICAS: usize = 10_000;
const SERVICES: usize = 200;
const GIB: u64 = 1 << 30;

/// A small deterministic generator, so every run places the same cloud.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn peers(rng: &mut Lcg) -> Vec<PeerSlot> {
    (0..PEERS)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let cores = [4, 8, 16, 32][rng.below(4) as usize];
            let mut labels = BTreeMap::new();
            labels.insert(
                "disk".to_string(),
                if rng.below(3) == 0 { "ssd" } else { "hdd" }.to_string(),
            );
            labels.insert("rack".to_string(), format!("r{}", rng.below(40)));
            PeerSlot {
                id: PeerId(id),
                name: format!("peer-{i}"),
                zone: format!("zone-{}", i % ZONES),
                labels,
                state: if rng.below(50) == 0 {
                    PeerState::Unreachable
                } else {
                    PeerState::Up
                },
                arch: if rng.below(10) == 0 {
                    "aarch64"
                } else {
                    "x86_64"
                }
                .to_string(),
                lent: Resources {
                    cpus_milli: cores * 1000,
                    memory_bytes: cores * 4 * GIB,
                    disk_bytes: 500 * GIB,
                },
                pids_lent: 100_000,
                used: Resources {
                    cpus_milli: rng.below(cores * 250),
                    memory_bytes: rng.below(cores * GIB),
                    disk_bytes: rng.below(50) * GIB,
                },
                pids_used: 0,
                ports: BTreeSet::new(),
            }
        })
        .collect()
}

fn replicas(rng: &mut Lcg) -> Vec<ReplicaRequest> {
    let services: Vec<ReplicaRequest> = (0..SERVICES)
        .map(|s| {
            let strategy = match s % 10 {
                0 => Strategy::Binpack,
                1 => Strategy::SpreadPeers,
                2 => Strategy::Spread {
                    label: "rack".into(),
                },
                _ => Strategy::default(),
            };
            let mut constraints = Vec::new();
            if s % 7 == 0 {
                constraints.push(Constraint::LabelIs {
                    key: "disk".into(),
                    value: "ssd".into(),
                });
            }
            if s % 11 == 0 {
                constraints.push(Constraint::LabelIsNot {
                    key: "zone".into(),
                    value: "zone-0".into(),
                });
            }
            ReplicaRequest {
                service: format!("env-{}/svc-{s}", s / 5),
                resources: Resources {
                    cpus_milli: [250, 500, 1000, 2000][rng.below(4) as usize],
                    memory_bytes: [GIB / 4, GIB / 2, GIB, 2 * GIB][rng.below(4) as usize],
                    disk_bytes: [GIB, 5 * GIB, 10 * GIB][rng.below(3) as usize],
                },
                pids: 256,
                constraints,
                strategy,
                near: (s % 13 == 0).then(|| format!("zone-{}", s % ZONES)),
                arch: Some("x86_64".into()),
                ports: if s % 17 == 0 {
                    vec![(8000 + s as u16, "tcp".to_string())]
                } else {
                    Vec::new()
                },
                current: None,
                refused_by: BTreeSet::new(),
            }
        })
        .collect();
    (0..REPLICAS)
        .map(|i| services[i % SERVICES].clone())
        .collect()
}

fn main() {
    let mut rng = Lcg(0x5eed);
    let peers = peers(&mut rng);
    let replicas = replicas(&mut rng);
    let mut snapshot = Snapshot::new(peers, &[]);
    for a in 0..ZONES {
        for b in a + 1..ZONES {
            snapshot.set_zone_rtt(
                &format!("zone-{a}"),
                &format!("zone-{b}"),
                5.0 + 10.0 * (b - a) as f64,
            );
        }
    }
    let mut times: Vec<Duration> = Vec::with_capacity(REPLICAS);
    let mut unplaceable = 0;
    let started = Instant::now();
    for replica in &replicas {
        let one = Instant::now();
        if let Placement::Unplaceable(_) = snapshot.place(replica) {
            unplaceable += 1;
        }
        times.push(one.elapsed());
    }
    let total = started.elapsed();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "placed {} replicas onto {PEERS} peers in {ZONES} zones ({unplaceable} unplaceable) in {:.3} s",
        REPLICAS,
        total.as_secs_f64()
    );
    println!(
        "{:.0} placements/s on one core; per placement p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        REPLICAS as f64 / total.as_secs_f64(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        times[times.len() - 1].as_secs_f64() * 1e6
    );
}
