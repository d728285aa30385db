//! The node: this member's place in the Raft group, and the surface the command layer talks to.
//!
//! The replicated state itself is the [`StateMachine`] below; the node is the leader-side
//! orchestration around it:
//! - `routing.rs`: where a command may run (`MOVED`, `CLUSTERDOWN`, read index) and the
//!   read path;
//! - `read_index.rs`: the read-index queue, one leadership confirmation shared by every read
//!   waiting;
//! - `proposals.rs`: the write path, writes proposed to the log in batches and answered with
//!   the reply their own apply produced (`UNCERTAIN` when the outcome is unknown);
//! - `functions.rs`: WASM.LOAD/UNLOAD checked before they enter the log, calls routed to the
//!   log (write calls) or run here (read-only calls);
//! - `membership.rs`: bootstrap, leadership, adding and removing members;
//! - `expiry.rs`: the active expiry cycle, a replicated write like any other;
//! - `checks.rs`: periodic state checks through the log, and stopping a replica that differs;
//! - `clock.rs`: the seeds operations carry (their time comes from [`crate::clock`]).
//!
//! The node never sees RESP. The command layer reaches everything below through this module:
//! the types it needs from the layers underneath are re-exported here.

mod checks;
mod clock;
mod error;
mod expiry;
mod functions;
mod linger;
mod membership;
mod proposals;
mod read_index;
mod routing;

#[cfg(test)]
mod gated;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_alone;

pub use crate::clock::{Clock, WallClock, system_clock, system_time_ms};
pub use error::{MembershipError, NodeError, StartError, Uncertain};
pub use functions::Queued;
pub use proposals::Ticket;
pub use read_index::ReadEpoch;
pub use routing::ReadMode;

/// The data commands' parser and the values it makes: the command layer parses a data command
/// with the context the node gives ([`Node::parse_ctx`]) and hands the operation back to
/// [`Node::execute`].
pub use crate::keyspace::{Op, ParseCtx, WatchToken, parse};
/// The module types the command layer describes and calls with.
pub use crate::wasm::{
    CallLimits, CallMode, LoadedModule, ModuleRef, ModuleStats, Permissions, Registry, WasmError,
};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::{RaftMetrics, ServerState};
use parking_lot::Mutex;

use crate::net::Dialer;
use crate::peers::{Member, NodeId};
use crate::replication::{self, DiskStats};
use crate::reply::Reply;
use crate::state_machine::StateMachine;

/// The Raft handle of a node: its machine answers each entry with one reply per command.
pub type Raft = replication::Raft<Vec<Reply>>;

/// How a node starts.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Raft node id.
    pub id: NodeId,
    /// This node's addresses as the cluster announces them.
    pub me: Member,
    /// Raft timing and compaction.
    pub raft: replication::Settings,
    /// How long a write waits for its entry to commit before answering "uncertain".
    pub write_timeout: Duration,
    /// The clock operations are stamped with, shared with the cluster bus (which compares it
    /// with the peers' clocks).
    pub clock: Arc<Clock>,
    /// The largest write (one encoded command) a log entry may hold.
    pub max_entry_bytes: usize,
    /// The most the write batcher waits for writers it expects back (`linger.rs`).
    pub batch_wait: Duration,
    /// Threads that take long read-only calls off the async worker (`blocking.rs`).
    pub helpers: Arc<crate::blocking::Helpers>,
}

/// A member of the cluster as INFO and CLUSTER commands show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Raft id.
    pub id: NodeId,
    /// Addresses.
    pub member: Member,
    /// Whether it votes (learners do not).
    pub voter: bool,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// This node's id.
    pub me: NodeId,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// Every member, by id.
    pub members: Vec<MemberView>,
    /// Last log index applied here.
    pub applied: u64,
    /// The largest clock difference allowed between members, in ms.
    pub clock_bound_ms: u64,
    /// Messages refused because a peer's clock was too far off, since start.
    pub clock_refusals: u64,
    /// Connections dialled to peers, since start.
    pub bus_dials: u64,
    /// Leadership confirmations run for linearizable reads, since start.
    pub read_rounds: u64,
    /// The log index of the latest state check applied here (0: none yet).
    pub state_check_index: u64,
    /// Why this replica stopped serving, when a state check found it different.
    pub diverged: Option<String>,
}

/// Keyspace figures for INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyspaceStats {
    /// Number of keys.
    pub keys: usize,
    /// Keys with a TTL.
    pub expires: usize,
    /// Keys removed by expiry since start.
    pub expired: u64,
}

