//! WebAssembly user-defined functions: two wasmtime [`Engine`]s per server (guard pages or
//! explicit bounds checks, see [`LoadedModule::memory_checks`]), modules validated
//! against the guest ABI at load, and calls run on a pristine instance with fuel, memory, stack
//! and (for read-only calls) time limits.
//!
//! A write call owns the keyspace for its duration: the state machine moves it into the call's
//! store under its exclusive lock and gets it back afterwards (wasmtime stores cannot borrow).
//! Writes go through keyspace [`Op`](crate::keyspace::Op)s with an undo log, so a call that
//! fails leaves no partial writes. A read-only call holds no lock while its guest runs: it
//! reads through a [`SharedView`] that takes the shared lock per read and notices when a write
//! overtook what it read (`view.rs`). This layer never sees RESP, sockets or Raft.
//!
//! Files: `mod.rs` (the [`Runtime`]: engine, linker, compiling), `cache.rs` (compiled code on
//! disk), `divide.rs` (64-bit divisions take a 32-bit path when the operands fit, rewritten
//! at load), `headroom.rs` (room for a module to grow its memory into without growing it),
//! `validate.rs` (the ABI's exports and imports, checked at load), `call.rs` (running a
//! call and classifying how it ended), `pool.rs` (an instance per call, made and torn down on the
//! calling thread; the allocator's slots), `host.rs` (the `ferrite` imports), `view.rs` (owned and shared
//! keyspace access), `abi.rs` (the host's side of the
//! ABI encodings), `registry.rs` (modules by name, statistics), `error.rs`, `permissions.rs`.

pub mod abi;
mod cache;
mod call;
mod depth;
mod divide;
mod error;
mod headroom;
mod host;
mod pagemap;
mod permissions;
mod pool;
mod registry;
mod reuse;
mod validate;
mod view;

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker,
    PoolingAllocationConfig, Val,
};

pub use call::CallOutcome;
pub use depth::{DEPTH_BUDGET, DEPTH_EXPORT};
pub use error::WasmError;
pub use host::{CallMode, CallState, FUEL_COSTS, FuelCosts};
#[cfg(test)]
pub(crate) use host::{ON_LOG, PANIC_IN_LOG};
pub use permissions::Permissions;
pub use registry::{ModuleStats, Registry};
pub use view::{Access, SharedView};

use pool::Slots;

/// The most fuel a write call may start with, whatever `wasm-max-fuel` says: every replica
/// runs a write call at apply, where nothing but fuel ends it, so this bounds how long one
/// entry can hold up the log (about a second of guest code).
pub const MAX_WRITE_FUEL: u64 = 1_000_000_000;

/// The time slice of a write call's first attempt at apply ([`CallLimits::time_slice`]).
pub const APPLY_TIME_SLICE: Duration = Duration::from_millis(20);

/// The largest memory a wasm32 module can address: 4 GiB.
pub const WASM32_MAX_MEMORY: usize = 1 << 32;

/// Limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Most linear memory a call may have, in bytes.
    pub max_memory_bytes: u64,
    /// Fuel a call starts with.
    pub max_fuel: u64,
    /// Wall-clock limit (epoch deadline) for calls that run on this node only; zero for write
    /// calls at apply, which every replica runs and which end by fuel alone.
    pub max_duration: Duration,
    /// A first attempt cut to a short time slice so that it may run on an async worker:
    /// reaching the limit then ends it with [`WasmError::SliceEnded`] (run it again, off the
    /// worker, with the full limit), not with a timeout. A write call at apply (no
    /// `max_duration`) is cut after [`APPLY_TIME_SLICE`].
    pub time_slice: bool,
}

impl CallLimits {
    /// A write call at apply: no clock limit (fuel alone ends it), and the instance slot kept
    /// for applies may be used.
    pub fn at_apply(&self) -> bool {
        self.max_duration.is_zero()
    }
}

/// Engine-wide settings, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// WebAssembly stack limit per call.
    pub max_stack_bytes: usize,
    /// Instances the pooling allocator can hold at once.
    pub max_instances: u32,
    /// Largest module accepted, in bytes.
    pub max_module_size: usize,
}

impl Default for EngineSettings {
    /// The configuration's defaults (`[wasm]`).
    fn default() -> Self {
        use crate::config;
        EngineSettings {
            max_stack_bytes: config::DEFAULT_MAX_STACK_BYTES as usize,
            max_instances: config::DEFAULT_MAX_INSTANCES,
            max_module_size: config::DEFAULT_MAX_MODULE_SIZE as usize,
        }
    }
}

