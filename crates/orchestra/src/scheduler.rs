//! Where replicas go: a pure placement function over a snapshot of the
//! cloud.
//!
//! Placement filters, then scores. A peer is ruled out when it is not up,
//! has another architecture, fails a constraint, has too little cpu,
//! memory, disk or pids left, or already publishes a host port the replica
//! needs; every ruled-out peer gets its reason, so a replica that fits
//! nowhere says why for each peer. Among the peers left, the score prefers,
//! in this order of weight: the peer a replica already runs on (nothing
//! moves unless something forces it), peers with the lowest RTT to the
//! replica's `near` zone, then spreading the replicas of one service over
//! zones (or another label) and peers, or packing them onto the fullest
//! peers when the service asks for `binpack`; ties go to the peer with the
//! most room left, then to the lower peer id, so placement is
//! deterministic.
//!
//! Placing a replica takes its resources and ports from the snapshot, so a
//! batch is placed as the cloud would look after each step. A placement is
//! a proposal: it becomes a lease the chosen peer may still refuse, and a
//! refused lease is placed again with that peer ruled out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use coop_state::{ContainerEntry, PeerRecord};
use coop_types::{PeerId, PeerState, PeerStatus, Resources};

use crate::lease::held;

/// A published port: number and protocol (`tcp` or `udp`).
pub type HostPort = (u16, String);

/// One peer as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSlot {
    pub id: PeerId,
    pub name: String,
    pub zone: String,
    /// Operator labels (`coop up --label K=V`).
    pub labels: BTreeMap<String, String>,
    pub state: PeerState,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// What the peer lends to containers.
    pub lent: Resources,
    /// Processes and threads it lends; `u64::MAX` when it sets no bound.
    pub pids_lent: u64,
    /// What the containers placed on it hold.
    pub used: Resources,
    pub pids_used: u64,
    /// Host ports its containers publish.
    pub ports: BTreeSet<HostPort>,
}

/// A rule a peer must satisfy to take a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Constraint {
    /// `node.labels.KEY==VALUE` (`zone` is a built-in label).
    LabelIs { key: String, value: String },
    /// `node.labels.KEY!=VALUE`.
    LabelIsNot { key: String, value: String },
    /// `node.hostname==NAME` (the peer's name).
    HostnameIs(String),
    /// `node.hostname!=NAME`.
    HostnameIsNot(String),
    /// Exactly this peer.
    Peer(PeerId),
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::LabelIs { key, value } => write!(f, "node.labels.{key}=={value}"),
            Constraint::LabelIsNot { key, value } => write!(f, "node.labels.{key}!={value}"),
            Constraint::HostnameIs(name) => write!(f, "node.hostname=={name}"),
            Constraint::HostnameIsNot(name) => write!(f, "node.hostname!={name}"),
            Constraint::Peer(id) => write!(f, "peer=={}", id.short()),
        }
    }
}

/// How the replicas of one service share the cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Over the values of a label (`zone` by default), then over peers.
    Spread { label: String },
    /// Over peers only.
    SpreadPeers,
    /// Onto the fullest peers that still fit.
    Binpack,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::Spread {
            label: "zone".into(),
        }
    }
}

/// One replica to place.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaRequest {
    /// The service it belongs to, qualified by its environment
    /// (`env/service`): spreading counts replicas of the same service.
    pub service: String,
    pub resources: Resources,
    pub pids: u64,
    pub constraints: Vec<Constraint>,
    pub strategy: Strategy,
    /// Prefer peers with the lowest RTT to this zone.
    pub near: Option<String>,
    /// The architecture its template needs, if it needs one.
    pub arch: Option<String>,
    pub ports: Vec<HostPort>,
    /// Where it runs now: kept there when that peer still qualifies.
    pub current: Option<PeerId>,
    /// Peers that refused its lease already.
    pub refused_by: BTreeSet<PeerId>,
}

/// Why one peer cannot take a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub peer: PeerId,
    pub name: String,
    pub reason: String,
}

/// Where a replica goes, or why it goes nowhere.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    Placed(PeerId),
    Unplaceable(Vec<Refusal>),
}

