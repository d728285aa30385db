//! Running a call: a pristine instance (kept from an earlier call and reset, `reuse.rs`, or
//! made for it on the calling thread), the input written through the guest's `alloc`, the
//! entry point run under fuel, memory, stack and (read-only calls) time limits, the instance
//! reset and kept or torn down, and the outcome classified into the error the client sees.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use wasmtime::{Extern, Store, Trap};

use super::pool::{Handles, Ready, instantiate};
use super::view::{Access, SharedView};
use super::{
    APPLY_TIME_SLICE, CallLimits, CallMode, CallState, Compiled, EPOCH_TICKS_PER_SECOND,
    LoadedModule, ModuleRef, NO_DEADLINE, Runtime, WasmError, abi, first_line,
};
use super::{depth, pagemap, reuse};
use crate::keyspace::{Keyspace, ParseCtx};
use crate::reply::Reply;

/// The result of a successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    /// The reply: what the guest passed to `reply`, or its return value.
    pub reply: Reply,
    /// Fuel consumed.
    pub fuel: u64,
}

impl Runtime {
    /// Runs `entry` of `module` on `keyspace` with `keys` and `args`. The keyspace comes back
    /// in every case; after a failure it holds exactly what it held before.
    ///
    /// The call runs on a pristine instance, kept from an earlier call or made for it, and
    /// reset and kept or torn down as soon as it ends (all on this thread: see `pool.rs` and
    /// `reuse.rs`).
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &self,
        module: &ModuleRef,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        keyspace: Keyspace,
        ctx: ParseCtx,
        mode: CallMode,
        limits: CallLimits,
    ) -> (Keyspace, Result<CallOutcome, WasmError>) {
        let (access, outcome) = self.run_call(
            module,
            entry,
            keys,
            args,
            Access::Owned(keyspace),
            ctx,
            mode,
            limits,
        );
        (access.into_owned(), outcome)
    }

    /// Runs a call that only reads, against the keyspace behind `keyspace` without holding
    /// its lock while guest code runs (see `view.rs`). [`WasmError::Overtaken`] when a write
    /// changed what it had read; the caller runs it again.
    #[allow(clippy::too_many_arguments)]
    pub fn call_shared(
        &self,
        module: &ModuleRef,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        keyspace: Arc<RwLock<Keyspace>>,
        ctx: ParseCtx,
        mode: CallMode,
        limits: CallLimits,
    ) -> Result<CallOutcome, WasmError> {
        let access = Access::Shared(SharedView::new(keyspace));
        self.run_call(module, entry, keys, args, access, ctx, mode, limits)
            .1
    }

    #[allow(clippy::too_many_arguments)]
    fn run_call(
        &self,
        module: &ModuleRef,
        entry: &str,
        keys: &[Bytes],
        args: &[Bytes],
        access: Access,
        ctx: ParseCtx,
        mode: CallMode,
        limits: CallLimits,
    ) -> (Access, Result<CallOutcome, WasmError>) {
        let started = Instant::now();
        let state = CallState::new(
            access,
            ctx,
            module.permissions,
            mode,
            keys,
            &module.name,
            limits.max_memory_bytes as usize,
        );
        let mut state = state;
        state.time_slice = limits.time_slice;
        let at_apply = limits.at_apply();
        let code = module.compiled();
        let checked = module.checked.get().is_some_and(|c| std::ptr::eq(c, code));
        let ready = match self.kept.take(module, checked) {
            Some((store, instance, handles)) => match self.slots.take(at_apply) {
                Ok(slot) => {
                    self.reused.fetch_add(1, Ordering::Relaxed);
                    let ready = Ready {
                        store,
                        instance,
                        slot,
                    };
                    Ok((ready, handles))
                }
                Err(e) => {
                    self.kept.keep(module, checked, store, instance, handles);
                    Err(e)
                }
            },
            None => self.fresh_instance(code, module, at_apply),
        };
        // Read only for calls whose instance may be kept (`reuse::reset` uses it).
        let keepable = code.reuse.is_some() && code.pristine.get().is_some();
        let faults_before;
        let (mut store, instance, mut handles, slot, result) = match ready {
            Ok((
                Ready {
                    mut store,
                    instance,
                    slot,
                },
                mut handles,
            )) => {
                *store.data_mut() = state;
                faults_before = keepable
                    .then(pagemap::faults_by_now_on_this_thread)
                    .flatten();
                // A panic in our own host code must not take the keyspace with it: the store,
                // which holds it, outlives the unwind here, and the call is undone below.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let result = run(&mut store, &mut handles, code, module, entry, keys, args, limits);
                    let unreachable = result.as_ref().is_err_and(|e| {
                        e.downcast_ref::<Trap>() == Some(&Trap::UnreachableCodeReached)
                    });
                    if unreachable {
                        let depth = store.data().depth;
                        store.data_mut().depth_exceeded =
                            depth::exceeded(depth.map(|g| g.get(&mut store)));
                    }
                    result
                }))
                .unwrap_or_else(|panic| {
                    let message = panic_text(&*panic);
                    tracing::error!(module = %module.name, entry, %message, "host code panicked during a call; undoing it");
                    store.data_mut().host_panic = Some(message);
                    Err(wasmtime::format_err!("host panic"))
                });
                (store, instance, handles, slot, result)
            }
            Err(e) => {
                // No instance: the call never ran; hand the keyspace straight back.
                let outcome = Err(WasmError::Instantiate(first_line(&e)));
                module.stats.record(&outcome, started.elapsed());
                return (state.access, outcome);
            }
        };
        let fuel_left = store.get_fuel().unwrap_or(0);
        let grew = store.data().grew;
        if grew && module.checked.get().is_none() {
            self.note_growth(module);
        }
        let mut state = std::mem::replace(store.data_mut(), CallState::idle(&module.name));
        handles.guest = state.guest.take();
        // An instance whose call ended well is reset and kept for the next call of the module
        // (`reuse.rs`); any other is torn down, freeing its slot (the store first), before
        // anything else: the next call of this module finds the slot reset and warm.
        let keep = result.is_ok()
            && !grew
            && code.pristine.get().is_some_and(|globals| {
                reuse::reset(&mut store, &mut handles, code, globals, faults_before)
            });
        if keep {
            drop(slot);
            self.kept.keep(module, checked, store, instance, handles);
        } else {
            drop(store);
            drop(slot);
        }
        let outcome = match result {
            Ok(value) => Ok(CallOutcome {
                reply: state.reply.take().unwrap_or(Reply::Int(value)),
                fuel: limits.max_fuel.saturating_sub(fuel_left),
            }),
            Err(e) => {
                state.roll_back();
                Err(classify(e, &mut state))
            }
        };
        // An overtaken read or an ended slice runs again; only the run that counts is recorded.
        if !matches!(outcome, Err(WasmError::Overtaken | WasmError::SliceEnded)) {
            module.stats.record(&outcome, started.elapsed());
        }
        (state.access, outcome)
    }
}

