//! The replicated state machine: what the Raft log drives on every member, in log order.
//!
//! [`StateMachine`] holds the keyspace, the WebAssembly modules and the applied clock. Every
//! change to them arrives as a [`LogCommand`] in a committed entry (`entry.rs`) and is applied
//! here ([`StateMachine::apply_command`]); `snapshot.rs` serializes the whole state and
//! implements the replication layer's [`Machine`](crate::replication::Machine). Reads and
//! read-only calls use the same state under a shared lock.
//!
//! Architecture invariant: applying depends only on the state and the command: times, seeds
//! and limits come from the command, never from a clock, a random source or a local setting.
//! This module does no I/O besides the WASM compile cache and never awaits.

mod entry;
mod snapshot;
#[cfg(test)]
mod tests;

pub use entry::{CallStep, LogCommand, Step};
pub use snapshot::RestoreError;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::keyspace::{Ctx, Keyspace, ParseCtx};
use crate::reply::Reply;
use crate::wasm::{
    CallLimits, CallMode, CallOutcome, EngineSettings, ModuleRef, Permissions, Registry, Runtime,
    WasmError,
};

/// The replicated state.
pub struct StateMachine {
    /// std's futex-based lock: under a 2-core write-heavy load it measured clearly faster than
    /// parking_lot's, whose spinning ends in sched_yield storms.
    keyspace: Arc<RwLock<Keyspace>>,
    functions: Arc<Runtime>,
    modules: Registry,
    /// The latest time applied: entries never execute earlier than an entry before them, even
    /// when a new leader's clock lags the old one's.
    applied_ms: AtomicU64,
    /// The cluster's id, 0 until a `ClusterId` entry is applied; shared with the cluster bus.
    cluster_id: Arc<AtomicU64>,
    /// This member's record at the latest `Check` entry it applied: that entry's log index and
    /// the digest of the state there.
    checkpoint: parking_lot::Mutex<Option<(u64, [u8; 32])>>,
    /// Set once, when a `Check` entry showed that this member's state differs from the
    /// proposing leader's: the member stops serving (the node watches this).
    divergence: tokio::sync::watch::Sender<Option<Divergence>>,
    /// Whether `divergence` is set: what every command checks, without the watch's lock.
    diverged: std::sync::atomic::AtomicBool,
    /// The node's own clock, read only by the `ApplyLocalTime` sabotage switch.
    #[cfg(feature = "fault-injection")]
    local_clock: std::sync::OnceLock<Arc<crate::clock::Clock>>,
}

/// Why this member's state can no longer be trusted to be the leader's: it stops serving.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Divergence {
    /// A state check found this member's state different from the leader's.
    Digest {
        /// The log index of the check both digests were taken at.
        index: u64,
        /// This member's digest there (hex).
        ours: String,
        /// The proposing leader's digest there (hex).
        theirs: String,
    },
    /// A committed entry this member cannot read (written by a newer version, or damaged):
    /// skipping it would leave this member's state behind every other's.
    Unreadable {
        /// The entry's log index.
        index: u64,
        /// Why it could not be decoded.
        cause: String,
    },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Divergence::Digest {
                index,
                ours,
                theirs,
            } => write!(
                f,
                "this replica's state at log index {index} has digest {ours}, the leader's has {theirs}"
            ),
            Divergence::Unreadable { index, cause } => write!(
                f,
                "this replica cannot read log entry {index} (written by a newer version?): {cause}"
            ),
        }
    }
}

