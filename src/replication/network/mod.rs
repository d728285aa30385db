//! Raft RPCs between nodes: length-prefixed bincode frames over one TCP connection per peer
//! stream, each request tagged with its Raft group, each call bounded by a timeout. Every
//! connection is authenticated both ways before its first RPC, and every frame after that
//! carries a tag (`auth.rs`); a peer that fails either is dropped.
//!
//! Every request and response also carries the sender's clock, checked by `clocks.rs`: a
//! request from a clock too far ahead is refused unprocessed, and a peer whose round trip
//! proves its clock too far off is sent nothing but pings until it is back within bounds.
//!
//! openraft drives each peer connection sequentially (one replication stream per follower, one
//! client per election round), so a connection carries one request at a time and needs no
//! request ids; the one exception, a commit position sent ahead of its answer, is answered in
//! order too (`commit.rs`). Any error drops the connection; the next call dials again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Entry, EntryPayload, LogId};
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;
use tracing::{debug, warn};

use super::auth::{BusAuth, TAG};
use super::clocks::{Before, PeerClocks};
use super::conn::{Conn, DialError, Idle, Permit, dial, receive, round_trip, send};
use super::durable::Durable;
use super::lease::Lease;
use super::local_time::LocalInstant;
use super::{Response as MachineResponse, TypeConfig, decode, encode};
use crate::net::Dialer;
use crate::peers::{Member, NodeId};

mod commit;
use commit::Owed;

/// Largest frame either side accepts from an authenticated peer: room for a batch of large
/// entries or a snapshot chunk.
pub(super) const MAX_FRAME: usize = 1 << 30;

/// Most bytes of entry payloads one AppendEntries carries (unless a single entry is larger:
/// it travels alone). openraft gives an AppendEntries one heartbeat interval to be sent,
/// written and fsynced on the follower, so a follower catching up on hundreds of large
/// entries would otherwise time out on every try and never catch up.
pub const MAX_APPEND_BYTES: usize = 2 << 20;

/// Most cluster connections a node holds at once; more are closed on arrival. A cluster of
/// `n` nodes needs about two per peer (replication and elections).
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connecting peer has to prove itself.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(super) struct Request<R: MachineResponse> {
    pub(super) group: u64,
    /// The sender's cluster id (0: it has applied none yet).
    pub(super) cluster: u64,
    /// The sender's clock when it sent this.
    pub(super) sent_ms: u64,
    pub(super) rpc: Rpc<R>,
}

/// A response with the responder's clock when it answered.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Answer {
    pub(super) sent_ms: u64,
    pub(super) response: Response,
}

