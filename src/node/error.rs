//! The node's refusals and failures, each with the Redis error prefix clients act on
//! (`MOVED`, `CLUSTERDOWN`, `TRYAGAIN`, `UNCERTAIN`, `ERR`), and the failures to start one.

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use thiserror::Error;

use crate::peers::{Member, NodeId};
use crate::replication::ReplicationError;
use crate::reply::RedisError;
use crate::wasm::WasmError;

/// A write openraft refused.
pub type WriteRefused = RaftError<NodeId, ClientWriteError<NodeId, Member>>;

/// Why a command could not run here, or why its outcome is unknown.
#[derive(Debug, Error, Clone)]
#[non_exhaustive]
pub enum NodeError {
    /// The leader is elsewhere.
    #[error("{slot} {addr}")]
    Moved {
        /// The slot of the command's first key (0 without keys).
        slot: u16,
        /// The leader's client address.
        addr: String,
    },
    /// This node was removed from the cluster (or never joined it).
    #[error("this node is not a member of the cluster")]
    NotMember,
    /// The leader this node knows of has no address in the membership it knows.
    #[error("the leader is not in the known membership")]
    LeaderUnknown,
    /// An election is running.
    #[error("no leader elected yet, try again")]
    NoLeader,
    /// The node is stopping and takes no more writes.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A linearizable read could not confirm leadership; retrying is safe.
    #[error("leadership not confirmed: {0}")]
    ReadNotConfirmed(#[source] Box<RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>>),
    /// A linearizable read could not confirm leadership in time; retrying is safe.
    #[error("leadership not confirmed in time")]
    ReadTimedOut,
    /// A write was proposed but its fate is unknown: it may or may not have been applied.
    #[error("the write may or may not have been applied: {0}")]
    Uncertain(#[source] Uncertain),
    /// A membership change was refused.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A write too large for one log entry.
    #[error(
        "the write is {size} bytes, more than one log entry may hold (cluster.max_entry_bytes = {limit})"
    )]
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many writes wait to be proposed: this one was refused and never happened.
    #[error(
        "too many writes waiting for the log ({queued} bytes queued, at most {limit}); retry later"
    )]
    Backlog {
        /// Bytes queued when it came.
        queued: usize,
        /// The queue's limit.
        limit: usize,
    },
    /// A state check found this replica's state different from the leader's, or it met a
    /// committed entry it cannot read: it serves nothing more (restart it to rebuild its state
    /// from the log, upgrade it, or replace it).
    #[error("this replica stopped serving: {0}")]
    Diverged(String),
    /// This node's Raft core stopped on an error it cannot go on from (its disk failed, or
    /// its data directory went away): it serves nothing more until it is restarted.
    #[error("raft stopped on this node, restart it: {0}")]
    RaftStopped(String),
}

/// Why a proposed write's outcome is unknown.
#[derive(Debug, Error, Clone)]
#[non_exhaustive]
pub enum Uncertain {
    /// The node stopped before the entry's fate was known.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The entry did not commit within the write timeout.
    #[error("not committed within {0} ms")]
    TimedOut(u128),
    /// Leadership moved while the entry was in flight.
    #[error("leadership changed while the write was in flight")]
    LeaderChanged,
    /// The applied entry did not answer one reply per write.
    #[error("the entry answered {answered} replies for {writes} writes")]
    Unanswered {
        /// Writes in the entry.
        writes: usize,
        /// Replies its apply produced.
        answered: usize,
    },
    /// openraft refused the entry for another reason.
    #[error(transparent)]
    Raft(Box<WriteRefused>),
}

/// Why `CLUSTER ADDNODE` or `CLUSTER REMOVENODE` was refused.
#[derive(Debug, Error, Clone)]
#[non_exhaustive]
pub enum MembershipError {
    /// Removing a node that is not a member.
    #[error("node {0} is not a member")]
    NotAMember(NodeId),
    /// Removing the only voter.
    #[error("cannot remove the last voter")]
    LastVoter,
    /// Adding a node to one that has no cluster port.
    #[error("this node has no cluster port: start it with --cluster-secret to add nodes")]
    NoClusterBus,
    /// A new node took no step towards the leader's log within the write timeout.
    #[error(
        "node {id} made no progress catching up within {within_ms} ms (is it reachable, and does it hold the cluster secret?); not added"
    )]
    NoProgress {
        /// The node.
        id: NodeId,
        /// How long it had.
        within_ms: u128,
    },
    /// openraft refused the change.
    #[error(transparent)]
    Raft(Box<WriteRefused>),
}

impl RedisError for NodeError {
    fn prefix(&self) -> &'static str {
        match self {
            NodeError::Moved { .. } => "MOVED",
            NodeError::NotMember
            | NodeError::LeaderUnknown
            | NodeError::NoLeader
            | NodeError::ShuttingDown
            | NodeError::Diverged(_)
            | NodeError::RaftStopped(_) => "CLUSTERDOWN",
            NodeError::ReadNotConfirmed(_) | NodeError::ReadTimedOut => "TRYAGAIN",
            NodeError::Uncertain(_) => "UNCERTAIN",
            NodeError::Membership(_) | NodeError::TooLarge { .. } | NodeError::Backlog { .. } => {
                "ERR"
            }
        }
    }
}

/// Failures to start a node.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The WASM engine would not start.
    #[error("wasm engine: {0}")]
    Wasm(#[from] WasmError),
    /// Raft storage or configuration.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The data directory.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// The Raft group could not be initialized.
    #[error("initializing the cluster: {0}")]
    Bootstrap(#[source] Box<RaftError<NodeId, InitializeError<NodeId, Member>>>),
}
