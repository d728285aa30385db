//! The `[cluster]` section: membership, Raft timing and compaction, write timeout.

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::peers::{NodeId, Peers, default_cluster_port};

/// The shortest cluster secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// Default Raft heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Default lower bound of the election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 500;
/// Default upper bound of the election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 1000;
/// Default log entries between snapshots.
pub const DEFAULT_SNAPSHOT_LOGS: u64 = 10_000;
/// Default log entries kept behind a snapshot.
pub const DEFAULT_SNAPSHOT_KEEP_LOGS: u64 = 1_000;
/// Default time a write waits to commit before answering UNCERTAIN.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;
/// Default largest difference allowed between two members' clocks.
pub const DEFAULT_MAX_CLOCK_OFFSET_MS: u64 = 250;
/// Default drift between members' clock rates the leader lease allows for, in percent.
pub const DEFAULT_MAX_CLOCK_DRIFT_PERCENT: u64 = 10;
/// Default largest write one log entry may hold: 16 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 16 << 20;
/// Default time between state checks (the leader proposes one; every member compares).
pub const DEFAULT_STATE_CHECK_INTERVAL_MS: u64 = 300_000;
/// Default longest wait of the write batcher for writers it expects back, in microseconds.
pub const DEFAULT_BATCH_WAIT_US: u64 = 400;
/// Default time a snapshot transfer may take (Redis's `repl-timeout` is 60 s too).
pub const DEFAULT_SNAPSHOT_TIMEOUT_MS: u64 = 60_000;

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's Raft id (`--node-id`).
    pub node_id: NodeId,
    /// Initial members, `id@host:port[@cport],...` (`--peers`); empty: a one-member cluster.
    pub peers: Peers,
    /// Start without bootstrapping and wait to be added with CLUSTER ADDNODE (`--join`).
    pub join: bool,
    /// The IP or host this node gives clients for itself (`--announce-ip`); default: the bind
    /// address, or 127.0.0.1 when binding every interface.
    pub announce_ip: String,
    /// Raft port; 0 means the client port + 10000 (or a free port when the client port is 0).
    pub port: u16,
    /// The secret every member holds (`--cluster-secret`), at least 16 bytes: cluster
    /// connections prove it both ways and tag every frame with it. Required with `peers` or
    /// `join`; without it a node opens no cluster port.
    pub secret: String,
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// Election timeout lower bound.
    pub election_timeout_min_ms: u64,
    /// Election timeout upper bound.
    pub election_timeout_max_ms: u64,
    /// Log entries between snapshots (log compaction).
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot.
    pub snapshot_keep_logs: u64,
    /// How long a write waits to commit before answering UNCERTAIN.
    pub write_timeout_ms: u64,
    /// The largest difference between two members' clocks: a peer whose messages prove its
    /// clock further off is refused. Twice this must stay below `election_timeout_max_ms`
    /// (the leader lease), so that a new leader's clock has passed every time the old
    /// leader used.
    pub max_clock_offset_ms: u64,
    /// How often the leader proposes a state check: every member digests its whole state at
    /// that log position and compares with the leader's digest from the previous check; a
    /// member that differs stops serving. Each check is one pass over the state on every
    /// member, blocking writes meanwhile. 0 turns checks off.
    pub state_check_interval_ms: u64,
    /// The largest single write (a command as the log encodes it: a SET's key and value, a
    /// WASM.LOAD's module) one log entry may hold; larger writes are refused. An entry must
    /// reach a follower's disk within one heartbeat.
    pub max_entry_bytes: u64,
    /// Whether the leader answers linearizable reads under its lease (after a majority
    /// accepted a heartbeat less than `election_timeout_max_ms` × (1 − drift) ago), with no
    /// round of heartbeats per read; off, every read waits for a heartbeat round (etcd's
    /// ReadIndex).
    pub lease_reads: bool,
    /// The drift the lease allows for, in percent: how much faster a follower's clock may run
    /// than the leader's. The leader's lease is this much shorter than the span followers
    /// refuse votes for.
    pub max_clock_drift_percent: u64,
    /// How long one piece of a snapshot transfer may take, the last one including the
    /// follower's restore (every key and every module compiled); past it the leader starts the
    /// transfer again. Also how long a stalled transfer holds up that follower's replication.
    pub snapshot_timeout_ms: u64,
    /// The longest the leader waits, before proposing an entry, for the writes it expects
    /// back (as many as the last entry answered plus those queued meanwhile), in
    /// microseconds; never longer than the last entry took. 0: propose at once.
    pub batch_wait_us: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: 1,
            peers: Peers::none(),
            join: false,
            announce_ip: String::new(),
            port: 0,
            secret: String::new(),
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            snapshot_logs: DEFAULT_SNAPSHOT_LOGS,
            snapshot_keep_logs: DEFAULT_SNAPSHOT_KEEP_LOGS,
            write_timeout_ms: DEFAULT_WRITE_TIMEOUT_MS,
            max_clock_offset_ms: DEFAULT_MAX_CLOCK_OFFSET_MS,
            state_check_interval_ms: DEFAULT_STATE_CHECK_INTERVAL_MS,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            snapshot_timeout_ms: DEFAULT_SNAPSHOT_TIMEOUT_MS,
            batch_wait_us: DEFAULT_BATCH_WAIT_US,
            lease_reads: true,
            max_clock_drift_percent: DEFAULT_MAX_CLOCK_DRIFT_PERCENT,
        }
    }
}

