//! Client-side bus connections: one sealed request and its answer ([`round_trip`]), and the
//! authenticated connections no client is using, kept for the next client to the same peer.
//!
//! openraft asks the network for a new client for every leadership check: every linearizable
//! read, every vote. Dialling and passing the bus handshake for each would cost more than the
//! RPC itself, and leave a socket in TIME_WAIT per read. A client takes a connection from
//! here before it dials, and gives its connection back when it is dropped, if its last
//! exchange completed.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::auth::{AuthError, BusAuth, Session};
use crate::net::Dialer;
use crate::peers::NodeId;

/// Connecting gives up after this long even if openraft's budget is longer.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most idle connections kept per peer; more are closed.
const IDLE_PER_PEER: usize = 8;

/// Most connections one node holds to one peer at once: clients beyond it wait for one to be
/// given back. Two peers' worth stays within a node's cap on incoming connections
/// (`MAX_CONNECTIONS`), so a burst of reads waits here instead of being reset there.
const OPEN_PER_PEER: usize = 16;

/// A place among this node's connections to one peer.
pub(super) type Permit = OwnedSemaphorePermit;

/// An authenticated connection to a peer.
pub(super) type Conn<S> = (Framed<S, LengthDelimitedCodec>, Session);

/// Idle connections by peer, with the address they were dialled at. Ordered by peer: when a
/// node stops, its kept connections close in this order, and the fault simulation replays a
/// seed only if that order is the same on every run (a hash map's is not).
type ByPeer<S> = BTreeMap<NodeId, (String, Vec<Conn<S>>)>;

/// The idle connections of one node's clients, and a limit on the open ones per peer.
pub(super) struct Idle<S> {
    conns: parking_lot::Mutex<ByPeer<S>>,
    open: parking_lot::Mutex<BTreeMap<NodeId, Arc<Semaphore>>>,
}

impl<S> Default for Idle<S> {
    fn default() -> Self {
        Idle {
            conns: parking_lot::Mutex::new(BTreeMap::new()),
            open: parking_lot::Mutex::new(BTreeMap::new()),
        }
    }
}

impl<S> Idle<S> {
    /// Waits until this node may hold one more connection to `target`; the connection is
    /// counted until the permit is dropped.
    pub(super) async fn permit(&self, target: NodeId) -> OwnedSemaphorePermit {
        let open = self
            .open
            .lock()
            .entry(target)
            .or_insert_with(|| Arc::new(Semaphore::new(OPEN_PER_PEER)))
            .clone();
        open.acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// An idle connection to `target` at `addr`, if one is kept.
    pub(super) fn take(&self, target: NodeId, addr: &str) -> Option<Conn<S>> {
        match self.conns.lock().get_mut(&target) {
            Some((at, kept)) if at == addr => kept.pop(),
            _ => None,
        }
    }

    /// Keeps `conn` to `target` at `addr` for the next client, unless enough are kept.
    pub(super) fn put(&self, target: NodeId, addr: String, conn: Conn<S>) {
        let mut conns = self.conns.lock();
        let (at, kept) = conns
            .entry(target)
            .or_insert_with(|| (addr.clone(), Vec::new()));
        if *at != addr {
            // The peer moved: what was kept for its old address is of no more use.
            *at = addr;
            kept.clear();
        }
        if kept.len() < IDLE_PER_PEER {
            kept.push(conn);
        }
    }
}

/// Sends one sealed request on `conn` and reads the sealed answer.
pub(super) async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    request: Vec<u8>,
) -> io::Result<bytes::BytesMut> {
    send(conn, request).await?;
    receive(conn).await
}

/// Sends one sealed request on `conn`; its answer is read later ([`receive`]). The peer
/// answers the requests of a connection one at a time, in order.
pub(super) async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    request: Vec<u8>,
) -> io::Result<()> {
    let (framed, session) = conn;
    framed.send(session.seal(request)).await
}

/// Reads the sealed answer to the oldest request on `conn` not yet answered.
pub(super) async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
) -> io::Result<bytes::BytesMut> {
    let (framed, session) = conn;
    let frame = framed.next().await.ok_or_else(|| {
        io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the connection")
    })??;
    session.open(frame).map_err(io::Error::other)
}

/// Why dialling a peer failed.
pub(super) enum DialError {
    /// No connection (openraft backs off).
    Unreachable(io::Error),
    /// Connected, but the bus handshake failed.
    Handshake(AuthError),
}

/// Dials `target` at `addr` and passes the bus handshake for `group`, framing with `codec`.
pub(super) async fn dial<D: Dialer>(
    dialer: &D,
    addr: &str,
    auth: &BusAuth,
    target: NodeId,
    group: u64,
    codec: LengthDelimitedCodec,
) -> Result<Conn<D::Stream>, DialError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, dialer.connect(addr))
        .await
        .map_err(|_| {
            DialError::Unreachable(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
        })?
        .map_err(DialError::Unreachable)?;
    let mut conn = Framed::new(stream, codec);
    let session = auth
        .dial(&mut conn, target, group)
        .await
        .map_err(DialError::Handshake)?;
    Ok((conn, session))
}