/// The engine behind every connection, and its Raft node.
pub struct Node {
    state: Arc<StateMachine>,
    raft: Raft,
    metrics: tokio::sync::watch::Receiver<RaftMetrics<NodeId, Member>>,
    id: NodeId,
    me: Member,
    clock: Arc<Clock>,
    /// What the cluster bus knows of the peers' clocks.
    clocks: Arc<replication::PeerClocks>,
    /// Connections dialled to peers.
    dials: Arc<std::sync::atomic::AtomicU64>,
    expire_cursor: Mutex<u64>,
    disk: Arc<DiskStats>,
    /// The storage writer task, awaited on shutdown so the data directory is released.
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Writes waiting to be proposed (see `proposals.rs`).
    proposals: proposals::Queue,
    /// How far the log is on disk (the cluster port's answers wait for it).
    durable: replication::Durable,
    /// The leader's lease: linearizable reads under it answer at once.
    lease: Arc<replication::Lease>,
    /// Linearizable reads waiting for a leadership confirmation (see `read_index.rs`).
    reads: Arc<read_index::ReadIndex>,
    write_timeout: Duration,
    max_entry_bytes: usize,
    /// Threads that take long read-only calls off the async worker.
    helpers: Arc<crate::blocking::Helpers>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts the node on `state` and `disk`: recovers the log and the latest snapshot, joins
    /// the Raft group (reaching peers through `dialer` on `bus`), and starts
    /// the proposal batcher and the role watcher. Membership is set up separately ([`Node::bootstrap`]).
    pub async fn start<K: replication::Disk, D: Dialer>(
        options: NodeOptions,
        state: Arc<StateMachine>,
        disk: Arc<K>,
        dialer: Arc<D>,
        bus: replication::Bus,
    ) -> Result<Node, StartError> {
        let clocks = bus.clocks.clone();
        let dials = bus.dials.clone();
        let started =
            replication::start(options.id, options.raft, disk, state.clone(), dialer, bus).await?;
        let raft = started.raft;
        let metrics = raft.metrics();
        let clock = options.clock;
        clock.advance_to(state.applied_ms());
        let proposals = proposals::start(
            raft.clone(),
            options.write_timeout,
            options.max_entry_bytes,
            options.batch_wait,
        );
        let reads = routing::read_index(raft.clone(), options.write_timeout);
        tokio::spawn(membership::log_role_changes(
            options.id,
            raft.server_metrics(),
        ));
        tokio::spawn(checks::stop_on_divergence(
            raft.clone(),
            state.watch_divergence(),
        ));
        Ok(Node {
            state,
            raft,
            metrics,
            id: options.id,
            me: options.me,
            clock,
            clocks,
            dials,
            expire_cursor: Mutex::new(0),
            disk: started.stats,
            writer: Mutex::new(Some(started.writer)),
            durable: started.durable,
            lease: started.lease,
            proposals,
            reads,
            write_timeout: options.write_timeout,
            max_entry_bytes: options.max_entry_bytes,
            helpers: options.helpers,
        })
    }

    /// The Raft handle (the cluster port serves its RPCs).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// How far this node's log is on disk (the cluster port answers AppendEntries only for
    /// entries on it).
    pub fn durable(&self) -> &replication::Durable {
        &self.durable
    }

    /// The leader's lease over its followers' votes (the cluster port refuses votes while it
    /// holds).
    pub fn lease(&self) -> &Arc<replication::Lease> {
        &self.lease
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's addresses.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Loaded modules.
    pub fn modules(&self) -> &Registry {
        self.state.modules()
    }

    /// Group-commit figures: (disk writes, entries written).
    pub fn disk_stats(&self) -> (u64, u64) {
        (
            self.disk.writes.load(Ordering::Relaxed),
            self.disk.entries.load(Ordering::Relaxed),
        )
    }

    /// Writes a lone writer proposed itself, past the batcher (`proposals.rs`).
    pub fn writes_proposed_alone(&self) -> u64 {
        self.proposals.proposed_alone()
    }

    /// The cluster as this node sees it.
    pub fn topology(&self) -> Topology {
        let m = self.metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        Topology {
            me: self.id,
            leader: m.current_leader,
            term: m.current_term,
            members: membership
                .nodes()
                .map(|(id, member)| MemberView {
                    id: *id,
                    member: member.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
            applied: m.last_applied.map_or(0, |l| l.index),
            clock_bound_ms: self.clocks.bound(),
            clock_refusals: self.clocks.refusals(),
            bus_dials: self.dials.load(std::sync::atomic::Ordering::Relaxed),
            read_rounds: self.reads.rounds(),
            state_check_index: self.state.checkpoint().map_or(0, |(index, _)| index),
            diverged: self.state.divergence().map(|d| d.to_string()),
        }
    }

    /// The last log index applied here and a SHA-256 of the replicated state (keyspace,
    /// modules, applied clock): members that applied the same entries report the same pair.
    pub fn state_fingerprint(&self) -> (u64, String) {
        let applied = self.metrics.borrow().last_applied.map_or(0, |l| l.index);
        (applied, self.state.fingerprint())
    }

    /// Whether this node currently leads.
    pub fn is_leader(&self) -> bool {
        let m = self.metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// What a command parsed now needs: the time relative TTLs count from, and a fresh seed.
    pub fn parse_ctx(&self) -> ParseCtx {
        ParseCtx {
            now_ms: self.clock.now_ms(),
            seed: clock::next_seed(),
        }
    }

    /// The current time as the node stamps operations.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Stops taking writes, waits for the entry in flight, stops Raft and waits until
    /// everything queued for the disk is written and the storage is closed.
    pub async fn shutdown(&self) {
        // Bounded: without a quorum the entry would wait out the whole write timeout.
        self.proposals
            .stop(self.write_timeout.min(Duration::from_secs(2)))
            .await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(cause = %e, "raft shutdown");
        }
        let writer = self.writer.lock().take();
        if let Some(writer) = writer
            && tokio::time::timeout(Duration::from_secs(5), writer)
                .await
                .is_err()
        {
            tracing::warn!("the raft storage writer did not stop in time");
        }
    }
}