/// What a node brings to the cluster bus: the proof that it belongs, and its clock.
#[derive(Debug, Clone)]
pub struct Bus {
    /// Authentication of every connection and frame.
    pub auth: BusAuth,
    /// This node's clock and what it knows of its peers' clocks.
    pub clocks: Arc<PeerClocks>,
    /// The id of the cluster this node belongs to, as its state machine has applied it (0:
    /// none yet).
    pub cluster: Arc<AtomicU64>,
    /// Connections this node has dialled to peers, since start.
    pub dials: Arc<AtomicU64>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(super) enum Rpc<R: MachineResponse> {
    Append(AppendEntriesRequest<TypeConfig<R>>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig<R>>),
    /// Only measures the clocks (of a peer refused for its clock).
    Ping,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The receiver runs no such group.
    UnknownGroup(u64),
    Pong,
    /// Refused unprocessed: the sender's clock is ahead of the receiver's by more than the
    /// bound.
    ClockAhead,
    /// The receiver started less than a lease ago and grants no vote yet.
    NoVoteYet,
    /// The receiver's log holds nothing beyond a cluster's beginning (an empty disk) and it
    /// grants no vote to a candidate with history: it may have voted in this term before it
    /// lost its disk.
    NoStateNoVote,
    /// The receiver belongs to another cluster (this id).
    OtherCluster(u64),
    /// The receiver leads under a lease and grants no vote while it holds (added last: the
    /// variants before it keep their numbers on the wire).
    Leading,
}

pub(super) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// The connection factory openraft asks for a client per peer.
pub struct Network<D: Dialer, R> {
    dialer: Arc<D>,
    bus: Bus,
    group: u64,
    durable: Durable,
    lease: Arc<Lease>,
    idle: Arc<Idle<D::Stream>>,
    response: std::marker::PhantomData<fn() -> R>,
}

impl<D: Dialer, R> Network<D, R> {
    /// RPCs for `group`, dialled through `dialer`, on `bus`; the commit position sent never
    /// passes this node's last entry on disk (`durable`), and every AppendEntries a follower
    /// accepts extends `lease`.
    pub fn new(
        dialer: Arc<D>,
        bus: Bus,
        group: u64,
        durable: Durable,
        lease: Arc<Lease>,
    ) -> Network<D, R> {
        Network {
            dialer,
            bus,
            group,
            durable,
            lease,
            idle: Arc::new(Idle::default()),
            response: std::marker::PhantomData,
        }
    }
}

impl<D: Dialer, R: MachineResponse> RaftNetworkFactory<TypeConfig<R>> for Network<D, R> {
    type Network = Peer<D, R>;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        Peer {
            target,
            addr: node.cluster_addr(),
            dialer: self.dialer.clone(),
            bus: self.bus.clone(),
            group: self.group,
            durable: self.durable.clone(),
            lease: self.lease.clone(),
            conn: None,
            owed: None,
            commit_sent: None,
            matched: None,
            idle: self.idle.clone(),
            response: std::marker::PhantomData,
        }
    }
}

/// One peer's connection.
pub struct Peer<D: Dialer, R> {
    target: NodeId,
    addr: String,
    dialer: Arc<D>,
    bus: Bus,
    group: u64,
    durable: Durable,
    lease: Arc<Lease>,
    /// The connection (kept when this client is dropped if its last exchange completed).
    conn: Option<(Conn<D::Stream>, Permit)>,
    /// A commit position sent on `conn` whose answer is read before the next request's.
    owed: Option<Owed>,
    /// The highest commit position sent to the peer.
    commit_sent: Option<u64>,
    /// The last entry the peer answered it holds, with every one before it, on this stream
    /// (`None`: not known).
    matched: Option<LogId<NodeId>>,
    idle: Arc<Idle<D::Stream>>,
    response: std::marker::PhantomData<fn() -> R>,
}

impl<D: Dialer, R> Drop for Peer<D, R> {
    fn drop(&mut self) {
        // A connection with an answer still to come is no use to another client.
        if let Some((conn, _)) = self.conn.take()
            && self.owed.is_none()
        {
            self.idle
                .put(self.target, std::mem::take(&mut self.addr), conn);
        }
    }
}

/// Why a call failed, before it is mapped to openraft's error for the RPC at hand.
enum CallError {
    /// Could not connect: openraft backs off.
    Unreachable(std::io::Error),
    /// Connected, then failed or timed out.
    Network(std::io::Error),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, Member, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

fn unexpected() -> CallError {
    CallError::Network(std::io::Error::other("unexpected response type"))
}

/// A peer this node will not talk to (its clock is off): reported as unreachable, so that
/// openraft backs off rather than retrying at once.
fn refused(e: impl std::fmt::Display) -> CallError {
    CallError::Unreachable(std::io::Error::other(e.to_string()))
}

impl<D: Dialer, R: MachineResponse> Peer<D, R> {
    async fn call(&mut self, rpc: Rpc<R>, timeout: Duration) -> Result<Response, CallError> {
        let result = tokio::time::timeout(timeout, self.checked(rpc)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(CallError::Network(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("rpc to node {} timed out after {timeout:?}", self.target),
            ))),
        };
        if result.is_err() {
            // The stream may hold half a frame: start over on the next call.
            self.conn = None;
            self.owed = None;
            self.matched = None;
        }
        result
    }

