//! Names on a private network: a small DNS resolver on the network's
//! gateway address, on each peer that hosts one of its members.
//!
//! It answers, over UDP, `A` queries for the names of the network (a
//! member container's `NAME` and `NAME.NETWORK.coop`; an environment
//! service's name, with one record per healthy replica, in an order that
//! rotates from one answer to the next) from a [`NameTable`] the peer
//! refreshes from the control plane. Other names under `.coop` and other
//! single-label names are answered "no such name" here: they are not
//! forwarded, so a network never learns another's names. Every other query
//! is passed, as it came, to the host's resolvers, and their answer back.
//!
//! Hand-written rather than built on a DNS library: the resolver needs the
//! header, one question and `A` records, and forwards the rest untouched,
//! which is a few hundred lines a DNS server crate would not shorten.
//!
//! Not here: TCP (answers of the network's own names are far below the
//! 512 bytes of a plain UDP answer; a forwarded answer the upstream
//! truncated reaches the client truncated), DNSSEC, caching.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::debug;

/// The domain under which every network's names live.
pub const DOMAIN: &str = "coop";
/// How long a client may keep an answer: short, so a replica that turns
/// unhealthy leaves its service's answers within seconds.
pub const TTL_SECS: u32 = 2;
/// The most records in one answer (a service with more healthy replicas
/// answers with this many, rotating through all of them).
pub const MAX_ANSWERS: usize = 24;
/// How long one upstream resolver has to answer a forwarded query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstream resolvers tried for one query, at most.
const UPSTREAM_TRIES: usize = 3;
/// Forwarded queries in flight at once; more are answered SERVFAIL.
const FORWARDS_IN_FLIGHT: usize = 64;
/// The largest datagram read or relayed.
const MAX_MESSAGE: usize = 4096;

const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;

/// Response codes used here (RFC 1035, 4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
}

/// The names of one network, as the resolver answers them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    /// The network's name, lowercase: names under `NAME.<network>.coop`.
    network: String,
    /// Single labels, lowercase, to their addresses. A container's name
    /// wins over a service of the same name.
    names: HashMap<String, Vec<Ipv4Addr>>,
}

/// What a name is to the resolver of a network.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// A name of this network, with its addresses (none for a service
    /// without a healthy replica).
    Found(&'a [Ipv4Addr]),
    /// Under `.coop` or a single label, but not a name of this network.
    NoSuchName,
    /// Anything else: for the host's resolvers.
    Elsewhere,
}

impl NameTable {
    /// An empty table for the network `network`.
    pub fn new(network: &str) -> NameTable {
        NameTable {
            network: network.to_ascii_lowercase(),
            names: HashMap::new(),
        }
    }

    /// Adds a member container: `name` resolves to `address`.
    pub fn add_container(&mut self, name: &str, address: Ipv4Addr) {
        self.names.insert(name.to_ascii_lowercase(), vec![address]);
    }

    /// Adds a service: `name` resolves to `addresses` (its healthy
    /// replicas), unless a container already has that name.
    pub fn add_service(&mut self, name: &str, addresses: Vec<Ipv4Addr>) {
        self.names
            .entry(name.to_ascii_lowercase())
            .or_insert(addresses);
    }

    /// What `name` (any case, with or without the final dot) is here.
    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let label = if name.contains('.') {
            let suffix = format!(".{}.{DOMAIN}", self.network);
            match name.strip_suffix(&suffix) {
                Some(label) if !label.contains('.') => label,
                _ if name == DOMAIN || name.ends_with(&format!(".{DOMAIN}")) => {
                    return Lookup::NoSuchName;
                }
                _ => return Lookup::Elsewhere,
            }
        } else {
            name.as_str()
        };
        match self.names.get(label) {
            Some(addresses) => Lookup::Found(addresses),
            None => Lookup::NoSuchName,
        }
    }
}

/// A query as the resolver reads it.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    id: u16,
    /// The recursion-desired bit, echoed.
    recursion_desired: bool,
    /// The name asked for, dotted, as sent.
    name: String,
    qtype: u16,
    qclass: u16,
    /// Where the question section ends (it starts at 12): echoed in the
    /// answer.
    question_end: usize,
}

/// Why a message is not a query the resolver answers.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Too short for a header, or a response: dropped without an answer.
    Ignore,
    /// Answered with this code and no question.
    Answer { id: u16, rcode: Rcode },
}

