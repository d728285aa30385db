//! Pristine instances made ahead of calls, and used ones torn down, on a thread of their own
//! so neither costs the call path; and the count of the pooling allocator's slots, one of
//! which is kept for applies.
//!
//! Architecture invariant: a write call at apply always finds an instance slot. Every live
//! instance holds a [`Slot`]; anything but an apply (a local call, a pool refill) takes one only
//! while fewer than `max_instances - 1` are held, so the last one is free whenever an apply
//! starts (applies run one at a time), whatever this node's read traffic and warm pools are.
//! An apply's used instance goes to the pool thread only when that leaves the reserve free;
//! otherwise it is torn down in place.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::{Engine, EngineWeak, Instance, Store};

use super::{CallState, EngineSettings, LoadedModule, NO_DEADLINE, first_line};

/// A pristine instance and the store it lives in, ready for one call. Fields drop in order:
/// the store (which frees the allocator's slot) before the slot's count.
pub(super) struct Ready {
    pub(super) store: Store<CallState>,
    pub(super) instance: Instance,
    pub(super) slot: Slot,
}

/// The pooling allocator's instance slots as this node counts them.
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

    /// Whether the slots held now leave the reserve free (an apply's used instance may then
    /// wait for the pool thread; otherwise it is torn down at once).
    pub(super) fn reserve_is_free(&self) -> bool {
        self.in_use.load(Ordering::Acquire) <= self.shared_limit()
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

/// Work for the pool thread.
pub(super) enum PoolJob {
    /// Bring this module's pool back up to its minimum.
    Refill(Weak<LoadedModule>),
    /// Tear down the used instances waiting in [`Retired`].
    Drain,
}

/// Used instances waiting for the pool thread to tear them down (their memory reset happens
/// there, off the call path; each holds its allocator slot until then). They are handed over
/// in batches: waking the pool thread for each one cost more than the teardown saved.
#[derive(Default)]
pub(super) struct Retired {
    waiting: Mutex<Vec<(Store<CallState>, Slot)>>,
}

impl Retired {
    /// Leaves `store` and its `slot` for the pool thread, unless `cap` are waiting already
    /// (then they are handed back, to be torn down by the caller). `Ok(true)`: `batch` are
    /// waiting now, and the pool thread should be woken.
    #[allow(clippy::result_large_err)]
    pub(super) fn hand_over(
        &self,
        store: Store<CallState>,
        slot: Slot,
        cap: usize,
        batch: usize,
    ) -> Result<bool, (Store<CallState>, Slot)> {
        let mut waiting = self.waiting.lock();
        if waiting.len() >= cap {
            return Err((store, slot));
        }
        waiting.push((store, slot));
        Ok(waiting.len() >= batch)
    }

    fn drain(&self) {
        let used = std::mem::take(&mut *self.waiting.lock());
        drop(used);
    }
}

/// How long the pool thread sleeps at most: used instances fewer than a batch wait no longer
/// than this for their teardown.
const POOL_TICK: Duration = Duration::from_millis(10);

/// How often the pool thread looks for modules idle past `idle_timeout`.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Pre-instantiated pristine instances of one module.
#[derive(Default)]
pub struct InstancePool {
    ready: Mutex<Vec<Ready>>,
    last_used: Mutex<Option<Instant>>,
}

impl InstancePool {
    pub(super) fn take(&self) -> Option<Ready> {
        *self.last_used.lock() = Some(Instant::now());
        self.ready.lock().pop()
    }

    /// Instances ready now.
    pub fn ready(&self) -> usize {
        self.ready.lock().len()
    }
}

/// Budget for a module's start function, run when an instance is made ahead of a call.
const START_FUEL: u64 = 10_000_000;

/// Makes a pristine instance of `module` in a fresh store, in a slot taken from `slots` (the
/// reserved one too when `for_apply`). The store's state is idle (no permissions), so a start
/// function cannot touch data. The start function is bounded by fuel alone, never by the
/// clock: an apply may instantiate on the spot, and its outcome must not depend on how busy
/// this host was.
pub(super) fn instantiate(
    engine: &Engine,
    module: &LoadedModule,
    slots: &Arc<Slots>,
    for_apply: bool,
) -> wasmtime::Result<Ready> {
    let Some(slot) = slots.acquire(for_apply) else {
        return Err(wasmtime::format_err!(
            "all {} instance slots are in use (wasm.pool.max_instances)",
            slots.total
        ));
    };
    let mut store = Store::new(engine, CallState::idle(&module.name));
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

/// The pool thread: refills pools to their minimum, tears down used instances, and empties
/// the pools of modules idle for longer than `idle_timeout`.
pub(super) fn pool_thread(
    engine: EngineWeak,
    jobs: Receiver<PoolJob>,
    settings: EngineSettings,
    retired: Arc<Retired>,
    slots: Arc<Slots>,
) {
    let mut known: Vec<Weak<LoadedModule>> = Vec::new();
    let mut idle_checked = Instant::now();
    loop {
        let job = jobs.recv_timeout(POOL_TICK);
        retired.drain();
        match job {
            Ok(PoolJob::Drain) => {}
            Ok(PoolJob::Refill(weak)) => {
                let (Some(module), Some(engine)) = (weak.upgrade(), engine.upgrade()) else {
                    continue;
                };
                if !known.iter().any(|k| k.ptr_eq(&weak)) {
                    known.push(weak);
                }
                while module.pool.ready() < settings.min_instances as usize {
                    match instantiate(&engine, &module, &slots, false) {
                        Ok(ready) => module.pool.ready.lock().push(ready),
                        Err(e) => {
                            tracing::debug!(module = %module.name, cause = %first_line(&e), "pool refill stopped");
                            break;
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Also while jobs keep coming: one module in steady use must not keep another's
        // idle instances alive.
        if idle_checked.elapsed() >= IDLE_CHECK {
            idle_checked = Instant::now();
            known.retain(|weak| match weak.upgrade() {
                None => false,
                Some(module) => {
                    let idle = module
                        .pool
                        .last_used
                        .lock()
                        .is_none_or(|t| t.elapsed() > settings.idle_timeout);
                    if idle {
                        module.pool.ready.lock().clear();
                    }
                    true
                }
            });
        }
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
