//! Deterministic stack depth. Where a native stack overflows depends on the host: the frame
//! sizes Cranelift picks for its CPU features, the stack limit in each node's configuration,
//! host frames between guest frames. A write call runs on every replica, so its outcome must
//! not depend on any of that.
//!
//! At load, every guest function that calls another (or has a large frame) is rewritten to
//! count its own depth: on entry it adds its weight to a module global, traps once the total
//! passes [`DEPTH_BUDGET`], and takes the weight off again on every way out (`return`, a branch
//! to the function's outermost label, falling off the end). A weight is a bound of the function's
//! native frame in 16-byte units: a fixed part, one per local (parameters included) and one per
//! operand stack slot at its highest. Every host counts the same, so every host traps at the
//! same call; the native stack ([`MIN_STACK_BYTES`](crate::config::MIN_STACK_BYTES) and up)
//! has room for the whole budget and more, so the native limit is only a backstop.
//!
//! Tail calls and exceptions leave a frame without passing its exit: modules using them are
//! refused. The host adds [`HOST_CALL_UNITS`] while it calls back into the guest's `alloc`.

use std::collections::BTreeMap;
use std::ops::Range;

use wasmparser::{
    Encoding, FuncValidatorAllocations, Operator, Parser, Payload, RefType, ValType, ValidPayload,
    Validator, WasmFeatures,
};

/// The name of the exported global holding a call's depth in units.
pub const DEPTH_EXPORT: &str = "__ferrite_depth";
/// The most units a call's guest frames may add up to: the same on every node.
pub const DEPTH_BUDGET: u32 = 32_768;
/// Units every counted frame costs besides its locals and operands (return address, frame
/// pointer, saved registers).
pub const FRAME_UNITS: u32 = 4;
/// A function that calls nothing and weighs at most this many units is left uncounted: it
/// only ever sits on top of the stack, so the native stack's headroom covers it.
pub const LEAF_UNITS: u32 = 64;
/// Units added while the host calls back into the guest (`alloc` from a `ferrite` import),
/// for the host frames in between.
pub const HOST_CALL_UNITS: u32 = 512;
/// Bumped whenever the rewriting changes (here, in `divide.rs`, `headroom.rs` or `reuse.rs`):
/// compiled code cached on disk names it.
pub const VERSION: u32 = 4;

/// Section ids in the order a module must hold them (custom sections go anywhere).
const ORDER: [u8; 13] = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
const GLOBAL_SECTION: u8 = 6;
const EXPORT_SECTION: u8 = 7;
const TYPE_SECTION: u8 = 1;
pub(super) const CODE_SECTION: u8 = 10;

/// What the rewriting needs to know of one function body.
struct Body {
    /// Where the body's locals start and its operators start.
    start: usize,
    operators: usize,
    /// The offset of the function's final `end`.
    end: usize,
    returns: Vec<usize>,
    weight: u32,
    counted: bool,
}