impl Placement {
    /// The reasons as one sentence, the most common first, e.g.
    /// `2 peers: short of memory; 1 peer: node.labels.zone==eu`.
    pub fn summary(refusals: &[Refusal]) -> String {
        if refusals.is_empty() {
            return "the cloud has no peers".into();
        }
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for refusal in refusals {
            // Amounts differ per peer; the kind of reason is what counts.
            let kind = refusal
                .reason
                .split(':')
                .next()
                .unwrap_or(&refusal.reason)
                .to_string();
            *kinds.entry(kind).or_default() += 1;
        }
        let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        kinds
            .iter()
            .map(|(kind, n)| format!("{n} peer{}: {kind}", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The cloud as placement sees it, updated as replicas are placed.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    peers: Vec<PeerSlot>,
    /// Round-trip times between zones, in milliseconds.
    zone_rtt: HashMap<(String, String), f64>,
    /// Replicas of each service per peer (by index), and per label key and
    /// value.
    on_peer: HashMap<String, HashMap<usize, u32>>,
    on_label: HashMap<String, HashMap<String, HashMap<String, u32>>>,
}

impl Snapshot {
    /// A snapshot of `peers`; `running` names the service of each replica
    /// already placed and its peer, for spreading.
    pub fn new(peers: Vec<PeerSlot>, running: &[(String, PeerId)]) -> Self {
        let mut snapshot = Snapshot {
            peers,
            ..Snapshot::default()
        };
        let index: HashMap<PeerId, usize> = snapshot
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i))
            .collect();
        for (service, peer) in running {
            if let Some(&i) = index.get(peer) {
                snapshot.count(service, i);
            }
        }
        snapshot
    }

    /// The cloud as its control plane and the peers' statuses describe it:
    /// each member with its zone, labels, architecture and what it lends
    /// (from its last status; a peer that runs no containers lends
    /// nothing), what its containers hold (as its lease policy counts it)
    /// and the host ports they publish, and which service each replica
    /// belongs to. `status` gives a peer's last status and its liveness.
    pub fn of_cloud(
        records: &[PeerRecord],
        containers: &[ContainerEntry],
        status: impl Fn(&PeerId) -> (Option<PeerStatus>, PeerState),
    ) -> Snapshot {
        let mut rtts: Vec<(PeerId, PeerId, u32)> = Vec::new();
        let peers = records
            .iter()
            .filter(|r| r.revoked_at.is_none())
            .map(|record| {
                let id = record.id();
                let (last, state) = status(&id);
                if let Some(last) = &last {
                    rtts.extend(last.rtts.iter().map(|(to, us)| (id, *to, *us)));
                }
                let mine: Vec<&ContainerEntry> =
                    containers.iter().filter(|c| c.peer == id).collect();
                let ports = mine
                    .iter()
                    .flat_map(|c| c.ports.iter())
                    .filter_map(|p| host_port(p))
                    .collect();
                let pids_used = mine
                    .iter()
                    .filter(|c| c.desired == coop_state::DesiredState::Running)
                    .map(|c| u64::from(c.limits.pids))
                    .sum();
                PeerSlot {
                    id,
                    name: record.cert.body.name.clone(),
                    zone: record.cert.body.zone.clone(),
                    labels: last.as_ref().map(|s| s.labels.clone()).unwrap_or_default(),
                    state,
                    arch: last.as_ref().map(|s| s.arch.clone()).unwrap_or_default(),
                    lent: last
                        .as_ref()
                        .and_then(|s| s.lent)
                        .unwrap_or(Resources::ZERO),
                    pids_lent: u64::MAX,
                    used: held(containers, id, "", &[]),
                    pids_used,
                    ports,
                }
            })
            .collect();
        let running: Vec<(String, PeerId)> = containers
            .iter()
            .filter_map(|c| {
                let owner = c.owner.as_ref()?;
                Some((format!("{}/{}", owner.env, owner.service), c.peer))
            })
            .collect();
        let mut snapshot = Snapshot::new(peers, &running);
        snapshot.zone_rtts_from(&rtts);
        snapshot
    }

    /// Sets the RTT between each two zones to the median of the RTTs
    /// measured between their peers (`from`, `to`, microseconds).
    fn zone_rtts_from(&mut self, rtts: &[(PeerId, PeerId, u32)]) {
        let zone: HashMap<PeerId, &str> =
            self.peers.iter().map(|p| (p.id, p.zone.as_str())).collect();
        let mut between: HashMap<(String, String), Vec<u32>> = HashMap::new();
        for (from, to, us) in rtts {
            let (Some(a), Some(b)) = (zone.get(from), zone.get(to)) else {
                continue;
            };
            if a == b {
                continue;
            }
            let key = if a < b { (a, b) } else { (b, a) };
            between
                .entry((key.0.to_string(), key.1.to_string()))
                .or_default()
                .push(*us);
        }
        for ((a, b), mut figures) in between {
            figures.sort_unstable();
            let median = figures[figures.len() / 2];
            self.set_zone_rtt(&a, &b, f64::from(median) / 1000.0);
        }
    }

    /// Sets the RTT between two zones (both directions).
    pub fn set_zone_rtt(&mut self, a: &str, b: &str, millis: f64) {
        self.zone_rtt.insert((a.into(), b.into()), millis);
        self.zone_rtt.insert((b.into(), a.into()), millis);
    }

    pub fn peers(&self) -> &[PeerSlot] {
        &self.peers
    }

    fn rtt(&self, from: &str, to: &str) -> f64 {
        if from == to {
            return 0.0;
        }
        self.zone_rtt
            .get(&(from.to_string(), to.to_string()))
            .copied()
            // An unknown RTT ranks behind every measured one.
            .unwrap_or(10_000.0)
    }

    fn label<'a>(peer: &'a PeerSlot, key: &str) -> Option<&'a str> {
        match key {
            "zone" => Some(peer.zone.as_str()),
            "hostname" => Some(peer.name.as_str()),
            _ => peer.labels.get(key).map(String::as_str),
        }
    }

    fn count(&mut self, service: &str, peer: usize) {
        *self
            .on_peer
            .entry(service.to_string())
            .or_default()
            .entry(peer)
            .or_default() += 1;
        let slot = &self.peers[peer];
        let mut labels: Vec<(String, String)> = vec![
            ("zone".into(), slot.zone.clone()),
            ("hostname".into(), slot.name.clone()),
        ];
        labels.extend(slot.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let counts = self.on_label.entry(service.to_string()).or_default();
        for (key, value) in labels {
            *counts.entry(key).or_default().entry(value).or_default() += 1;
        }
    }

    /// Why `peer` cannot take `replica`, or `None` when it can. Cheap: the
    /// sentence is made only for replicas that fit nowhere.
    fn rule_out<'a>(&self, peer: &PeerSlot, replica: &'a ReplicaRequest) -> Option<Ruled<'a>> {
        if peer.state != PeerState::Up {
            return Some(Ruled::State);
        }
        if replica.refused_by.contains(&peer.id) {
            return Some(Ruled::Refused);
        }
        if peer.lent == Resources::ZERO {
            return Some(Ruled::NoContainers);
        }
        if let Some(arch) = &replica.arch
            && *arch != peer.arch
        {
            return Some(Ruled::Arch);
        }
        for constraint in &replica.constraints {
            let holds = match constraint {
                Constraint::LabelIs { key, value } => Self::label(peer, key) == Some(value),
                Constraint::LabelIsNot { key, value } => Self::label(peer, key) != Some(value),
                Constraint::HostnameIs(name) => peer.name == *name,
                Constraint::HostnameIsNot(name) => peer.name != *name,
                Constraint::Peer(id) => peer.id == *id,
            };
            if !holds {
                return Some(Ruled::Constraint(constraint));
            }
        }
        let free = peer.lent.minus(peer.used);
        let need = replica.resources;
        if need.cpus_milli > free.cpus_milli {
            return Some(Ruled::Cpu);
        }
        if need.memory_bytes > free.memory_bytes {
            return Some(Ruled::Memory);
        }
        if need.disk_bytes > free.disk_bytes {
            return Some(Ruled::Disk);
        }
        if replica.pids > peer.pids_lent.saturating_sub(peer.pids_used) {
            return Some(Ruled::Pids);
        }
        if let Some(port) = replica.ports.iter().find(|p| peer.ports.contains(*p)) {
            return Some(Ruled::Port(port));
        }
        None
    }

    /// How much `peer` is worth for `replica`; higher is better.
    fn score(&self, index: usize, replica: &ReplicaRequest) -> f64 {
        let peer = &self.peers[index];
        let mut score = 0.0;
        if replica.current == Some(peer.id) {
            score += 1e12;
        }
        if let Some(zone) = &replica.near {
            score -= self.rtt(&peer.zone, zone) * 1e7;
        }
        let on_peer = self
            .on_peer
            .get(&replica.service)
            .and_then(|m| m.get(&index))
            .copied()
            .unwrap_or(0);
        let after = peer.used.plus(replica.resources);
        let fill = fill_ratio(after, peer.lent);
        match &replica.strategy {
            Strategy::Spread { label } => {
                let on_label = Self::label(peer, label)
                    .and_then(|value| {
                        self.on_label
                            .get(&replica.service)
                            .and_then(|keys| keys.get(label))
                            .and_then(|values| values.get(value))
                    })
                    .copied()
                    .unwrap_or(0);
                score -= f64::from(on_label) * 1e5 + f64::from(on_peer) * 1e3;
                score -= fill;
            }
            Strategy::SpreadPeers => {
                score -= f64::from(on_peer) * 1e3;
                score -= fill;
            }
            Strategy::Binpack => score += fill,
        }
        score
    }

    /// Places one replica and takes what it holds from the snapshot.
    pub fn place(&mut self, replica: &ReplicaRequest) -> Placement {
        let mut best: Option<(f64, usize)> = None;
        let mut ruled_out = Vec::new();
        for (index, peer) in self.peers.iter().enumerate() {
            if let Some(why) = self.rule_out(peer, replica) {
                ruled_out.push((index, why));
                continue;
            }
            let score = self.score(index, replica);
            let better = match best {
                None => true,
                Some((top, at)) => score > top || (score == top && peer.id < self.peers[at].id),
            };
            if better {
                best = Some((score, index));
            }
        }
        let Some((_, index)) = best else {
            let refusals = ruled_out
                .into_iter()
                .map(|(index, why)| {
                    let peer = &self.peers[index];
                    Refusal {
                        peer: peer.id,
                        name: peer.name.clone(),
                        reason: why.explain(peer, replica),
                    }
                })
                .collect();
            return Placement::Unplaceable(refusals);
        };
        let peer = &mut self.peers[index];
        peer.used = peer.used.plus(replica.resources);
        peer.pids_used = peer.pids_used.saturating_add(replica.pids);
        peer.ports.extend(replica.ports.iter().cloned());
        let id = peer.id;
        self.count(&replica.service, index);
        Placement::Placed(id)
    }

    /// Places `replicas` in order, each seeing the ones before it.
    pub fn place_all(&mut self, replicas: &[ReplicaRequest]) -> Vec<Placement> {
        replicas.iter().map(|r| self.place(r)).collect()
    }
}

