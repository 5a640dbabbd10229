//! What two peers can tell each other about the way between them.
//!
//! `coop/paths/1` answers two questions: "where do my packets come from, as
//! you see them?" (the public address a NAT gave this peer, seen from
//! another vantage point than the relay's address discovery) and "what do
//! you know of your own NAT?". With both sides' answers a relayed path gets
//! a reason: a symmetric NAT, a side with no public address, or probes that
//! went unanswered. `coop/speed/1` times a bulk transfer over the path the
//! connection uses, so a user can see what a relayed path costs.
//!
//! Hole punching itself is iroh's: the dialing side of a connection sends
//! its candidate addresses in-band (QUIC NAT traversal), both sides probe
//! each other's public addresses at once, and the connection moves to the
//! first direct path that answers. It keeps the relay path as a fallback and
//! punches again when either side's addresses change (a router that restarts
//! with a new public address).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use iroh::TransportAddr;
use serde::{Deserialize, Serialize};

use coop_types::{
    Connection as PathKind, NatMapping, NatReport, PathReport, PathVerdict, PeerId, PeerState,
    Sighting, SpeedReport,
};

use crate::protocol::{Protocol, Service, Session, StreamProtocol, StreamService};
use crate::{Mesh, MeshError, WeakMesh};

/// The ALPN of [`PathsProtocol`].
pub const PATHS_ALPN: &[u8] = b"coop/paths/1";
/// The ALPN of [`SpeedProtocol`].
pub const SPEED_ALPN: &[u8] = b"coop/speed/1";

/// How many other peers a NAT report asks how they see this one.
const MAX_WITNESSES: usize = 8;
/// How long one witness may take to answer.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest transfer a speed test may ask for.
pub const MAX_SPEED_BYTES: u64 = 1 << 30;
/// The label of a sighting made by a relay's QUIC address discovery.
const RELAY_DISCOVERY: &str = "relay address discovery";

/// Questions about paths and NATs.
pub struct PathsProtocol;

/// What a [`PathsProtocol`] caller asks.
#[derive(Debug, Serialize, Deserialize)]
pub enum PathsRequest {
    /// The addresses the caller's packets arrive from on direct paths.
    SeenAs,
    /// The answering peer's report of its own NAT.
    Nat,
}

/// What a [`PathsProtocol`] server answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum PathsReply {
    /// The caller's addresses as `ip:port`, one per direct path.
    SeenAs(Vec<String>),
    /// The answering peer's NAT report.
    Nat(NatReport),
}

impl Protocol for PathsProtocol {
    const ALPN: &'static [u8] = PATHS_ALPN;
    type Request = PathsRequest;
    type Response = PathsReply;

    fn timeout(request: &PathsRequest) -> Duration {
        match request {
            PathsRequest::SeenAs => WITNESS_TIMEOUT,
            // The answering peer asks its own witnesses first.
            PathsRequest::Nat => WITNESS_TIMEOUT * 3,
        }
    }
}

/// A timed bulk transfer to a peer.
pub struct SpeedProtocol;

/// The opening of a speed test.
#[derive(Debug, Serialize, Deserialize)]
pub struct SpeedOpen {
    /// How many bytes the caller will send.
    pub bytes: u64,
}

/// The answer to a [`SpeedOpen`].
#[derive(Debug, Serialize, Deserialize)]
pub enum SpeedReply {
    /// Send the bytes; the count comes back when the last one is read.
    Ready,
    /// Not taken, and why (more than [`MAX_SPEED_BYTES`]).
    Refused(String),
}

impl StreamProtocol for SpeedProtocol {
    const ALPN: &'static [u8] = SPEED_ALPN;
    type Open = SpeedOpen;
    type Reply = SpeedReply;
    const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
}

/// Serves both protocols for the mesh that owns it.
pub(crate) struct PathsService(pub WeakMesh);

impl Service<PathsProtocol> for PathsService {
    fn answer(&self, from: PeerId, request: PathsRequest) -> BoxFuture<'static, PathsReply> {
        let mesh = self.0.upgrade();
        Box::pin(async move {
            match (request, mesh) {
                (PathsRequest::SeenAs, Some(mesh)) => PathsReply::SeenAs(
                    mesh.seen_as(&from)
                        .into_iter()
                        .map(|a| a.to_string())
                        .collect(),
                ),
                (PathsRequest::Nat, Some(mesh)) => PathsReply::Nat(mesh.nat_report().await),
                (PathsRequest::SeenAs, None) => PathsReply::SeenAs(Vec::new()),
                (PathsRequest::Nat, None) => PathsReply::Nat(NatReport {
                    local: Vec::new(),
                    sightings: Vec::new(),
                    mapping: NatMapping::Unknown,
                }),
            }
        })
    }
}

