//! Replication: the Raft log (openraft 0.9), its durable storage, snapshots, and the network
//! between nodes.
//!
//! This is the lowest layer. It knows nothing of keyspaces, WebAssembly or replies: a log
//! entry carries an opaque [`Payload`], applying it is the job of a [`Machine`] (which the
//! state machine above implements), and what applying answers is the machine's own
//! [`Machine::Response`], passed through. What this layer guarantees is the Raft part: an
//! entry acknowledged to a client is on the disks of a majority (each append is fsynced before
//! it counts, many appends share one fsync), and every member applies the same entries in the
//! same order.
//!
//! Files: `log.rs` (the log store: an in-memory mirror of the log and the group-commit
//! writer), `disk.rs` (the [`Disk`] trait, the snapshot file, [`open_log`], and the redb
//! store older versions kept the log in, moved out at start), `wal/` ([`WalDisk`]: the log as
//! append-only segment files, one write and one `fdatasync` per batch), `state.rs`
//! ([`Applier`], the state machine
//! adapter: applied position, membership, snapshots),
//! `network/` (Raft RPCs over framed TCP, client and server), `conn.rs` (a request and
//! its answer on a connection; authenticated connections kept between clients, so a read's
//! leadership check does not dial), `auth.rs` (the cluster bus
//! handshake and frame tags under the cluster secret), `clocks.rs` (peers whose clocks differ
//! from ours by more than the cluster's bound are refused; no vote for one lease after start),
//! `runtime.rs` (openraft's async
//! runtime with a seedable RNG).

mod auth;
mod clocks;
mod conn;
mod disk;
mod durable;
mod lease;
mod local_time;
mod log;
mod network;
mod runtime;
mod serve;
mod state;
mod wal;

#[cfg(test)]
mod conformance;

use std::fmt;
use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use auth::{AuthError, BusAuth, Entropy, os_entropy};
pub use clocks::{PeerClocks, Skew};
pub use disk::{Disk, DiskOp, Recovered, RedbDisk, open_log};
pub use durable::Durable;
pub use lease::Lease;
pub use local_time::{ClockRate, LocalInstant, sleep_local, use_clock_rate};
pub use log::{DiskStats, LogStore, Writer};
pub use network::{Bus, MAX_CONNECTIONS, Network};
pub use runtime::{FerriteRuntime, next_random, seed_rng};
pub use serve::serve;
pub use state::Applier;
pub use wal::WalDisk;

use crate::net::Dialer;
use crate::peers::{Member, NodeId};

/// The Raft group every node of a Ferrite cluster belongs to today (one shard). Every RPC
/// carries its group so several groups per node can come later.
pub const DEFAULT_GROUP: u64 = 0;

/// A log entry's application payload: bytes only the [`Machine`] interprets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(pub Bytes);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

/// What applying an entry hands back to the client that proposed it: the [`Machine`]'s own
/// type, passed through untouched (openraft wants it serializable; it never leaves the node).
/// Blank and membership entries answer with its `Default`.
pub trait Response: Default + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T> Response for T where T: Default + Serialize + DeserializeOwned + Send + Sync + 'static {}

/// Ferrite's Raft types, for a machine answering with `R`: opaque payloads, members with
/// addresses, tokio with a seedable RNG.
pub struct TypeConfig<R>(PhantomData<fn() -> R>);

impl<R> Clone for TypeConfig<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for TypeConfig<R> {}

impl<R> Default for TypeConfig<R> {
    fn default() -> Self {
        TypeConfig(PhantomData)
    }
}

impl<R> fmt::Debug for TypeConfig<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypeConfig")
    }
}

impl<R> PartialEq for TypeConfig<R> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<R> Eq for TypeConfig<R> {}

impl<R> PartialOrd for TypeConfig<R> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<R> Ord for TypeConfig<R> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<R: Response> openraft::RaftTypeConfig for TypeConfig<R> {
    type D = Payload;
    type R = R;
    type NodeId = NodeId;
    type Node = Member;
    type Entry = openraft::Entry<Self>;
    type SnapshotData = Cursor<Vec<u8>>;
    type AsyncRuntime = FerriteRuntime;
    type Responder = openraft::impls::OneshotResponder<Self>;
}

/// The Raft handle of a node whose machine answers with `R`.
pub type Raft<R> = openraft::Raft<TypeConfig<R>>;

/// The replicated state the log drives. Applying must be deterministic: the response and the
/// resulting state depend only on the state and the payload (and on nothing else: no clock, no
/// randomness, no hash-map order), so every member that applies the same entries ends up the
/// same.
pub trait Machine: Send + Sync + 'static {
    /// What applying an entry answers its client with.
    type Response: Response;
    /// Why a snapshot could not be restored.
    type RestoreError: std::error::Error + Send + Sync + 'static;
    /// Applies the payload of the entry at `index` and returns the response for its client,
    /// or refuses an entry it cannot apply at all (which stops this node's Raft: a member
    /// never skips an entry).
    fn apply(&self, index: u64, payload: &[u8]) -> Result<Self::Response, Unapplied>;
    /// Appends the whole state, serialized, to `out` (a snapshot being built).
    fn snapshot_into(&self, out: &mut Vec<u8>);
    /// The whole state, serialized, for a snapshot.
    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.snapshot_into(&mut out);
        out
    }
    /// Replaces the whole state with one produced by [`Machine::snapshot`].
    fn restore(&self, bytes: &[u8]) -> Result<(), Self::RestoreError>;
}