/// A compiled, validated module, ready to instantiate.
pub struct LoadedModule {
    /// Its name.
    pub name: String,
    /// Hex SHA-256 of the bytes it was loaded from.
    pub sha256: String,
    /// Size of those bytes.
    pub size: usize,
    /// The bytes themselves, kept for snapshots (a replica rebuilds the module from them).
    pub source: Bytes,
    /// Entry points: exported functions of type `(i32, i32) -> i64`.
    pub exports: Vec<String>,
    /// What it may do.
    pub permissions: Permissions,
    /// When it was loaded (ms since the epoch).
    pub loaded_at_ms: u64,
    /// How long compilation took.
    pub compile_time: Duration,
    /// Call statistics.
    pub stats: ModuleStats,
    /// The code as first compiled: memory accesses bounded by guard pages.
    guarded: Compiled,
    /// The code compiled with explicit bounds checks, once this module's calls were seen
    /// growing their memory (see [`GROWING_CALLS`]); calls use it from then on.
    checked: OnceLock<Compiled>,
    /// Calls of this module on this node that grew its memory.
    growing_calls: AtomicU32,
    /// Whether this node keeps its instances between calls (`reuse.rs`).
    kept: bool,
}

/// A module compiled for one engine: its exports found, ready to instantiate.
struct Compiled {
    index: validate::ExportIndex,
    pre: InstancePre<CallState>,
    /// What resetting its instances needs, if they may be kept between calls (`reuse.rs`).
    reuse: Option<reuse::Reuse>,
    /// Its mutable globals' values before any call, read from its first instance (if its
    /// instances may be kept).
    pristine: OnceLock<Vec<Val>>,
}

/// After this many calls that grew their memory, a module is compiled again with explicit
/// bounds checks. A guard-page memory that grew must have its protections restored before the
/// slot's next instance (`mprotect`: a TLB shootdown on every core, and the address-space lock
/// taken for writing), then opened again when the next call grows: for a guest whose allocator
/// grows memory on every call (Rust's standard allocator does, at its first allocation) that
/// doubled a key-access call and serialized calls across threads. With explicit checks the
/// slot's memory stays open and no system call is made; memory-heavy code pays for the
/// checks (a byte-by-byte JSON reader in C took twice as long), so only growing modules move.
const GROWING_CALLS: u32 = 16;

impl LoadedModule {
    /// The code calls use now.
    fn compiled(&self) -> &Compiled {
        self.checked.get().unwrap_or(&self.guarded)
    }

    /// How this node's calls of the module bound their memory accesses: `guard-pages`, or
    /// `explicit` once its calls were seen growing memory. It changes speed, never an
    /// outcome.
    pub fn memory_checks(&self) -> &'static str {
        if self.checked.get().is_some() {
            "explicit"
        } else {
            "guard-pages"
        }
    }

    /// Whether this node keeps the module's instances between calls (`kept`: its state is
    /// its memory and numeric globals, and the kernel can say which pages a call wrote) or
    /// makes one for each call (`per-call`). A kept instance is still dropped after a call
    /// that failed or grew the real memory. It changes speed, never an outcome.
    pub fn instances(&self) -> &'static str {
        if self.kept { "kept" } else { "per-call" }
    }
}

impl fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Bytes of each pooled memory and table reset in place rather than decommitted.
const RESIDENT_BYTES: usize = 262144;

/// Bytes of each pooled memory scanned for the pages a call touched, which are reset in place,
/// where the kernel supports it; touched pages beyond are decommitted. Room for a guest built
/// with the default linker settings (1 MiB of stack, 17 pages) and some growth; the scan's
/// cost measured the same at 16 MiB.
const SCANNED_BYTES: usize = 2 << 20;

/// Most instances kept between calls (`reuse.rs`), across modules: enough for every core of a
/// small machine to find one of the module it calls.
const KEPT_INSTANCES: u32 = 4;

/// Ticks of the epoch clock per second; the epoch thread increments the engine's epoch at this
/// rate, and read-only calls get `max_duration × rate` ticks.
const EPOCH_TICKS_PER_SECOND: u64 = 100;

/// An epoch deadline never reached: what runs identically on every replica (write calls at
/// apply, start functions) is bounded by fuel alone.
const NO_DEADLINE: u64 = u64::MAX / 2;

/// The engine, the linker with the host functions, and the limits.
pub struct Runtime {
    /// Memory accesses bounded by guard pages: every module starts here.
    guarded: Flavor,
    /// Explicit bounds checks, no guard pages: modules whose calls grow memory move here.
    checked: Flavor,
    /// Where compiled modules are cached (`<sha256>-d<depth rewriting version>-<engine hash>.cwasm`).
    cache: Arc<cache::CodeCache>,
    settings: EngineSettings,
    /// The allocator's instance slots (both engines' together), one kept for applies.
    slots: Arc<Slots>,
    /// Instances kept between calls (`reuse.rs`).
    kept: reuse::Kept,
    /// Calls that ran on a kept instance.
    reused: AtomicU64,
    /// Write calls at apply that outran their first time slice and ran again.
    past_slice: AtomicU64,
}

