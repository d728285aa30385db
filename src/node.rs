//! The node: the engine a connection talks to, and its place in the Raft group.
//!
//! [`Engine`] is the replicated state: the keyspace, the WASM module registry and the
//! applied clock. It is the [`Machine`] the Raft log drives: every write reaches it as a
//! [`Command`] in a log entry, on every member, in log order.
//!
//! [`Node`] wraps the engine with the Raft handle. Writes (`execute` of a write `Op`,
//! `wasm_load`, `wasm_unload`, write calls) are proposed to the log on the leader and answered
//! with the reply the leader's own apply produced; on a follower they are refused with `MOVED`
//! to the leader. Reads run against the local engine: on the leader after a read-index check
//! (linearizable), on a follower only when the client asked for stale reads (`READONLY`).
//! The node never sees RESP.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::keyspace::{Ctx, Keyspace, Op, ParseCtx, WatchToken};
use crate::net::Dialer;
use crate::replication::{
    self, DiskStats, Machine, Member, NodeId, Payload, Raft, RedbDisk, ReplicationError,
};
use crate::reply::{RedisError, Reply};
use crate::slot::key_slot;
use crate::wasm::{
    CallLimits, CallMode, EngineSettings, ModuleRef, Permissions, Registry, Runtime, WasmError,
};

/// Most expired keys removed by one purge operation.
const PURGE_BATCH: usize = 200;
/// Most purge operations per expiry tick, so a mass expiry cannot monopolise the write path.
const PURGE_ROUNDS_PER_TICK: usize = 16;

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds since the Unix epoch that never go backwards, so operations stamped one after
/// another carry non-decreasing times even if the wall clock steps back.
#[derive(Debug)]
pub struct Clock {
    last: AtomicU64,
    /// The wall clock: the system's, or simulated time in `simulation/`.
    source: fn() -> u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(system_time_ms)
    }
}

impl Clock {
    /// A clock reading `source`.
    pub fn new(source: fn() -> u64) -> Clock {
        Clock {
            last: AtomicU64::new(0),
            source,
        }
    }

    /// The current time in ms, at least the last one returned.
    pub fn now_ms(&self) -> u64 {
        let wall = (self.source)();
        // Read first: the shared line is written at most once per millisecond, not once per
        // command, so it is not bounced between cores.
        let previous = self.last.load(Ordering::Relaxed);
        if wall <= previous {
            return previous;
        }
        self.last.fetch_max(wall, Ordering::Relaxed).max(wall)
    }

    /// Never answer earlier than `ms` from now on.
    pub fn advance_to(&self, ms: u64) {
        self.last.fetch_max(ms, Ordering::Relaxed);
    }
}

/// A fresh seed for random commands, from a per-thread generator started at a random point (no
/// shared counter to contend on). Seeds need not be unique, only carried by the operation.
fn next_seed() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(0);
            hasher.finish()
        });
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        crate::keyspace::SplitMix::new(next).next_u64()
    })
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

/// WASM engine settings from the configuration defaults (tests).
pub fn default_engine_settings() -> EngineSettings {
    use crate::config;
    EngineSettings {
        max_memory_bytes: config::DEFAULT_MAX_MEMORY_BYTES,
        max_stack_bytes: config::DEFAULT_MAX_STACK_BYTES as usize,
        max_instances: config::DEFAULT_MAX_INSTANCES,
        max_module_size: config::DEFAULT_MAX_MODULE_SIZE as usize,
        min_instances: config::DEFAULT_MIN_INSTANCES,
        idle_timeout: Duration::from_secs(config::DEFAULT_IDLE_TIMEOUT_SECS),
    }
}

/// A replicated write; a Raft log entry carries a batch of them. Everything its execution depends on
/// is in it (times, seeds, limits, the module's hash), so every member computes the same
/// result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A keyspace write created at `now_ms` on the leader.
    Op {
        /// The leader's time.
        now_ms: u64,
        /// The operation.
        op: Op,
    },
    /// `WASM.LOAD`: the module's bytes.
    Load {
        /// Module name.
        name: String,
        /// The module (binary or WAT text).
        bytes: Bytes,
        /// Granted permissions.
        permissions: Permissions,
        /// Swap out a module of the same name.
        replace: bool,
        /// The leader's time (the module's `loaded_at`).
        now_ms: u64,
    },
    /// `WASM.UNLOAD`.
    Unload {
        /// Module name.
        name: String,
    },
    /// A write call, executed by every member at apply time.
    Call {
        /// Module name.
        module: String,
        /// SHA-256 of the module the leader resolved the name to.
        sha256: String,
        /// Exported function.
        entry: String,
        /// Declared keys.
        keys: Vec<Bytes>,
        /// Arguments.
        args: Vec<Bytes>,
        /// The leader's time and a seed.
        now_ms: u64,
        /// Seed for random commands issued through `call`.
        seed: u64,
        /// Fuel the call starts with (the leader's configuration at proposal time).
        max_fuel: u64,
        /// Memory cap.
        max_memory_bytes: u64,
    },
}

