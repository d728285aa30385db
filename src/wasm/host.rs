//! The host side of a call: the state a call's store carries, and the `ferrite` imports
//! (`get_key`, `set_key`, `del_key`, `call`, `reply`, `log`) registered once on the linker.
//!
//! Every write goes through a keyspace [`Op`] applied to the keyspace the call owns for its
//! duration; before the first write to a key its previous entry is saved, so a call that fails
//! restores every key it touched (the writes are atomic: all or nothing). Every import charges
//! fuel, a fixed amount plus an amount per byte moved ([`FuelCosts`]), so a call's fuel depends
//! only on its input and the data.

use std::collections::HashSet;

use bytes::Bytes;
use wasmtime::{Caller, Extern, Global, Linker, Memory, ResourceLimiter, Trap, TypedFunc, Val};

use ferrite_abi::{IMPORT_MODULE, KEY_NOT_FOUND, LogLevel, import};

use super::abi;
use super::view::Access;
use super::{Permissions, WasmError};
use crate::command_table::{self, Flags};
use crate::keyspace::{Ctx, Entry, Keyspace, Op, ParseCtx, SplitMix, parse};
use crate::reply::Reply;
use crate::slot::key_slot;

/// Fuel charged by host functions. Documented in the configuration reference; part of the
/// determinism contract, so changing a value changes every module's fuel figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuelCosts {
    /// Fixed cost of any host function call.
    pub base: u64,
    /// Extra fixed cost of `call` (it parses and runs a whole command).
    pub command: u64,
    /// Cost per byte moved between guest and host (keys, values, replies).
    pub per_byte_divisor: u64,
    /// Cost per element of a value saved for undo before a call's first write to its key (a
    /// hash, list or set is copied element by element; deleting a large one costs as much).
    pub per_element_saved: u64,
    /// Cost per element of a value a command walks whole whatever it is given (LREM), each
    /// time it runs.
    pub per_element_scanned: u64,
}

/// The costs every node uses.
pub const FUEL_COSTS: FuelCosts = FuelCosts {
    base: 100,
    command: 400,
    per_byte_divisor: 8,
    per_element_saved: 16,
    per_element_scanned: 2,
};

impl FuelCosts {
    fn of(&self, extra: u64, bytes: usize) -> u64 {
        self.base + extra + bytes as u64 / self.per_byte_divisor
    }
}

/// How a call may touch data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallMode {
    /// `WASM.CALL_RO` / `FCALL_RO`: every write is refused.
    pub read_only: bool,
}

/// What a call's store carries: the keyspace it owns for the call, the rules, and what the
/// guest produced.
pub struct CallState {
    /// The keyspace: owned for the call (write calls), or a view shared with writers
    /// (read-only calls).
    pub access: Access,
    ctx: ParseCtx,
    writes: u64,
    permissions: Permissions,
    mode: CallMode,
    /// The slot every touched key must hash to, fixed by the declared keys or the first key.
    slot: Option<u16>,
    /// What the guest passed to `reply`, last call wins.
    pub reply: Option<Reply>,
    /// Previous entries of the keys this call wrote, in first-write order.
    undo: Vec<(Bytes, Option<Entry>)>,
    undone: HashSet<Bytes>,
    /// Fuel owed for undo copies made by the last write, charged by the import that made it.
    owed: u64,
    module: String,
    memory_limit: usize,
    /// Set when a memory growth was refused for exceeding the limit.
    pub memory_exceeded: bool,
    /// Set when the guest grew its memory.
    pub grew: bool,
    /// Set when a host function refused, with the error line the call ends with.
    pub refusal: Option<WasmError>,
    /// The message of a guest panic, reported through the `panic` import.
    pub panic_message: Option<String>,
    /// The message of a panic in our own host code during the call.
    pub host_panic: Option<String>,
    /// The call runs in a time slice (see [`CallLimits::time_slice`](super::CallLimits)).
    pub time_slice: bool,
    /// The module's depth counter (`depth.rs`), found when the call starts.
    pub depth: Option<Global>,
    /// The guest's memory and `alloc`, found when the call starts (none while a start
    /// function runs: the host functions look them up then).
    pub guest: Option<GuestExports>,
    /// Set when the call trapped at its depth budget.
    pub depth_exceeded: bool,
}

