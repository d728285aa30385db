//! WebAssembly user-defined functions: one wasmtime [`Engine`] per server, modules validated
//! against the guest ABI at load, and calls run on a pristine instance with fuel, memory, stack
//! and (for read-only calls) time limits.
//!
//! A call owns the keyspace for its duration: the node moves it into the call's store under
//! its exclusive lock and gets it back afterwards (wasmtime stores cannot borrow). Writes go
//! through keyspace [`Op`](crate::keyspace::Op)s with an undo log, so a call that fails leaves
//! no partial writes. This layer never sees RESP, sockets or Raft.

pub mod abi;
mod host;
mod registry;

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use thiserror::Error;
use wasmtime::{
    Config, Engine, EngineWeak, ExternType, Instance, InstanceAllocationStrategy, InstancePre,
    Linker, Module, PoolingAllocationConfig, Store, Trap, ValType,
};

pub use host::{CallMode, CallState, FUEL_COSTS, FuelCosts};
pub use registry::{ModuleStats, Registry};

use crate::keyspace::{Keyspace, ParseCtx};
use crate::reply::{RedisError, Reply};

/// Per-module permissions, given at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Permissions(u8);

impl Permissions {
    /// Read keys (`get_key`, read commands through `call`).
    pub const READ: Permissions = Permissions(1);
    /// Write keys (`set_key`, `del_key`, write commands), in `WASM.CALL` only.
    pub const WRITE: Permissions = Permissions(2);
    /// Administrative commands through `call`.
    pub const ADMIN: Permissions = Permissions(4);
    /// Network access: recorded and shown; grants nothing in ABI v1 (no WASI imports).
    pub const NETWORK: Permissions = Permissions(8);
    /// File system access: recorded and shown; grants nothing in ABI v1.
    pub const FILESYSTEM: Permissions = Permissions(16);

    const NAMES: [(Permissions, &'static str); 5] = [
        (Permissions::READ, "READ"),
        (Permissions::WRITE, "WRITE"),
        (Permissions::ADMIN, "ADMIN"),
        (Permissions::NETWORK, "NETWORK"),
        (Permissions::FILESYSTEM, "FILESYSTEM"),
    ];

    /// Whether every permission in `other` is held.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both sets.
    pub fn with(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// Parses one permission name (any case).
    pub fn parse(name: &str) -> Option<Permissions> {
        Permissions::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(p, _)| *p)
    }

    /// The names of the permissions held.
    pub fn names(self) -> Vec<&'static str> {
        Permissions::NAMES
            .iter()
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// Limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Most linear memory a call may have, in bytes.
    pub max_memory_bytes: u64,
    /// Fuel a call starts with.
    pub max_fuel: u64,
    /// Wall-clock limit for read-only calls (epoch deadline).
    pub max_duration: Duration,
}

/// Engine-wide settings, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// Largest memory any instance may have; the pooling allocator reserves slots this size.
    pub max_memory_bytes: u64,
    /// WebAssembly stack limit per call.
    pub max_stack_bytes: usize,
    /// Instances the pooling allocator can hold at once.
    pub max_instances: u32,
    /// Largest module accepted, in bytes.
    pub max_module_size: usize,
    /// Pristine instances kept ready per module that is in use.
    pub min_instances: u32,
    /// A module's ready instances are dropped after it has not been called for this long.
    pub idle_timeout: Duration,
}

