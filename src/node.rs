//! The node: the engine a connection talks to. It owns the keyspace behind a lock, the clock
//! that stamps operations, the seeds for random commands, and the active expiry cycle.
//!
//! Reads run under a shared lock against the local keyspace. Writes go through
//! [`Node::execute`], the single write path: today it applies the operation under the exclusive
//! lock; the Raft issue replaces its body with "append to the log, wait for apply", without
//! changing any caller. The node never sees RESP.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use tracing::debug;

use crate::keyspace::{Ctx, Keyspace, Op, ParseCtx, WatchToken};
use crate::reply::Reply;
use crate::wasm::{
    CallLimits, CallMode, EngineSettings, Permissions, Registry, Runtime, WasmError,
};

/// Most expired keys removed by one purge operation.
const PURGE_BATCH: usize = 200;
/// Most purge operations per expiry tick, so a mass expiry cannot monopolise the write path.
const PURGE_ROUNDS_PER_TICK: usize = 16;

/// Milliseconds since the Unix epoch that never go backwards, so operations stamped one after
/// another carry non-decreasing times even if the wall clock steps back.
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicU64,
}

impl Clock {
    /// The current time in ms, at least the last one returned.
    pub fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Read first: the shared line is written at most once per millisecond, not once per
        // command, so it is not bounced between cores.
        let previous = self.last.load(Ordering::Relaxed);
        if wall <= previous {
            return previous;
        }
        self.last.fetch_max(wall, Ordering::Relaxed).max(wall)
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

/// The engine behind every connection.
#[derive(Debug)]
pub struct Node {
    /// std's futex-based lock: under a 2-core write-heavy load it measured clearly faster than
    /// parking_lot's, whose spinning ends in sched_yield storms.
    keyspace: RwLock<Keyspace>,
    clock: Clock,
    /// The WebAssembly engine.
    wasm: std::sync::Arc<Runtime>,
    /// Loaded modules.
    pub modules: Registry,
    expire_cursor: Mutex<u64>,
}

/// WASM engine settings from the configuration defaults (tests, and `Node::new`).
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

impl Node {
    /// A node with an empty keyspace and the default WASM engine settings.
    pub fn new() -> Result<Node, WasmError> {
        Node::with_engine(default_engine_settings(), None)
    }

    /// A node with an empty keyspace and the given WASM engine settings.
    /// `cache_dir` keeps compiled modules across restarts.
    pub fn with_engine(
        settings: EngineSettings,
        cache_dir: Option<std::path::PathBuf>,
    ) -> Result<Node, WasmError> {
        Ok(Node {
            keyspace: RwLock::new(Keyspace::new()),
            clock: Clock::default(),
            wasm: std::sync::Arc::new(Runtime::new(settings, cache_dir)?),
            modules: Registry::default(),
            expire_cursor: Mutex::new(0),
        })
    }

    /// Compiles and validates a module off the async runtime's worker threads, then adds it
    /// (swapping out a module of the same name if `replace`).
    pub async fn wasm_load(
        &self,
        name: String,
        bytes: bytes::Bytes,
        permissions: Permissions,
        replace: bool,
    ) -> Result<(), WasmError> {
        if !replace && self.modules.get(&name).is_some() {
            return Err(WasmError::AlreadyLoaded(name));
        }
        let runtime = self.wasm.clone();
        let now = self.now_ms();
        let module =
            tokio::task::spawn_blocking(move || runtime.compile(&name, &bytes, permissions, now))
                .await
                .map_err(|e| WasmError::Instantiate(e.to_string()))??;
        self.modules.insert(module, replace)
    }

    /// Compile-cache hits and misses since start.
    pub fn wasm_cache_counts(&self) -> (u64, u64) {
        self.wasm.cache_counts()
    }