impl std::fmt::Debug for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallState")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl CallState {
    /// State for one call of `module` on `keyspace`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        access: Access,
        ctx: ParseCtx,
        permissions: Permissions,
        mode: CallMode,
        declared_keys: &[Bytes],
        module: &str,
        memory_limit: usize,
    ) -> CallState {
        CallState {
            access,
            ctx,
            writes: 0,
            permissions,
            mode,
            slot: declared_keys.first().map(|k| key_slot(k)),
            reply: None,
            undo: Vec::new(),
            undone: HashSet::new(),
            owed: 0,
            module: module.to_owned(),
            memory_limit,
            memory_exceeded: false,
            grew: false,
            refusal: None,
            panic_message: None,
            host_panic: None,
            time_slice: false,
            depth: None,
            guest: None,
            depth_exceeded: false,
        }
    }

    /// The state of an instance waiting for a call: no data, no permissions.
    pub fn idle(module: &str) -> CallState {
        CallState::new(
            Access::Owned(Keyspace::default()),
            ParseCtx { now_ms: 0, seed: 0 },
            Permissions::default(),
            CallMode { read_only: true },
            &[],
            module,
            usize::MAX,
        )
    }

    /// Puts back the previous entry of every key the call wrote, newest first.
    pub fn roll_back(&mut self) {
        while let Some((key, entry)) = self.undo.pop() {
            if let Some(ks) = self.access.owned() {
                ks.restore_entry(key, entry);
            }
        }
    }

    fn refuse(&mut self, error: WasmError) -> wasmtime::Error {
        let message = error.to_string();
        self.refusal = Some(error);
        wasmtime::format_err!("{message}")
    }

    fn check_read(&mut self) -> wasmtime::Result<()> {
        if !self.permissions.contains(Permissions::READ) {
            return Err(self.refuse(WasmError::PermissionDenied("read")));
        }
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime::Result<()> {
        if self.mode.read_only {
            return Err(self.refuse(WasmError::WriteInReadOnly));
        }
        if !self.permissions.contains(Permissions::WRITE) {
            return Err(self.refuse(WasmError::PermissionDenied("write")));
        }
        Ok(())
    }

    fn check_slot(&mut self, key: &[u8]) -> wasmtime::Result<()> {
        let slot = key_slot(key);
        match self.slot {
            None => self.slot = Some(slot),
            Some(s) if s == slot => {}
            Some(_) => {
                return Err(self.refuse(WasmError::CrossSlot(
                    String::from_utf8_lossy(key).into_owned(),
                )));
            }
        }
        Ok(())
    }

    /// Applies a write operation, saving the previous entries of its keys first.
    fn apply_write(&mut self, op: Op) -> Reply {
        let now_ms = self.ctx.now_ms;
        // Writes are refused before they get here in a call that does not own the keyspace.
        let Some(ks) = self.access.owned() else {
            return Reply::error(WasmError::WriteInReadOnly);
        };
        if op.scans_value() {
            let scanned: u64 = (op.keys().iter())
                .filter_map(|key| ks.lookup(key, now_ms))
                .map(|entry| entry.value.elements())
                .sum();
            self.owed += scanned * FUEL_COSTS.per_element_scanned;
        }
        if let Some((key, end)) = op.extends_string_to() {
            // The zero bytes a SETRANGE adds cost like bytes moved.
            let len = match ks.lookup(key, now_ms).map(|e| &e.value) {
                Some(crate::keyspace::Value::String(s)) => s.len() as u64,
                _ => 0,
            };
            self.owed += end.saturating_sub(len) / FUEL_COSTS.per_byte_divisor;
        }
        for key in op.keys() {
            if self.undone.insert(key.clone()) {
                let previous = ks.entry_snapshot(key);
                let copied = previous.as_ref().map_or(0, |e| e.value.elements());
                self.owed += copied * FUEL_COSTS.per_element_saved;
                self.undo.push((key.clone(), previous));
            }
        }
        op.apply(ks, Ctx { now_ms })
    }

    /// A seed for the n-th random command of this call: deterministic from the call's seed.
    fn next_seed(&mut self) -> u64 {
        self.writes += 1;
        SplitMix::new(self.ctx.seed ^ self.writes).next_u64()
    }
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            return Err(wasmtime::format_err!("memory limit exceeded"));
        }
        self.grew = true;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Charges the fuel the last write owes for its undo copies.
