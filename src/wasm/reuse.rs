//! Instances kept warm between calls. Making an instance for a call and tearing it down
//! afterwards was most of a short call's cost (in a server profile of a key-access call, 37%
//! of the call making the instance and 45% tearing it down). A module whose whole state is its
//! memory's bytes, its memory's size and its mutable globals is instead reset after a call that
//! ended well, and the next call of the module takes it:
//! - at load, [`mark`] decides whether a module qualifies: no start function, one memory,
//!   only function types (no garbage-collected objects), only numeric mutable globals, and no
//!   instruction that changes a table or drops a segment (`table.set`, `table.grow`,
//!   `table.fill`, `table.copy`, `table.init`, `elem.drop`, `memory.init`, `data.drop`). A
//!   module that qualifies gets two more kinds of exports: [`REUSE_MARK`], and each mutable
//!   global as [`GLOBAL_PREFIX`]`<index>`, so the host can reach globals the guest does not
//!   export. Exports whose names start with `__ferrite_` are the host's: a module that has its
//!   own is refused, so no module can mark itself;
//! - a new instance's memory is known from the module ([`Reuse`]: its size, and its data
//!   segments over zeros); the first instance records every mutable global's value before any
//!   call runs;
//! - after a call that ended well without growing memory, [`reset`] puts the globals back and
//!   rewrites every page the kernel reports written (`pagemap.rs`) as a new instance has it;
//!   when the calling thread took no page fault during the call, no page can have joined
//!   those the last scan found, and they are rewritten without scanning again. A
//!   call that trapped, ran out of anything, panicked or grew memory, or a reset that cannot
//!   complete, drops the instance as before.
//!
//! Architecture invariant: a call on a kept instance starts from the same state as on a new
//! one, so its outcome is the same on every replica whatever each one kept
//! (`tests/wasm/calls.rs` checks it with a module that reports what earlier calls left).

use std::sync::{Arc, Mutex};

use wasmparser::{
    CompositeInnerType, DataKind, ExternalKind, Operator, Parser, Payload, TypeRef, ValType,
};
use wasmtime::{Instance, Module, ModuleExport, Store, Val};

use super::depth::{DEPTH_EXPORT, extend, leb_u64, section};
use super::pool::Handles;
use super::{CallState, Compiled, ModuleRef, pagemap};

/// Exported (as the memory) by modules whose instances may be kept between calls.
pub const REUSE_MARK: &str = "__ferrite_reuse";
/// Prefix of the exports naming each mutable global of a module that may be kept.
pub const GLOBAL_PREFIX: &str = "__ferrite_global_";
/// Prefix of every export name the host adds.
const RESERVED_PREFIX: &str = "__ferrite_";
const EXPORT_SECTION: u8 = 7;