fn parse(message: &[u8]) -> Result<Query, Refusal> {
    if message.len() < 12 {
        return Err(Refusal::Ignore);
    }
    let id = u16::from_be_bytes([message[0], message[1]]);
    let flags = u16::from_be_bytes([message[2], message[3]]);
    if flags & 0x8000 != 0 {
        // A response: never answer one (no loops with another resolver).
        return Err(Refusal::Ignore);
    }
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return Err(Refusal::Answer {
            id,
            rcode: Rcode::NotImp,
        });
    }
    let questions = u16::from_be_bytes([message[4], message[5]]);
    let formerr = Refusal::Answer {
        id,
        rcode: Rcode::FormErr,
    };
    if questions != 1 {
        return Err(formerr);
    }
    let mut at = 12;
    let mut labels: Vec<String> = Vec::new();
    let mut length = 0usize;
    loop {
        let Some(&len) = message.get(at) else {
            return Err(formerr);
        };
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (and the reserved label types) have no
        // place in a question of one name.
        if len & 0xc0 != 0 {
            return Err(formerr);
        }
        let len = usize::from(len);
        let Some(label) = message.get(at..at + len) else {
            return Err(formerr);
        };
        length += len + 1;
        if length > 255 {
            return Err(formerr);
        }
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += len;
    }
    let Some(tail) = message.get(at..at + 4) else {
        return Err(formerr);
    };
    Ok(Query {
        id,
        recursion_desired: flags & 0x0100 != 0,
        name: labels.join("."),
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        question_end: at + 4,
    })
}

/// A response to `query` (whose bytes are `message`): its question, then
/// one `A` record per address.
fn respond(message: &[u8], query: &Query, rcode: Rcode, answers: &[Ipv4Addr]) -> Vec<u8> {
    let answers = &answers[..answers.len().min(MAX_ANSWERS)];
    let mut out = Vec::with_capacity(query.question_end + answers.len() * 16);
    out.extend_from_slice(&query.id.to_be_bytes());
    // QR, AA (these names are the resolver's own), RD echoed, RA.
    let mut flags: u16 = 0x8000 | 0x0400 | 0x0080 | rcode as u16;
    if query.recursion_desired {
        flags |= 0x0100;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&message[12..query.question_end]);
    for address in answers {
        // The name is a pointer to the question's, at offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL_SECS.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&address.octets());
    }
    out
}

/// A header-only response: for messages whose question cannot be echoed.
fn bare_response(id: u16, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(0x8000u16 | 0x0080 | rcode as u16).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// What to do with one message.
enum Action {
    Reply(Vec<u8>),
    Forward,
    Ignore,
}

fn decide(message: &[u8], names: &NameTable, turn: usize) -> Action {
    let query = match parse(message) {
        Ok(query) => query,
        Err(Refusal::Ignore) => return Action::Ignore,
        Err(Refusal::Answer { id, rcode }) => return Action::Reply(bare_response(id, rcode)),
    };
    match names.lookup(&query.name) {
        Lookup::Elsewhere => Action::Forward,
        Lookup::NoSuchName => Action::Reply(respond(message, &query, Rcode::NxDomain, &[])),
        Lookup::Found(addresses) => {
            let wants_a = matches!(query.qtype, TYPE_A | TYPE_ANY)
                && matches!(query.qclass, CLASS_IN | CLASS_ANY);
            if !wants_a || addresses.is_empty() {
                // The name exists; it has no record of that type (AAAA).
                return Action::Reply(respond(message, &query, Rcode::NoError, &[]));
            }
            let mut rotated = addresses.to_vec();
            rotated.rotate_left(turn % addresses.len());
            Action::Reply(respond(message, &query, Rcode::NoError, &rotated))
        }
    }
}

/// The host's resolvers from the text of its `/etc/resolv.conf`, on port
/// 53, leaving out `skip` (the resolver's own addresses).
pub fn upstreams_from_resolv_conf(text: &str, skip: &[Ipv4Addr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|word| word.parse::<IpAddr>().ok())
        .filter(|ip| !matches!(ip, IpAddr::V4(v4) if skip.contains(v4)))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

struct Shared {
    socket: UdpSocket,
    names: RwLock<NameTable>,
    upstreams: Vec<SocketAddr>,
    turn: AtomicUsize,
    forwards: Arc<Semaphore>,
}

/// A resolver serving one network's names on one address; it stops when
/// dropped.
pub struct Resolver {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Resolver {
    /// Serves `names` on UDP `addr`, forwarding other names to `upstreams`.
    /// The address need not exist yet (the network's bridge may come a
    /// moment later): the socket is bound with `IP_FREEBIND`.
    pub fn bind(
        addr: SocketAddrV4,
        names: NameTable,
        upstreams: Vec<SocketAddr>,
    ) -> io::Result<Resolver> {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_freebind_v4(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::V4(addr).into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let shared = Arc::new(Shared {
            socket,
            names: RwLock::new(names),
            upstreams,
            turn: AtomicUsize::new(0),
            forwards: Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT)),
        });
        let task = tokio::spawn(serve(shared.clone()));
        Ok(Resolver { shared, task })
    }

    /// Answers from `names` from now on.
    pub fn set_names(&self, names: NameTable) {
        if let Ok(mut current) = self.shared.names.write() {
            *current = names;
        }
    }

    /// The address it serves on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, client) = match shared.socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(err) => {
                // ICMP errors of earlier sends surface here; keep serving.
                debug!(%err, "resolver receive failed");
                continue;
            }
        };
        let message = &buf[..len];
        let turn = shared.turn.fetch_add(1, Ordering::Relaxed);
        let action = match shared.names.read() {
            Ok(names) => decide(message, &names, turn),
            Err(_) => return,
        };
        match action {
            Action::Ignore => {}
            Action::Reply(reply) => {
                let _ = shared.socket.send_to(&reply, client).await;
            }
            Action::Forward => {
                let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
                    if let Ok(query) = parse(message) {
                        let reply = respond(message, &query, Rcode::ServFail, &[]);
                        let _ = shared.socket.send_to(&reply, client).await;
                    }
                    continue;
                };
                let shared = shared.clone();
                let message = message.to_vec();
                tokio::spawn(async move {
                    let reply = match forward(&message, &shared.upstreams).await {
                        Some(reply) => reply,
                        None => match parse(&message) {
                            Ok(query) => respond(&message, &query, Rcode::ServFail, &[]),
                            Err(_) => return,
                        },
                    };
                    let _ = shared.socket.send_to(&reply, client).await;
                    drop(permit);
                });
            }
        }
    }
}

