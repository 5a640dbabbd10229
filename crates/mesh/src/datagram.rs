//! Datagram protocols: unreliable, unordered messages between admitted
//! peers, carried as QUIC datagrams on a connection of the protocol's own
//! ALPN (the private networks' packets, `coop/net/1`, declared in `net`).
//!
//! A datagram is sent whole or not at all, may be lost or reordered, and
//! must fit the connection's current datagram limit
//! ([`Mesh::max_datagram_size`]); nothing is retransmitted. QUIC encrypts
//! it and applies the connection's congestion control, on whichever path
//! the connection uses, direct or through a relay of the cloud.
//!
//! One connection per peer and ALPN carries datagrams both ways: the
//! dialer's, or the one a peer dialed to us (adopted when its first
//! datagram arrives). A reader on each connection hands every datagram to
//! the service registered for the ALPN, in place: the service must not
//! block. A peer that has not registered a service drops what arrives.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use iroh::endpoint::{Connection, SendDatagramError};

use coop_types::PeerId;

use crate::protocol::protocol_name;
use crate::request::{Handler, HandlerTable};
use crate::{Mesh, MeshError};

/// How many datagrams a reader takes from its connection at once: a burst
/// is handed over under one lock of the connection instead of one each,
/// and a service gets it as one batch (64 segments of a TCP flow make one
/// 64 KiB packet for a private network's device).
const RECEIVE_BATCH: usize = 64;

/// A datagram protocol: its ALPN. Datagrams are bytes; the protocol frames
/// them itself (a network's header, say).
pub trait DatagramProtocol: Send + Sync + 'static {
    /// The ALPN the protocol's connections use, e.g. `coop/net/1`.
    const ALPN: &'static [u8];
}

/// Takes the datagrams of protocol `P`.
pub trait DatagramService<P: DatagramProtocol>: Send + Sync + 'static {
    /// Takes one datagram from the (admitted) peer `from`. Called on the
    /// connection's reader: a service that cannot take it now drops it,
    /// as a congested router would, and never waits.
    fn receive(&self, from: PeerId, datagram: Bytes);

    /// Takes the datagrams the connection's reader found queued together,
    /// in order (a service may treat them as one batch); by default, one
    /// at a time. The slots may be left empty.
    fn receive_many(&self, from: PeerId, datagrams: &mut [Bytes]) {
        for datagram in datagrams {
            self.receive(from, std::mem::take(datagram));
        }
    }
}

/// The byte-level face of a [`DatagramService`].
pub(crate) trait DatagramHandler: Send + Sync + 'static {
    fn receive_many(&self, from: PeerId, datagrams: &mut [Bytes]);
}

struct TypedDatagrams<P, S> {
    service: S,
    _protocol: PhantomData<fn() -> P>,
}

impl<P: DatagramProtocol, S: DatagramService<P>> DatagramHandler for TypedDatagrams<P, S> {
    fn receive_many(&self, from: PeerId, datagrams: &mut [Bytes]) {
        self.service.receive_many(from, datagrams);
    }
}

/// The connection datagrams to each peer go out on, by ALPN, and the
/// dialed connections that have a reader.
#[derive(Default)]
pub(crate) struct DatagramLinks {
    links: RwLock<HashMap<(PeerId, &'static [u8]), Connection>>,
    read: Mutex<HashSet<usize>>,
}

impl DatagramLinks {
    fn get(&self, peer: PeerId, alpn: &'static [u8]) -> Option<Connection> {
        self.links.read().ok()?.get(&(peer, alpn)).cloned()
    }

    /// True the first time it is asked about a dialed `conn`: then the
    /// caller starts its reader.
    fn needs_reader(&self, conn: &Connection) -> bool {
        self.read
            .lock()
            .map(|mut read| read.insert(conn.stable_id()))
            .unwrap_or(false)
    }

    fn reader_done(&self, conn: &Connection) {
        if let Ok(mut read) = self.read.lock() {
            read.remove(&conn.stable_id());
        }
    }