    /// Sends `rpc` unless the peer's clock is known to be off, pinging first a refused peer
    /// that is due for a new measurement.
    async fn checked(&mut self, rpc: Rpc<R>) -> Result<Response, CallError> {
        match self.bus.clocks.before_send(self.target) {
            Before::Send => {}
            Before::Refuse(skew) => return Err(refused(skew)),
            Before::Probe => match self.exchange(Rpc::Ping).await? {
                Response::Pong => {}
                _ => return Err(unexpected()),
            },
        }
        match self.exchange(rpc).await? {
            Response::NoVoteYet => Err(CallError::Network(std::io::Error::other(format!(
                "node {} started less than a lease ago and grants no vote yet",
                self.target
            )))),
            Response::Leading => Err(CallError::Network(std::io::Error::other(format!(
                "node {} leads under a lease and grants no vote while it holds",
                self.target
            )))),
            Response::NoStateNoVote => Err(CallError::Network(std::io::Error::other(format!(
                "node {} has an empty log (a wiped disk?) and grants no vote until a leader has caught it up",
                self.target
            )))),
            Response::OtherCluster(theirs) => {
                let ours = self.bus.cluster.load(Ordering::Relaxed);
                warn!(
                    peer = self.target,
                    ours, theirs, "cluster bus: the peer belongs to another cluster"
                );
                Err(refused(format!(
                    "node {} belongs to cluster {theirs:x}, this node to {ours:x}",
                    self.target
                )))
            }
            other => Ok(other),
        }
    }

    /// Dials the peer and passes the bus handshake.
    async fn connect(&self) -> Result<Conn<D::Stream>, CallError> {
        self.bus.dials.fetch_add(1, Ordering::Relaxed);
        let (auth, target) = (&self.bus.auth, self.target);
        match dial(&*self.dialer, &self.addr, auth, target, self.group, codec()).await {
            Ok(mut conn) => {
                conn.0.codec_mut().set_max_frame_length(MAX_FRAME + TAG);
                Ok(conn)
            }
            Err(DialError::Unreachable(e)) => Err(CallError::Unreachable(e)),
            Err(DialError::Handshake(e)) => Err(CallError::Network(std::io::Error::other(
                format!("cluster bus handshake with node {target}: {e}"),
            ))),
        }
    }

    /// One request and its response, with both clocks checked.
    async fn exchange(&mut self, rpc: Rpc<R>) -> Result<Response, CallError> {
        let clocks = &self.bus.clocks;
        let sent_ms = clocks.now_ms();
        let request = encode(&Request {
            group: self.group,
            cluster: self.bus.cluster.load(Ordering::Relaxed),
            sent_ms,
            rpc,
        });
        let frame = match self.conn.take() {
            // Its own connection (a replication stream keeps one): a failure ends the call.
            // The answer to a commit position sent before comes first.
            Some((mut conn, permit)) => {
                let owed = self.owed.take();
                send(&mut conn, request).await.map_err(CallError::Network)?;
                if let Some(owed) = owed {
                    let frame = receive(&mut conn).await.map_err(CallError::Network)?;
                    self.settle(owed, &frame)?;
                }
                let frame = receive(&mut conn).await.map_err(CallError::Network)?;
                self.conn = Some((conn, permit));
                frame
            }
            None => {
                let permit = self.idle.permit(self.target).await;
                // An idle connection the peer has closed since (it restarted): one retry.
                let reused = match self.idle.take(self.target, &self.addr) {
                    Some(mut conn) => round_trip(&mut conn, request.clone())
                        .await
                        .ok()
                        .map(|frame| (conn, frame)),
                    None => None,
                };
                let (conn, frame) = match reused {
                    Some(done) => done,
                    None => {
                        let mut conn = self.connect().await?;
                        let frame = round_trip(&mut conn, request)
                            .await
                            .map_err(CallError::Network)?;
                        (conn, frame)
                    }
                };
                self.conn = Some((conn, permit));
                frame
            }
        };
        let answer =
            decode::<Answer>(&frame).map_err(|e| CallError::Network(std::io::Error::other(e)))?;
        let received_ms = clocks.now_ms();
        if let Response::ClockAhead = answer.response {
            clocks.refused_by(self.target, answer.sent_ms, sent_ms);
            return Err(refused(format!(
                "node {} refused our request: our clock is ahead of its own by more than {} ms",
                self.target,
                clocks.bound()
            )));
        }
        clocks
            .check_round_trip(self.target, sent_ms, answer.sent_ms, received_ms)
            .map_err(refused)?;
        match answer.response {
            Response::UnknownGroup(g) => Err(CallError::Network(std::io::Error::other(format!(
                "node {} runs no raft group {g}",
                self.target
            )))),
            other => Ok(other),
        }
    }
}