/// An engine and the linker of host functions made for it. The two engines differ only in
/// how compiled code bounds memory accesses: fuel, epochs, stack, NaN canonicalization and
/// limits are the same, so a call has the same outcome on either.
#[derive(Clone)]
struct Flavor {
    engine: Engine,
    linker: Linker<CallState>,
}

impl Flavor {
    fn new(
        settings: &EngineSettings,
        explicit_bounds: bool,
        scanned: bool,
    ) -> Result<Flavor, WasmError> {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            // A tail call leaves its frame without passing the depth count's exit (`depth.rs`).
            .wasm_tail_call(false)
            .max_wasm_stack(settings.max_stack_bytes)
            // Never used (calls are synchronous), but wasmtime refuses a wasm stack larger
            // than it: without this, any limit above its 2 MiB default failed to start.
            .async_stack_size(settings.max_stack_bytes + 2 * 1024 * 1024);
        if explicit_bounds {
            // Without signal-based traps and guard pages, every access is checked in code,
            // and a slot's memory is never made inaccessible again once it grew.
            config.signals_based_traps(false).memory_guard_size(0);
        }
        // Room for the instances kept between calls beyond the slots calls count (`pool.rs`).
        let instances = settings.max_instances + KEPT_INSTANCES;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_memories(instances)
            .total_tables(instances)
            .total_core_instances(instances)
            // Every node's slots fit the largest wasm32 memory, whatever its configuration: the
            // memory a call may use is the limit it carries (its entry's, for a write call),
            // enforced by the call's limiter, so no node refuses a growth another allows.
            .max_memory_size(WASM32_MAX_MEMORY)
            .table_keep_resident(RESIDENT_BYTES);
        // Reset a used slot in place instead of with madvise: a call's instance is small and
        // short-lived, and madvise per call costs page faults and TLB-shootdown interrupts on
        // every core. Where the kernel can say which pages a call touched (PAGEMAP_SCAN, Linux
        // 6.7 and later), only those are reset, across a memory of up to SCANNED_BYTES;
        // elsewhere the first RESIDENT_BYTES are, all of them.
        if scanned {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(SCANNED_BYTES);
        } else {
            pool.linear_memory_keep_resident(RESIDENT_BYTES);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| WasmError::Instantiate(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| WasmError::Instantiate(e.to_string()))?;
        Ok(Flavor { engine, linker })
    }

    /// Compiles (or loads from `cache`) the module `bytes` for this engine and prepares it.
    fn compile(
        &self,
        cache: &cache::CodeCache,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Compiled, Vec<String>), WasmError> {
        let module = cache.compile(&self.engine, bytes, sha256)?;
        let exports = validate::validate(&module)?;
        let index = validate::ExportIndex::new(&module, &exports)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| WasmError::InvalidModule(first_line(&e)))?;
        let reuse = reuse::Reuse::new(&module, bytes);
        Ok((
            Compiled {
                index,
                pre,
                reuse,
                pristine: OnceLock::new(),
            },
            exports,
        ))
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine: fuel and epoch interruption on, NaN canonicalization, no threads, no
    /// relaxed SIMD, pooling allocation; and starts the epoch thread.
    pub fn new(
        settings: EngineSettings,
        cache_dir: Option<std::path::PathBuf>,
    ) -> Result<Runtime, WasmError> {
        if (settings.max_stack_bytes as u64) < crate::config::MIN_STACK_BYTES {
            return Err(WasmError::Instantiate(format!(
                "a call's stack must be at least {} bytes",
                crate::config::MIN_STACK_BYTES
            )));
        }
        let scanned = PoolingAllocationConfig::is_pagemap_scan_available();
        tracing::info!(
            reset = if scanned {
                "touched pages (PAGEMAP_SCAN)"
            } else {
                "first pages"
            },
            "wasm engine started"
        );
        let guarded = Flavor::new(&settings, false, scanned)?;
        let checked = Flavor::new(&settings, true, scanned)?;
        let engines = [guarded.engine.weak(), checked.engine.weak()];
        std::thread::Builder::new()
            .name("wasm-epoch".to_owned())
            .spawn(move || {
                loop {
                    for weak in &engines {
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1000 / EPOCH_TICKS_PER_SECOND));
                }
            })
            .map_err(|e| WasmError::Instantiate(e.to_string()))?;
        let slots = Slots::new(settings.max_instances);
        // Where the kernel cannot say which pages a call wrote, no instance is kept.
        let kept = if scanned { KEPT_INSTANCES } else { 0 };
        Ok(Runtime {
            guarded,
            checked,
            cache: Arc::new(cache::CodeCache::new(cache_dir)),
            settings,
            slots,
            kept: reuse::Kept::new(kept as usize),
            reused: AtomicU64::new(0),
            past_slice: AtomicU64::new(0),
        })
    }