impl ClusterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("cluster.node_id", "must be at least 1".into()));
        }
        if !self.peers.is_empty() && self.peers.get(self.node_id).is_none() {
            return Err(invalid(
                "cluster.peers",
                format!("does not list this node's id {}", self.node_id),
            ));
        }
        if !self.secret.is_empty() && self.secret.len() < MIN_SECRET_LEN {
            return Err(invalid(
                "cluster.secret",
                format!("must be at least {MIN_SECRET_LEN} bytes"),
            ));
        }
        if self.secret.is_empty() && (!self.peers.is_empty() || self.join) {
            return Err(invalid(
                "cluster.secret",
                "a node with peers or --join needs the cluster secret (--cluster-secret)".into(),
            ));
        }
        if self.heartbeat_ms == 0 {
            return Err(invalid("cluster.heartbeat_ms", "must be at least 1".into()));
        }
        if self.election_timeout_min_ms <= self.heartbeat_ms {
            return Err(invalid(
                "cluster.election_timeout_min_ms",
                "must be greater than heartbeat_ms".into(),
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(invalid(
                "cluster.election_timeout_max_ms",
                "must be greater than election_timeout_min_ms".into(),
            ));
        }
        if self.snapshot_logs == 0 {
            return Err(invalid(
                "cluster.snapshot_logs",
                "must be at least 1".into(),
            ));
        }
        if self.snapshot_timeout_ms < self.heartbeat_ms {
            return Err(invalid(
                "cluster.snapshot_timeout_ms",
                "must be at least heartbeat_ms".into(),
            ));
        }
        if self.write_timeout_ms == 0 {
            return Err(invalid(
                "cluster.write_timeout_ms",
                "must be at least 1".into(),
            ));
        }
        if !(1024..=1 << 30).contains(&self.max_entry_bytes) {
            return Err(invalid(
                "cluster.max_entry_bytes",
                "must be between 1024 and 1073741824".into(),
            ));
        }
        if self.batch_wait_us > 100_000 {
            return Err(invalid(
                "cluster.batch_wait_us",
                "must be at most 100000 (100 ms)".into(),
            ));
        }
        if !(1..=90).contains(&self.max_clock_drift_percent) {
            return Err(invalid(
                "cluster.max_clock_drift_percent",
                "must be between 1 and 90".into(),
            ));
        }
        if self.max_clock_offset_ms == 0
            || self.max_clock_offset_ms.saturating_mul(2) >= self.election_timeout_max_ms
        {
            return Err(invalid(
                "cluster.max_clock_offset_ms",
                format!(
                    "must be at least 1 and less than half of election_timeout_max_ms ({})",
                    self.election_timeout_max_ms
                ),
            ));
        }
        Ok(())
    }

    /// Whether this node opens a cluster port: only with a secret to guard it. A single node
    /// without one needs none.
    pub fn has_bus(&self) -> bool {
        !self.secret.is_empty()
    }

    /// The cluster port must fit when it defaults to the client port + 10000.
    pub(super) fn validate_port(&self, client_port: u16) -> Result<(), ConfigError> {
        if self.has_bus()
            && self.port == 0
            && client_port != 0
            && default_cluster_port(client_port).is_none()
        {
            return Err(invalid(
                "cluster.port",
                "the client port leaves no room for the default cluster port (+10000); set --cluster-port".into(),
            ));
        }
        Ok(())
    }
}