/// How many of `entries`, from the first, fit in [`MAX_APPEND_BYTES`] (at least one); `None`
/// when they all do.
fn entries_that_fit<R: MachineResponse>(entries: &[Entry<TypeConfig<R>>]) -> Option<u64> {
    let mut bytes = 0;
    for (i, entry) in entries.iter().enumerate() {
        bytes += match &entry.payload {
            EntryPayload::Normal(payload) => payload.0.len(),
            // A membership or blank entry: small.
            _ => 64,
        };
        if bytes > MAX_APPEND_BYTES {
            return Some(i.max(1) as u64);
        }
    }
    None
}

impl<D: Dialer, R: MachineResponse> RaftNetwork<TypeConfig<R>> for Peer<D, R> {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig<R>>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        // Followers apply only what is on this leader's disk too (`durable.rs`).
        rpc.leader_commit = self.durable.clamp(rpc.leader_commit);
        // Too many bytes for one request: openraft retries at once with this many entries.
        if let Some(fit) = entries_that_fit(&rpc.entries)
            && (fit as usize) < rpc.entries.len()
        {
            debug!(
                peer = self.target,
                entries = rpc.entries.len(),
                fit,
                "append entries split by size"
            );
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit),
            ));
        }
        let commit = rpc.leader_commit.map(|c| c.index);
        let end = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        // Only a heartbeat at the entries the follower already answered for is sent without
        // waiting: its answer could say nothing new (a probe after a conflict could).
        if rpc.entries.is_empty()
            && commit > self.commit_sent
            && rpc.prev_log_id.is_some()
            && rpc.prev_log_id == self.matched
        {
            match self.send_commit(&rpc, option.soft_ttl()).await {
                Ok(true) => {
                    self.commit_sent = commit;
                    return Ok(AppendEntriesResponse::Success);
                }
                Ok(false) => {}
                Err(e) => {
                    self.conn = None;
                    self.matched = None;
                    return Err(e.into_rpc());
                }
            }
        }
        let (leader, sent) = (rpc.vote.leader_id, LocalInstant::now());
        match self.call(Rpc::Append(rpc), option.soft_ttl()).await {
            Ok(Response::Append(Ok(r))) => {
                self.matched = match &r {
                    AppendEntriesResponse::Success => {
                        self.commit_sent = self.commit_sent.max(commit);
                        end
                    }
                    AppendEntriesResponse::PartialSuccess(upto) => *upto,
                    _ => None,
                };
                // Any answer but a higher vote means the follower took this node's
                // leadership as current when it handled the request: it refuses votes for a
                // while from then on.
                if !matches!(r, AppendEntriesResponse::HigherVote(_)) {
                    self.lease.acked(leader, self.target, sent);
                }
                Ok(r)
            }
            Ok(Response::Append(Err(e))) => {
                self.matched = None;
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => {
                self.matched = None;
                Err(unexpected().into_rpc())
            }
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig<R>>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(Rpc::Snapshot(rpc), option.soft_ttl()).await {
            Ok(Response::Snapshot(Ok(r))) => Ok(r),
            Ok(Response::Snapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected().into_rpc()),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self.call(Rpc::Vote(rpc), option.soft_ttl()).await {
            Ok(Response::Vote(Ok(r))) => Ok(r),
            Ok(Response::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected().into_rpc()),
            Err(e) => Err(e.into_rpc()),
        }
    }
}

#[cfg(test)]
mod tests;