/// A write panicked while it held the keyspace (a bug outside WebAssembly calls, which undo
/// themselves): the state may be half-changed, so this replica stops rather than serve it or
/// snapshot it. Its log is intact; a restart replays it.
fn halt_poisoned() -> ! {
    tracing::error!("a write panicked half-way through the keyspace; stopping this replica");
    std::process::abort()
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

impl StateMachine {
    /// An empty state with the given WASM settings; `cache_dir` keeps compiled modules.
    pub fn new(
        settings: EngineSettings,
        cache_dir: Option<PathBuf>,
    ) -> Result<StateMachine, WasmError> {
        Ok(StateMachine {
            keyspace: Arc::new(RwLock::new(Keyspace::new())),
            functions: Arc::new(Runtime::new(settings, cache_dir)?),
            modules: Registry::default(),
            applied_ms: AtomicU64::new(0),
            cluster_id: Arc::default(),
            checkpoint: parking_lot::Mutex::new(None),
            divergence: tokio::sync::watch::Sender::new(None),
            diverged: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "fault-injection")]
            local_clock: std::sync::OnceLock::new(),
        })
    }

    /// The keyspace, for reading, under the shared lock.
    pub fn keyspace(&self) -> RwLockReadGuard<'_, Keyspace> {
        self.keyspace.read().unwrap_or_else(|_| halt_poisoned())
    }

    fn keyspace_mut(&self) -> RwLockWriteGuard<'_, Keyspace> {
        self.keyspace.write().unwrap_or_else(|_| halt_poisoned())
    }

    /// Loaded modules.
    pub fn modules(&self) -> &Registry {
        &self.modules
    }

    /// The WebAssembly engine (compiling a module to check it before it enters the log).
    pub fn functions(&self) -> &Arc<Runtime> {
        &self.functions
    }

    /// The cluster's id (0: none applied yet).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Relaxed)
    }

    /// The cluster id as the bus reads it (updated as entries apply).
    pub fn cluster_id_handle(&self) -> Arc<AtomicU64> {
        self.cluster_id.clone()
    }

    /// The latest time an applied entry carried.
    pub fn applied_ms(&self) -> u64 {
        self.applied_ms.load(Ordering::Relaxed)
    }

    /// Gives the `ApplyLocalTime` sabotage switch the node's own clock to apply by.
    #[cfg(feature = "fault-injection")]
    pub fn sabotage_clock(&self, clock: Arc<crate::clock::Clock>) {
        let _ = self.local_clock.set(clock);
    }

    /// The time an entry stamped `now_ms` executes at: never before an earlier entry's.
    fn apply_time(&self, now_ms: u64) -> u64 {
        #[cfg(feature = "fault-injection")]
        let now_ms = match self.local_clock.get() {
            Some(clock) if crate::sabotage::on(crate::sabotage::Sabotage::ApplyLocalTime) => {
                clock.now_ms()
            }
            _ => now_ms,
        };
        self.applied_ms
            .fetch_max(now_ms, Ordering::Relaxed)
            .max(now_ms)
    }

    /// This member's record at the latest state check it applied: (log index, digest).
    pub fn checkpoint(&self) -> Option<(u64, [u8; 32])> {
        *self.checkpoint.lock()
    }

    /// Where this member's state was found to differ from the leader's, if it was.
    pub fn divergence(&self) -> Option<Divergence> {
        if !self.diverged.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.divergence.borrow().clone()
    }

    /// Notified when this member's state is found to differ.
    pub fn watch_divergence(&self) -> tokio::sync::watch::Receiver<Option<Divergence>> {
        self.divergence.subscribe()
    }

    /// Stops this member serving, for good (the first reason found is the one kept).
    fn halt(&self, found: Divergence) {
        self.divergence.send_if_modified(|d| {
            let first = d.is_none();
            if first {
                tracing::error!(%found, "this replica stops serving");
                *d = Some(found);
            }
            first
        });
        self.diverged
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Applies a `Check` entry found at log `index`: compares the proposer's earlier record
    /// with this member's own record at the same index (a member that restored a snapshot
    /// beyond it, or restarted since, has none and compares nothing), then records a digest
    /// of the state here.
    fn check(&self, index: u64, previous: Option<(u64, [u8; 32])>) {
        // Digest first: the record's lock is held only to swap it, so INFO (which reads the
        // record) never waits for a digest of the whole state.
        let started = std::time::Instant::now();
        let digest = self.digest();
        let took_us = started.elapsed().as_micros() as u64;
        let mut checkpoint = self.checkpoint.lock();
        if let (Some((at, theirs)), Some((ours_at, ours))) = (previous, *checkpoint)
            && at == ours_at
            && theirs != ours
        {
            self.halt(Divergence::Digest {
                index: at,
                ours: snapshot::hex(&ours),
                theirs: snapshot::hex(&theirs),
            });
        }
        *checkpoint = Some((index, digest));
        drop(checkpoint);
        tracing::debug!(index, took_us, "state check");
    }

    /// Applies one replicated command, found in the entry at log `index`, and returns its
    /// reply.
    pub fn apply_command(&self, index: u64, command: LogCommand) -> Reply {
        match command {
            LogCommand::Check { previous } => {
                self.check(index, previous);
                Reply::ok()
            }
            LogCommand::Op { now_ms, op } => {
                let now_ms = self.apply_time(now_ms);
                op.apply(&mut self.keyspace_mut(), Ctx { now_ms })
            }
            LogCommand::ClusterId(id) => {
                let _ =
                    self.cluster_id
                        .compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed);
                Reply::ok()
            }
            LogCommand::Load {
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
                // Compiling takes milliseconds to seconds: its entry applies off the async
                // workers (`LogCommand::runs_long`).
                match self.functions.compile(&name, bytes, permissions, now_ms) {
                    Ok(module) => match self.modules.insert(module, replace) {
                        Ok(()) => Reply::ok(),
                        Err(e) => Reply::error(e),
                    },
                    Err(e) => Reply::error(e),
                }
            }
            LogCommand::Unload { name } => {
                if self.modules.remove(&name) {
                    Reply::ok()
                } else {
                    Reply::error(WasmError::NoSuchModule(name))
                }
            }
            command @ LogCommand::Call { .. } => self.apply_call(index, command, false),
            LogCommand::Transaction {
                now_ms,
                seed,
                watches,
                steps,
            } => {
                let now_ms = self.apply_time(now_ms);
                let mut keyspace = self.keyspace_mut();
                if watches.iter().any(|w| keyspace.watch_broken(w, now_ms)) {
                    return Reply::NilArray;
                }
                let mut replies = Vec::with_capacity(steps.len());
                for (i, step) in steps.into_iter().enumerate() {
                    replies.push(match step {
                        Step::Op(op) => op.apply(&mut keyspace, Ctx { now_ms }),
                        Step::Call(call) => {
                            let seed = seed.wrapping_add(i as u64);
                            self.call_step(&mut keyspace, &call, ParseCtx { now_ms, seed }, false)
                                .unwrap_or_else(|| Reply::error(WasmError::SliceEnded))
                        }
                    });
                }
                Reply::Array(replies)
            }
        }
    }

    /// Applies a write call found in the entry at log `index` (`LogCommand::Call`; any other
    /// command as [`StateMachine::apply_command`] does). With `in_slice`, a first attempt runs right here
    /// (on the async worker) cut to [`APPLY_TIME_SLICE`](crate::wasm::APPLY_TIME_SLICE); a
    /// call that needs longer is undone and run again off the worker
    /// (`blocking::off_the_workers`) with no clock limit. Fuel alone decides the outcome, so
    /// it is the same either way, and on every member.
    pub fn apply_call(&self, index: u64, command: LogCommand, in_slice: bool) -> Reply {
        let LogCommand::Call {
            module,
            sha256,
            entry,
            keys,
            args,
            now_ms,
            seed,
            max_fuel,
            max_memory_bytes,
        } = command
        else {
            return self.apply_command(index, command);
        };
        let ctx = ParseCtx {
            now_ms: self.apply_time(now_ms),
            seed,
        };
        let step = CallStep {
            module,
            sha256,
            entry,
            keys,
            args,
            read_only: false,
            max_fuel,
            max_memory_bytes,
        };
        let first = self.call_step(&mut self.keyspace_mut(), &step, ctx, in_slice);
        first.unwrap_or_else(|| {
            self.functions.note_past_slice();
            crate::blocking::off_the_workers(|| {
                self.call_step(&mut self.keyspace_mut(), &step, ctx, false)
            })
            .unwrap_or_else(|| Reply::error(WasmError::SliceEnded))
        })
    }

    /// Runs a replicated call on `keyspace`: the module its entry names, with the entry's
    /// limits and no clock limit (but for a first attempt `in_slice`, `None` if it ran out of
    /// its slice, with nothing changed). Everything that decides the outcome is in the entry
    /// or the replicated state.
    fn call_step(
        &self,
        keyspace: &mut Keyspace,
        call: &CallStep,
        ctx: ParseCtx,
        in_slice: bool,
    ) -> Option<Reply> {
        let Some(found) = self.modules.get(&call.module) else {
            return Some(Reply::error(WasmError::NoSuchModule(call.module.clone())));
        };
        if found.sha256 != call.sha256 {
            // Replaced between proposal and apply: refuse on every member alike.
            return Some(Reply::error(WasmError::NoSuchModule(format!(
                "{} (replaced while the call was in flight)",
                call.module
            ))));
        }
        if !found.exports.contains(&call.entry) {
            return Some(Reply::error(WasmError::NoSuchEntry {
                module: call.module.clone(),
                entry: call.entry.clone(),
            }));
        }
        let limits = CallLimits {
            max_memory_bytes: call.max_memory_bytes,
            max_fuel: call.max_fuel,
            max_duration: Duration::ZERO,
            time_slice: in_slice,
        };
        let read_only = call.read_only || !found.permissions.contains(Permissions::WRITE);
        let mode = CallMode { read_only };
        let outcome = self.call_on(
            keyspace,
            &found,
            &call.entry,
            &call.keys,
            &call.args,
            ctx,
            mode,
            limits,
        );
        match outcome {
            Err(WasmError::SliceEnded) => None,
            outcome => Some(self.reply(outcome)),
        }
    }

    /// Runs a WebAssembly call against the keyspace: the keyspace is moved into the call's
    /// store under the exclusive lock and moved back afterwards, so a call is atomic. A write
    /// call reaches here only through [`StateMachine::apply_command`]; a read-only call (or a
    /// call of a module without WRITE) is run by the node through [`StateMachine::call_read`].
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &self,
        module: &ModuleRef,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        ctx: ParseCtx,
        mode: CallMode,
        limits: CallLimits,
    ) -> Reply {
        let mut keyspace = self.keyspace_mut();
        let outcome = self.call_on(&mut keyspace, module, entry, keys, args, ctx, mode, limits);
        drop(keyspace);
        self.reply(outcome)
    }

    /// Runs a call owning `keyspace` (moved into the call's store and back).
    #[allow(clippy::too_many_arguments)]
    fn call_on(
        &self,
        keyspace: &mut Keyspace,
        module: &ModuleRef,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        ctx: ParseCtx,
        mode: CallMode,
        limits: CallLimits,
    ) -> Result<CallOutcome, WasmError> {
        let owned = std::mem::take(keyspace);
        let (owned, outcome) = self
            .functions
            .call(module, entry, keys, args, owned, ctx, mode, limits);
        *keyspace = owned;
        outcome
    }

    /// Counts a call that ran to its end and turns its outcome into the client's reply.
    fn reply(&self, outcome: Result<CallOutcome, WasmError>) -> Reply {
        self.modules.record(&outcome);
        match outcome {
            Ok(o) => o.reply,
            Err(e) => Reply::error(e),
        }
    }

    /// Runs a call that cannot write (read-only mode, or a module without WRITE) on this node
    /// only. Guest code runs with no lock held, so writes and other reads go on meanwhile;
    /// a call whose reads a write overtook runs again, and after [`READ_ATTEMPTS`] such runs
    /// it runs once more holding the keyspace exclusively, so it always completes. `None` when
    /// it reached the end of its time slice ([`CallLimits::time_slice`]): run it again.
    #[allow(clippy::too_many_arguments)]
    pub fn call_read(
        &self,
        module: &ModuleRef,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        ctx: ParseCtx,
        mode: CallMode,
        limits: CallLimits,
    ) -> Option<Reply> {
        for _ in 0..READ_ATTEMPTS {
            let lock = self.keyspace.clone();
            match self
                .functions
                .call_shared(module, entry, keys, args, lock, ctx, mode, limits)
            {
                Err(WasmError::Overtaken) => continue,
                Err(WasmError::SliceEnded) => return None,
                outcome => return Some(self.reply(outcome)),
            }
        }
        let mut keyspace = self.keyspace_mut();
        match self.call_on(&mut keyspace, module, entry, keys, args, ctx, mode, limits) {
            Err(WasmError::SliceEnded) => None,
            outcome => Some(self.reply(outcome)),
        }
    }
}

/// How many times a read-only call runs without a lock before it runs holding the keyspace.
pub const READ_ATTEMPTS: usize = 3;