/// Rewrites a binary module so that it counts its stack depth. Also validates it.
pub fn instrument(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut validator = Validator::new_with_features(features());
    let mut sections: Vec<(u8, Range<usize>)> = Vec::new();
    let mut bodies = Vec::new();
    let mut allocations = FuncValidatorAllocations::default();
    let mut types = None;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let Payload::Version {
            encoding: Encoding::Component,
            ..
        } = payload
        {
            return Err("components are not supported: load a core module".to_owned());
        }
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
        match validator.payload(&payload).map_err(|e| e.to_string())? {
            ValidPayload::Func(func, body) => {
                let mut func = func.into_validator(allocations);
                bodies.push(analyze(&mut func, &body)?);
                allocations = func.into_allocations();
            }
            ValidPayload::End(t) => types = Some(t),
            _ => {}
        }
    }
    let types = types.ok_or("truncated module")?;
    let types = types.as_ref();
    let depth_global = types.global_count();
    let first_defined = types.function_count() - bodies.len() as u32;
    // Blocks wrapping a body with several results need a type `[] -> results`.
    let mut block_types: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    let mut block_type_of = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.iter().enumerate() {
        let ty = types[types.core_function_at(first_defined + i as u32)].unwrap_func();
        let mut results = Vec::new();
        for r in ty.results() {
            results.push(value_type(*r)?);
        }
        let block = match results.len() {
            0 => vec![0x40],
            1 => results,
            _ if !body.counted => Vec::new(),
            _ => {
                let next = types.core_type_count_in_module() + block_types.len() as u32;
                let index = *block_types.entry(results).or_insert(next);
                // A block type naming a type index is a signed LEB (s33).
                let mut bytes = Vec::new();
                leb_i64(&mut bytes, i64::from(index));
                bytes
            }
        };
        block_type_of.push(block);
    }

    let mut out = wasm[..8].to_vec();
    let (mut global_done, mut export_done) = (false, false);
    for (id, range) in &sections {
        let id = *id;
        if id != 0 {
            if !global_done && rank(id) > rank(GLOBAL_SECTION) {
                section(&mut out, GLOBAL_SECTION, &single(&depth_global_entry()));
                global_done = true;
            }
            if !export_done && rank(id) > rank(EXPORT_SECTION) {
                section(
                    &mut out,
                    EXPORT_SECTION,
                    &single(&depth_export(depth_global)),
                );
                export_done = true;
            }
        }
        let content = &wasm[range.clone()];
        match id {
            TYPE_SECTION if !block_types.is_empty() => {
                let mut extra = Vec::new();
                let mut ordered: Vec<_> = block_types.iter().collect();
                ordered.sort_by_key(|(_, index)| **index);
                for (results, _) in ordered {
                    extra.push(0x60);
                    extra.push(0);
                    leb_u64(&mut extra, results.len() as u64);
                    extra.extend_from_slice(results);
                }
                section(&mut out, id, &extend(content, block_types.len(), &extra)?);
            }
            GLOBAL_SECTION => {
                section(&mut out, id, &extend(content, 1, &depth_global_entry())?);
                global_done = true;
            }
            EXPORT_SECTION => {
                section(
                    &mut out,
                    id,
                    &extend(content, 1, &depth_export(depth_global))?,
                );
                export_done = true;
            }
            CODE_SECTION => {
                let mut code = Vec::new();
                leb_u64(&mut code, bodies.len() as u64);
                for (body, block) in bodies.iter().zip(&block_type_of) {
                    let rewritten = rewrite(wasm, body, block, depth_global);
                    leb_u64(&mut code, rewritten.len() as u64);
                    code.extend_from_slice(&rewritten);
                }
                section(&mut out, id, &code);
            }
            _ => section(&mut out, id, content),
        }
    }
    if !global_done {
        section(&mut out, GLOBAL_SECTION, &single(&depth_global_entry()));
    }
    if !export_done {
        section(
            &mut out,
            EXPORT_SECTION,
            &single(&depth_export(depth_global)),
        );
    }
    Ok(out)
}

/// Whether a call that trapped had passed its depth budget, from its counter's value.
pub fn exceeded(counter: Option<wasmtime::Val>) -> bool {
    counter
        .and_then(|v| v.i32())
        .is_some_and(|units| units as u32 > DEPTH_BUDGET)
}

/// The features a module may use: wasmtime's defaults less what leaves a frame unseen.
pub(super) fn features() -> WasmFeatures {
    let mut features = WasmFeatures::default();
    features.remove(
        WasmFeatures::TAIL_CALL
            | WasmFeatures::EXCEPTIONS
            | WasmFeatures::LEGACY_EXCEPTIONS
            | WasmFeatures::STACK_SWITCHING
            | WasmFeatures::THREADS
            | WasmFeatures::SHARED_EVERYTHING_THREADS,
    );
    features
}

/// Validates one function body, handing `visit` each operator with its offset and the operand
/// stack's height after it; where the body's locals start and where its code starts.
pub(super) fn walk_body<T: wasmparser::WasmModuleResources>(
    func: &mut wasmparser::FuncValidator<T>,
    body: &wasmparser::FunctionBody<'_>,
    mut visit: impl FnMut(&Operator<'_>, usize, u32),
) -> Result<(usize, usize), String> {
    let err = |e: wasmparser::BinaryReaderError| e.to_string();
    let mut reader = body.get_binary_reader();
    let start = reader.original_position();
    func.read_locals(&mut reader).map_err(err)?;
    let operators = reader.original_position();
    let mut ops = body.get_operators_reader().map_err(err)?;
    while !ops.eof() {
        let (op, offset) = ops.read_with_offset().map_err(err)?;
        func.op(offset, &op).map_err(err)?;
        visit(&op, offset, func.operand_stack_height());
    }
    ops.finish().map_err(err)?;
    Ok((start, operators))
}

fn analyze<T: wasmparser::WasmModuleResources>(
    func: &mut wasmparser::FuncValidator<T>,
    body: &wasmparser::FunctionBody<'_>,
) -> Result<Body, String> {
    let (mut highest, mut calls, mut end) = (0u32, false, None);
    let mut returns = Vec::new();
    let (start, operators) = walk_body(func, body, |op, offset, height| {
        highest = highest.max(height);
        match op {
            Operator::Return => returns.push(offset),
            Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. } => {
                calls = true
            }
            Operator::End => end = Some(offset),
            _ => {}
        }
    })?;
    let end = end.unwrap_or(operators);
    let weight = FRAME_UNITS
        .saturating_add(func.len_locals())
        .saturating_add(highest);
    Ok(Body {
        start,
        operators,
        end,
        returns,
        weight,
        counted: calls || weight > LEAF_UNITS,
    })
}

