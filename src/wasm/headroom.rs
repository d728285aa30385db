//! Room to grow without growing. A memory cannot shrink, so an instance whose call grew its
//! memory cannot be reset and kept (`reuse.rs`); yet Rust's standard allocator on wasm32 asks
//! for new pages at its first allocation in every call, whatever is free above the heap, so
//! every call of a guest built without our SDK grew its memory, ran on a new instance, and
//! moved its module to explicit bounds checks.
//!
//! At load, a module with one memory of its own (32-bit, not shared) that grows it gets
//! [`HEADROOM_PAGES`] more pages from the start (fewer if its maximum is lower), and the size
//! the guest sees is kept apart, in a mutable global starting at the declared size:
//! `memory.size` reads that global, and `memory.grow` calls an added function that moves the
//! global up through the headroom and grows the real memory only past it (answering -1, as
//! before, when the real memory cannot grow). The global is reset with the others, and the
//! pages of the headroom a call wrote are rewritten like any other, so a kept instance starts
//! every call as a new one does.
//!
//! One difference from a plain instance, the same on every node and for new and kept
//! instances alike: a load or store past the size the guest sees but inside the headroom reads
//! zeros or writes instead of trapping. The headroom counts towards the call's memory limit.

use wasmparser::{Operator, Parser, Payload, TypeRef};

use super::depth::{CODE_SECTION, extend, leb_i64, leb_u64, rank, section, single};

/// Pages added to a growing module's memory (1 MiB).
pub const HEADROOM_PAGES: u64 = 16;

const TYPE_SECTION: u8 = 1;
const FUNCTION_SECTION: u8 = 3;
const MEMORY_SECTION: u8 = 5;
const GLOBAL_SECTION: u8 = 6;