/// Asks each upstream in turn; the first answer with the query's id wins.
async fn forward(message: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let id = message.get(..2)?;
    for upstream in upstreams.iter().take(UPSTREAM_TRIES) {
        let local: SocketAddr = if upstream.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(socket) = UdpSocket::bind(local).await else {
            continue;
        };
        if socket.connect(upstream).await.is_err() || socket.send(message).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_MESSAGE];
        let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            loop {
                let len = socket.recv(&mut buf).await.ok()?;
                if buf.get(..2) == Some(id) {
                    return Some(buf[..len].to_vec());
                }
            }
        })
        .await;
        match answer {
            Ok(Some(reply)) => return Some(reply),
            _ => debug!(%upstream, "upstream resolver did not answer"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as a stub resolver sends it (RD set, EDNS left out).
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&0x0100u16.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out
    }

    /// The rcode and the addresses of an answer.
    fn answer(reply: &[u8]) -> (u8, Vec<Ipv4Addr>) {
        let rcode = reply[3] & 0xf;
        let count = u16::from_be_bytes([reply[6], reply[7]]) as usize;
        let question = parse(&{
            let mut q = reply.to_vec();
            q[2] &= 0x7f;
            q
        })
        .map(|q| q.question_end)
        .unwrap_or(12);
        let addresses = (0..count)
            .map(|i| {
                let at = question + i * 16 + 12;
                Ipv4Addr::new(reply[at], reply[at + 1], reply[at + 2], reply[at + 3])
            })
            .collect();
        (rcode, addresses)
    }

    fn table() -> NameTable {
        let mut names = NameTable::new("shop");
        names.add_container("shop-web-0", Ipv4Addr::new(10, 210, 3, 2));
        names.add_container("db", Ipv4Addr::new(10, 210, 3, 9));
        names.add_service(
            "web",
            vec![Ipv4Addr::new(10, 210, 3, 2), Ipv4Addr::new(10, 210, 3, 3)],
        );
        names.add_service("db", vec![Ipv4Addr::new(10, 210, 3, 7)]);
        names.add_service("cache", Vec::new());
        names
    }

    #[test]
    fn names_of_the_network_and_only_those_are_its_own() {
        let t = table();
        let db = [Ipv4Addr::new(10, 210, 3, 9)];
        assert_eq!(t.lookup("db"), Lookup::Found(&db));
        assert_eq!(t.lookup("DB.shop.coop."), Lookup::Found(&db));
        assert_eq!(t.lookup("web"), t.lookup("web.Shop.coop"));
        assert!(matches!(t.lookup("web"), Lookup::Found(a) if a.len() == 2));
        assert_eq!(t.lookup("nothing"), Lookup::NoSuchName);
        assert_eq!(t.lookup("db.other.coop"), Lookup::NoSuchName);
        assert_eq!(t.lookup("a.db.shop.coop"), Lookup::NoSuchName);
        assert_eq!(t.lookup("coop"), Lookup::NoSuchName);
        assert_eq!(t.lookup("example.org"), Lookup::Elsewhere);
        assert_eq!(t.lookup("db.shop.coop.example.org"), Lookup::Elsewhere);
    }

    #[test]
    fn queries_get_records_rotating_nodata_or_nxdomain() {
        let t = table();
        let (rcode, first) = match decide(&query(7, "web", TYPE_A), &t, 0) {
            Action::Reply(r) => {
                assert_eq!(&r[..2], &7u16.to_be_bytes());
                answer(&r)
            }
            _ => panic!("web is the network's own"),
        };
        assert_eq!(rcode, 0);
        assert_eq!(first.len(), 2);
        let Action::Reply(r) = decide(&query(8, "web.shop.coop", TYPE_A), &t, 1) else {
            panic!()
        };
        let (_, second) = answer(&r);
        assert_eq!(second, vec![first[1], first[0]], "the order rotates");
        for (name, qtype, want) in [
            ("web", 28u16, 0u8),
            ("cache", TYPE_A, 0),
            ("ghost", TYPE_A, 3),
            ("web.elsewhere.coop", TYPE_A, 3),
        ] {
            let Action::Reply(r) = decide(&query(9, name, qtype), &t, 0) else {
                panic!("{name} answered here")
            };
            assert_eq!(answer(&r), (want, vec![]), "{name} type {qtype}");
        }
        assert!(matches!(
            decide(&query(9, "example.org", TYPE_A), &t, 0),
            Action::Forward
        ));
    }

    #[test]
    fn malformed_messages_get_errors_or_silence() {
        let t = table();
        assert!(matches!(decide(&[1, 2, 3], &t, 0), Action::Ignore));
        let mut response = query(1, "web", TYPE_A);
        response[2] |= 0x80;
        assert!(matches!(decide(&response, &t, 0), Action::Ignore));
        let mut truncated = query(2, "web", TYPE_A);
        truncated.truncate(truncated.len() - 3);
        let Action::Reply(r) = decide(&truncated, &t, 0) else {
            panic!()
        };
        assert_eq!(answer(&r).0, Rcode::FormErr as u8);
        let mut pointer = query(3, "web", TYPE_A);
        pointer[12] = 0xc0;
        let Action::Reply(r) = decide(&pointer, &t, 0) else {
            panic!()
        };
        assert_eq!(answer(&r).0, Rcode::FormErr as u8);
        let mut update = query(4, "web", TYPE_A);
        update[2] |= 5 << 3;
        let Action::Reply(r) = decide(&update, &t, 0) else {
            panic!()
        };
        assert_eq!(answer(&r).0, Rcode::NotImp as u8);
    }

    #[test]
    fn resolvers_are_read_from_resolv_conf() {
        let text = "# comment\nsearch lan\nnameserver 192.168.1.1\nnameserver 10.210.3.1\nnameserver ::1\nnameserver junk\noptions ndots:2\n";
        assert_eq!(
            upstreams_from_resolv_conf(text, &[Ipv4Addr::new(10, 210, 3, 1)]),
            vec![
                "192.168.1.1:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn a_resolver_answers_its_names_and_forwards_the_rest() {
        // An upstream that answers every query with one record.
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((len, from)) = upstream.recv_from(&mut buf).await {
                let q = parse(&buf[..len]).unwrap();
                let r = respond(
                    &buf[..len],
                    &q,
                    Rcode::NoError,
                    &[Ipv4Addr::new(192, 0, 2, 80)],
                );
                upstream.send_to(&r, from).await.unwrap();
            }
        });
        let resolver = Resolver::bind(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            table(),
            vec![upstream_addr],
        )
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .connect(resolver.local_addr().unwrap())
            .await
            .unwrap();
        let ask = |id: u16, name: &'static str| {
            let client = &client;
            async move {
                client.send(&query(id, name, TYPE_A)).await.unwrap();
                let mut buf = [0u8; 512];
                let len = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                    .await
                    .expect("an answer")
                    .unwrap();
                assert_eq!(&buf[..2], &id.to_be_bytes());
                answer(&buf[..len])
            }
        };
        assert_eq!(ask(1, "db").await, (0, vec![Ipv4Addr::new(10, 210, 3, 9)]));
        assert_eq!(
            ask(2, "example.org").await,
            (0, vec![Ipv4Addr::new(192, 0, 2, 80)])
        );
        resolver.set_names(NameTable::new("shop"));
        assert_eq!(ask(3, "db").await, (3, vec![]));

        // No upstream answering: SERVFAIL, not silence.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let lonely = Resolver::bind(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            table(),
            vec![silent.local_addr().unwrap()],
        )
        .unwrap();
        client.connect(lonely.local_addr().unwrap()).await.unwrap();
        assert_eq!(ask(4, "example.org").await, (2, vec![]));
    }
}