/// Why a load or a call failed. Each displays as the error line the client sees.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WasmError {
    /// The call ran out of fuel.
    #[error("ERR wasm: out of fuel")]
    OutOfFuel,
    /// Memory growth beyond the limit.
    #[error("ERR wasm: memory limit exceeded")]
    MemoryLimit,
    /// A read-only call ran past its time limit.
    #[error("ERR wasm: timeout")]
    Timeout,
    /// The WebAssembly stack overflowed.
    #[error("ERR wasm: stack overflow")]
    StackOverflow,
    /// Any other trap.
    #[error("ERR wasm: trap: {0}")]
    Trap(String),
    /// The guest panicked and reported the message (SDK modules do).
    #[error("ERR wasm: panic: {0}")]
    Panic(String),
    /// A host function refused for lack of a permission.
    #[error("ERR wasm: permission denied: {0}")]
    PermissionDenied(&'static str),
    /// A write in `WASM.CALL_RO` / `FCALL_RO`.
    #[error("ERR wasm: write in a read-only call")]
    WriteInReadOnly,
    /// A key outside the call's slot.
    #[error("ERR wasm: key '{0}' is not in this call's slot")]
    CrossSlot(String),
    /// `call` with a command functions may not run.
    #[error("ERR wasm: command not allowed from a function: {0}")]
    CommandNotAllowed(String),
    /// `call` with a malformed argument buffer.
    #[error("ERR wasm: malformed call: {0}")]
    BadCall(String),
    /// `reply` with a malformed reply buffer.
    #[error("ERR wasm: malformed reply: {0}")]
    BadReply(String),
    /// A data error that ends the call (e.g. `get_key` on a hash): the command's own line.
    #[error("{}", reply_line(.0))]
    Command(Reply),
    /// The module does not compile or does not follow the ABI.
    #[error("ERR wasm: invalid module: {0}")]
    InvalidModule(String),
    /// The module is larger than allowed.
    #[error("ERR wasm: module is {size} bytes, larger than the {limit} byte limit")]
    ModuleTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No module by that name.
    #[error("ERR wasm: no such module '{0}'")]
    NoSuchModule(String),
    /// The module has no such entry point.
    #[error("ERR wasm: module '{module}' has no entry point '{entry}'")]
    NoSuchEntry {
        /// The module.
        module: String,
        /// The entry asked for.
        entry: String,
    },
    /// WASM.LOAD of an existing name without REPLACE.
    #[error("ERR wasm: module '{0}' already exists (use REPLACE)")]
    AlreadyLoaded(String),
    /// A permission the security configuration does not allow.
    #[error("ERR wasm: permission {0} is not allowed by [wasm.security]")]
    PermissionNotAllowed(&'static str),
    /// The engine could not start an instance (pool exhausted and similar).
    #[error("ERR wasm: cannot instantiate: {0}")]
    Instantiate(String),
}

fn reply_line(reply: &Reply) -> String {
    match reply {
        Reply::Error(line) => line.clone(),
        other => format!("ERR {other:?}"),
    }
}

impl RedisError for WasmError {
    fn line(&self) -> String {
        self.to_string()
    }
}

impl WasmError {
    /// A short name for WASM.STATS's errors-by-kind.
    pub fn kind(&self) -> &'static str {
        match self {
            WasmError::OutOfFuel => "out_of_fuel",
            WasmError::MemoryLimit => "memory",
            WasmError::Timeout => "timeout",
            WasmError::StackOverflow => "stack_overflow",
            WasmError::Trap(_) | WasmError::Panic(_) => "trap",
            WasmError::PermissionDenied(_)
            | WasmError::WriteInReadOnly
            | WasmError::PermissionNotAllowed(_) => "permission",
            WasmError::CrossSlot(_) => "cross_slot",
            WasmError::CommandNotAllowed(_) | WasmError::BadCall(_) | WasmError::BadReply(_) => {
                "host_call"
            }
            WasmError::Command(_) => "command",
            _ => "other",
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
    /// Instances made ahead of calls.
    pub pool: InstancePool,
    pre: InstancePre<CallState>,
}

impl fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// The result of a successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    /// The reply: what the guest passed to `reply`, or its return value.
    pub reply: Reply,
    /// Fuel consumed.
    pub fuel: u64,
}

/// Bytes of each pooled memory and table reset in place rather than decommitted.
const RESIDENT_BYTES: usize = 262144;

/// Ticks of the epoch clock per second; the epoch thread increments the engine's epoch at this
/// rate, and read-only calls get `max_duration × rate` ticks.
const EPOCH_TICKS_PER_SECOND: u64 = 100;

/// The engine, the linker with the host functions, and the limits.
pub struct Runtime {
    engine: Engine,
    /// Where compiled modules are cached (`<sha256>-<engine hash>.cwasm`); `None`: no cache.
    cache_dir: Option<std::path::PathBuf>,
    linker: Linker<CallState>,
    settings: EngineSettings,
    pool_jobs: Sender<PoolJob>,
    /// Used instances sent to the pool thread and not yet torn down.
    retiring: Arc<AtomicUsize>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
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
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            .max_wasm_stack(settings.max_stack_bytes);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_memories(settings.max_instances)
            .total_tables(settings.max_instances)
            .total_core_instances(settings.max_instances)
            .max_memory_size(settings.max_memory_bytes as usize)
            // Reset the first pages of a used slot with memset instead of madvise: a call's
            // instance is small and short-lived, and madvise per call costs page faults and
            // TLB-shootdown interrupts on every core.
            .linear_memory_keep_resident(RESIDENT_BYTES)
            .table_keep_resident(RESIDENT_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| WasmError::Instantiate(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| WasmError::Instantiate(e.to_string()))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".to_owned())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(Duration::from_millis(1000 / EPOCH_TICKS_PER_SECOND));
                }
            })
            .map_err(|e| WasmError::Instantiate(e.to_string()))?;
        let (pool_jobs, jobs) = std::sync::mpsc::channel();
        let weak = engine.weak();
        let retiring = Arc::new(AtomicUsize::new(0));
        let counter = retiring.clone();
        std::thread::Builder::new()
            .name("wasm-pool".to_owned())
            .spawn(move || pool_thread(weak, jobs, settings, counter))
            .map_err(|e| WasmError::Instantiate(e.to_string()))?;
        Ok(Runtime {
            engine,
            cache_dir,
            linker,
            settings,
            pool_jobs,
            retiring,
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        })
    }

    /// The engine-wide settings.
    pub fn settings(&self) -> EngineSettings {
        self.settings
    }

    /// Compiles and validates `bytes` (a binary module or WAT text) against the ABI.
    pub fn compile(
        &self,
        name: &str,
        bytes: Bytes,
        permissions: Permissions,
        now_ms: u64,
    ) -> Result<LoadedModule, WasmError> {
        if bytes.len() > self.settings.max_module_size {
            return Err(WasmError::ModuleTooLarge {
                size: bytes.len(),
                limit: self.settings.max_module_size,
            });
        }
        let started = Instant::now();
        let sha256 = hex_sha256(&bytes);
        let module = self.compile_cached(&bytes, &sha256)?;
        let exports = validate(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| WasmError::InvalidModule(first_line(&e)))?;
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
            pool: InstancePool::default(),
            pre,
        })
    }

    /// Compiles `bytes`, or loads the code this engine compiled for the same bytes before.
    fn compile_cached(&self, bytes: &[u8], sha256: &str) -> Result<Module, WasmError> {
        let compile = || {
            Module::new(&self.engine, bytes).map_err(|e| WasmError::InvalidModule(first_line(&e)))
        };
        let Some(dir) = &self.cache_dir else {
            return compile();
        };
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut hasher);
        let path = dir.join(format!(
            "{sha256}-{:016x}.cwasm",
            std::hash::Hasher::finish(&hasher)
        ));
        if path.exists()
            && let Ok(module) = deserialize_cached(&self.engine, &path)
        {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(module);
        }
        let module = compile()?;
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        // Best effort: a cache that cannot be written only costs a recompile next time.
        if let Ok(code) = module.serialize() {
            let temporary = path.with_extension(format!("tmp{}", std::process::id()));
            let written = std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&temporary, code))
                .and_then(|_| std::fs::rename(&temporary, &path));
            if let Err(e) = written {
                tracing::warn!(cause = %e, path = %path.display(), "cannot write the WASM compile cache");
            }
        }
        Ok(module)
    }

    /// Compile-cache hits and misses since start.
    pub fn cache_counts(&self) -> (u64, u64) {
        (
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed),
        )
    }

    /// Runs `entry` of `module` on `keyspace` with `keys` and `args`. The keyspace comes back
    /// in every case; after a failure it holds exactly what it held before.
    ///
    /// The call runs on a pristine instance taken from the module's pool (instantiated ahead of
    /// time by the pool thread), or made on the spot if the pool is empty; afterwards the used
    /// instance goes to the pool thread, which tears it down off the call path.
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
        let started = Instant::now();
        let state = CallState::new(
            keyspace,
            ctx,
            module.permissions,
            mode,
            keys,
            &module.name,
            limits.max_memory_bytes as usize,
        );
        let ready = match module.pool.take() {
            Some(ready) => Ok(ready),
            None => instantiate(&self.engine, module),
        };
        if module.pool.ready() < self.settings.min_instances as usize {
            let _ = self.pool_jobs.send(PoolJob::Refill(Arc::downgrade(module)));
        }
        let (mut store, result) = match ready {
            Ok(Ready {
                mut store,
                instance,
            }) => {
                *store.data_mut() = state;
                let result = run(&mut store, instance, entry, keys, args, mode, limits);
                (store, result)
            }
            Err(e) => {
                // No instance: the call never ran; hand the keyspace straight back.
                let outcome = Err(WasmError::Instantiate(first_line(&e)));
                module.stats.record(&outcome, started.elapsed());
                return (state.keyspace, outcome);
            }
        };
        let fuel_left = store.get_fuel().unwrap_or(0);
        let mut state = std::mem::replace(store.data_mut(), CallState::idle(&module.name));
        // Tear down on the pool thread unless it is falling behind (each waiting instance holds
        // an allocator slot); then do it here.
        if self.retiring.load(Ordering::Relaxed) < self.settings.max_instances as usize / 4 {
            self.retiring.fetch_add(1, Ordering::Relaxed);
            let _ = self.pool_jobs.send(PoolJob::Retire(store));
        } else {
            drop(store);
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
        module.stats.record(&outcome, started.elapsed());
        (state.keyspace, outcome)
    }
}

