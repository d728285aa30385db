//! Replication: the Raft log (openraft 0.9), its durable storage, snapshots, and the network
//! between nodes.
//!
//! This is the lowest layer. It knows nothing of keyspaces or WebAssembly: a log entry carries
//! an opaque [`Payload`] and applying it is the job of a [`Machine`], which the engine above
//! implements. What this layer guarantees is the Raft part: an entry acknowledged to a client
//! is on the disks of a majority (each append is fsynced before it counts, many appends share
//! one fsync), and every member applies the same entries in the same order.
//!
//! Files: `log.rs` (the log store: an in-memory mirror of the log and the group-commit writer),
//! `disk.rs` (the [`Disk`] trait and its redb implementation), `state.rs` (the state machine
//! adapter: applied position, membership, snapshots), `network.rs` (Raft RPCs over framed
//! TCP, client and server), `runtime.rs` (openraft's async runtime with a seedable RNG).

mod disk;
mod log;
mod network;
mod runtime;
mod state;

#[cfg(test)]
mod conformance;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use disk::{Disk, DiskOp, Recovered, RedbDisk};
pub use log::{DiskStats, LogStore, Writer};
pub use network::{Network, serve};
pub use runtime::{FerriteRuntime, seed_rng};
pub use state::StateMachine;

use crate::net::Dialer;
use crate::reply::Reply;

/// A Raft node id.
pub type NodeId = u64;

/// The Raft group every node of a Ferrite cluster belongs to today (one shard). Every RPC
/// carries its group so several groups per node can come later.
pub const DEFAULT_GROUP: u64 = 0;

/// What the cluster knows of a member: where clients reach it and where its Raft port is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Host or IP clients are given (MOVED, CLUSTER SLOTS).
    pub host: String,
    /// Client port.
    pub port: u16,
    /// Raft (cluster bus) port.
    pub cport: u16,
}

impl Member {
    /// Parses Redis's `host:port[@cport]`; the cluster port defaults to `port + 10000`.
    pub fn parse(text: &str) -> Option<Member> {
        let (addr, cport) = match text.split_once('@') {
            Some((addr, cport)) => (addr, Some(cport.parse().ok()?)),
            None => (text, None),
        };
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        if host.is_empty() || port == 0 {
            return None;
        }
        Some(Member {
            host: host.to_owned(),
            port,
            cport: cport.unwrap_or(port.checked_add(10000)?),
        })
    }

    /// `host:port`, the address clients use.
    pub fn client_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:cport`, the address Raft RPCs go to.
    pub fn cluster_addr(&self) -> String {
        format!("{}:{}", self.host, self.cport)
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}@{}", self.host, self.port, self.cport)
    }
}

/// Parses a peer list, `1@127.0.0.1:7001,2@127.0.0.1:7002[@17002],...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, Member>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| format!("'{item}' is not id@host:port"))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| format!("'{id}' in '{item}' is not a node id"))?;
        let member =
            Member::parse(addr).ok_or_else(|| format!("'{addr}' is not host:port[@cport]"))?;
        if peers.insert(id, member).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if peers.is_empty() {
        return Err("the peer list is empty".to_owned());
    }
    Ok(peers)
}

/// A log entry's application payload: bytes only the [`Machine`] interprets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(pub Bytes);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// Ferrite's Raft types: opaque payloads, replies as responses, members with addresses.
    pub TypeConfig:
        D = Payload,
        R = Reply,
        Node = Member,
        AsyncRuntime = FerriteRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// The replicated state the log drives. Applying must be deterministic: the reply and the
/// resulting state depend only on the state and the payload (and on nothing else: no clock, no
/// randomness, no hash-map order), so every member that applies the same entries ends up the
/// same.
pub trait Machine: Send + Sync + 'static {
    /// Applies the payload of the entry at `index` and returns the reply for its client.
    fn apply(&self, index: u64, payload: &[u8]) -> Reply;
    /// The whole state, serialized, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with one produced by [`Machine::snapshot`].
    fn restore(&self, bytes: &[u8]) -> Result<(), String>;
}

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
            ..Default::default()
        }
        .validate()
        .map_err(|e| ReplicationError::Config(e.to_string()))
    }
}

/// Failures to start replication.
#[derive(Debug, Error)]
pub enum ReplicationError {
    /// Invalid timing settings.
    #[error("cluster settings: {0}")]
    Config(String),
    /// The disk could not be read.
    #[error("raft storage: {0}")]
    Storage(String),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// A running Raft node.
pub struct Started {
    /// The Raft handle.
    pub raft: Raft,
    /// Group-commit figures.
    pub stats: Arc<DiskStats>,
    /// Resolves once the storage writer has stopped and let go of the disk (after the Raft
    /// node has shut down).
    pub writer: tokio::task::JoinHandle<()>,
}

/// Starts the Raft node `id` over `disk`, applying to `machine`, reaching peers through
/// `dialer`. Recovers the vote, log and latest snapshot from the disk first; committed entries
/// after the snapshot are re-applied by openraft.
pub async fn start<D: Disk, N: Dialer>(
    id: NodeId,
    settings: Settings,
    disk: Arc<D>,
    machine: Arc<dyn Machine>,
    dialer: Arc<N>,
) -> Result<Started, ReplicationError> {
    let config = Arc::new(settings.raft_config()?);
    let recovered = {
        let disk = disk.clone();
        disk.recover()
            .map_err(|e| ReplicationError::Storage(e.to_string()))?
    };
    let (writer, stats, writer_task) = Writer::start(disk);
    let log = LogStore::recover(&recovered, writer.clone())
        .map_err(|e| ReplicationError::Storage(e.to_string()))?;
    let sm = StateMachine::recover(&recovered, machine, writer)
        .map_err(|e| ReplicationError::Storage(e.to_string()))?;
    let network = Network::new(dialer, DEFAULT_GROUP);
    let raft = Raft::new(id, config, network, log, sm)
        .await
        .map_err(|e| ReplicationError::Raft(e.to_string()))?;
    Ok(Started {
        raft,
        stats,
        writer: writer_task,
    })
}

/// Encodes a value for the disk or the wire (bincode 2, standard configuration). One codec for
/// the whole layer, so it can be swapped in one place.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encodes every serde value of ours")
}

/// Decodes what [`encode`] produced.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_like_redis_addresses() {
        assert_eq!(
            Member::parse("127.0.0.1:7001"),
            Some(Member {
                host: "127.0.0.1".into(),
                port: 7001,
                cport: 17001
            })
        );
        assert_eq!(
            Member::parse("10.5.0.11:6379@16000").map(|m| m.to_string()),
            Some("10.5.0.11:6379@16000".to_owned())
        );
        assert_eq!(Member::parse("nohost"), None);
        assert_eq!(Member::parse(":80"), None);
        assert_eq!(Member::parse("h:99999"), None);
        assert_eq!(
            Member::parse("h:60000"),
            None,
            "no room for the default cluster port"
        );
    }

    #[test]
    fn peer_lists_parse_and_refuse_nonsense() {
        let peers = parse_peers("1@127.0.0.1:7001, 2@127.0.0.1:7002,3@h:7003@7103").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&3].cluster_addr(), "h:7103");
        assert!(parse_peers("1@a:1,1@b:2").unwrap_err().contains("twice"));
        assert!(parse_peers("x@a:1").is_err());
        assert!(parse_peers("1-a:1").is_err());
        assert!(parse_peers("").is_err());
    }
}