/// A body's content (locals and code), counting its depth if it is counted.
fn rewrite(wasm: &[u8], body: &Body, block: &[u8], global: u32) -> Vec<u8> {
    if !body.counted {
        return wasm[body.start..=body.end].to_vec();
    }
    let weight = body.weight.min(DEPTH_BUDGET + 1);
    let mut out = wasm[body.start..body.operators].to_vec();
    // depth += weight; if depth > budget { unreachable }
    add_depth(&mut out, global, weight, 0x6a);
    global_get(&mut out, global);
    out.push(0x41);
    leb_i64(&mut out, i64::from(DEPTH_BUDGET));
    out.extend_from_slice(&[0x4b, 0x04, 0x40, 0x00, 0x0b]);
    // The original code inside a block: a branch to the function's label now ends the block.
    out.push(0x02);
    out.extend_from_slice(block);
    let mut from = body.operators;
    for &at in &body.returns {
        out.extend_from_slice(&wasm[from..at]);
        add_depth(&mut out, global, weight, 0x6b);
        from = at;
    }
    out.extend_from_slice(&wasm[from..body.end]);
    out.push(0x0b);
    add_depth(&mut out, global, weight, 0x6b);
    out.push(0x0b);
    out
}

/// `global.set $depth (op (global.get $depth) (i32.const units))`, `op` being add or sub.
fn add_depth(out: &mut Vec<u8>, global: u32, units: u32, op: u8) {
    global_get(out, global);
    out.push(0x41);
    leb_i64(out, i64::from(units));
    out.push(op);
    out.push(0x24);
    leb_u64(out, u64::from(global));
}

fn global_get(out: &mut Vec<u8>, global: u32) {
    out.push(0x23);
    leb_u64(out, u64::from(global));
}

/// `(global (mut i32) (i32.const 0))`
fn depth_global_entry() -> Vec<u8> {
    vec![0x7f, 0x01, 0x41, 0x00, 0x0b]
}

fn depth_export(global: u32) -> Vec<u8> {
    let mut out = Vec::new();
    leb_u64(&mut out, DEPTH_EXPORT.len() as u64);
    out.extend_from_slice(DEPTH_EXPORT.as_bytes());
    out.push(0x03);
    leb_u64(&mut out, u64::from(global));
    out
}

fn value_type(ty: ValType) -> Result<u8, String> {
    Ok(match ty {
        ValType::I32 => 0x7f,
        ValType::I64 => 0x7e,
        ValType::F32 => 0x7d,
        ValType::F64 => 0x7c,
        ValType::V128 => 0x7b,
        ValType::Ref(r) if r == RefType::FUNCREF => 0x70,
        ValType::Ref(r) if r == RefType::EXTERNREF => 0x6f,
        ValType::Ref(r) => return Err(format!("functions returning {r} are not supported")),
    })
}

pub(super) fn rank(id: u8) -> usize {
    ORDER.iter().position(|&o| o == id).unwrap_or(ORDER.len())
}

/// A section: id, size, content.
pub(super) fn section(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    leb_u64(out, content.len() as u64);
    out.extend_from_slice(content);
}

/// A vector's content holding one encoded entry.
pub(super) fn single(entry: &[u8]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(entry);
    out
}

/// A section's vector with `added` more entries, encoded in `extra`, at its end.
pub(super) fn extend(content: &[u8], added: usize, extra: &[u8]) -> Result<Vec<u8>, String> {
    let (count, used) = read_leb(content).ok_or("malformed section")?;
    let mut out = Vec::new();
    leb_u64(&mut out, count + added as u64);
    out.extend_from_slice(&content[used..]);
    out.extend_from_slice(extra);
    Ok(out)
}

fn read_leb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