/// Refusals and failures of the write path, with the Redis error prefixes clients act on.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum NodeError {
    /// The leader is elsewhere.
    #[error("{slot} {addr}")]
    Moved {
        /// The slot of the command's first key (0 without keys).
        slot: u16,
        /// The leader's client address.
        addr: String,
    },
    /// No leader (an election is running) or this node is not a member.
    #[error("{0}")]
    ClusterDown(String),
    /// A read could not be confirmed in time; retrying is safe.
    #[error("{0}")]
    TryAgain(String),
    /// A write was proposed but its fate is unknown (timeout, leader change): it may or may
    /// not have been applied.
    #[error("the write may or may not have been applied: {0}")]
    Uncertain(String),
    /// A membership change was refused.
    #[error("{0}")]
    Membership(String),
}

impl RedisError for NodeError {
    fn prefix(&self) -> &'static str {
        match self {
            NodeError::Moved { .. } => "MOVED",
            NodeError::ClusterDown(_) => "CLUSTERDOWN",
            NodeError::TryAgain(_) => "TRYAGAIN",
            NodeError::Uncertain(_) => "UNCERTAIN",
            NodeError::Membership(_) => "ERR",
        }
    }
}

/// Failures to start a node.
#[derive(Debug, Error)]
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
}

/// How a read may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// On the leader, after confirming leadership (read index); elsewhere `MOVED`.
    Linearizable,
    /// Against local state, possibly stale (`READONLY` clients, `*_RO` calls).
    Local,
}

/// The replicated state: what the Raft log drives on every member.
pub struct Engine {
    /// std's futex-based lock: under a 2-core write-heavy load it measured clearly faster than
    /// parking_lot's, whose spinning ends in sched_yield storms.
    keyspace: RwLock<Keyspace>,
    wasm: Arc<Runtime>,
    modules: Registry,
    /// The latest time applied: entries never execute earlier than an entry before them, even
    /// when a new leader's clock lags the old one's.
    applied_ms: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// A module as snapshots carry it.
#[derive(Debug, Serialize, Deserialize)]
struct ModuleRecord {
    name: String,
    bytes: Bytes,
    permissions: Permissions,
    loaded_at_ms: u64,
}

/// The engine's state as a snapshot holds it. Serialized from borrowed parts, read back owned.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    keyspace: &'a Keyspace,
    modules: Vec<ModuleRecord>,
    applied_ms: u64,
}

#[derive(Deserialize)]
struct SnapshotIn {
    keyspace: Keyspace,
    modules: Vec<ModuleRecord>,
    applied_ms: u64,
}

impl Engine {
    /// An empty engine with the given WASM settings; `cache_dir` keeps compiled modules.
    pub fn new(settings: EngineSettings, cache_dir: Option<PathBuf>) -> Result<Engine, WasmError> {
        Ok(Engine {
            keyspace: RwLock::new(Keyspace::new()),
            wasm: Arc::new(Runtime::new(settings, cache_dir)?),
            modules: Registry::default(),
            applied_ms: AtomicU64::new(0),
        })
    }

    fn read_keyspace(&self) -> RwLockReadGuard<'_, Keyspace> {
        self.keyspace.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_keyspace(&self) -> RwLockWriteGuard<'_, Keyspace> {
        self.keyspace
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The time an entry stamped `now_ms` executes at: never before an earlier entry's.
    fn apply_time(&self, now_ms: u64) -> u64 {
        self.applied_ms
            .fetch_max(now_ms, Ordering::Relaxed)
            .max(now_ms)
    }