fn settle(caller: &mut Caller<'_, CallState>) -> wasmtime::Result<()> {
    let owed = std::mem::take(&mut caller.data_mut().owed);
    charge(caller, owed)
}

/// Charges `amount` fuel, trapping with out-of-fuel if there is not enough.
fn charge(caller: &mut Caller<'_, CallState>, amount: u64) -> wasmtime::Result<()> {
    let fuel = caller.get_fuel()?;
    if fuel < amount {
        caller.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    caller.set_fuel(fuel - amount)
}

/// The exports of the instance a call runs on that the host functions use.
pub struct GuestExports {
    /// `memory` (a handle: still valid after the memory grows).
    pub memory: Memory,
    /// `alloc`.
    pub alloc: TypedFunc<i32, i32>,
}

fn memory(caller: &mut Caller<'_, CallState>) -> wasmtime::Result<Memory> {
    if let Some(guest) = &caller.data().guest {
        return Ok(guest.memory);
    }
    match caller.get_export(ferrite_abi::export::MEMORY) {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::format_err!("module has no memory export")),
    }
}

/// Copies `len` bytes at `ptr` out of guest memory.
fn read_guest(caller: &mut Caller<'_, CallState>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let mem = memory(caller)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = mem.data(&caller);
    let end = ptr.checked_add(len).filter(|&e| e <= data.len());
    match end {
        Some(end) => Ok(data[ptr..end].to_vec()),
        None => Err(Trap::MemoryOutOfBounds.into()),
    }
}

/// Asks the guest's `alloc` for room, copies `bytes` there, and packs `(ptr << 32) | len`.
fn write_guest(caller: &mut Caller<'_, CallState>, bytes: &[u8]) -> wasmtime::Result<i64> {
    // The call's exports are taken out of its state while `alloc` runs and put back after,
    // not cloned (see `Handles::guest`); a host function that `alloc` itself calls finds them
    // by name meanwhile.
    let lent = caller.data_mut().guest.take();
    let looked_up;
    let alloc = match &lent {
        Some(guest) => &guest.alloc,
        None => match caller.get_export(ferrite_abi::export::ALLOC) {
            Some(Extern::Func(f)) => {
                looked_up = f.typed::<i32, i32>(&*caller)?;
                &looked_up
            }
            _ => return Err(wasmtime::format_err!("module has no alloc export")),
        },
    };
    // The host's frames between the guest's count towards its depth while `alloc` runs, so an
    // `alloc` that calls back into the host cannot pile up uncounted frames.
    let depth = caller.data().depth;
    let add_depth = |caller: &mut Caller<'_, CallState>, units: i32| -> wasmtime::Result<()> {
        if let Some(global) = depth {
            let now = global.get(&mut *caller).i32().unwrap_or(0);
            global.set(&mut *caller, Val::I32(now.wrapping_add(units)))?;
        }
        Ok(())
    };
    let host_units = super::depth::HOST_CALL_UNITS as i32;
    // `alloc` is never called with 0; an empty value still gets a one-byte buffer.
    let ptr = add_depth(caller, host_units)
        .and_then(|()| alloc.call(&mut *caller, bytes.len().max(1) as i32))
        .and_then(|ptr| add_depth(caller, -host_units).map(|()| ptr));
    if lent.is_some() {
        caller.data_mut().guest = lent;
    }
    let ptr = ptr?;
    // Re-read the memory after calling into the guest: it may have grown.
    let mem = memory(caller)?;
    mem.write(&mut *caller, ptr as u32 as usize, bytes)
        .map_err(|_| wasmtime::Error::from(Trap::MemoryOutOfBounds))?;
    Ok(ferrite_abi::pack(ptr as u32, bytes.len() as u32))
}

