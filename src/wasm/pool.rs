//! Pristine instances made ahead of calls, and used ones torn down, on a thread of their own
//! so neither costs the call path.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::{Engine, EngineWeak, Instance, Store};

use super::{CallState, EPOCH_TICKS_PER_SECOND, EngineSettings, LoadedModule, first_line};

/// A pristine instance and the store it lives in, ready for one call.
pub(super) struct Ready {
    pub(super) store: Store<CallState>,
    pub(super) instance: Instance,
}

/// Work for the pool thread.
pub(super) enum PoolJob {
    /// Bring this module's pool back up to its minimum.
    Refill(Weak<LoadedModule>),
    /// Tear down a used instance (its memory reset happens here, off the call path).
    Retire(Store<CallState>),
}

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

/// Makes a pristine instance of `module` in a fresh store. The store's state is idle (no
/// permissions), so a start function cannot touch data.
pub(super) fn instantiate(engine: &Engine, module: &LoadedModule) -> wasmtime::Result<Ready> {
    let mut store = Store::new(engine, CallState::idle(&module.name));
    store.limiter(|state| state);
    store.set_fuel(START_FUEL)?;
    store.set_epoch_deadline(EPOCH_TICKS_PER_SECOND);
    let instance = module.pre.instantiate(&mut store)?;
    Ok(Ready { store, instance })
}

/// The pool thread: refills pools to their minimum, tears down used instances, and empties
/// the pools of modules idle for longer than `idle_timeout`.
pub(super) fn pool_thread(
    engine: EngineWeak,
    jobs: Receiver<PoolJob>,
    settings: EngineSettings,
    retiring: Arc<AtomicUsize>,
) {
    let mut known: Vec<Weak<LoadedModule>> = Vec::new();
    loop {
        match jobs.recv_timeout(Duration::from_secs(1)) {
            Ok(PoolJob::Retire(store)) => {
                drop(store);
                retiring.fetch_sub(1, Ordering::Relaxed);
            }
            Ok(PoolJob::Refill(weak)) => {
                let (Some(module), Some(engine)) = (weak.upgrade(), engine.upgrade()) else {
                    continue;
                };
                if !known.iter().any(|k| k.ptr_eq(&weak)) {
                    known.push(weak);
                }
                while module.pool.ready() < settings.min_instances as usize {
                    match instantiate(&engine, &module) {
                        Ok(ready) => module.pool.ready.lock().push(ready),
                        Err(e) => {
                            tracing::debug!(module = %module.name, cause = %first_line(&e), "pool refill stopped");
                            break;
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
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
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