/// What ruled a peer out, turned into a sentence only when needed.
enum Ruled<'a> {
    State,
    Refused,
    NoContainers,
    Arch,
    Constraint(&'a Constraint),
    Cpu,
    Memory,
    Disk,
    Pids,
    Port(&'a HostPort),
}

impl Ruled<'_> {
    fn explain(&self, peer: &PeerSlot, replica: &ReplicaRequest) -> String {
        let free = peer.lent.minus(peer.used);
        let need = replica.resources;
        match self {
            Ruled::State => format!("peer is {}", peer.state),
            Ruled::Refused => "refused the lease".into(),
            Ruled::NoContainers => "runs no containers".into(),
            Ruled::Arch => format!(
                "architecture: {} here, {} needed",
                peer.arch,
                replica.arch.as_deref().unwrap_or("?")
            ),
            Ruled::Constraint(constraint) => format!("constraint {constraint}"),
            Ruled::Cpu => format!(
                "short of cpu: {} millicpus free, {} needed",
                free.cpus_milli, need.cpus_milli
            ),
            Ruled::Memory => format!(
                "short of memory: {} MiB free, {} MiB needed",
                free.memory_bytes >> 20,
                need.memory_bytes >> 20
            ),
            Ruled::Disk => format!(
                "short of disk: {} MiB free, {} MiB needed",
                free.disk_bytes >> 20,
                need.disk_bytes >> 20
            ),
            Ruled::Pids => format!(
                "short of pids: {} free, {} needed",
                peer.pids_lent.saturating_sub(peer.pids_used),
                replica.pids
            ),
            Ruled::Port(port) => format!("port taken: {}/{} is published there", port.0, port.1),
        }
    }
}