impl StreamService<SpeedProtocol> for PathsService {
    fn serve(
        &self,
        from: PeerId,
        open: SpeedOpen,
        session: Session<SpeedProtocol>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if open.bytes > MAX_SPEED_BYTES {
                let refusal = SpeedReply::Refused(format!(
                    "a speed test sends at most {MAX_SPEED_BYTES} bytes, not {}",
                    open.bytes
                ));
                let _ = session.reply(&refusal).await;
                return;
            }
            let Ok((mut send, mut recv)) = session.reply(&SpeedReply::Ready).await else {
                return;
            };
            let mut received: u64 = 0;
            let mut buf = vec![0u8; 256 << 10];
            loop {
                match recv.read(&mut buf).await {
                    Ok(Some(n)) => received += n as u64,
                    Ok(None) => break,
                    Err(err) => {
                        tracing::debug!(peer = %from.short(), %err, "speed test stream broke");
                        return;
                    }
                }
                if received > open.bytes {
                    break;
                }
            }
            if send.write_all(&received.to_be_bytes()).await.is_ok() {
                let _ = send.finish();
                // Wait for the caller to read the count before the stream goes.
                let _ = send.stopped().await;
            }
        })
    }
}

impl Mesh {
    /// Where `peer`'s packets arrive from, on the direct paths of the
    /// connections it has with this peer.
    pub(crate) fn seen_as(&self, peer: &PeerId) -> Vec<SocketAddr> {
        let mut seen = BTreeSet::new();
        for conn in self.admission().connections_of(peer) {
            for path in conn.paths().iter() {
                if let TransportAddr::Ip(addr) = path.remote_addr() {
                    seen.insert(*addr);
                }
            }
        }
        seen.into_iter().collect()
    }

    /// This peer's addresses and what its NAT does to them: the relay's
    /// address discovery and up to [`MAX_WITNESSES`] live peers say where
    /// they see its packets come from.
    pub async fn nat_report(&self) -> NatReport {
        let local = self.bound_addrs();
        let mut sightings = Vec::new();
        if let Some(public) = self.discovered_public_addr() {
            sightings.push(Sighting {
                by: RELAY_DISCOVERY.to_string(),
                addr: public.to_string(),
            });
        }
        let witnesses: Vec<PeerId> = self
            .known_peers()
            .into_iter()
            .filter(|p| *p != self.id() && self.peer_state(p) == PeerState::Up)
            .take(MAX_WITNESSES)
            .collect();
        let answers = join_all(witnesses.into_iter().map(|witness| async move {
            let reply = self
                .call_within::<PathsProtocol>(witness, &PathsRequest::SeenAs, WITNESS_TIMEOUT)
                .await;
            (witness, reply)
        }))
        .await;
        for (witness, reply) in answers {
            if let Ok(PathsReply::SeenAs(addrs)) = reply {
                sightings.extend(addrs.into_iter().map(|addr| Sighting {
                    by: witness.short(),
                    addr,
                }));
            }
        }
        let mapping = classify(&local, &sightings, self.varies_by_destination());
        NatReport {
            local: local.iter().map(|a| a.to_string()).collect(),
            sightings,
            mapping,
        }
    }

    /// The path to `peer` and why it is what it is, asking `peer` for its
    /// side of the story. `name_of` names peers for people (in the reason
    /// and beside the witnesses' short ids).
    pub async fn path_report(
        &self,
        peer: PeerId,
        name_of: impl Fn(&PeerId) -> Option<String>,
    ) -> PathReport {
        let path = self.path_to(&peer);
        let paths = self.admission().paths_of(&peer);
        let known_addrs = self.known_direct_addrs(peer).await;
        let (mut here, mut there) = tokio::join!(self.nat_report(), async {
            match self.call::<PathsProtocol>(peer, &PathsRequest::Nat).await {
                Ok(PathsReply::Nat(report)) => Some(report),
                _ => None,
            }
        });
        let known = self.known_peers();
        let sightings = here.sightings.iter_mut();
        for sighting in sightings.chain(there.iter_mut().flat_map(|t| t.sightings.iter_mut())) {
            let witness = known.iter().find(|id| id.short() == sighting.by);
            if let Some(name) = witness.and_then(&name_of) {
                sighting.by = format!("{name} ({})", sighting.by);
            }
        }
        let name = name_of(&peer).unwrap_or_else(|| peer.short());
        let connection = path.map(|p| p.kind);
        let (verdict, reason) = judge(connection, &here, there.as_ref(), &name);
        PathReport {
            peer,
            connection,
            rtt_ms: path.and_then(|p| p.rtt).map(|d| d.as_secs_f64() * 1e3),
            paths,
            known_addrs,
            here,
            there,
            verdict,
            reason,
        }
    }