/// A pristine instance and the store it lives in, ready for one call.
struct Ready {
    store: Store<CallState>,
    instance: Instance,
}

/// Work for the pool thread.
enum PoolJob {
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
    fn take(&self) -> Option<Ready> {
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
fn instantiate(engine: &Engine, module: &LoadedModule) -> wasmtime::Result<Ready> {
    let mut store = Store::new(engine, CallState::idle(&module.name));
    store.limiter(|state| state);
    store.set_fuel(START_FUEL)?;
    store.set_epoch_deadline(EPOCH_TICKS_PER_SECOND);
    let instance = module.pre.instantiate(&mut store)?;
    Ok(Ready { store, instance })
}

/// The pool thread: refills pools to their minimum, tears down used instances, and empties
/// the pools of modules idle for longer than `idle_timeout`.
fn pool_thread(
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

#[allow(clippy::too_many_arguments)]
fn run(
    store: &mut Store<CallState>,
    instance: Instance,
    entry: &str,
    keys: &[Bytes],
    args: &[Bytes],
    mode: CallMode,
    limits: CallLimits,
) -> wasmtime::Result<i64> {
    store.set_fuel(limits.max_fuel)?;
    // Read-only calls are cut off by wall-clock time; write calls, which every replica
    // re-executes, are bounded by fuel alone so the outcome is deterministic.
    let ticks = if mode.read_only {
        (limits.max_duration.as_millis() as u64 * EPOCH_TICKS_PER_SECOND / 1000).max(1)
    } else {
        u64::MAX / 2
    };
    store.set_epoch_deadline(ticks);
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "alloc")?;
    let func = instance.get_typed_func::<(i32, i32), i64>(&mut *store, entry)?;
    let input = abi::encode_input(keys, args);
    let ptr = alloc.call(&mut *store, input.len() as i32)?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| wasmtime::format_err!("module has no memory export"))?;
    memory
        .write(&mut *store, ptr as u32 as usize, &input)
        .map_err(|_| wasmtime::Error::from(Trap::MemoryOutOfBounds))?;
    func.call(&mut *store, (ptr, input.len() as i32))
}

/// Loads compiled code from the compile cache.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &std::path::Path) -> wasmtime::Result<Module> {
    // SAFETY: the file is in our own data directory and was written by `compile_cached` from
    // `Module::serialize` of this engine: its name carries the module's SHA-256 and this
    // engine's compatibility hash (wasmtime version and every code-affecting setting), and
    // wasmtime re-checks the header's version and configuration before using it. Whoever can
    // write the data directory can already replace the server's state.
    // The file is read into memory rather than mapped: a mapped file truncated or rewritten
    // in place would change code under a live module.
    let bytes = std::fs::read(path)?;
    unsafe { Module::deserialize(engine, bytes) }
}