/// The host port and protocol of a published port written
/// `HOST:CONT/proto` (the form container entries keep).
fn host_port(text: &str) -> Option<HostPort> {
    let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let host = ports.split(':').next()?.parse().ok()?;
    Some((host, protocol.to_string()))
}

/// How full a peer would be, the mean of its cpu, memory and disk shares
/// (0 empty, 1 full); a resource it does not lend counts as full.
fn fill_ratio(used: Resources, lent: Resources) -> f64 {
    let share = |used: u64, lent: u64| {
        if lent == 0 {
            1.0
        } else {
            used as f64 / lent as f64
        }
    };
    (share(used.cpus_milli, lent.cpus_milli)
        + share(used.memory_bytes, lent.memory_bytes)
        + share(used.disk_bytes, lent.disk_bytes))
        / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn peer(n: u8, zone: &str) -> PeerSlot {
        PeerSlot {
            id: PeerId([n; 32]),
            name: format!("p{n}"),
            zone: zone.into(),
            labels: BTreeMap::new(),
            state: PeerState::Up,
            arch: "x86_64".into(),
            lent: Resources {
                cpus_milli: 4000,
                memory_bytes: 8 * GIB,
                disk_bytes: 100 * GIB,
            },
            pids_lent: 10_000,
            used: Resources::ZERO,
            pids_used: 0,
            ports: BTreeSet::new(),
        }
    }

    fn replica(service: &str) -> ReplicaRequest {
        ReplicaRequest {
            service: service.into(),
            resources: Resources {
                cpus_milli: 500,
                memory_bytes: GIB,
                disk_bytes: GIB,
            },
            pids: 100,
            constraints: Vec::new(),
            strategy: Strategy::default(),
            near: None,
            arch: None,
            ports: Vec::new(),
            current: None,
            refused_by: BTreeSet::new(),
        }
    }

    fn placed(placement: &Placement) -> PeerId {
        match placement {
            Placement::Placed(id) => *id,
            Placement::Unplaceable(why) => panic!("not placed: {why:?}"),
        }
    }

    fn zone_of(snapshot: &Snapshot, id: PeerId) -> String {
        let peer = snapshot.peers().iter().find(|p| p.id == id);
        peer.map(|p| p.zone.clone()).unwrap_or_default()
    }

    #[test]
    fn replicas_of_a_service_spread_over_zones_then_peers() {
        let peers = vec![
            peer(1, "a"),
            peer(2, "a"),
            peer(3, "b"),
            peer(4, "b"),
            peer(5, "c"),
        ];
        let mut snapshot = Snapshot::new(peers, &[]);
        let placements = snapshot.place_all(&vec![replica("env/web"); 3]);
        let zones: BTreeSet<String> = placements
            .iter()
            .map(|p| zone_of(&snapshot, placed(p)))
            .collect();
        assert_eq!(zones.len(), 3, "one replica per zone: {placements:?}");
        // Two more: a, b get their second peers before anything doubles up.
        let more = snapshot.place_all(&vec![replica("env/web"); 2]);
        let all: BTreeSet<PeerId> = placements.iter().chain(&more).map(placed).collect();
        assert_eq!(all.len(), 5, "five replicas on five peers");
        // Another service starts its own spread from scratch.
        let other = snapshot.place(&replica("env/api"));
        assert!(matches!(other, Placement::Placed(_)));
    }

    #[test]
    fn binpack_fills_one_peer_before_the_next() {
        let mut snapshot = Snapshot::new(vec![peer(1, "a"), peer(2, "a")], &[]);
        let mut request = replica("env/batch");
        request.strategy = Strategy::Binpack;
        let placements = snapshot.place_all(&vec![request; 4]);
        let peers: BTreeSet<PeerId> = placements.iter().map(placed).collect();
        assert_eq!(peers.len(), 1, "{placements:?}");
    }

    #[test]
    fn constraints_rule_peers_out_and_say_which() {
        let mut eu = peer(1, "eu");
        eu.labels.insert("disk".into(), "ssd".into());
        let us = peer(2, "us");
        let mut snapshot = Snapshot::new(vec![eu, us], &[]);
        let mut request = replica("env/db");
        request.constraints = vec![Constraint::LabelIs {
            key: "disk".into(),
            value: "ssd".into(),
        }];
        assert_eq!(placed(&snapshot.place(&request)), PeerId([1; 32]));
        request.constraints.push(Constraint::LabelIs {
            key: "zone".into(),
            value: "us".into(),
        });
        let Placement::Unplaceable(why) = snapshot.place(&request) else {
            panic!("placed against its constraints");
        };
        assert_eq!(why.len(), 2);
        assert!(why[0].reason.contains("node.labels.zone==us"), "{why:?}");
        assert!(why[1].reason.contains("node.labels.disk==ssd"), "{why:?}");
        let mut request = replica("env/db");
        request.constraints = vec![Constraint::HostnameIsNot("p1".into())];
        assert_eq!(placed(&snapshot.place(&request)), PeerId([2; 32]));
    }

    #[test]
    fn refusals_name_each_peer_and_resource() {
        let mut down = peer(1, "a");
        down.state = PeerState::Down;
        let mut full = peer(2, "a");
        full.used.memory_bytes = 8 * GIB;
        let mut arm = peer(3, "a");
        arm.arch = "aarch64".into();
        let mut busy = peer(4, "a");
        busy.ports.insert((80, "tcp".into()));
        let mut refused = peer(5, "a");
        refused.name = "p5".into();
        let mut snapshot = Snapshot::new(vec![down, full, arm, busy, refused], &[]);
        let mut request = replica("env/web");
        request.arch = Some("x86_64".into());
        request.ports = vec![(80, "tcp".into())];
        request.refused_by.insert(PeerId([5; 32]));
        let Placement::Unplaceable(why) = snapshot.place(&request) else {
            panic!("placed where nothing fits");
        };
        let reasons: Vec<&str> = why.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons[0], "peer is down");
        assert!(
            reasons[1].starts_with("short of memory: 0 MiB free"),
            "{reasons:?}"
        );
        assert!(reasons[2].starts_with("architecture"), "{reasons:?}");
        assert!(reasons[3].starts_with("port taken: 80/tcp"), "{reasons:?}");
        assert_eq!(reasons[4], "refused the lease");
        let summary = Placement::summary(&why);
        assert!(summary.contains("1 peer: short of memory"), "{summary}");
    }

    #[test]
    fn near_prefers_the_closest_zone() {
        let peers = vec![peer(1, "far"), peer(2, "close"), peer(3, "edge")];
        let mut snapshot = Snapshot::new(peers, &[]);
        snapshot.set_zone_rtt("far", "edge", 80.0);
        snapshot.set_zone_rtt("close", "edge", 5.0);
        let mut request = replica("env/cache");
        request.near = Some("edge".into());
        assert_eq!(placed(&snapshot.place(&request)), PeerId([3; 32]));
        // The edge zone's only peer is taken for this one: the next nearest.
        request.constraints = vec![Constraint::HostnameIsNot("p3".into())];
        assert_eq!(placed(&snapshot.place(&request)), PeerId([2; 32]));
    }

    #[test]
    fn a_replica_stays_where_it_runs_unless_it_must_move() {
        let peers = vec![peer(1, "a"), peer(2, "b")];
        let running = vec![("env/web".to_string(), PeerId([1; 32]))];
        let mut snapshot = Snapshot::new(peers, &running);
        let mut request = replica("env/web");
        request.current = Some(PeerId([1; 32]));
        // Spreading would pick p2; staying wins.
        assert_eq!(placed(&snapshot.place(&request)), PeerId([1; 32]));
        let mut gone = Snapshot::new(
            vec![
                PeerSlot {
                    state: PeerState::Unreachable,
                    ..peer(1, "a")
                },
                peer(2, "b"),
            ],
            &[],
        );
        assert_eq!(placed(&gone.place(&request)), PeerId([2; 32]));
    }

    #[test]
    fn the_cloud_snapshot_counts_what_containers_hold_and_publish() {
        use coop_identity::{Certificate, CertificateBody, CloudKey};
        use coop_state::{DesiredState, ReplicaOf, RestartPolicy};
        let cloud = CloudKey::generate();
        let record = |n: u8, zone: &str| PeerRecord {
            cert: Certificate::issue(
                &cloud,
                CertificateBody {
                    cloud: cloud.id(),
                    peer: PeerId([n; 32]),
                    name: format!("p{n}"),
                    zone: zone.into(),
                    roles: Vec::new(),
                    issued_at: 0,
                    expires_at: u64::MAX,
                },
            )
            .unwrap(),
            joined_at: 0,
            addrs: Vec::new(),
            revoked_at: None,
        };
        let mut gone = record(3, "a");
        gone.revoked_at = Some(1);
        let records = vec![record(1, "a"), record(2, "b"), gone];
        let container = |name: &str, peer: u8, desired, owner| ContainerEntry {
            name: name.into(),
            peer: PeerId([peer; 32]),
            template: "busybox".into(),
            version: "latest".into(),
            content_id: String::new(),
            size: "small".into(),
            limits: coop_types::Limits {
                cpus_milli: 500,
                memory_bytes: GIB,
                disk_bytes: GIB,
                pids: 100,
            },
            argv: Vec::new(),
            env: Vec::new(),
            workdir: None,
            user: None,
            ports: vec!["8080:80/tcp".into()],
            restart: RestartPolicy::No,
            desired,
            created_at: 0,
            owner,
            networks: Vec::new(),
        };
        let web = Some(ReplicaOf {
            env: "shop".into(),
            service: "web".into(),
            index: 0,
            epoch: 1,
            digest: [0; 32],
        });
        let containers = vec![
            container("shop-web-0", 1, DesiredState::Running, web),
            container("idle", 1, DesiredState::Stopped, None),
        ];
        let lent = peer(1, "a").lent;
        let mut snapshot = Snapshot::of_cloud(&records, &containers, |id| {
            let mut status = PeerStatus {
                peer: *id,
                seq: 0,
                boot: 0,
                name: String::new(),
                zone: String::new(),
                cpus: 4,
                memory_bytes: 0,
                memory_free_bytes: 0,
                load_centi: 0,
                arch: "x86_64".into(),
                disks: Vec::new(),
                addrs: Vec::new(),
                relay: false,
                labels: [("disk".to_string(), "ssd".to_string())].into(),
                lent: Some(lent),
                rtts: vec![(PeerId([2; 32]), 30_000), (PeerId([3; 32]), 1_000)],
            };
            if *id == PeerId([2; 32]) {
                status.lent = None;
            }
            (Some(status), PeerState::Up)
        });
        assert_eq!(snapshot.peers().len(), 2, "revoked peers are left out");
        // Zones are as far apart as their peers say (the revoked peer's
        // RTT does not count).
        assert_eq!(snapshot.rtt("a", "b"), 30.0);
        assert_eq!(snapshot.rtt("b", "a"), 30.0);
        let p1 = &snapshot.peers()[0];
        // The stopped container keeps its disk but frees cpu and memory.
        assert_eq!(p1.used.cpus_milli, 500);
        assert_eq!(p1.used.disk_bytes, 2 * GIB);
        assert_eq!(p1.pids_used, 100);
        assert!(p1.ports.contains(&(8080, "tcp".to_string())));
        assert_eq!(p1.labels.get("disk").map(String::as_str), Some("ssd"));
        // Peer 2 runs no containers; the port is taken on peer 1.
        let mut request = replica("shop/web");
        request.ports = vec![(8080, "tcp".into())];
        let Placement::Unplaceable(why) = snapshot.place(&request) else {
            panic!("placed on a taken port or a peer without containers");
        };
        assert!(why[0].reason.starts_with("port taken"), "{why:?}");
        assert_eq!(why[1].reason, "runs no containers");
        // Without the port, the replica goes to peer 1 (the only one).
        request.ports.clear();
        assert_eq!(placed(&snapshot.place(&request)), PeerId([1; 32]));
    }

    #[test]
    fn placing_takes_capacity_so_a_batch_never_overfills() {
        let mut snapshot = Snapshot::new(vec![peer(1, "a"), peer(2, "b")], &[]);
        // 8 GiB each: 16 replicas of 1 GiB fit, the 17th does not.
        let placements = snapshot.place_all(&vec![replica("env/x"); 17]);
        assert!(
            placements[..16]
                .iter()
                .all(|p| matches!(p, Placement::Placed(_)))
        );
        assert!(matches!(placements[16], Placement::Unplaceable(_)));
    }
}