    /// Applies one replicated command.
    pub fn apply_command(&self, command: Command) -> Reply {
        match command {
            Command::Op { now_ms, op } => {
                let now_ms = self.apply_time(now_ms);
                op.apply(&mut self.write_keyspace(), Ctx { now_ms })
            }
            Command::Load {
                name,
                bytes,
                permissions,
                replace,
                now_ms,
            } => {
                let now_ms = self.apply_time(now_ms);
                if !replace && self.modules.get(&name).is_some() {
                    return Reply::error(WasmError::AlreadyLoaded(name));
                }
                match self.wasm.compile(&name, bytes, permissions, now_ms) {
                    Ok(module) => match self.modules.insert(module, replace) {
                        Ok(()) => Reply::ok(),
                        Err(e) => Reply::error(e),
                    },
                    Err(e) => Reply::error(e),
                }
            }
            Command::Unload { name } => {
                if self.modules.remove(&name) {
                    Reply::ok()
                } else {
                    Reply::error(WasmError::NoSuchModule(name))
                }
            }
            Command::Call {
                module,
                sha256,
                entry,
                keys,
                args,
                now_ms,
                seed,
                max_fuel,
                max_memory_bytes,
            } => {
                let now_ms = self.apply_time(now_ms);
                let Some(found) = self.modules.get(&module) else {
                    return Reply::error(WasmError::NoSuchModule(module));
                };
                if found.sha256 != sha256 {
                    // Replaced between proposal and apply: refuse on every member alike.
                    return Reply::error(WasmError::NoSuchModule(format!(
                        "{module} (replaced while the call was in flight)"
                    )));
                }
                let limits = CallLimits {
                    max_memory_bytes,
                    max_fuel,
                    max_duration: Duration::ZERO,
                };
                self.call(
                    &found,
                    &entry,
                    &keys,
                    &args,
                    ParseCtx { now_ms, seed },
                    CallMode { read_only: false },
                    limits,
                )
            }
        }
    }

    /// Runs a call against the keyspace: it is moved into the call's store under the
    /// exclusive lock and moved back afterwards, so a call is atomic.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        module: &ModuleRef,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        ctx: ParseCtx,
        mode: CallMode,
        limits: CallLimits,
    ) -> Reply {
        let outcome = {
            let mut guard = self.write_keyspace();
            let keyspace = std::mem::take(&mut *guard);
            let (keyspace, outcome) = self
                .wasm
                .call(module, entry, keys, args, keyspace, ctx, mode, limits);
            *guard = keyspace;
            outcome
        };
        self.modules.record(&outcome);
        match outcome {
            Ok(o) => o.reply,
            Err(e) => Reply::error(e),
        }
    }
}