#[cfg(test)]
thread_local! {
    /// Test-only: makes the `log` import panic, to show a call survives a bug in host code.
    pub(crate) static PANIC_IN_LOG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Test-only: runs once at the next `log` import, to act between two reads of a call.
    pub(crate) static ON_LOG: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Registers the `ferrite` imports on `linker`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        import::GET_KEY,
        |mut caller: Caller<'_, CallState>, kptr: i32, klen: i32| -> wasmtime::Result<i64> {
            charge(&mut caller, FUEL_COSTS.of(0, klen.max(0) as usize))?;
            let key = read_guest(&mut caller, kptr, klen)?;
            let state = caller.data_mut();
            state.check_read()?;
            state.check_slot(&key)?;
            let now_ms = state.ctx.now_ms;
            let key = Bytes::from(key);
            let read = state.access.read(&[&key], false, now_ms, |ks| {
                ks.get_string(&key, now_ms)
                    .map(|v| v.map(crate::keyspace::SmallBytes::to_bytes))
            });
            let value = match read {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(state.refuse(WasmError::Data(e))),
                Err(e) => return Err(state.refuse(e)),
            };
            let Some(value) = value else {
                return Ok(KEY_NOT_FOUND);
            };
            charge(&mut caller, FUEL_COSTS.of(0, value.len()))?;
            write_guest(&mut caller, &value)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::SET_KEY,
        |mut caller: Caller<'_, CallState>,
         kptr: i32,
         klen: i32,
         vptr: i32,
         vlen: i32|
         -> wasmtime::Result<i32> {
            charge(
                &mut caller,
                FUEL_COSTS.of(0, klen.max(0) as usize + vlen.max(0) as usize),
            )?;
            let key = read_guest(&mut caller, kptr, klen)?;
            let value = read_guest(&mut caller, vptr, vlen)?;
            let state = caller.data_mut();
            state.check_write()?;
            state.check_slot(&key)?;
            let seed = state.next_seed();
            let op = parse(
                "set",
                &[Bytes::from(key), Bytes::from(value)],
                &ParseCtx { seed, ..state.ctx },
            );
            match op {
                Some(Ok(op)) => {
                    state.apply_write(op);
                    settle(&mut caller)?;
                    Ok(0)
                }
                _ => Err(wasmtime::format_err!("SET could not be built")),
            }
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::DEL_KEY,
        |mut caller: Caller<'_, CallState>, kptr: i32, klen: i32| -> wasmtime::Result<i32> {
            charge(&mut caller, FUEL_COSTS.of(0, klen.max(0) as usize))?;
            let key = read_guest(&mut caller, kptr, klen)?;
            let state = caller.data_mut();
            state.check_write()?;
            state.check_slot(&key)?;
            let deleted = state.apply_write(Op::Del {
                keys: vec![Bytes::from(key)],
            });
            settle(&mut caller)?;
            match deleted {
                Reply::Int(n) => Ok(n as i32),
                _ => Ok(0),
            }
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::CALL,
        |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| -> wasmtime::Result<i64> {
            charge(
                &mut caller,
                FUEL_COSTS.of(FUEL_COSTS.command, len.max(0) as usize),
            )?;
            let raw = read_guest(&mut caller, ptr, len)?;
            let state = caller.data_mut();
            let argv = match abi::decode_call_args(&raw) {
                Ok(argv) if !argv.is_empty() => argv,
                Ok(_) => return Err(state.refuse(WasmError::EmptyCall)),
                Err(e) => return Err(state.refuse(WasmError::BadCall(e))),
            };
            let reply = state.run_command(argv)?;
            settle(&mut caller)?;
            let mut encoded = Vec::new();
            abi::encode_reply(&reply, &mut encoded);
            charge(&mut caller, FUEL_COSTS.of(0, encoded.len()))?;
            write_guest(&mut caller, &encoded)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::REPLY,
        |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            charge(&mut caller, FUEL_COSTS.of(0, len.max(0) as usize))?;
            let raw = read_guest(&mut caller, ptr, len)?;
            let state = caller.data_mut();
            match abi::decode_reply(&raw) {
                Ok(reply) => {
                    state.reply = Some(reply);
                    Ok(())
                }
                Err(e) => Err(state.refuse(WasmError::BadReply(e))),
            }
        },
    )?;
    // Extension of ABI v1: the SDK's panic hook reports the message before the guest aborts.
    linker.func_wrap(
        IMPORT_MODULE,
        import::PANIC,
        |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let len = len.clamp(0, 4096);
            charge(&mut caller, FUEL_COSTS.of(0, len as usize))?;
            let raw = read_guest(&mut caller, ptr, len)?;
            caller.data_mut().panic_message = Some(String::from_utf8_lossy(&raw).into_owned());
            Ok(())
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::LOG,
        |mut caller: Caller<'_, CallState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<()> {
            charge(&mut caller, FUEL_COSTS.of(0, len.max(0) as usize))?;
            #[cfg(test)]
            {
                if PANIC_IN_LOG.with(std::cell::Cell::get) {
                    panic!("a panic in host code, switched on by a test");
                }
                if let Some(hook) = ON_LOG.with(|h| h.borrow_mut().take()) {
                    hook();
                }
            }
            let raw = read_guest(&mut caller, ptr, len)?;
            let message = String::from_utf8_lossy(&raw);
            let module = &caller.data().module;
            match LogLevel::from_i32(level) {
                LogLevel::Error => tracing::error!(module = %module, "{message}"),
                LogLevel::Warn => tracing::warn!(module = %module, "{message}"),
                LogLevel::Info => tracing::info!(module = %module, "{message}"),
                LogLevel::Debug => tracing::debug!(module = %module, "{message}"),
                LogLevel::Trace => tracing::trace!(module = %module, "{message}"),
            }
            Ok(())
        },
    )?;
    Ok(())
}