/// Gives a module that grows its one memory a headroom (see the module docs); any other
/// comes back unchanged. Expects a valid module.
pub(super) fn rewrite(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let err = |e: wasmparser::BinaryReaderError| e.to_string();
    let mut sections = Vec::new();
    let (mut types, mut functions, mut globals) = (0u64, 0u64, 0u64);
    let mut memories = Vec::new();
    let mut imported_memory = false;
    // Per body: its range and the (offset, end, is_grow) of each memory.size/memory.grow.
    let mut bodies = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(err)?;
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
        match payload {
            Payload::TypeSection(reader) => {
                for group in reader {
                    types += group.map_err(err)?.types().len() as u64;
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import.map_err(err)?.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => functions += 1,
                        TypeRef::Global(_) => globals += 1,
                        TypeRef::Memory(_) => imported_memory = true,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => functions += u64::from(reader.count()),
            Payload::GlobalSection(reader) => globals += u64::from(reader.count()),
            Payload::MemorySection(reader) => {
                for memory in reader {
                    memories.push(memory.map_err(err)?);
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().map_err(err)?;
                let mut sites = Vec::new();
                while !ops.eof() {
                    let (op, at) = ops.read_with_offset().map_err(err)?;
                    let grow = match op {
                        Operator::MemoryGrow { .. } => true,
                        Operator::MemorySize { .. } => false,
                        _ => continue,
                    };
                    sites.push((at, ops.original_position(), grow));
                }
                bodies.push((body.range(), sites));
            }
            _ => {}
        }
    }
    let grows = bodies
        .iter()
        .any(|(_, s)| s.iter().any(|&(_, _, grow)| grow));
    let [memory] = memories.as_slice() else {
        return Ok(wasm.to_vec());
    };
    if !grows
        || imported_memory
        || memory.memory64
        || memory.shared
        || memory.page_size_log2.is_some()
    {
        return Ok(wasm.to_vec());
    }
    let declared = memory.initial;
    let room = memory
        .maximum
        .map_or(HEADROOM_PAGES, |max| {
            max.saturating_sub(declared).min(HEADROOM_PAGES)
        })
        .min(65_536u64.saturating_sub(declared));
    if room == 0 {
        return Ok(wasm.to_vec());
    }
    let (grow_type, grow_func, size_global) = (types, functions, globals);

    let mut out = wasm[..8].to_vec();
    let mut global_done = false;
    let size_global_entry = {
        // (global (mut i32) (i32.const declared))
        let mut entry = vec![0x7f, 0x01, 0x41];
        leb_i64(&mut entry, i64::from(declared as i32));
        entry.push(0x0b);
        entry
    };
    for (id, range) in &sections {
        let (id, content) = (*id, &wasm[range.clone()]);
        if id != 0 && !global_done && rank(id) > rank(GLOBAL_SECTION) {
            section(&mut out, GLOBAL_SECTION, &single(&size_global_entry));
            global_done = true;
        }
        match id {
            // (type (func (param i32) (result i32)))
            TYPE_SECTION => section(
                &mut out,
                id,
                &extend(content, 1, &[0x60, 1, 0x7f, 1, 0x7f])?,
            ),
            FUNCTION_SECTION => {
                let mut entry = Vec::new();
                leb_u64(&mut entry, grow_type);
                section(&mut out, id, &extend(content, 1, &entry)?);
            }
            MEMORY_SECTION => {
                let mut limits = vec![1];
                let initial = declared + room;
                match memory.maximum {
                    Some(max) => {
                        limits.push(0x01);
                        leb_u64(&mut limits, initial);
                        leb_u64(&mut limits, max);
                    }
                    None => {
                        limits.push(0x00);
                        leb_u64(&mut limits, initial);
                    }
                }
                section(&mut out, id, &limits);
            }
            GLOBAL_SECTION => {
                section(&mut out, id, &extend(content, 1, &size_global_entry)?);
                global_done = true;
            }
            CODE_SECTION => {
                let mut code = Vec::new();
                leb_u64(&mut code, bodies.len() as u64 + 1);
                for (range, sites) in &bodies {
                    let mut body = Vec::new();
                    let mut from = range.start;
                    for &(at, end, grow) in sites {
                        body.extend_from_slice(&wasm[from..at]);
                        if grow {
                            body.push(0x10); // call $grow
                            leb_u64(&mut body, grow_func);
                        } else {
                            body.push(0x23); // global.get $size
                            leb_u64(&mut body, size_global);
                        }
                        from = end;
                    }
                    body.extend_from_slice(&wasm[from..range.end]);
                    leb_u64(&mut code, body.len() as u64);
                    code.extend_from_slice(&body);
                }
                let grow = grow_body(size_global);
                leb_u64(&mut code, grow.len() as u64);
                code.extend_from_slice(&grow);
                section(&mut out, id, &code);
            }
            _ => section(&mut out, id, content),
        }
    }
    if !global_done {
        section(&mut out, GLOBAL_SECTION, &single(&size_global_entry));
    }
    Ok(out)
}

/// The added `memory.grow`: `(param $delta i32) (result i32) (local $old i32)`.
fn grow_body(size: u64) -> Vec<u8> {
    let mut body = vec![1, 1, 0x7f]; // one local i32 ($old, index 1)
    let get_size = |body: &mut Vec<u8>| {
        body.push(0x23);
        leb_u64(body, size);
    };
    get_size(&mut body);
    body.extend_from_slice(&[0x21, 1]); // local.set $old
    // if $delta > memory.size - $size (more than the headroom left)
    body.extend_from_slice(&[0x20, 0, 0x3f, 0]);
    get_size(&mut body);
    body.extend_from_slice(&[0x6b, 0x4b, 0x04, 0x40]); // i32.sub i32.gt_u if
    //   if memory.grow($delta - (memory.size - $size)) == -1 { return -1 }
    body.extend_from_slice(&[0x20, 0, 0x3f, 0]);
    get_size(&mut body);
    body.extend_from_slice(&[0x6b, 0x6b, 0x40, 0]); // i32.sub i32.sub memory.grow
    body.extend_from_slice(&[0x41, 0x7f, 0x46, 0x04, 0x40, 0x41, 0x7f, 0x0f, 0x0b]);
    body.push(0x0b); // end if
    // $size += $delta; $old
    get_size(&mut body);
    body.extend_from_slice(&[0x20, 0, 0x6a, 0x24]);
    leb_u64(&mut body, size);
    body.extend_from_slice(&[0x20, 1, 0x0b]);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    /// `grow(n)` grows by `n` and answers the old size; `size` the size; `peek(a)` loads at `a`.
    fn module(limits: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                (memory {limits})
                (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
                (func (export "size") (result i32) (memory.size))
                (func (export "peek") (param i32) (result i32) (i32.load (local.get 0))))"#
        ))
        .unwrap()
    }

    fn trap(e: wasmtime::Error) -> String {
        e.downcast_ref::<wasmtime::Trap>()
            .map_or_else(|| e.to_string(), ToString::to_string)
    }

    fn run(wasm: &[u8], steps: &[(&str, i32)]) -> Vec<Result<i32, String>> {
        let engine = Engine::default();
        let mut store = Store::new(&engine, ());
        let module = Module::new(&engine, wasm).unwrap();
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        steps
            .iter()
            .map(|&(name, arg)| {
                if name == "size" {
                    let f = instance
                        .get_typed_func::<(), i32>(&mut store, name)
                        .unwrap();
                    return f.call(&mut store, ()).map_err(trap);
                }
                let f = instance
                    .get_typed_func::<i32, i32>(&mut store, name)
                    .unwrap();
                f.call(&mut store, arg).map_err(trap)
            })
            .collect()
    }

    #[test]
    fn the_guest_sees_the_sizes_and_growth_it_would_without_headroom() {
        let steps = [
            ("size", 0),
            ("grow", 3),
            ("size", 0),
            ("grow", 0),
            ("grow", 20), // past the headroom: the real memory grows
            ("size", 0),
            ("grow", 100), // past the maximum
            ("size", 0),
            ("peek", 24 * 65536 - 4),
            ("grow", -1), // 4 GiB of pages: refused
        ];
        for limits in ["1", "1 40", "1 10"] {
            let original = module(limits);
            let rewritten = rewrite(&original).unwrap();
            assert_ne!(original, rewritten, "{limits}");
            assert_eq!(run(&rewritten, &steps), run(&original, &steps), "{limits}");
        }
    }

    #[test]
    fn inside_the_headroom_an_access_past_the_size_does_not_trap() {
        let original = module("1");
        let rewritten = rewrite(&original).unwrap();
        assert!(run(&original, &[("peek", 65536)])[0].is_err());
        assert_eq!(run(&rewritten, &[("peek", 65536)]), vec![Ok(0)]);
    }

    #[test]
    fn modules_that_never_grow_or_have_no_room_are_unchanged() {
        let full = module("2 2");
        assert_eq!(rewrite(&full).unwrap(), full);
        let wasm = wat::parse_str(
            r#"(module (memory 1) (func (export "size") (result i32) (memory.size)))"#,
        )
        .unwrap();
        assert_eq!(rewrite(&wasm).unwrap(), wasm);
    }
}