    /// The engine-wide settings.
    pub fn settings(&self) -> EngineSettings {
        self.settings
    }

    /// Checks `bytes` against this node's own limits (its `max_module_size`), then compiles
    /// them: what a leader does before a load enters the log.
    pub fn check(
        &self,
        name: &str,
        bytes: Bytes,
        permissions: Permissions,
    ) -> Result<LoadedModule, WasmError> {
        if bytes.len() > self.settings.max_module_size {
            return Err(WasmError::ModuleTooLarge {
                size: bytes.len(),
                limit: self.settings.max_module_size,
            });
        }
        self.compile(name, bytes, permissions, 0)
    }

    /// Compiles and validates `bytes` (a binary module or WAT text) against the ABI. Nothing
    /// here depends on this node's configuration, so every replica applying a load gets the
    /// same outcome: the local size limit was checked before the load entered the log
    /// ([`Runtime::check`]).
    pub fn compile(
        &self,
        name: &str,
        bytes: Bytes,
        permissions: Permissions,
        now_ms: u64,
    ) -> Result<LoadedModule, WasmError> {
        let started = Instant::now();
        let sha256 = hex_sha256(&bytes);
        let (guarded, exports) = self.guarded.compile(&self.cache, &bytes, &sha256)?;
        let kept = guarded.reuse.is_some() && self.kept.max() > 0;
        Ok(LoadedModule {
            name: name.to_owned(),
            sha256,
            size: bytes.len(),
            source: bytes,
            exports,
            permissions,
            loaded_at_ms: now_ms,
            compile_time: started.elapsed(),
            stats: ModuleStats::default(),
            guarded,
            kept,
            checked: OnceLock::new(),
            growing_calls: AtomicU32::new(0),
        })
    }

    /// Counts a call of `module` that grew its memory; at the [`GROWING_CALLS`]th, compiles
    /// the module with explicit bounds checks on a thread of its own, and calls use that code
    /// once it is ready (the calls meanwhile keep the first code).
    fn note_growth(&self, module: &ModuleRef) {
        if module.growing_calls.fetch_add(1, Ordering::Relaxed) + 1 != GROWING_CALLS {
            return;
        }
        let (checked, cache, module) = (self.checked.clone(), self.cache.clone(), module.clone());
        let spawned = std::thread::Builder::new()
            .name("wasm-recompile".to_owned())
            .spawn(move || match checked.compile(&cache, &module.source, &module.sha256) {
                Ok((code, _)) => {
                    let _ = module.checked.set(code);
                    tracing::debug!(module = %module.name, "calls grow memory: recompiled with explicit bounds checks");
                }
                Err(e) => {
                    tracing::warn!(module = %module.name, cause = %e, "recompiling with explicit bounds checks failed; keeping guard pages");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(cause = %e, "cannot start a thread to recompile a module");
        }
    }

    /// The engines, for tests that move their epoch clocks.
    #[cfg(test)]
    pub(crate) fn engines(&self) -> [&Engine; 2] {
        [&self.guarded.engine, &self.checked.engine]
    }

    /// Instance slots held now (by calls running).
    pub fn slots_in_use(&self) -> usize {
        self.slots.in_use()
    }

    /// Calls that ran on an instance kept from an earlier call (`reuse.rs`).
    pub fn calls_on_kept_instances(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Counts a write call at apply that outran its first time slice
    /// ([`APPLY_TIME_SLICE`]) and is run again off the async worker.
    pub fn note_past_slice(&self) {
        self.past_slice.fetch_add(1, Ordering::Relaxed);
    }

    /// Write calls at apply that outran their first time slice and ran again.
    pub fn calls_past_slice(&self) -> u64 {
        self.past_slice.load(Ordering::Relaxed)
    }

    /// Compile-cache hits and misses since start.
    pub fn cache_counts(&self) -> (u64, u64) {
        self.cache.counts()
    }
}

fn first_line(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    text.lines().next().unwrap_or("").to_owned()
}

/// Lowercase hex SHA-256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A shared, replaceable module handle: calls in flight keep the module they started with.
pub type ModuleRef = Arc<LoadedModule>;
