//! WebAssembly functions as the node handles them: a module is compiled and checked here
//! before its load enters the log (a bad module never reaches a replica), and a call is
//! routed: one that may write is replicated as the call itself and runs on every member at
//! apply time; any other runs here only, as a read.

use bytes::Bytes;

use super::{Node, ReadMode};
use crate::keyspace::{Op, ParseCtx, WatchToken};
use crate::reply::Reply;
use crate::slot::key_slot;
use crate::state_machine::{CallStep, LogCommand, Step};
use crate::wasm::{CallLimits, CallMode, MAX_WRITE_FUEL, ModuleRef, Permissions, WasmError};

/// How long a read-only call may run on an async worker before it is run again off it.
const TIME_SLICE: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a module's read-only calls must have lately taken for one to be handed to a
/// helper thread. A hand-off wakes the helper and then the worker; on the VMs the benchmarks
/// ran on, a call of 9 µs (a 4 KB string transformed) served more clients, and one client
/// sooner, on the worker, while calls of 40 µs and more (JSON, primes) gained from a helper.
const HAND_OFF_AFTER: std::time::Duration = std::time::Duration::from_micros(30);

/// The longest a module's calls may lately have taken for one from a lone client (no other
/// client's long call began within the last millisecond) to run on the async worker; other
/// clients' requests wait that long at most.
const ALONE_HERE_UP_TO: std::time::Duration = std::time::Duration::from_micros(200);