    /// Sends `bytes` bytes to `peer` and times them until the peer has
    /// counted the last one.
    pub async fn measure_speed(&self, peer: PeerId, bytes: u64) -> Result<SpeedReport, MeshError> {
        let failed = |reason: String| MeshError::Request { peer, reason };
        let (reply, mut send, mut recv) = self
            .open::<SpeedProtocol>(peer, &SpeedOpen { bytes })
            .await?;
        if let SpeedReply::Refused(reason) = reply {
            return Err(MeshError::Refused { peer, reason });
        }
        let chunk = vec![0x5a_u8; 256 << 10];
        let started = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            send.write_all(&chunk[..n])
                .await
                .map_err(|e| failed(e.to_string()))?;
            left -= n as u64;
        }
        send.finish().map_err(|e| failed(e.to_string()))?;
        let mut count = [0u8; 8];
        recv.read_exact(&mut count)
            .await
            .map_err(|e| failed(format!("no count came back: {e}")))?;
        let seconds = started.elapsed().as_secs_f64();
        let received = u64::from_be_bytes(count);
        if received != bytes {
            return Err(failed(format!(
                "the peer counted {received} bytes of the {bytes} sent"
            )));
        }
        let path = self.path_to(&peer);
        Ok(SpeedReport {
            peer,
            bytes,
            seconds,
            mib_per_sec: bytes as f64 / (1 << 20) as f64 / seconds.max(1e-9),
            connection: path.map(|p| p.kind),
        })
    }
}

/// What the sightings of this peer's packets say about its NAT. `local`
/// are the bound addresses; `varies` is the endpoint's own judgement from
/// probing several relays, when it has one.
pub(crate) fn classify(
    local: &[SocketAddr],
    sightings: &[Sighting],
    varies: Option<bool>,
) -> NatMapping {
    if varies == Some(true) {
        return NatMapping::VariesByDestination;
    }
    let parsed: Vec<(&str, SocketAddr)> = sightings
        .iter()
        .filter_map(|s| Some((s.by.as_str(), s.addr.parse().ok()?)))
        .collect();
    // A peer on the same LAN sees the private address: that says nothing
    // about the NAT towards the Internet.
    let public: Vec<&(&str, SocketAddr)> = parsed
        .iter()
        .filter(|(_, addr)| !is_own(local, addr))
        .collect();
    if public.is_empty() {
        return if parsed.is_empty() {
            NatMapping::Unknown
        } else {
            NatMapping::None
        };
    }
    let addrs: BTreeSet<SocketAddr> = public.iter().map(|(_, a)| *a).collect();
    let witnesses: BTreeSet<&str> = public.iter().map(|(by, _)| *by).collect();
    match (addrs.len(), witnesses.len()) {
        (1, 1) => NatMapping::SingleSighting,
        (1, _) => NatMapping::Stable,
        _ => NatMapping::VariesByDestination,
    }
}

/// Whether `addr` is this peer's own: a bound address, or an address of
/// this machine when the socket is bound to all of them.
fn is_own(local: &[SocketAddr], addr: &SocketAddr) -> bool {
    local.iter().any(|l| {
        if l.ip().is_unspecified() {
            l.port() == addr.port() && std::net::UdpSocket::bind((addr.ip(), 0)).is_ok()
        } else {
            l == addr
        }
    })
}