impl Machine for Engine {
    fn apply(&self, index: u64, payload: &[u8]) -> Reply {
        match replication::decode::<Vec<Command>>(payload) {
            Ok(commands) => Reply::Array(
                commands
                    .into_iter()
                    .map(|c| self.apply_command(c))
                    .collect(),
            ),
            Err(e) => {
                // Only a node running an incompatible version could have written it.
                warn!(index, cause = %e, "undecodable log entry");
                Reply::Error(format!("ERR undecodable log entry {index}: {e}"))
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let modules = self
            .modules
            .list()
            .iter()
            .map(|m| ModuleRecord {
                name: m.name.clone(),
                bytes: m.source.clone(),
                permissions: m.permissions,
                loaded_at_ms: m.loaded_at_ms,
            })
            .collect();
        let keyspace = self.read_keyspace();
        replication::encode(&SnapshotOut {
            keyspace: &keyspace,
            modules,
            applied_ms: self.applied_ms.load(Ordering::Relaxed),
        })
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        let state: SnapshotIn = replication::decode(bytes)?;
        let mut compiled = Vec::new();
        for record in state.modules {
            let module = self
                .wasm
                .compile(
                    &record.name,
                    record.bytes,
                    record.permissions,
                    record.loaded_at_ms,
                )
                .map_err(|e| format!("module {}: {e}", record.name))?;
            compiled.push(module);
        }
        *self.write_keyspace() = state.keyspace;
        self.modules.clear();
        for module in compiled {
            self.modules
                .insert(module, true)
                .map_err(|e| e.to_string())?;
        }
        self.applied_ms.store(state.applied_ms, Ordering::Relaxed);
        Ok(())
    }
}

/// How a node starts.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Raft node id.
    pub id: NodeId,
    /// This node's addresses as the cluster announces them.
    pub me: Member,
    /// Durable state lives here (`raft/`, `wasm-cache/`).
    pub data_dir: PathBuf,
    /// WASM engine settings.
    pub engine: EngineSettings,
    /// Raft timing and compaction.
    pub raft: replication::Settings,
    /// How long a write waits for its entry to commit before answering "uncertain".
    pub write_timeout: Duration,
    /// The wall clock operations are stamped with (ms since the epoch).
    pub wall_clock: fn() -> u64,
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
}

/// The engine behind every connection, and its Raft node.
pub struct Node {
    engine: Arc<Engine>,
    raft: Raft,
    metrics: tokio::sync::watch::Receiver<RaftMetrics<NodeId, Member>>,
    id: NodeId,
    me: Member,
    clock: Clock,
    expire_cursor: Mutex<u64>,
    disk: Arc<DiskStats>,
    /// The storage writer task, awaited on shutdown so the data directory is released.
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Writes waiting to be proposed (see [`batcher`]).
    proposals: tokio::sync::mpsc::UnboundedSender<Pending>,
    write_timeout: Duration,
}

/// Whether node `me` leads as the only voter and has applied an entry of its current term:
/// then no other node can lead, everything committed before its leadership is applied
/// (entries apply in order, and its term's first entry came after them), and every write it
/// acknowledged was applied first. A read needs no quorum round.
fn sole_voter_caught_up(m: &RaftMetrics<NodeId, Member>, me: NodeId) -> bool {
    let mut voters = m.membership_config.membership().voter_ids();
    voters.next() == Some(me)
        && voters.next().is_none()
        && m.last_applied
            .is_some_and(|l| l.leader_id.term == m.current_term)
}

/// The reply to come for a queued write.
#[derive(Debug)]
pub struct Ticket {
    answer: tokio::sync::oneshot::Receiver<Result<Reply, NodeError>>,
    timeout: Duration,
}

impl Ticket {
    /// Waits for the write's reply: its applied result, or UNCERTAIN when the write timed
    /// out or its entry's fate is unknown.
    pub async fn wait(self) -> Reply {
        match tokio::time::timeout(self.timeout, self.answer).await {
            Ok(Ok(result)) => result.unwrap_or_else(Reply::error),
            Ok(Err(_)) => Reply::error(NodeError::Uncertain("the node is shutting down".into())),
            Err(_) => Reply::error(NodeError::Uncertain(format!(
                "not committed within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// A write waiting for its log entry.
struct Pending {
    command: Command,
    reply: tokio::sync::oneshot::Sender<Result<Reply, NodeError>>,
}

/// Most commands carried by one log entry.
const MAX_BATCH: usize = 1024;

/// Proposes queued writes: everything that queued while the previous entry was in flight
/// goes into the next entry, applied in queue order, each command with its own reply.
///
/// This is the group commit: openraft appends a leader's entries one flush after another, so
/// one command per entry would cost one fsync per write however many clients wait; batching
/// makes a busy leader pay one fsync (and one replication round) for a whole batch.
async fn batcher(
    raft: Raft,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Pending>,
    write_timeout: Duration,
) {
    // One entry in flight at a time: measured, two in flight split the batches and lowered
    // throughput (openraft flushes a leader's appends one after another anyway).
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (commands, waiters): (Vec<Command>, Vec<_>) =
            batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        let payload = Payload(Bytes::from(replication::encode(&commands)));
        let written = tokio::time::timeout(write_timeout, raft.client_write(payload)).await;
        let failure = match written {
            Ok(Ok(response)) => match response.data {
                Reply::Array(replies) if replies.len() == waiters.len() => {
                    for (waiter, reply) in waiters.into_iter().zip(replies) {
                        let _ = waiter.send(Ok(reply));
                    }
                    continue;
                }
                other => NodeError::Uncertain(format!("unexpected apply result {other:?}")),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                NodeError::Uncertain("leadership changed while the write was in flight".into())
            }
            Ok(Err(e)) => NodeError::Uncertain(e.to_string()),
            Err(_) => NodeError::Uncertain(format!(
                "not committed within {} ms",
                write_timeout.as_millis()
            )),
        };
        for waiter in waiters {
            let _ = waiter.send(Err(failure.clone()));
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts the node: recovers its state from `options.data_dir` and joins the Raft group
    /// (reaching peers through `dialer`). Membership is set up separately ([`Node::bootstrap`]).
    pub async fn start<D: Dialer>(
        options: NodeOptions,
        dialer: Arc<D>,
    ) -> Result<Node, StartError> {
        std::fs::create_dir_all(&options.data_dir)?;
        let engine = Arc::new(Engine::new(
            options.engine,
            Some(options.data_dir.join("wasm-cache")),
        )?);
        let disk = Arc::new(RedbDisk::open(
            &options.data_dir.join("raft").join("raft.redb"),
        )?);
        Node::start_on(options, engine, disk, dialer).await
    }

    /// Starts the node on a given engine and disk (the simulation's seam).
    pub async fn start_on<K: replication::Disk, D: Dialer>(
        options: NodeOptions,
        engine: Arc<Engine>,
        disk: Arc<K>,
        dialer: Arc<D>,
    ) -> Result<Node, StartError> {
        let started =
            replication::start(options.id, options.raft, disk, engine.clone(), dialer).await?;
        let raft = started.raft;
        let metrics = raft.metrics();
        let clock = Clock::new(options.wall_clock);
        let (proposals, queue) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(batcher(raft.clone(), queue, options.write_timeout));
        clock.advance_to(engine.applied_ms.load(Ordering::Relaxed));
        Ok(Node {
            engine,
            raft,
            metrics,
            id: options.id,
            me: options.me,
            clock,
            expire_cursor: Mutex::new(0),
            disk: started.stats,
            writer: Mutex::new(Some(started.writer)),
            proposals,
            write_timeout: options.write_timeout,
        })
    }

    /// Initializes the group with `members` if this node has never been part of one. A node
    /// that already has state ignores this.
    pub async fn bootstrap(&self, members: BTreeMap<NodeId, Member>) -> Result<(), String> {
        match self.raft.initialize(members).await {
            Ok(()) => {
                info!("raft group initialized");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits up to `within` for a leader to be known; true if one is.
    pub async fn wait_for_leader(&self, within: Duration) -> bool {
        let mut metrics = self.metrics.clone();
        tokio::time::timeout(within, async {
            loop {
                if metrics.borrow_and_update().current_leader.is_some() {
                    return;
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// When this node leads and the membership records other addresses for it than it has
    /// now (restarted on another port), records the new ones.
    pub async fn refresh_own_address(&self) {
        let recorded = {
            let m = self.metrics.borrow();
            if m.current_leader != Some(self.id) {
                return;
            }
            m.membership_config.membership().get_node(&self.id).cloned()
        };
        if recorded.as_ref() == Some(&self.me) || recorded.is_none() {
            return;
        }
        let change = ChangeMembers::SetNodes(BTreeMap::from([(self.id, self.me.clone())]));
        match self.raft.change_membership(change, true).await {
            Ok(_) => info!(address = %self.me, "own address updated in the membership"),
            Err(e) => warn!(cause = %e, "could not update own address"),
        }
    }

    /// The Raft handle (the cluster port serves its RPCs).
    pub fn raft(&self) -> &Raft {
        &self.raft
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
        &self.engine.modules
    }

    /// Group-commit figures: (disk writes, entries written).
    pub fn disk_stats(&self) -> (u64, u64) {
        (
            self.disk.writes.load(Ordering::Relaxed),
            self.disk.entries.load(Ordering::Relaxed),
        )
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
        }
    }

    /// The last log index applied here and a SHA-256 of the replicated state (keyspace,
    /// modules, applied clock): members that applied the same entries report the same pair.
    pub fn state_fingerprint(&self) -> (u64, String) {
        let applied = self.metrics.borrow().last_applied.map_or(0, |l| l.index);
        (applied, crate::wasm::hex_sha256(&self.engine.snapshot()))
    }

    /// Whether this node currently leads.
    pub fn is_leader(&self) -> bool {
        let m = self.metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// Refuses unless this node leads: `MOVED` to the leader, or `CLUSTERDOWN` without one.
    fn must_lead(&self, slot: u16) -> Result<(), NodeError> {
        let m = self.metrics.borrow();
        let membership = m.membership_config.membership();
        if membership.get_node(&self.id).is_none() && m.membership_config.log_id().is_some() {
            return Err(NodeError::ClusterDown(
                "this node is not a member of the cluster".to_owned(),
            ));
        }
        match m.current_leader {
            Some(leader) if leader == self.id && m.state == ServerState::Leader => Ok(()),
            Some(leader) => match membership.get_node(&leader) {
                Some(member) => Err(NodeError::Moved {
                    slot,
                    addr: member.client_addr(),
                }),
                None => Err(NodeError::ClusterDown(
                    "the leader is not in the known membership".to_owned(),
                )),
            },
            None => Err(NodeError::ClusterDown(
                "no leader elected yet, try again".to_owned(),
            )),
        }
    }

    /// Appends `command` to the log and waits for its reply from the local apply. Commands
    /// proposed while an entry is in flight travel together in the next one (see [`batcher`]).
    async fn propose(&self, command: Command, slot: u16) -> Result<Reply, NodeError> {
        Ok(self.enqueue(command, slot)?.wait().await)
    }

    /// Queues `command` for the log (after the leadership check) without waiting.
    fn enqueue(&self, command: Command, slot: u16) -> Result<Ticket, NodeError> {
        self.must_lead(slot)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.proposals.send(Pending { command, reply }).is_err() {
            return Err(NodeError::ClusterDown("the node is shutting down".into()));
        }
        Ok(Ticket {
            answer,
            timeout: self.write_timeout,
        })
    }

    /// Queues the write `op` for the log and returns at once; the reply comes from the
    /// [`Ticket`]. Writes queued one after another apply in that order, so a pipeline of
    /// writes from one client can be queued whole and share log entries.
    pub fn submit(&self, op: Op, ctx: &ParseCtx) -> Result<Ticket, Reply> {
        let slot = op.keys().first().map_or(0, |k| key_slot(k));
        self.enqueue(
            Command::Op {
                now_ms: ctx.now_ms,
                op,
            },
            slot,
        )
        .map_err(Reply::error)
    }

    /// Makes a read on this node safe under `mode`.
    async fn read_barrier(&self, mode: ReadMode, slot: Option<u16>) -> Result<(), NodeError> {
        if mode == ReadMode::Local {
            return Ok(());
        }
        {
            // One look at the metrics on the common path (the leader serving a read).
            let m = self.metrics.borrow();
            let leads = m.state == ServerState::Leader && m.current_leader == Some(self.id);
            if !leads {
                drop(m);
                return match slot {
                    // Keyless reads (DBSIZE, SCAN) answer on any member, as on a replica.
                    None => Ok(()),
                    Some(slot) => self.must_lead(slot),
                };
            }
            if sole_voter_caught_up(&m, self.id) {
                return Ok(());
            }
        }
        match tokio::time::timeout(self.write_timeout, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(NodeError::TryAgain(format!(
                "leadership not confirmed: {e}"
            ))),
            Err(_) => Err(NodeError::TryAgain(
                "leadership not confirmed in time".into(),
            )),
        }
    }

    /// What a command parsed now needs: the time relative TTLs count from, and a fresh seed.
    pub fn parse_ctx(&self) -> ParseCtx {
        ParseCtx {
            now_ms: self.clock.now_ms(),
            seed: next_seed(),
        }
    }

    /// Runs `op`, created at `ctx.now_ms`: writes through the log, reads as `mode` allows.
    pub async fn execute(&self, op: Op, ctx: &ParseCtx, mode: ReadMode) -> Reply {
        let slot = op.keys().first().map(|k| key_slot(k));
        let result = if op.is_write() {
            self.propose(
                Command::Op {
                    now_ms: ctx.now_ms,
                    op,
                },
                slot.unwrap_or(0),
            )
            .await
        } else {
            match self.read_barrier(mode, slot).await {
                Ok(()) => Ok(op.read(&self.engine.read_keyspace(), Ctx { now_ms: ctx.now_ms })),
                Err(e) => Err(e),
            }
        };
        result.unwrap_or_else(Reply::error)
    }

    /// Compiles and validates a module here first (so a bad module never reaches the log),
    /// then replicates the load.
    pub async fn wasm_load(
        &self,
        name: String,
        bytes: Bytes,
        permissions: Permissions,
        replace: bool,
    ) -> Reply {
        if let Err(e) = self.must_lead(0) {
            return Reply::error(e);
        }
        if !replace && self.engine.modules.get(&name).is_some() {
            return Reply::error(WasmError::AlreadyLoaded(name));
        }
        let runtime = self.engine.wasm.clone();
        let (check_name, check_bytes) = (name.clone(), bytes.clone());
        let check = move || runtime.compile(&check_name, check_bytes, permissions, 0);
        // Compiling takes milliseconds: off the async workers, except on a current-thread
        // runtime (the simulation), where a blocking thread would make timing nondeterministic.
        let checked = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => Ok(check()),
            _ => tokio::task::spawn_blocking(check).await,
        };
        match checked {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Reply::error(e),
            Err(e) => return Reply::error(WasmError::Instantiate(e.to_string())),
        }
        let command = Command::Load {
            name,
            bytes,
            permissions,
            replace,
            now_ms: self.clock.now_ms(),
        };
        self.propose(command, 0).await.unwrap_or_else(Reply::error)
    }

    /// Replicates an unload.
    pub async fn wasm_unload(&self, name: String) -> Reply {
        if let Err(e) = self.must_lead(0) {
            return Reply::error(e);
        }
        if self.engine.modules.get(&name).is_none() {
            return Reply::error(WasmError::NoSuchModule(name));
        }
        self.propose(Command::Unload { name }, 0)
            .await
            .unwrap_or_else(Reply::error)
    }

    /// Compile-cache hits and misses since start.
    pub fn wasm_cache_counts(&self) -> (u64, u64) {
        self.engine.wasm.cache_counts()
    }

    /// Calls `entry` of module `name`. A call that may write (not `read_only`, module holding
    /// WRITE) is replicated as the call itself and runs on every member at apply time; any
    /// other call runs here only, as a read under `mode`.
    #[allow(clippy::too_many_arguments)]
    pub async fn wasm_call(
        &self,
        name: &str,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        mode: CallMode,
        limits: CallLimits,
        reads: ReadMode,
    ) -> Reply {
        let Some(module) = self.engine.modules.get(name) else {
            return Reply::error(WasmError::NoSuchModule(name.to_owned()));
        };
        if !module.exports.iter().any(|e| e == entry) {
            return Reply::error(WasmError::NoSuchEntry {
                module: name.to_owned(),
                entry: entry.to_owned(),
            });
        }
        let slot = keys.first().map(|k| key_slot(k));
        let ctx = self.parse_ctx();
        if !mode.read_only && module.permissions.contains(Permissions::WRITE) {
            let command = Command::Call {
                module: name.to_owned(),
                sha256: module.sha256.clone(),
                entry: entry.to_owned(),
                keys: keys.to_vec(),
                args: args.to_vec(),
                now_ms: ctx.now_ms,
                seed: ctx.seed,
                max_fuel: limits.max_fuel,
                max_memory_bytes: limits.max_memory_bytes,
            };
            return self
                .propose(command, slot.unwrap_or(0))
                .await
                .unwrap_or_else(Reply::error);
        }
        if let Err(e) = self.read_barrier(reads, slot).await {
            return Reply::error(e);
        }
        self.engine
            .call(&module, entry, keys, args, ctx, mode, limits)
    }

    /// Adds node `id` at `member`: first as a learner (it catches up from the log or a
    /// snapshot), then as a voter, through joint consensus.
    pub async fn add_node(&self, id: NodeId, member: Member) -> Result<(), NodeError> {
        self.must_lead(0)?;
        self.raft
            .add_learner(id, member, true)
            .await
            .map_err(|e| NodeError::Membership(e.to_string()))?;
        let mut voters: std::collections::BTreeSet<NodeId> = self
            .metrics
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        voters.insert(id);
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| NodeError::Membership(e.to_string()))?;
        Ok(())
    }

    /// Removes node `id` from the cluster through joint consensus.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), NodeError> {
        self.must_lead(0)?;
        let membership = self.metrics.borrow().membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Err(NodeError::Membership(format!("node {id} is not a member")));
        }
        let voters: std::collections::BTreeSet<NodeId> =
            membership.voter_ids().filter(|v| *v != id).collect();
        if voters.is_empty() {
            return Err(NodeError::Membership(
                "cannot remove the last voter".to_owned(),
            ));
        }
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::ReplaceAllVoters(voters)
        } else {
            ChangeMembers::RemoveNodes(std::collections::BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| NodeError::Membership(e.to_string()))?;
        Ok(())
    }

    /// Records the version of `key` for WATCH.
    pub fn watch(&self, key: &Bytes) -> WatchToken {
        self.engine.read_keyspace().watch(key, self.clock.now_ms())
    }

    /// Figures for INFO's keyspace section.
    pub fn keyspace_stats(&self) -> KeyspaceStats {
        let ks = self.engine.read_keyspace();
        KeyspaceStats {
            keys: ks.len(),
            expires: ks.volatile_count(),
            expired: ks.expired_total(),
        }
    }

    /// Keys in `slot` (CLUSTER GETKEYSINSLOT), at most `count`, and how many there are.
    pub fn keys_in_slot(&self, slot: u16, count: usize) -> (Vec<Bytes>, usize) {
        self.engine.read_keyspace().keys_in_slot(slot, count)
    }

    /// The current time as the node stamps operations.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// One round of active expiry, on the leader only: finds keys that have expired and removes
    /// them through the log, so removal is an operation like any other. Returns how many were
    /// removed.
    pub async fn expire_cycle(&self) -> usize {
        if !self.is_leader() {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..PURGE_ROUNDS_PER_TICK {
            let ctx = self.parse_ctx();
            let (keys, next) = {
                let cursor = *self.expire_cursor.lock();
                self.engine
                    .read_keyspace()
                    .expired_keys(cursor, PURGE_BATCH, ctx.now_ms)
            };
            *self.expire_cursor.lock() = next;
            let found = keys.len();
            if found > 0
                && let Reply::Int(n) = self
                    .execute(Op::PurgeExpired { keys }, &ctx, ReadMode::Linearizable)
                    .await
            {
                removed += n as usize;
            }
            if found < PURGE_BATCH && next == 0 {
                break;
            }
        }
        if removed > 0 {
            debug!(removed, "active expiry");
        }
        removed
    }

    /// Runs the expiry cycle every `period` until `shutdown` fires.
    pub async fn run_expiry(
        &self,
        period: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => { self.expire_cycle().await; }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Stops Raft and waits until everything queued for the disk is written and the storage
    /// is closed.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(cause = %e, "raft shutdown");
        }
        let writer = self.writer.lock().take();
        if let Some(writer) = writer
            && tokio::time::timeout(Duration::from_secs(5), writer)
                .await
                .is_err()
        {
            warn!("the raft storage writer did not stop in time");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// A one-member node on a temporary data directory, leading.
    pub(crate) async fn single_node(dir: &std::path::Path) -> Node {
        let me = Member {
            host: "127.0.0.1".into(),
            port: 1,
            cport: 2,
        };
        let options = NodeOptions {
            id: 1,
            me: me.clone(),
            data_dir: dir.to_path_buf(),
            engine: default_engine_settings(),
            raft: replication::Settings {
                heartbeat: Duration::from_millis(50),
                election_min: Duration::from_millis(150),
                election_max: Duration::from_millis(300),
                snapshot_logs: 100,
                keep_logs: 10,
            },
            write_timeout: Duration::from_secs(5),
            wall_clock: system_time_ms,
        };
        let node = Node::start(options, Arc::new(crate::net::TcpDialer))
            .await
            .unwrap();
        node.bootstrap(BTreeMap::from([(1, me)])).await.unwrap();
        let mut metrics = node.metrics.clone();
        while !node.is_leader() {
            metrics.changed().await.unwrap();
        }
        node
    }

    async fn run(node: &Node, name: &str, words: &[&str]) -> Reply {
        let ctx = node.parse_ctx();
        let op = crate::keyspace::parse(name, &args(words), &ctx)
            .unwrap()
            .unwrap();
        node.execute(op, &ctx, ReadMode::Linearizable).await
    }

    #[test]
    fn the_clock_never_goes_back() {
        let clock = Clock::default();
        clock.last.store(u64::MAX / 2, Ordering::Relaxed);
        assert_eq!(clock.now_ms(), u64::MAX / 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expiry_cycle_purges_expired_keys_through_the_write_path() {
        let dir = tempfile::tempdir().unwrap();
        let node = single_node(dir.path()).await;
        for i in 0..500 {
            run(&node, "set", &[&format!("k{i}"), "v", "PX", "1"]).await;
        }
        run(&node, "set", &["keep", "v"]).await;
        let written = node.now_ms();
        while node.now_ms() <= written + 1 {
            tokio::task::yield_now().await;
        }
        let mut removed = 0;
        while node.keyspace_stats().keys > 1 {
            removed += node.expire_cycle().await;
        }
        assert_eq!(removed, 500);
        let stats = node.keyspace_stats();
        assert_eq!((stats.keys, stats.expires, stats.expired), (1, 0, 500));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_survive_a_restart_through_log_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let node = single_node(dir.path()).await;
            // More entries than the snapshot threshold: recovery uses a snapshot and the log.
            for i in 0..250 {
                assert_eq!(
                    run(&node, "set", &[&format!("k{i}"), &i.to_string()]).await,
                    Reply::ok()
                );
            }
            run(&node, "hset", &["h", "f", "v"]).await;
            let wat = Bytes::from_static(
                b"(module (memory (export \"memory\") 1) (func (export \"alloc\") (param i32) (result i32) i32.const 0) (func (export \"main\") (param i32 i32) (result i64) i64.const 7))",
            );
            assert_eq!(
                node.wasm_load("seven".into(), wat, Permissions::READ, false)
                    .await,
                Reply::ok()
            );
            node.shutdown().await;
        }
        let node = single_node(dir.path()).await;
        assert_eq!(run(&node, "get", &["k249"]).await, Reply::bulk("249"));
        assert_eq!(run(&node, "hget", &["h", "f"]).await, Reply::bulk("v"));
        assert_eq!(node.keyspace_stats().keys, 251);
        assert!(node.modules().get("seven").is_some());
    }

    #[test]
    fn engine_snapshots_restore_the_same_state() {
        let a = Engine::new(default_engine_settings(), None).unwrap();
        for (i, key) in ["x", "y", "z"].iter().enumerate() {
            let ctx = ParseCtx {
                now_ms: 10,
                seed: i as u64,
            };
            let op = crate::keyspace::parse("sadd", &args(&[key, "m1", "m2"]), &ctx)
                .unwrap()
                .unwrap();
            a.apply(
                1,
                &replication::encode(&vec![Command::Op { now_ms: 10, op }]),
            );
        }
        let b = Engine::new(default_engine_settings(), None).unwrap();
        b.restore(&a.snapshot()).unwrap();
        assert_eq!(*a.read_keyspace(), *b.read_keyspace());
        assert_eq!(a.snapshot(), b.snapshot());
    }
}