impl Node {
    /// Compiles and validates a module here first (so a bad module never reaches the log),
    /// then replicates the load.
    pub async fn wasm_load(
        &self,
        name: String,
        bytes: Bytes,
        permissions: Permissions,
        replace: bool,
    ) -> Reply {
        if let Err(e) = self.must_lead(|| 0) {
            return Reply::error(e);
        }
        if !replace && self.state.modules().get(&name).is_some() {
            return Reply::error(WasmError::AlreadyLoaded(name));
        }
        // Compiling takes milliseconds to seconds: off the async workers.
        let runtime = self.state.functions();
        let checked =
            crate::blocking::off_the_workers(|| runtime.check(&name, bytes.clone(), permissions));
        if let Err(e) = checked {
            return Reply::error(e);
        }
        let command = LogCommand::Load {
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
        if let Err(e) = self.must_lead(|| 0) {
            return Reply::error(e);
        }
        if self.state.modules().get(&name).is_none() {
            return Reply::error(WasmError::NoSuchModule(name));
        }
        self.propose(LogCommand::Unload { name }, 0)
            .await
            .unwrap_or_else(Reply::error)
    }

    /// WebAssembly instance slots held now, by calls running.
    pub fn wasm_slots_in_use(&self) -> usize {
        self.state.functions().slots_in_use()
    }

    /// WebAssembly calls that ran on an instance kept from an earlier call.
    pub fn wasm_calls_on_kept_instances(&self) -> u64 {
        self.state.functions().calls_on_kept_instances()
    }

    /// Write calls at apply that outran their first time slice on the async worker and ran
    /// again off it.
    pub fn wasm_calls_past_slice(&self) -> u64 {
        self.state.functions().calls_past_slice()
    }

    /// The threads that take long read-only calls off the async worker.
    pub fn helpers(&self) -> &crate::blocking::Helpers {
        &self.helpers
    }

    /// Compile-cache hits and misses since start.
    pub fn wasm_cache_counts(&self) -> (u64, u64) {
        self.state.functions().cache_counts()
    }

    /// Whether a call of module `name` that is not read-only would go through the log now:
    /// the module is loaded with WRITE. Such a call can be queued without waiting
    /// ([`Node::submit_call`]).
    pub fn is_write_call(&self, name: &str) -> bool {
        self.state
            .modules()
            .get(name)
            .is_some_and(|m| m.permissions.contains(Permissions::WRITE))
    }

    /// Queues a call of `entry` of module `name` for the log as a write call and returns at
    /// once; the reply comes from the [`Ticket`](super::Ticket). Calls queued one after another
    /// apply in that order, so a client's pipeline of write calls shares log entries. Should
    /// the module have lost WRITE since [`Node::is_write_call`] (replaced meanwhile), the call
    /// still runs at apply, in log order, and any write it tries is refused there, as in any
    /// call of a module without WRITE.
    pub fn submit_call(
        &self,
        name: &str,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        limits: CallLimits,
    ) -> Result<super::Ticket, Reply> {
        let slot = keys.first().map_or(0, |k| key_slot(k));
        let module = self
            .state
            .modules()
            .get(name)
            .ok_or_else(|| Reply::error(WasmError::NoSuchModule(name.to_owned())))?;
        has_entry(&module, entry).map_err(Reply::error)?;
        let command = write_call(&module, entry, keys, args, &self.parse_ctx(), &limits);
        self.enqueue(command, slot).map_err(Reply::error)
    }

    /// Calls `entry` of module `name`. A call that may write (not `read_only`, module holding
    /// WRITE) is replicated as the call itself and runs on every member at apply time; any
    /// other call runs here only, as a read under `reads`.
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
        let slot = keys.first().map(|k| key_slot(k));
        let ctx = self.parse_ctx();
        let writes = |m: &ModuleRef| !mode.read_only && m.permissions.contains(Permissions::WRITE);
        // Which module a name means is replicated state. A write call resolves it here and
        // again at apply (by hash). Anything else resolves it after the read barrier: a leader
        // that has not yet applied what it committed (just elected, or replaying its log)
        // must not answer "no such module" for a module loaded before, and a read runs the
        // module as loaded at its barrier. A call without keys still reads: it is redirected
        // like a read of slot 0, not answered from a follower's state without READONLY.
        let found = (!mode.read_only).then(|| self.state.modules().get(name));
        let module = match found.flatten() {
            Some(module) if writes(&module) => module,
            _ => {
                if let Err(e) = self.read_barrier(reads, || Some(slot.unwrap_or(0))).await {
                    return Reply::error(e);
                }
                match self.state.modules().get(name) {
                    Some(module) => module,
                    None => return Reply::error(WasmError::NoSuchModule(name.to_owned())),
                }
            }
        };
        if let Err(e) = has_entry(&module, entry) {
            return Reply::error(e);
        }
        if writes(&module) {
            let command = write_call(&module, entry, keys, args, &ctx, &limits);
            return self
                .propose(command, slot.unwrap_or(0))
                .await
                .unwrap_or_else(Reply::error);
        }
        let ctx = ParseCtx {
            now_ms: self.read_time(ctx.now_ms),
            ..ctx
        };
        // Only a sliced attempt can end with its slice; a full one always answers.
        let answered =
            |reply: Option<Reply>| reply.unwrap_or_else(|| Reply::error(WasmError::SliceEnded));
        // A module whose calls have lately taken longer than a hand-off to another thread
        // costs has this one run by a free helper thread, with its full limits, while the
        // async worker serves the other clients (`blocking.rs`). Short calls, and any call
        // while every helper is busy, run on the worker; so does a lone client's call unless
        // it is very long: the worker would only wait for the helper, whose two wake-ups
        // would add to the call's time.
        let typical = module.stats.typical();
        if self.helpers.count() > 0
            && typical >= HAND_OFF_AFTER
            && (self.helpers.others_calling() || typical > ALONE_HERE_UP_TO)
        {
            let state = self.state.clone();
            let called = (
                module.clone(),
                entry.to_owned(),
                keys.to_vec(),
                args.to_vec(),
            );
            let work = move || {
                let (module, entry, keys, args) = called;
                state.call_read(&module, &entry, &keys, &args, ctx, mode, limits)
            };
            if let Ok(reply) = self.helpers.hand_off(work).await {
                return answered(reply);
            }
        }
        let run = |limits| {
            self.state
                .call_read(&module, entry, keys, args, ctx, mode, limits)
        };
        // On a current-thread runtime (the simulation) the call simply runs inline.
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread
        {
            return answered(run(limits));
        }
        // Most calls take microseconds: the first attempt runs right here on the async worker,
        // in a time slice of a few milliseconds. A call that needs longer is run again (it only
        // reads, so running it twice is harmless) after the worker hands its other tasks
        // (clients, Raft heartbeats) to another thread (`block_in_place`), with its full limit:
        // a long call never holds up a worker for more than one slice.
        if limits.max_duration > TIME_SLICE {
            let sliced = CallLimits {
                max_duration: TIME_SLICE,
                time_slice: true,
                ..limits
            };
            if let Some(reply) = run(sliced) {
                return reply;
            }
        }
        answered(tokio::task::block_in_place(|| run(limits)))
    }
}

