//! The module registry (name → module) and call statistics.
//!
//! Modules are held as `Arc`s: REPLACE swaps the map entry atomically while calls in flight
//! finish on the module they started with. The registry is ordered by name so listings are
//! stable.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::{CallOutcome, ModuleRef, WasmError};
use crate::reply::RedisError;

/// How many recent call durations are kept for the p99.
const DURATION_WINDOW: usize = 1024;

/// Statistics of one module.
#[derive(Debug, Default)]
pub struct ModuleStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that failed.
    pub errors: AtomicU64,
    /// Fuel consumed by successful calls.
    pub fuel_total: AtomicU64,
    /// Total call time in ns (summed in ns: calls of a microsecond or two would round away).
    pub total_ns: AtomicU64,
    recent_us: Mutex<VecDeque<u64>>,
    /// A moving average of the recent calls' times in ns (each call weighs 1/8).
    typical_ns: AtomicU64,
    /// The last error line, if any.
    pub last_error: Mutex<Option<String>>,
}

impl ModuleStats {
    /// Records one call.
    pub fn record(&self, outcome: &Result<CallOutcome, WasmError>, took: Duration) {
        let us = took.as_micros() as u64;
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let typical = self.typical_ns.load(Ordering::Relaxed);
        self.typical_ns
            .store(typical - typical / 8 + ns / 8, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        match outcome {
            Ok(o) => {
                self.fuel_total.fetch_add(o.fuel, Ordering::Relaxed);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock() = Some(e.line());
            }
        }
        let mut recent = self.recent_us.lock();
        if recent.len() == DURATION_WINDOW {
            recent.pop_front();
        }
        recent.push_back(us);
    }

    /// How long this module's calls have taken lately (a moving average).
    pub fn typical(&self) -> Duration {
        Duration::from_nanos(self.typical_ns.load(Ordering::Relaxed))
    }

    /// Mean call time in µs, rounded.
    pub fn avg_us(&self) -> u64 {
        let calls = self.calls.load(Ordering::Relaxed);
        self.total_ns
            .load(Ordering::Relaxed)
            .checked_div(calls)
            .map_or(0, |ns| (ns + 500) / 1000)
    }

    /// 99th percentile of the recent call times in µs.
    pub fn p99_us(&self) -> u64 {
        let mut recent: Vec<u64> = self.recent_us.lock().iter().copied().collect();
        if recent.is_empty() {
            return 0;
        }
        recent.sort_unstable();
        recent[(recent.len() * 99 / 100).min(recent.len() - 1)]
    }
}

/// Totals across modules for WASM.STATS and INFO.
#[derive(Debug, Default)]
pub struct Totals {
    /// Calls made.
    pub calls: AtomicU64,
    /// Failed calls.
    pub errors: AtomicU64,
    /// Fuel consumed.
    pub fuel: AtomicU64,
    /// Modules loaded since start (REPLACE included).
    pub loads: AtomicU64,
    /// Errors by kind.
    pub errors_by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

/// Loaded modules by name.
#[derive(Debug, Default)]
pub struct Registry {
    modules: RwLock<BTreeMap<String, ModuleRef>>,
    /// Totals for WASM.STATS.
    pub totals: Totals,
}

impl Registry {
    /// Adds `module`; with `replace` an existing module of that name is swapped out.
    pub fn insert(&self, module: super::LoadedModule, replace: bool) -> Result<(), WasmError> {
        let mut modules = self.modules.write();
        if !replace && modules.contains_key(&module.name) {
            return Err(WasmError::AlreadyLoaded(module.name));
        }
        self.totals.loads.fetch_add(1, Ordering::Relaxed);
        modules.insert(module.name.clone(), Arc::new(module));
        Ok(())
    }

    /// Removes every module (a snapshot is being installed).
    pub fn clear(&self) {
        self.modules.write().clear();
    }

    /// Removes a module; false if there was none.
    pub fn remove(&self, name: &str) -> bool {
        self.modules.write().remove(name).is_some()
    }

    /// The module called `name`.
    pub fn get(&self, name: &str) -> Option<ModuleRef> {
        self.modules.read().get(name).cloned()
    }

    /// Every module, by name.
    pub fn list(&self) -> Vec<ModuleRef> {
        self.modules.read().values().cloned().collect()
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.modules.read().len()
    }

    /// Whether no module is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a call in the totals.
    pub fn record(&self, outcome: &Result<CallOutcome, WasmError>) {
        self.totals.calls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(o) => {
                self.totals.fuel.fetch_add(o.fuel, Ordering::Relaxed);
            }
            Err(e) => {
                self.totals.errors.fetch_add(1, Ordering::Relaxed);
                *self
                    .totals
                    .errors_by_kind
                    .lock()
                    .entry(e.kind())
                    .or_default() += 1;
            }
        }
    }
}