    /// Makes `conn` the link to `peer` unless a live one is there already.
    pub(crate) fn adopt(&self, peer: PeerId, alpn: &'static [u8], conn: &Connection) {
        let Ok(mut links) = self.links.write() else {
            return;
        };
        let live = links
            .get(&(peer, alpn))
            .is_some_and(|link| link.close_reason().is_none());
        if !live {
            links.insert((peer, alpn), conn.clone());
        }
    }

    /// Forgets `conn` as the link to `peer`, if it still is.
    fn drop_link(&self, peer: PeerId, alpn: &'static [u8], conn: &Connection) {
        if let Ok(mut links) = self.links.write()
            && links
                .get(&(peer, alpn))
                .is_some_and(|l| l.stable_id() == conn.stable_id())
        {
            links.remove(&(peer, alpn));
        }
    }
}

/// The datagram handler serving `alpn` now, if its room has registered one.
fn handler_for(handlers: &HandlerTable, alpn: &'static [u8]) -> Option<Arc<dyn DatagramHandler>> {
    match handlers.read().ok()?.get(alpn) {
        Some(Handler::Datagram(handler)) => Some(handler.clone()),
        _ => None,
    }
}

/// Reads the datagrams `from` sends on `conn` until the connection ends,
/// handing each to the service of `alpn`. The first one makes `conn` the
/// link datagrams to `from` go out on, when there is none.
pub(crate) async fn receive_datagrams(
    conn: Connection,
    from: PeerId,
    alpn: &'static [u8],
    handlers: HandlerTable,
    links: Arc<DatagramLinks>,
) {
    let mut batch = vec![Bytes::new(); RECEIVE_BATCH];
    let mut handler: Option<Arc<dyn DatagramHandler>> = None;
    loop {
        let Ok(count) = conn.read_many_datagrams(&mut batch).await else {
            links.drop_link(from, alpn, &conn);
            links.reader_done(&conn);
            return;
        };
        if handler.is_none() {
            handler = handler_for(&handlers, alpn);
            if handler.is_some() {
                links.adopt(from, alpn, &conn);
            }
        }
        let Some(handler) = &handler else {
            continue;
        };
        handler.receive_many(from, &mut batch[..count]);
    }
}

impl Mesh {
    /// Hands the datagrams of protocol `P` to `service` from now on. The
    /// ALPN must be among those the mesh was bound with
    /// ([`crate::MeshConfig::protocols`]).
    pub fn serve_datagrams<P: DatagramProtocol>(&self, service: impl DatagramService<P>) {
        let handler = TypedDatagrams::<P, _> {
            service,
            _protocol: PhantomData,
        };
        self.set_handler(P::ALPN, Handler::Datagram(Arc::new(handler)));
    }

    /// Sends `datagram` to `peer` on the open connection of protocol `P`,
    /// without waiting for anything. [`MeshError::NotConnected`] when there
    /// is none: [`Mesh::send_datagram`] dials one.
    pub fn try_send_datagram<P: DatagramProtocol>(
        &self,
        peer: PeerId,
        datagram: Bytes,
    ) -> Result<(), MeshError> {
        let links = self.datagram_links();
        let conn = links
            .get(peer, P::ALPN)
            .ok_or(MeshError::NotConnected { peer })?;
        let size = datagram.len();
        match conn.send_datagram(datagram) {
            Ok(()) => Ok(()),
            Err(SendDatagramError::ConnectionLost(_)) => {
                links.drop_link(peer, P::ALPN, &conn);
                Err(MeshError::NotConnected { peer })
            }
            Err(err) => Err(datagram_error::<P>(peer, &conn, size, err)),
        }
    }