pub(super) fn leb_u64(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(super) fn leb_i64(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Config, Engine, Instance, Module, Store, Trap};

    use super::*;

    /// `run(n)` recurses `n` frames deep through `$down`.
    const RECURSE: &str = r#"(module
      (func $down (param $n i32) (result i32)
        (if (result i32) (i32.eqz (local.get $n))
          (then (i32.const 0))
          (else (i32.add (call $down (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))))
      (func (export "run") (param $n i32) (result i32) (call $down (local.get $n))))"#;

    fn engine(stack: usize) -> Engine {
        let mut config = Config::new();
        config
            .max_wasm_stack(stack)
            .async_stack_size(stack + (2 << 20))
            .wasm_tail_call(false);
        Engine::new(&config).unwrap()
    }

    /// Runs `run(n)` on a fresh instance: its result, or the trap, and the depth counter after.
    fn run(engine: &Engine, wasm: &[u8], n: i32) -> (Result<i32, Trap>, Option<i32>) {
        let module = Module::new(engine, wasm).unwrap();
        let mut store = Store::new(engine, ());
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let run = instance
            .get_typed_func::<i32, i32>(&mut store, "run")
            .unwrap();
        let result = run
            .call(&mut store, n)
            .map_err(|e| *e.downcast_ref::<Trap>().unwrap());
        let depth = instance
            .get_global(&mut store, DEPTH_EXPORT)
            .map(|g| g.get(&mut store).i32().unwrap());
        (result, depth)
    }

    /// The deepest `n` that `run(n)` completes.
    fn deepest(engine: &Engine, wasm: &[u8]) -> i32 {
        let (mut ok, mut fails) = (0, 1 << 20);
        while fails - ok > 1 {
            let mid = ok + (fails - ok) / 2;
            match run(engine, wasm, mid).0 {
                Ok(_) => ok = mid,
                Err(_) => fails = mid,
            }
        }
        ok
    }

    /// Runs `f` on a thread with room for an 8 MiB WebAssembly stack.
    fn on_big_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn hosts_with_different_native_stacks_trap_at_the_same_counted_depth() {
        on_big_stack(|| {
            let (small, large) = (engine(1 << 20), engine(8 << 20));
            let plain = wat::parse_str(RECURSE).unwrap();
            // Uncounted, how deep a call gets depends on the host's stack.
            assert!(deepest(&small, &plain) < deepest(&large, &plain));

            let counted = instrument(&plain).unwrap();
            let depth = deepest(&small, &counted);
            assert_eq!(depth, deepest(&large, &counted));
            // `$down` weighs 4 + 1 local + 2 operands; `run` 4 + 1 + 1; the last frame of
            // `$down` (n = 0) is one more.
            let expected = (DEPTH_BUDGET - 6) / 7 - 1;
            assert_eq!(depth, expected as i32);
            for engine in [&small, &large] {
                assert_eq!(run(engine, &counted, depth), (Ok(depth), Some(0)));
                let (result, counter) = run(engine, &counted, depth + 1);
                assert_eq!(result, Err(Trap::UnreachableCodeReached));
                assert!(exceeded(counter.map(wasmtime::Val::I32)));
            }
        });
    }

    /// Calls functions that leave by every way there is, 20,000 times each: a way out that
    /// kept its units would pass the budget within a few thousand calls.
    const WAYS_OUT: &str = r#"(module
      (global $g (mut i32) (i32.const 0))
      (func $leaf (param i32) (result i32) (local.get 0))
      (func $returns (param i32) (result i32)
        (if (local.get 0) (then (return (call $leaf (i32.const 1)))))
        (call $leaf (i32.const 2)))
      (func $branches (param i32) (result i32)
        (drop (call $leaf (i32.const 0)))
        (br_if 0 (i32.const 3) (i32.eq (local.get 0) (i32.const 1)))
        (drop)
        (block $b (result i32)
          (br_table $b 1 (i32.const 4) (i32.shr_u (local.get 0) (i32.const 1)))))
      (func $two (param i32) (result i32 i64)
        (drop (call $leaf (i32.const 0)))
        (if (local.get 0) (then (br 1 (i32.const 5) (i64.const 6))))
        (i32.const 7) (i64.const 8))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $sum i32)
        (loop $again
          (local.set $sum (i32.add (local.get $sum) (call $returns (i32.and (local.get $i) (i32.const 3)))))
          (local.set $sum (i32.add (local.get $sum) (call $branches (i32.and (local.get $i) (i32.const 3)))))
          (local.set $sum (i32.add (local.get $sum) (block (result i32) (call $two (i32.and (local.get $i) (i32.const 1))) (drop))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (local.get $n))))
        (global.set $g (local.get $sum))
        (local.get $sum)))"#;

    #[test]
    fn every_way_out_of_a_function_gives_back_its_units() {
        let engine = engine(1 << 20);
        let plain = wat::parse_str(WAYS_OUT).unwrap();
        let counted = instrument(&plain).unwrap();
        let (expected, _) = run(&engine, &plain, 20_000);
        let (result, counter) = run(&engine, &counted, 20_000);
        assert_eq!(result, expected);
        assert!(result.is_ok());
        assert_eq!(counter, Some(0), "every frame gave its units back");
    }

    #[test]
    fn tail_calls_and_components_are_refused() {
        let tail = wat::parse_str(
            r#"(module (func $f (param i32) (result i32) (return_call $f (local.get 0))))"#,
        )
        .unwrap();
        assert!(instrument(&tail).unwrap_err().contains("tail"));
        let component = wat::parse_str("(component)").unwrap();
        assert!(instrument(&component).unwrap_err().contains("component"));
    }
}
