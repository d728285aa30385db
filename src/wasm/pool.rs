//! Instances for calls, made and torn down on the thread that runs the call, and the count of
//! the pooling allocators' slots (both engines' together), one of which is kept for applies.
//!
//! A call instantiates its module from the `InstancePre` in a slot of the pooling allocator and
//! frees the slot as soon as it ends, on its own thread: the allocator then hands the same slot
//! (its memory reset, its pages still resident and in this core's cache) to the next call of
//! the same module. Making instances ahead on another thread and tearing them down there cost
//! more than it saved: each hand-off woke a thread, and slots waiting for teardown sent calls
//! to other slots, cold ones (measured in `benches/wasm_call.rs`: 10.8 µs per key-access call
//! with the pool thread, 6.1 µs without).
//!
//! Architecture invariant: a write call at apply always finds an instance slot. Every instance
//! running a call holds a [`Slot`]; anything but an apply (a local call) takes one only while
//! fewer than `max_instances - 1` are held, so the last one is free whenever an apply starts
//! (applies run one at a time), whatever this node's read traffic is. Instances kept between
//! calls (`reuse.rs`) hold no slot: each engine's pool has room for them beyond
//! `max_instances`, and a call that takes one takes a slot for it as for a new instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::{Extern, Global, Instance, ModuleExport, Store, TypedFunc};

use super::host::GuestExports;
use super::{CallState, Compiled, NO_DEADLINE};

/// A pristine instance and the store it lives in, for one call. Fields drop in order: the
/// store (which frees the allocator's slot) before the slot's count.
pub(super) struct Ready {
    pub(super) store: Store<CallState>,
    pub(super) instance: Instance,
    pub(super) slot: Slot,
}

/// The pooling allocators' instance slots (both engines') as this node counts them.
#[derive(Debug)]
pub(super) struct Slots {
    in_use: AtomicUsize,
    /// `max_instances`: what the allocator holds.
    total: usize,
}

/// Slots kept for applies: they run one at a time, and each needs one instance.
const RESERVED_FOR_APPLY: usize = 1;

impl Slots {
    pub(super) fn new(total: u32) -> Arc<Slots> {
        Arc::new(Slots {
            in_use: AtomicUsize::new(0),
            total: total as usize,
        })
    }

    /// Slots everything but an apply may hold together.
    fn shared_limit(&self) -> usize {
        self.total.saturating_sub(RESERVED_FOR_APPLY)
    }

    /// A slot, if one is free to whoever asks: an apply may take the reserved one.
    pub(super) fn acquire(self: &Arc<Slots>, for_apply: bool) -> Option<Slot> {
        let limit = if for_apply {
            self.total
        } else {
            self.shared_limit()
        };
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// [`Slots::acquire`], or the error a call that finds no slot ends with.
    pub(super) fn take(self: &Arc<Slots>, for_apply: bool) -> wasmtime::Result<Slot> {
        self.acquire(for_apply).ok_or_else(|| {
            wasmtime::format_err!(
                "all {} instance slots are in use (wasm.pool.max_instances)",
                self.total
            )
        })
    }

    /// Slots held now.
    pub(super) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }
}

/// One instance slot held; released when dropped.
pub(super) struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Budget for a module's start function, run when an instance is made for a call.
const START_FUEL: u64 = 10_000_000;

/// Makes a pristine instance of `module` (named `name`) in a fresh store of the engine it was
/// compiled for, in a slot taken from `slots` (the reserved one too when `for_apply`). The store's state is idle (no permissions), so a start
/// function cannot touch data. The start function is bounded by fuel alone, never by the
/// clock: an apply may instantiate on the spot, and its outcome must not depend on how busy
/// this host was.
pub(super) fn instantiate(
    module: &Compiled,
    name: &str,
    slots: &Arc<Slots>,
    for_apply: bool,
) -> wasmtime::Result<Ready> {
    let slot = slots.take(for_apply)?;
    let mut store = Store::new(module.pre.module().engine(), CallState::idle(name));
    store.limiter(|state| state);
    store.set_fuel(START_FUEL)?;
    store.set_epoch_deadline(NO_DEADLINE);
    let instance = module.pre.instantiate(&mut store)?;
    Ok(Ready {
        store,
        instance,
        slot,
    })
}

/// An instance's exports, found once per instance: a kept instance keeps them for its next
/// calls.
pub(super) struct Handles {
    pub(super) instance: Instance,
    /// `memory` and `alloc`, for the host functions and the reset: lent to the call's state while a call
    /// runs and given back after it (`call.rs`), never cloned (a clone of a typed function
    /// counts a reference to its type, shared by every thread calling the module). `None`
    /// only if a call failed before giving it back; such an instance is not kept.
    pub(super) guest: Option<GuestExports>,
    pub(super) depth: Option<Global>,
    /// The entry points, in the order of `LoadedModule::exports`, found at their first call.
    pub(super) entries: Vec<Option<TypedFunc<(i32, i32), i64>>>,
    /// The mutable globals `reuse.rs` sets back (none unless the module may be kept).
    pub(super) globals: Vec<Global>,
    /// The pages of the memory the last reset's scan found written, as byte ranges (`reuse.rs`);
    /// `None` until an instance is first reset.
    pub(super) written: Option<Vec<std::ops::Range<usize>>>,
}

impl Handles {
    /// The exports of `instance` (of `code`, with `entries` entry points; `globals` are the
    /// mutable globals to keep handles to).
    pub(super) fn find(
        store: &mut Store<CallState>,
        instance: &Instance,
        code: &Compiled,
        entries: usize,
        globals: &[ModuleExport],
    ) -> Option<Handles> {
        let mut export = |at: &ModuleExport| instance.get_module_export(&mut *store, at);
        let memory = export(&code.index.memory).and_then(Extern::into_memory)?;
        let alloc = export(&code.index.alloc).and_then(Extern::into_func)?;
        let depth = code
            .index
            .depth
            .as_ref()
            .and_then(&mut export)
            .and_then(Extern::into_global);
        let globals = globals
            .iter()
            .map(|at| export(at).and_then(Extern::into_global))
            .collect::<Option<Vec<_>>>()?;
        Some(Handles {
            instance: *instance,
            guest: Some(GuestExports {
                memory,
                alloc: alloc.typed::<i32, i32>(&*store).ok()?,
            }),
            depth,
            entries: vec![None; entries],
            globals,
            written: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Instance, Module, Store};

    /// The module `tests/wasm/calls.rs` calls 10,000 times to show that every call starts from
    /// a pristine instance: here, two calls on one instance show that it notices each thing
    /// an earlier call leaves behind (so its answer of 0 there means something).
    #[test]
    fn the_pristine_probe_notices_everything_a_reused_instance_keeps() {
        let wat = include_str!("../../tests/wasm/modules/pristine.wat");
        let engine = Engine::default();
        let module = Module::new(&engine, wat).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let main = instance
            .get_typed_func::<(i32, i32), i64>(&mut store, "main")
            .unwrap();
        assert_eq!(
            main.call(&mut store, (0, 0)).unwrap(),
            0,
            "a fresh instance"
        );
        assert_eq!(
            main.call(&mut store, (0, 0)).unwrap(),
            0b11_1111,
            "every mark of the first call"
        );
    }
}