    /// Sends a burst of datagrams to `peer` on the open connection of
    /// protocol `P` at once (one lock of the connection, one wake of its
    /// driver, which can then pack them into one batch of UDP sends);
    /// returns how many were queued. All or none: a datagram over the
    /// limit refuses the whole burst with [`MeshError::DatagramTooLarge`].
    pub fn try_send_datagrams<P: DatagramProtocol>(
        &self,
        peer: PeerId,
        datagrams: &[Bytes],
    ) -> Result<usize, MeshError> {
        let links = self.datagram_links();
        let conn = links
            .get(peer, P::ALPN)
            .ok_or(MeshError::NotConnected { peer })?;
        match conn.send_many_datagrams(datagrams) {
            Ok(queued) => Ok(queued),
            Err(SendDatagramError::ConnectionLost(_)) => {
                links.drop_link(peer, P::ALPN, &conn);
                Err(MeshError::NotConnected { peer })
            }
            Err(err) => {
                let size = datagrams.iter().map(Bytes::len).max().unwrap_or(0);
                Err(datagram_error::<P>(peer, &conn, size, err))
            }
        }
    }

    /// Sends `datagram` to `peer`, dialing the connection of protocol `P`
    /// first when none is open (once, however many senders wait).
    pub async fn send_datagram<P: DatagramProtocol>(
        &self,
        peer: PeerId,
        datagram: Bytes,
    ) -> Result<(), MeshError> {
        match self.try_send_datagram::<P>(peer, datagram.clone()) {
            Err(MeshError::NotConnected { .. }) => {}
            sent => return sent,
        }
        let conn = self.connect_datagrams_on::<P>(peer).await?;
        let size = datagram.len();
        conn.send_datagram(datagram)
            .map_err(|err| datagram_error::<P>(peer, &conn, size, err))
    }

    /// Opens the connection of protocol `P` to `peer` ahead of the first
    /// datagram, and returns the largest datagram it takes now.
    pub async fn connect_datagrams<P: DatagramProtocol>(
        &self,
        peer: PeerId,
    ) -> Result<usize, MeshError> {
        let conn = self.connect_datagrams_on::<P>(peer).await?;
        conn.max_datagram_size()
            .ok_or_else(|| MeshError::NoDatagrams {
                peer,
                protocol: protocol_name(P::ALPN),
            })
    }

    /// The largest datagram of protocol `P` the connection to `peer` takes
    /// now: its path MTU less QUIC's overhead, the smallest over the paths
    /// the connection holds (a relay path included). `None` without an
    /// open connection.
    pub fn max_datagram_size<P: DatagramProtocol>(&self, peer: &PeerId) -> Option<usize> {
        self.datagram_links()
            .get(*peer, P::ALPN)
            .filter(|conn| conn.close_reason().is_none())
            .and_then(|conn| conn.max_datagram_size())
    }

    /// The link to `peer`, dialed (pooled, single-flight) if needed, with a
    /// reader on it.
    async fn connect_datagrams_on<P: DatagramProtocol>(
        &self,
        peer: PeerId,
    ) -> Result<Connection, MeshError> {
        let links = self.datagram_links();
        if let Some(conn) = links
            .get(peer, P::ALPN)
            .filter(|c| c.close_reason().is_none())
        {
            return Ok(conn);
        }
        let conn = self.connection(peer, P::ALPN).await?;
        links.adopt(peer, P::ALPN, &conn);
        // Whether or not it is the link, the peer may adopt it as its own
        // link back to us: what it sends on it must be read.
        if links.needs_reader(&conn) {
            let reader = receive_datagrams(
                conn.clone(),
                peer,
                P::ALPN,
                self.handler_table(),
                links.clone(),
            );
            self.spawn(reader);
        }
        Ok(conn)
    }
}

/// The typed error for a datagram the connection would not take.
fn datagram_error<P: DatagramProtocol>(
    peer: PeerId,
    conn: &Connection,
    size: usize,
    err: SendDatagramError,
) -> MeshError {
    match err {
        SendDatagramError::TooLarge => MeshError::DatagramTooLarge {
            peer,
            size,
            max: conn.max_datagram_size().unwrap_or(0),
        },
        SendDatagramError::ConnectionLost(err) => MeshError::Unreachable {
            peer,
            reason: err.to_string(),
        },
        SendDatagramError::UnsupportedByPeer | SendDatagramError::Disabled => {
            MeshError::NoDatagrams {
                peer,
                protocol: protocol_name(P::ALPN),
            }
        }
    }
}