/// Turns a wasmtime error into the error the client sees.
fn classify(error: wasmtime::Error, state: &mut CallState) -> WasmError {
    if let Some(refusal) = state.refusal.take() {
        return refusal;
    }
    if state.memory_exceeded {
        return WasmError::MemoryLimit;
    }
    if let Some(message) = state.panic_message.take() {
        return WasmError::Panic(message);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => WasmError::OutOfFuel,
        Some(Trap::StackOverflow) => WasmError::StackOverflow,
        Some(Trap::Interrupt) => WasmError::Timeout,
        Some(trap) => {
            let text = trap.to_string();
            WasmError::Trap(text.strip_prefix("wasm trap: ").unwrap_or(&text).to_owned())
        }
        None => WasmError::Trap(first_line(&error)),
    }
}

fn first_line(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    text.lines().next().unwrap_or("").to_owned()
}

/// Checks the ABI's exports and imports; returns the entry points.
fn validate(module: &Module) -> Result<Vec<String>, WasmError> {
    let invalid = |m: String| Err(WasmError::InvalidModule(m));
    for import in module.imports() {
        let allowed = import.module() == "ferrite"
            && matches!(
                import.name(),
                "get_key" | "set_key" | "del_key" | "call" | "reply" | "log" | "panic"
            );
        if !allowed {
            return invalid(format!(
                "forbidden import '{}.{}'",
                import.module(),
                import.name()
            ));
        }
    }
    let mut has_memory = false;
    let mut has_alloc = false;
    let mut entries = Vec::new();
    for export in module.exports() {
        match (export.name(), export.ty()) {
            ("memory", ExternType::Memory(_)) => has_memory = true,
            ("alloc", ExternType::Func(f)) => {
                if f.params()
                    .map(|p| p.matches(&ValType::I32))
                    .collect::<Vec<_>>()
                    != [true]
                    || f.results()
                        .map(|r| r.matches(&ValType::I32))
                        .collect::<Vec<_>>()
                        != [true]
                {
                    return invalid("export 'alloc' must have type (i32) -> i32".to_owned());
                }
                has_alloc = true;
            }
            (name, ExternType::Func(f)) => {
                let params: Vec<bool> = f.params().map(|p| p.matches(&ValType::I32)).collect();
                let results: Vec<bool> = f.results().map(|r| r.matches(&ValType::I64)).collect();
                if params == [true, true] && results == [true] {
                    entries.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    if !has_memory {
        return invalid("missing export 'memory'".to_owned());
    }
    if !has_alloc {
        return invalid("missing export 'alloc'".to_owned());
    }
    if entries.is_empty() {
        return invalid("no entry point of type (i32, i32) -> i64".to_owned());
    }
    entries.sort();
    Ok(entries)
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