    /// Calls `entry` of module `name`. The call owns the keyspace for its duration: it is
    /// moved into the call's store under the exclusive lock and moved back afterwards, so a
    /// call is atomic and sees no concurrent writes.
    pub async fn wasm_call(
        &self,
        name: &str,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        mode: CallMode,
        limits: CallLimits,
    ) -> Reply {
        let Some(module) = self.modules.get(name) else {
            return Reply::error(WasmError::NoSuchModule(name.to_owned()));
        };
        if !module.exports.iter().any(|e| e == entry) {
            return Reply::error(WasmError::NoSuchEntry {
                module: name.to_owned(),
                entry: entry.to_owned(),
            });
        }
        let ctx = self.parse_ctx();
        let outcome = {
            let mut guard = self.write_keyspace();
            let keyspace = std::mem::take(&mut *guard);
            let (keyspace, outcome) = self
                .wasm
                .call(&module, entry, keys, args, keyspace, ctx, mode, limits);
            *guard = keyspace;
            outcome
        };
        self.modules.record(&outcome);
        match outcome {
            Ok(o) => o.reply,
            Err(e) => Reply::error(e),
        }
    }

    /// The keyspace for reading. A poisoned lock (a panic while writing, which the keyspace
    /// never does on input) is recovered rather than propagated.
    fn read_keyspace(&self) -> RwLockReadGuard<'_, Keyspace> {
        self.keyspace.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keyspace for writing; see [`Node::read_keyspace`].
    fn write_keyspace(&self) -> RwLockWriteGuard<'_, Keyspace> {
        self.keyspace
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What a command parsed now needs: the time relative TTLs count from, and a fresh seed.
    pub fn parse_ctx(&self) -> ParseCtx {
        ParseCtx {
            now_ms: self.clock.now_ms(),
            seed: next_seed(),
        }
    }

    /// Runs `op`, created at `ctx.now_ms`: reads under the shared lock, writes through the write
    /// path. Async because the write path will wait for replication.
    pub async fn execute(&self, op: Op, ctx: &ParseCtx) -> Reply {
        let ctx = Ctx { now_ms: ctx.now_ms };
        if op.is_write() {
            op.apply(&mut self.write_keyspace(), ctx)
        } else {
            op.read(&self.read_keyspace(), ctx)
        }
    }

    /// Records the version of `key` for WATCH.
    pub fn watch(&self, key: &Bytes) -> WatchToken {
        self.read_keyspace().watch(key, self.clock.now_ms())
    }

    /// Figures for INFO's keyspace section.
    pub fn keyspace_stats(&self) -> KeyspaceStats {
        let ks = self.read_keyspace();
        KeyspaceStats {
            keys: ks.len(),
            expires: ks.volatile_count(),
            expired: ks.expired_total(),
        }
    }

    /// The current time as the node stamps operations.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// One round of active expiry: finds keys that have expired and removes them through the
    /// write path, so removal is an operation like any other. Returns how many were removed.
    pub async fn expire_cycle(&self) -> usize {
        let mut removed = 0;
        for _ in 0..PURGE_ROUNDS_PER_TICK {
            let ctx = self.parse_ctx();
            let (keys, next) = {
                let cursor = *self.expire_cursor.lock();
                self.keyspace
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .expired_keys(cursor, PURGE_BATCH, ctx.now_ms)
            };
            *self.expire_cursor.lock() = next;
            let found = keys.len();
            if found > 0
                && let Reply::Int(n) = self.execute(Op::PurgeExpired { keys }, &ctx).await
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    async fn run(node: &Node, name: &str, words: &[&str]) -> Reply {
        let ctx = node.parse_ctx();
        let op = crate::keyspace::parse(name, &args(words), &ctx)
            .unwrap()
            .unwrap();
        node.execute(op, &ctx).await
    }

    #[test]
    fn the_clock_never_goes_back() {
        let clock = Clock::default();
        clock.last.store(u64::MAX / 2, Ordering::Relaxed);
        assert_eq!(clock.now_ms(), u64::MAX / 2);
    }

    #[tokio::test]
    async fn expiry_cycle_purges_expired_keys_through_the_write_path() {
        let node = Node::new().unwrap();
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
}