/// The verdict on a path and its reason in a sentence.
pub(crate) fn judge(
    connection: Option<PathKind>,
    here: &NatReport,
    there: Option<&NatReport>,
    peer: &str,
) -> (PathVerdict, String) {
    match connection {
        Some(PathKind::Direct) => {
            return (
                PathVerdict::Direct,
                format!("packets go straight between this peer and {peer}"),
            );
        }
        Some(PathKind::Relay) => {}
        _ => {
            return (
                PathVerdict::NotConnected,
                format!("no connection to {peer} is open"),
            );
        }
    }
    let Some(there) = there else {
        return (
            PathVerdict::Unexplained,
            format!("relayed; {peer} did not say what it knows of its own NAT"),
        );
    };
    let symmetric = |r: &NatReport| r.mapping == NatMapping::VariesByDestination;
    let unknown = |r: &NatReport| r.mapping == NatMapping::Unknown;
    let sides = |here_too: bool, there_too: bool, what: &str| match (here_too, there_too) {
        (true, true) => format!("{what} on both sides"),
        (true, false) => format!("{what} at this peer"),
        _ => format!("{what} at {peer}"),
    };
    if symmetric(here) || symmetric(there) {
        let what = sides(symmetric(here), symmetric(there), "a symmetric NAT");
        return (
            PathVerdict::SymmetricNat,
            format!(
                "relayed: {what} gives each destination another public port, so the other side \
                 cannot aim its probes at it"
            ),
        );
    }
    if unknown(here) || unknown(there) {
        let what = sides(unknown(here), unknown(there), "no public address known");
        return (
            PathVerdict::NoPublicAddress,
            format!(
                "relayed: {what} (no relay's address discovery answered and no peer saw its \
                 packets on a direct path; is outgoing UDP blocked?)"
            ),
        );
    }
    (
        PathVerdict::ProbesUnanswered,
        format!(
            "relayed: both sides have stable public addresses (this peer {}, {peer} {}) but the \
             probes between them went unanswered; something between the two drops UDP",
            list(&here.public_addrs()),
            list(&there.public_addrs()),
        ),
    )
}

fn list(addrs: &[String]) -> String {
    if addrs.is_empty() {
        "its own address".to_string()
    } else {
        addrs.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(by: &str, addr: &str) -> Sighting {
        Sighting {
            by: by.into(),
            addr: addr.into(),
        }
    }

    fn report(mapping: NatMapping) -> NatReport {
        NatReport {
            local: vec!["10.0.0.2:7402".into()],
            sightings: vec![seen("relay", "198.18.0.2:7402")],
            mapping,
        }
    }

    #[test]
    fn sightings_tell_the_kind_of_nat() {
        let local: Vec<SocketAddr> = vec!["10.0.0.2:7402".parse().unwrap()];
        assert_eq!(classify(&local, &[], None), NatMapping::Unknown);
        assert_eq!(
            classify(&local, &[seen("a", "10.0.0.2:7402")], None),
            NatMapping::None
        );
        assert_eq!(
            classify(&local, &[seen(RELAY_DISCOVERY, "198.18.0.2:7402")], None),
            NatMapping::SingleSighting
        );
        let stable = [
            seen(RELAY_DISCOVERY, "198.18.0.2:7402"),
            seen("a", "198.18.0.2:7402"),
            seen("lan", "10.0.0.2:7402"),
        ];
        assert_eq!(classify(&local, &stable, None), NatMapping::Stable);
        let symmetric = [
            seen(RELAY_DISCOVERY, "198.18.0.2:40001"),
            seen("a", "198.18.0.2:51234"),
        ];
        assert_eq!(
            classify(&local, &symmetric, None),
            NatMapping::VariesByDestination
        );
        assert_eq!(
            classify(&local, &stable, Some(true)),
            NatMapping::VariesByDestination
        );
        assert_eq!(
            classify(&local, &[seen("a", "not an address")], None),
            NatMapping::Unknown
        );
    }

    #[test]
    fn verdicts_name_the_side_at_fault() {
        let stable = report(NatMapping::Stable);
        let symmetric = report(NatMapping::VariesByDestination);
        let unknown = report(NatMapping::Unknown);
        let relay = Some(PathKind::Relay);
        assert_eq!(
            judge(Some(PathKind::Direct), &symmetric, None, "b").0,
            PathVerdict::Direct
        );
        assert_eq!(judge(None, &stable, None, "b").0, PathVerdict::NotConnected);
        assert_eq!(judge(relay, &stable, None, "b").0, PathVerdict::Unexplained);
        let (verdict, reason) = judge(relay, &stable, Some(&symmetric), "b");
        assert_eq!(verdict, PathVerdict::SymmetricNat);
        assert!(reason.contains("at b"), "{reason}");
        let (verdict, reason) = judge(relay, &symmetric, Some(&symmetric), "b");
        assert_eq!(verdict, PathVerdict::SymmetricNat);
        assert!(reason.contains("both sides"), "{reason}");
        let (verdict, reason) = judge(relay, &unknown, Some(&stable), "b");
        assert_eq!(verdict, PathVerdict::NoPublicAddress);
        assert!(reason.contains("at this peer"), "{reason}");
        let (verdict, reason) = judge(relay, &stable, Some(&stable), "b");
        assert_eq!(verdict, PathVerdict::ProbesUnanswered);
        assert!(reason.contains("198.18.0.2:7402"), "{reason}");
    }
}