/// A committed entry the machine cannot apply (it cannot read it): this member stops rather
/// than go on without it.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct Unapplied(pub String);

/// Timing and compaction settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Election timeouts are drawn from `[election_min, election_max)`.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// Build a snapshot (and compact the log) after this many entries since the last one.
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging follower catches up
    /// from the log rather than by snapshot.
    pub keep_logs: u64,
    /// How long one snapshot RPC may take, the last one including the follower's restore.
    pub snapshot_timeout: Duration,
    /// Whether a leader answers linearizable reads under its lease ([`Lease`]) rather than
    /// with a round of heartbeats each.
    pub lease_reads: bool,
    /// How much faster than the leader's a follower's clock may run, in percent; the lease is
    /// that much shorter than the span followers refuse votes for.
    pub clock_drift_percent: u64,
}

impl Settings {
    fn raft_config(&self) -> Result<openraft::Config, ReplicationError> {
        openraft::Config {
            cluster_name: "ferrite".to_owned(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_min.as_millis() as u64,
            election_timeout_max: self.election_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs.max(1)),
            max_in_snapshot_log_to_keep: self.keep_logs,
            // Snapshots go in one piece per RPC up to this size.
            snapshot_max_chunk_size: 8 << 20,
            // openraft's default (200 ms) is shorter than restoring a large keyspace and
            // compiling its modules: the leader then started the transfer over, for good.
            install_snapshot_timeout: self.snapshot_timeout.as_millis() as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ReplicationError::Config(Box::new(e)))
    }
}

/// Failures to start replication.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// Invalid timing settings.
    #[error("cluster settings: {0}")]
    Config(#[source] Box<openraft::ConfigError>),
    /// The disk could not be read back.
    #[error("raft storage: {0}")]
    Disk(#[source] std::io::Error),
    /// The disk holds something this version cannot decode.
    #[error("raft storage: {0}")]
    Corrupt(#[from] CodecError),
    /// The latest snapshot could not be restored into the machine.
    #[error("raft storage: restoring the snapshot: {0}")]
    Restore(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(#[source] Box<openraft::error::Fatal<NodeId>>),
}

/// A running Raft node.
pub struct Started<R: Response> {
    /// The Raft handle.
    pub raft: Raft<R>,
    /// Group-commit figures.
    pub stats: Arc<DiskStats>,
    /// How far the log is on disk: the bus answers AppendEntries only for entries on it.
    pub durable: Durable,
    /// The leader's lease over its followers' votes: reads under it need no heartbeat round,
    /// and the bus refuses votes while it holds.
    pub lease: Arc<Lease>,
    /// Resolves once the storage writer has stopped and let go of the disk (after the Raft
    /// node has shut down).
    pub writer: tokio::task::JoinHandle<()>,
}

/// Starts the Raft node `id` over `disk`, applying to `machine`, reaching peers through
/// `dialer` on `bus`. Recovers the vote, log and latest snapshot from the disk first;
/// committed entries after the snapshot are re-applied by openraft.
pub async fn start<M: Machine, D: Disk, N: Dialer>(
    id: NodeId,
    settings: Settings,
    disk: Arc<D>,
    machine: Arc<M>,
    dialer: Arc<N>,
    bus: Bus,
) -> Result<Started<M::Response>, ReplicationError> {
    let config = Arc::new(settings.raft_config()?);
    let recovered = disk.recover().map_err(ReplicationError::Disk)?;
    let (writer, stats, writer_task) = Writer::start(disk.clone());
    let log = LogStore::recover(&recovered, writer.clone())?;
    let sm = Applier::recover(&recovered, machine, &writer, disk).await?;
    let durable = writer.durable();
    let lease = Arc::new(Lease::new(
        id,
        settings.election_max,
        settings.clock_drift_percent as f64 / 100.0,
        settings.lease_reads,
    ));
    let network = Network::new(dialer, bus, DEFAULT_GROUP, durable.clone(), lease.clone());
    let raft = Raft::new(id, config, network, log, sm)
        .await
        .map_err(|e| ReplicationError::Raft(Box::new(e)))?;
    Ok(Started {
        raft,
        stats,
        durable,
        lease,
        writer: writer_task,
    })
}

/// Bytes that do not decode as what they should hold.
#[derive(Debug, Error)]
#[error("undecodable: {0}")]
pub struct CodecError(#[from] bincode::error::DecodeError);

/// Encodes a value for the disk or the wire (bincode 2, standard configuration). One codec for
/// the whole layer, so it can be swapped in one place.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Room for a small command up front: bincode's own writer starts empty and grows one
    // reallocation at a time, and every write is encoded on its way to the log.
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out);
    out
}

/// Encodes a value into `sink` as [`encode`] would, without holding the bytes (a digest of a
/// large state, for example).
pub fn encode_into<T: Serialize, W: std::io::Write>(value: &T, sink: &mut W) {
    bincode::serde::encode_into_std_write(value, sink, bincode::config::standard())
        .expect("bincode encodes every serde value of ours into an infallible sink");
}

/// Decodes what [`encode`] produced.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(bincode::serde::decode_from_slice(bytes, bincode::config::standard())?.0)
}