impl CallState {
    /// Runs one data command for the guest's `call`, under the module's permissions and the
    /// call's slot. A command error (WRONGTYPE, syntax) is returned to the guest as an error
    /// reply; a refusal ends the call.
    fn run_command(&mut self, argv: Vec<Bytes>) -> wasmtime::Result<Reply> {
        let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
        let Some(command) = command_table::lookup(name.as_bytes()) else {
            return Err(self.refuse(WasmError::CommandNotAllowed(name)));
        };
        // The table says which: data commands that name their keys (keyless ones such as
        // FLUSHALL, KEYS and SCAN would reach beyond the call's slot).
        if !command.callable_from_functions() {
            return Err(self.refuse(WasmError::CommandNotAllowed(name)));
        }
        if !command.arity_ok(argv.len()) {
            return Ok(Reply::Error(format!(
                "ERR wrong number of arguments for '{}' command",
                command.name
            )));
        }
        if command.flags.contains(Flags::ADMIN) && !self.permissions.contains(Permissions::ADMIN) {
            return Err(self.refuse(WasmError::PermissionDenied("admin")));
        }
        if command.is_write() {
            self.check_write()?;
        } else {
            self.check_read()?;
        }
        for key in command.keys(&argv) {
            self.check_slot(key)?;
        }
        let seed = self.next_seed();
        let ctx = ParseCtx { seed, ..self.ctx };
        match parse(command.name, &argv[1..], &ctx) {
            None => Err(self.refuse(WasmError::CommandNotAllowed(name))),
            Some(Err(e)) => Ok(Reply::error(e)),
            Some(Ok(op)) if op.is_write() => Ok(self.apply_write(op)),
            Some(Ok(op)) => {
                let now_ms = self.ctx.now_ms;
                let keys = op.keys();
                let read = self.access.read(&keys, keys.is_empty(), now_ms, |ks| {
                    op.read(ks, Ctx { now_ms })
                });
                read.map_err(|e| self.refuse(e))
            }
        }
    }
}