/// `Ok` if `module` exports `entry` as an entry point.
fn has_entry(module: &ModuleRef, entry: &str) -> Result<(), WasmError> {
    if module.exports.iter().any(|e| e == entry) {
        Ok(())
    } else {
        Err(WasmError::NoSuchEntry {
            module: module.name.clone(),
            entry: entry.to_owned(),
        })
    }
}

/// The log entry of a write call of `entry` of `module`, made at `ctx` (its time and seed),
/// with fuel capped at what any write call may use.
fn write_call(
    module: &ModuleRef,
    entry: &str,
    keys: &[Bytes],
    args: &[Bytes],
    ctx: &ParseCtx,
    limits: &CallLimits,
) -> LogCommand {
    LogCommand::Call {
        module: module.name.clone(),
        sha256: module.sha256.clone(),
        entry: entry.to_owned(),
        keys: keys.to_vec(),
        args: args.to_vec(),
        now_ms: ctx.now_ms,
        seed: ctx.seed,
        max_fuel: limits.max_fuel.min(MAX_WRITE_FUEL),
        max_memory_bytes: limits.max_memory_bytes,
    }
}

/// A command of a MULTI transaction that holds function calls.
#[derive(Debug, Clone)]
pub enum Queued {
    /// A keyspace command, parsed at EXEC.
    Op(Op),
    /// `FCALL`/`WASM.CALL` (`read_only`: their `_RO` forms).
    Call {
        /// Module name.
        module: String,
        /// Exported function.
        entry: String,
        /// Declared keys.
        keys: Vec<Bytes>,
        /// Arguments.
        args: Vec<Bytes>,
        /// Every write is refused.
        read_only: bool,
    },
}

impl Node {
    /// Runs a transaction holding function calls as one log entry: every member checks the
    /// watched keys and runs the commands in order holding the keyspace, calls included (a
    /// call that only reads runs there too, so it sees the state between its neighbours).
    pub async fn transaction(
        &self,
        queued: Vec<Queued>,
        watches: Vec<WatchToken>,
        ctx: ParseCtx,
        limits: CallLimits,
    ) -> Reply {
        let slot = queued
            .iter()
            .find_map(|q| match q {
                Queued::Op(op) => op.keys().first().map(|k| key_slot(k)),
                Queued::Call { keys, .. } => keys.first().map(|k| key_slot(k)),
            })
            .unwrap_or(0);
        // A module name is resolved against applied state: a leader that has not yet applied
        // a load it committed waits for that first (see `wasm_call`).
        let unknown = queued.iter().any(|q| {
            matches!(q, Queued::Call { module, .. } if self.state.modules().get(module).is_none())
        });
        if unknown && let Err(e) = self.read_barrier(self.linearizable(), || Some(slot)).await {
            return Reply::error(e);
        }
        let steps = queued
            .into_iter()
            .map(|q| match q {
                Queued::Op(op) => Step::Op(op),
                Queued::Call {
                    module,
                    entry,
                    keys,
                    args,
                    read_only,
                } => Step::Call(CallStep {
                    sha256: (self.state.modules().get(&module))
                        .map(|m| m.sha256.clone())
                        .unwrap_or_default(),
                    module,
                    entry,
                    keys,
                    args,
                    read_only,
                    max_fuel: limits.max_fuel.min(MAX_WRITE_FUEL),
                    max_memory_bytes: limits.max_memory_bytes,
                }),
            })
            .collect();
        let command = LogCommand::Transaction {
            now_ms: ctx.now_ms,
            seed: ctx.seed,
            watches,
            steps,
        };
        self.propose(command, slot)
            .await
            .unwrap_or_else(Reply::error)
    }
}