/// Adds the reuse exports to `wasm` (already rewritten by `depth.rs`) if its instances may be
/// kept between calls; refuses modules that export names the host reserves.
pub(super) fn mark(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut qualifies = true;
    let mut memories = 0;
    let mut globals = Vec::new();
    let mut global_index = 0u32;
    let mut sections = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
        match payload {
            Payload::StartSection { .. } => qualifies = false,
            Payload::TypeSection(reader) => {
                for group in reader {
                    let group = group.map_err(|e| e.to_string())?;
                    for ty in group.types() {
                        qualifies &= matches!(ty.composite_type.inner, CompositeInnerType::Func(_));
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| e.to_string())?;
                    match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => {}
                        TypeRef::Global(_) => {
                            qualifies = false;
                            global_index += 1;
                        }
                        _ => qualifies = false,
                    }
                }
            }
            Payload::MemorySection(reader) => memories += reader.count(),
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(|e| e.to_string())?;
                    if global.ty.mutable {
                        let numeric = matches!(
                            global.ty.content_type,
                            ValType::I32
                                | ValType::I64
                                | ValType::F32
                                | ValType::F64
                                | ValType::V128
                        );
                        qualifies &= numeric;
                        globals.push(global_index);
                    }
                    global_index += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    if export.name.starts_with(RESERVED_PREFIX) && export.name != DEPTH_EXPORT {
                        return Err(format!(
                            "export '{}': names starting with {RESERVED_PREFIX} are reserved for the host",
                            export.name
                        ));
                    }
                }
            }
            Payload::CodeSectionEntry(body) if qualifies => {
                let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                while !ops.eof() {
                    let changes_state = matches!(
                        ops.read().map_err(|e| e.to_string())?,
                        Operator::TableSet { .. }
                            | Operator::TableGrow { .. }
                            | Operator::TableFill { .. }
                            | Operator::TableCopy { .. }
                            | Operator::TableInit { .. }
                            | Operator::ElemDrop { .. }
                            | Operator::MemoryInit { .. }
                            | Operator::DataDrop { .. }
                    );
                    if changes_state {
                        qualifies = false;
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    if !qualifies || memories != 1 {
        return Ok(wasm.to_vec());
    }
    let mut added = Vec::new();
    export_entry(&mut added, REUSE_MARK, ExternalKind::Memory, 0);
    for &index in &globals {
        export_entry(
            &mut added,
            &format!("{GLOBAL_PREFIX}{index}"),
            ExternalKind::Global,
            index,
        );
    }
    let mut out = wasm[..8].to_vec();
    for (id, range) in sections {
        let content = &wasm[range];
        if id == EXPORT_SECTION {
            section(&mut out, id, &extend(content, globals.len() + 1, &added)?);
        } else {
            section(&mut out, id, content);
        }
    }
    Ok(out)
}

fn export_entry(out: &mut Vec<u8>, name: &str, kind: ExternalKind, index: u32) {
    leb_u64(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    out.push(match kind {
        ExternalKind::Memory => 0x02,
        _ => 0x03,
    });
    leb_u64(out, u64::from(index));
}

/// What resetting a kept instance of a module needs to know.
pub(super) struct Reuse {
    /// The mutable globals, exported by [`mark`].
    globals: Vec<ModuleExport>,
    /// The memory's size when instantiated, in bytes.
    size: usize,
    /// The active data segments in order: where each starts and its bytes. Everything else of
    /// a new instance's memory is zero.
    segments: Vec<(usize, Vec<u8>)>,
}

impl Reuse {
    /// For a compiled `module` that [`mark`] marked, from the `source` it was compiled from
    /// (binary or text); `None` for any other, or when a data segment's offset is not a
    /// constant.
    pub(super) fn new(module: &Module, source: &[u8]) -> Option<Reuse> {
        module.get_export_index(REUSE_MARK)?;
        let globals = module
            .exports()
            .filter(|e| e.name().starts_with(GLOBAL_PREFIX))
            .filter_map(|e| module.get_export_index(e.name()))
            .collect();
        let memory = module.exports().find_map(|e| e.ty().memory().cloned())?;
        let size = usize::try_from(memory.minimum()).ok()?.checked_mul(65536)?;
        let binary = wat::parse_bytes(source).ok()?;
        let mut segments = Vec::new();
        for payload in Parser::new(0).parse_all(&binary) {
            let Payload::DataSection(reader) = payload.ok()? else {
                continue;
            };
            for data in reader {
                let data = data.ok()?;
                if let DataKind::Active { offset_expr, .. } = data.kind {
                    let mut ops = offset_expr.get_operators_reader();
                    let Ok(Operator::I32Const { value }) = ops.read() else {
                        return None;
                    };
                    if !matches!(ops.read(), Ok(Operator::End)) {
                        return None;
                    }
                    segments.push((value as u32 as usize, data.data.to_vec()));
                }
            }
        }
        Some(Reuse {
            globals,
            size,
            segments,
        })
    }

    /// Rewrites `range` of `memory` as a new instance has it.
    fn restore(&self, memory: &mut [u8], range: std::ops::Range<usize>) {
        memory[range.clone()].fill(0);
        for (at, bytes) in &self.segments {
            let start = range.start.max(*at);
            let end = range.end.min(at + bytes.len());
            if start < end {
                memory[start..end].copy_from_slice(&bytes[start - at..end - at]);
            }
        }
    }
}

impl Reuse {
    /// Where the mutable globals are exported.
    pub(super) fn globals(&self) -> &[ModuleExport] {
        &self.globals
    }
}

/// A marked module's mutable globals before any call, in the order of [`Reuse`]'s, read from
/// its first instance (its memory is never read: reading would map every page, and each
/// scan of a kept instance would then have all of them to look at).
pub(super) fn record_globals(store: &mut Store<CallState>, handles: &Handles) -> Vec<Val> {
    handles
        .globals
        .iter()
        .map(|global| global.get(&mut *store))
        .collect()
}

/// Puts `instance` back in the state a new instance has; `false` when it cannot (its memory
/// grew, or the kernel cannot say which pages were written), and the instance must be dropped.
///
/// `faults_before` is this thread's page-fault count as of the call's start or earlier
/// ([`pagemap::faults_by_now_on_this_thread`]). A page the instance never wrote can only
/// become written through a fault, taken by the thread that writes it, and only the calling
/// thread touches the instance's memory during a call; so when the count has not moved, the
/// pages the last scan found are still all there are, and they are rewritten without asking
/// the kernel again (a `PAGEMAP_SCAN` was more than half of a short call's cost). Transparent
/// huge pages, which the kernel can map behind a memory without a fault, are refused for a
/// kept memory first.
pub(super) fn reset(
    store: &mut Store<CallState>,
    handles: &mut Handles,
    code: &Compiled,
    globals: &[Val],
    faults_before: Option<u64>,
) -> bool {
    let Some(reuse) = &code.reuse else {
        return false;
    };
    let Some(memory) = handles.guest.as_ref().map(|g| g.memory) else {
        return false;
    };
    if memory.data_size(&*store) != reuse.size || handles.globals.len() != globals.len() {
        return false;
    }
    for (global, value) in handles.globals.iter().zip(globals) {
        if global.set(&mut *store, *value).is_err() {
            return false;
        }
    }
    #[cfg(test)]
    if SKIP_MEMORY_RESET.with(std::cell::Cell::get) {
        return true;
    }
    let quiet = faults_before.is_some() && pagemap::faults_on_this_thread() == faults_before;
    #[cfg(test)]
    let quiet = quiet || IGNORE_FAULTS.with(std::cell::Cell::get);
    let data = memory.data_mut(&mut *store);
    let (base, len) = (data.as_ptr() as usize, data.len());
    let written = match handles.written.take() {
        Some(known) if quiet => known,
        known => {
            if known.is_none() && !pagemap::no_huge_pages(base, len) {
                return false;
            }
            match pagemap::written(base, len) {
                Some(found) => found,
                None => return false,
            }
        }
    };
    for range in &written {
        reuse.restore(data, range.clone());
    }
    handles.written = Some(written);
    true
}

#[cfg(test)]
thread_local! {
    /// Leaves the memory as the call left it (globals are still reset): the unit test in
    /// `call.rs` shows the pristine probe then notices.
    pub(super) static SKIP_MEMORY_RESET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Trusts the pages the last scan found even after the call took page faults: the unit
    /// test below shows that a page written for the first time is then left as the call left
    /// it, and the probe notices.
    pub(super) static IGNORE_FAULTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An instance kept between calls, reset, with the module it belongs to.
struct Warm {
    module: ModuleRef,
    /// Whether it was made from the module's code with explicit bounds checks.
    checked: bool,
    store: Store<CallState>,
    instance: Instance,
    handles: Handles,
}

/// The instances kept between calls, across modules: at most `max`, the oldest dropped first.
/// They hold no instance slot (each engine's pool has room for `max` more instances than
/// there are slots): a call that takes one takes a slot for it (`call.rs`).
pub(super) struct Kept {
    warm: Mutex<Vec<Warm>>,
    max: usize,
}

impl Kept {
    /// The most instances kept (0: none ever is).
    pub(super) fn max(&self) -> usize {
        self.max
    }

    pub(super) fn new(max: usize) -> Kept {
        Kept {
            warm: Mutex::new(Vec::new()),
            max,
        }
    }

    /// A kept instance of `module`'s current code, if there is one.
    pub(super) fn take(
        &self,
        module: &ModuleRef,
        checked: bool,
    ) -> Option<(Store<CallState>, Instance, Handles)> {
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        let at = warm
            .iter()
            .position(|w| w.checked == checked && Arc::ptr_eq(&w.module, module))?;
        let warm = warm.swap_remove(at);
        Some((warm.store, warm.instance, warm.handles))
    }

    /// Keeps an instance of `module` (already reset) for its next call.
    pub(super) fn keep(
        &self,
        module: &ModuleRef,
        checked: bool,
        store: Store<CallState>,
        instance: Instance,
        handles: Handles,
    ) {
        if self.max == 0 {
            return;
        }
        let warm = Warm {
            module: module.clone(),
            checked,
            store,
            instance,
            handles,
        };
        let dropped = {
            let mut kept = self.warm.lock().unwrap_or_else(|e| e.into_inner());
            kept.push(warm);
            (kept.len() > self.max).then(|| kept.remove(0))
        };
        // Torn down outside the lock.
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether [`mark`] marks the module `wat` (read from its exports, without compiling it:
    /// wasmtime here refuses some of the modules `depth.rs` validates, such as GC types).
    fn marked(wat: &str) -> Result<bool, String> {
        let binary = wat::parse_str(wat).unwrap();
        let counted = super::super::depth::instrument(&binary)?;
        let out = mark(&counted)?;
        for payload in Parser::new(0).parse_all(&out) {
            if let Payload::ExportSection(reader) = payload.unwrap() {
                return Ok(reader.into_iter().any(|e| e.unwrap().name == REUSE_MARK));
            }
        }
        Ok(false)
    }

    const BASE: &str = r#"(memory (export "memory") 1)
        (global $g (mut i32) (i32.const 0))
        (global $h (mut i64) (i64.const 5))
        (func (export "alloc") (param i32) (result i32) (i32.const 0))"#;

    #[test]
    fn modules_whose_state_is_memory_and_globals_are_marked() {
        assert_eq!(marked(&format!("(module {BASE})")), Ok(true));
        let engine = wasmtime::Engine::default();
        let out = mark(
            &super::super::depth::instrument(&wat::parse_str(format!("(module {BASE})")).unwrap())
                .unwrap(),
        )
        .unwrap();
        let module = Module::new(&engine, &out).unwrap();
        let reuse = Reuse::new(&module, &out).unwrap();
        // Both of the module's globals and the depth counter.
        assert_eq!(reuse.globals.len(), 3);
        assert_eq!(reuse.size, 65536);
    }

    #[test]
    fn modules_with_more_state_are_not_marked() {
        for extra in [
            r#"(func $s) (start $s)"#,
            r#"(table $t 1 funcref) (func (table.set $t (i32.const 0) (ref.null func)))"#,
            r#"(table $t 1 funcref) (func (drop (table.grow $t (ref.null func) (i32.const 1))))"#,
            r#"(data $d "x") (func (data.drop $d))"#,
            r#"(data $d "x") (func (memory.init $d (i32.const 0) (i32.const 0) (i32.const 1)))"#,
            r#"(global $r (mut funcref) (ref.null func))"#,
            r#"(memory $second 1)"#,
            r#"(type $s (struct (field i32)))"#,
        ] {
            assert_eq!(
                marked(&format!("(module {BASE} {extra})")),
                Ok(false),
                "{extra}"
            );
        }
    }

    /// Calls `pristine_kept.wat` (see `tests/wasm/calls.rs`) on a runtime of its own: the bit
    /// mask of what each call found left behind.
    fn probe_masks(calls: usize) -> Vec<i64> {
        let wat = include_str!("../../tests/wasm/modules/pristine_kept.wat");
        call_module(wat, &vec![0; calls])
    }

    /// Calls `main` of `wat` once per entry of `arg_lens`, with one argument of that many bytes,
    /// on a runtime of its own (so every call after the first runs on the kept instance): the
    /// integer each call answered.
    fn call_module(wat: &str, arg_lens: &[usize]) -> Vec<i64> {
        use crate::keyspace::{Keyspace, ParseCtx};
        use crate::reply::Reply;
        use crate::wasm::{CallLimits, CallMode, EngineSettings, Permissions, Runtime};

        let runtime = Runtime::new(EngineSettings::default(), None).unwrap();
        let module = Arc::new(
            runtime
                .compile("kept", wat.as_bytes().to_vec().into(), Permissions::READ, 0)
                .unwrap(),
        );
        let limits = CallLimits {
            max_memory_bytes: 64 << 20,
            max_fuel: 1_000_000,
            max_duration: std::time::Duration::from_secs(5),
            time_slice: false,
        };
        let mut keyspace = Keyspace::new();
        let answers = arg_lens
            .iter()
            .map(|&len| {
                let ctx = ParseCtx { now_ms: 1, seed: 1 };
                let mode = CallMode { read_only: true };
                let (back, outcome) = runtime.call(
                    &module,
                    "main",
                    &[],
                    &[bytes::Bytes::from(vec![b'x'; len])],
                    std::mem::take(&mut keyspace),
                    ctx,
                    mode,
                    limits,
                );
                keyspace = back;
                match outcome.unwrap().reply {
                    Reply::Int(answer) => answer,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(runtime.calls_on_kept_instances(), arg_lens.len() as u64 - 1);
        answers
    }

    /// `main` reads the word at a page chosen by the length of its input (a page no earlier
    /// call wrote unless one had the same length), answers it, and writes 1 there.
    const FIRST_TOUCH: &str = r#"(module
        (memory (export "memory") 17)
        (global $heap (mut i32) (i32.const 65536))
        (func (export "alloc") (param $n i32) (result i32)
          (local $p i32)
          (local.set $p (global.get $heap))
          (global.set $heap (i32.add (global.get $heap) (local.get $n)))
          (local.get $p))
        (func (export "main") (param $ptr i32) (param $len i32) (result i64)
          (local $at i32)
          (local.set $at (i32.add (i32.const 0x80000) (i32.mul (local.get $len) (i32.const 4096))))
          (i64.extend_i32_u (i32.load (local.get $at)))
          (i32.store (local.get $at) (i32.const 1))))"#;

    #[test]
    fn a_page_first_written_by_a_later_call_is_reset_too() {
        if !wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            return; // no PAGEMAP_SCAN here: nothing is kept
        }
        // The second call writes a page the first did not (the scan after the first call did
        // not see it); the third reads it.
        assert_eq!(call_module(FIRST_TOUCH, &[1, 20, 20]), vec![0, 0, 0]);
        IGNORE_FAULTS.with(|ignore| ignore.set(true));
        let answers = call_module(FIRST_TOUCH, &[1, 20, 20]);
        IGNORE_FAULTS.with(|ignore| ignore.set(false));
        assert_eq!(
            answers,
            vec![0, 0, 1],
            "the sabotaged reset left the new page"
        );
    }

    #[test]
    fn the_probe_notices_a_kept_instance_whose_memory_was_not_reset() {
        if !wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            return; // no PAGEMAP_SCAN here: nothing is kept
        }
        assert_eq!(probe_masks(3), vec![0, 0, 0]);
        SKIP_MEMORY_RESET.with(|skip| skip.set(true));
        let masks = probe_masks(3);
        SKIP_MEMORY_RESET.with(|skip| skip.set(false));
        // Globals are reset still (the size the guest sees among them); every mark in memory
        // stays, the one in the page it grew into included.
        let marks = 4 | 8 | 16 | 32 | 64 | 512;
        assert_eq!(masks, vec![0, marks, marks]);
    }

    #[test]
    fn modules_cannot_mark_themselves() {
        let own = format!(r#"(module {BASE} (export "__ferrite_reuse" (global $g)))"#);
        assert!(marked(&own).unwrap_err().contains("reserved"));
    }
}