impl Runtime {
    /// A new instance of `code` (the code `module` runs now) in a free slot, with its exports
    /// found, its mutable globals recorded if it is the module's first and may be kept.
    fn fresh_instance(
        &self,
        code: &Compiled,
        module: &LoadedModule,
        at_apply: bool,
    ) -> wasmtime::Result<(Ready, Handles)> {
        let mut ready = instantiate(code, &module.name, &self.slots, at_apply)?;
        let globals = code.reuse.as_ref().map_or(&[][..], reuse::Reuse::globals);
        let entries = module.exports.len();
        let handles = Handles::find(&mut ready.store, &ready.instance, code, entries, globals)
            .ok_or_else(|| wasmtime::format_err!("no export 'memory' or 'alloc'"))?;
        if code.reuse.is_some() {
            code.pristine
                .get_or_init(|| reuse::record_globals(&mut ready.store, &handles));
        }
        Ok((ready, handles))
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    store: &mut Store<CallState>,
    handles: &mut Handles,
    code: &Compiled,
    module: &LoadedModule,
    entry: &str,
    keys: &[Bytes],
    args: &[Bytes],
    limits: CallLimits,
) -> wasmtime::Result<i64> {
    store.set_fuel(limits.max_fuel)?;
    // Calls that run on this node only are cut off by wall-clock time; write calls, which
    // every replica re-executes, come with no time limit and are bounded by fuel alone so the
    // outcome is deterministic.
    let ticks = if limits.at_apply() && limits.time_slice {
        // A first attempt at apply, undone and run again off the worker if cut here: the
        // outcome is decided by fuel alone either way.
        (APPLY_TIME_SLICE.as_millis() as u64 * EPOCH_TICKS_PER_SECOND / 1000).max(1)
    } else if limits.at_apply() {
        NO_DEADLINE
    } else {
        (limits.max_duration.as_millis() as u64 * EPOCH_TICKS_PER_SECOND / 1000).max(1)
    };
    store.set_epoch_deadline(ticks);
    // The exports were found at load (`ExportIndex`) and on this instance once (`Handles`):
    // no lookups by name here, and the host functions get the memory and `alloc` from the
    // call's state.
    let position = module.exports.iter().position(|e| e == entry);
    let Some(slot) = position.and_then(|i| handles.entries.get_mut(i)) else {
        return Err(wasmtime::format_err!("no export '{entry}'"));
    };
    if slot.is_none() {
        let instance = handles.instance;
        let found = position
            .and_then(|i| code.index.entries.get(i))
            .and_then(|at| instance.get_module_export(&mut *store, at))
            .and_then(Extern::into_func);
        let Some(func) = found else {
            return Err(wasmtime::format_err!("no export '{entry}'"));
        };
        *slot = Some(func.typed::<(i32, i32), i64>(&*store)?);
    }
    let Some(func) = slot.as_ref() else {
        return Err(wasmtime::format_err!("no export '{entry}'"));
    };
    // The handles are lent to the call's state, not cloned (see `Handles::guest`); `run_call`
    // takes them back.
    let Some(guest) = handles.guest.take() else {
        return Err(wasmtime::format_err!("no export 'alloc'"));
    };
    let input = abi::encode_input(keys, args);
    let ptr = guest.alloc.call(&mut *store, input.len() as i32);
    let memory = guest.memory;
    let state = store.data_mut();
    state.depth = handles.depth;
    state.guest = Some(guest);
    let ptr = ptr?;
    memory
        .write(&mut *store, ptr as u32 as usize, &input)
        .map_err(|_| wasmtime::Error::from(Trap::MemoryOutOfBounds))?;
    func.call(&mut *store, (ptr, input.len() as i32))
}

/// Turns a wasmtime error into the error the client sees.
fn classify(error: wasmtime::Error, state: &mut CallState) -> WasmError {
    if let Some(message) = state.host_panic.take() {
        return WasmError::HostPanic(message);
    }
    if let Some(refusal) = state.refusal.take() {
        return refusal;
    }
    if state.memory_exceeded {
        return WasmError::MemoryLimit;
    }
    if let Some(message) = state.panic_message.take() {
        return WasmError::Panic(message);
    }
    if state.depth_exceeded {
        return WasmError::StackOverflow;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => WasmError::OutOfFuel,
        Some(Trap::StackOverflow) => WasmError::StackOverflow,
        Some(Trap::Interrupt) if state.time_slice => WasmError::SliceEnded,
        Some(Trap::Interrupt) => WasmError::Timeout,
        Some(trap) => {
            let text = trap.to_string();
            WasmError::Trap(text.strip_prefix("wasm trap: ").unwrap_or(&text).to_owned())
        }
        None => WasmError::Trap(first_line(&error)),
    }
}

/// The message a panic carried, if it is text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
