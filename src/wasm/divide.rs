//! 64-bit division at 32-bit speed. Cranelift compiles `i64.div_s`, `i64.div_u`, `i64.rem_s`
//! and `i64.rem_u` to a 64-bit divide, which on x86-64 takes two to three times as long as a
//! 32-bit one; native compilers test whether both operands fit in 32 bits and divide in 32
//! bits when they do (clang's "bypass slow division"). Guests divide 64-bit integers that are
//! small all the time (a counter, a length, a loop bound held in an `i64`).
//!
//! At load, before `depth.rs` counts frames, every function that divides 64-bit integers gets
//! two more `i64` locals, and each such division becomes: keep both operands in the locals; if
//! neither has a bit set at or above bit 32, divide their low halves with the 32-bit unsigned
//! instruction and widen the result; otherwise run the original instruction. Where the fast
//! path runs, its result is the original's (both operands are below 2^32, so non-negative as
//! signed integers too, where signed and unsigned division agree), and a zero divisor traps
//! the same way (`integer divide by zero`); the one other trap, `i64.div_s` of `i64::MIN` by -1,
//! only happens on the original path. The added instructions consume fuel like any others,
//! so a dividing call uses more fuel than before, the same on every node.

use wasmparser::{FuncValidatorAllocations, Operator, Parser, Payload, ValidPayload, Validator};

use super::depth::{CODE_SECTION, features, leb_u64, section, walk_body};

/// The most locals a function may declare (wasmparser's limit, and the engines'): a function
/// that would pass it with the two added locals is left as it is.
const MAX_LOCALS: u32 = 50_000;

/// One function body and where its 64-bit divisions are.
struct Body {
    /// Where the body's content (locals, then code) starts, where its code starts, and its end
    /// (exclusive).
    start: usize,
    operators: usize,
    end: usize,
    /// Locals including parameters: the index of the first added local.
    locals: u32,
    /// The offset and opcode of each 64-bit division.
    divisions: Vec<(usize, u8)>,
}

/// Rewrites every 64-bit division of `wasm` to take the 32-bit path when its operands allow.
/// Validates the module first; a module without 64-bit divisions comes back unchanged.
pub(super) fn rewrite(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut validator = Validator::new_with_features(features());
    let mut allocations = FuncValidatorAllocations::default();
    let mut bodies = Vec::new();
    let mut has_code = false;
    let mut sections = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
        has_code |= matches!(payload, Payload::CodeSectionStart { .. });
        if let ValidPayload::Func(func, body) =
            validator.payload(&payload).map_err(|e| e.to_string())?
        {
            let mut func = func.into_validator(allocations);
            let mut divisions = Vec::new();
            let (start, operators) = walk_body(&mut func, &body, |op, offset, _| {
                let opcode = match op {
                    Operator::I64DivS => 0x7f,
                    Operator::I64DivU => 0x80,
                    Operator::I64RemS => 0x81,
                    Operator::I64RemU => 0x82,
                    _ => return,
                };
                divisions.push((offset, opcode));
            })?;
            let locals = func.len_locals();
            if locals > MAX_LOCALS - 2 {
                divisions.clear();
            }
            bodies.push(Body {
                start,
                operators,
                end: body.range().end,
                locals,
                divisions,
            });
            allocations = func.into_allocations();
        }
    }
    if !has_code || bodies.iter().all(|b| b.divisions.is_empty()) {
        return Ok(wasm.to_vec());
    }
    let mut out = wasm[..8].to_vec();
    for (id, range) in sections {
        if id == CODE_SECTION {
            let mut code = Vec::new();
            leb_u64(&mut code, bodies.len() as u64);
            for body in &bodies {
                let rewritten = rewrite_body(wasm, body)?;
                leb_u64(&mut code, rewritten.len() as u64);
                code.extend_from_slice(&rewritten);
            }
            section(&mut out, id, &code);
        } else {
            section(&mut out, id, &wasm[range]);
        }
    }
    Ok(out)
}

/// A body's content with its divisions rewritten and two `i64` locals added.
fn rewrite_body(wasm: &[u8], body: &Body) -> Result<Vec<u8>, String> {
    if body.divisions.is_empty() {
        return Ok(wasm[body.start..body.end].to_vec());
    }
    // The locals: a count of groups, then the groups; one group of two `i64`s more.
    let mut reader = wasmparser::BinaryReader::new(&wasm[body.start..body.operators], 0);
    let groups = reader.read_var_u32().map_err(|e| e.to_string())?;
    let groups_at = body.start + reader.current_position();
    let mut out = Vec::new();
    leb_u64(&mut out, u64::from(groups) + 1);
    out.extend_from_slice(&wasm[groups_at..body.operators]);
    out.extend_from_slice(&[2, 0x7e]);
    let (a, b) = (u64::from(body.locals), u64::from(body.locals) + 1);
    let mut from = body.operators;
    for &(at, opcode) in &body.divisions {
        out.extend_from_slice(&wasm[from..at]);
        fast_path(&mut out, opcode, a, b);
        from = at + 1;
    }
    out.extend_from_slice(&wasm[from..body.end]);
    Ok(out)
}

/// The code that replaces the 64-bit division `opcode`, operands in locals `a` and `b`.
fn fast_path(out: &mut Vec<u8>, opcode: u8, a: u64, b: u64) {
    let local = |out: &mut Vec<u8>, op: u8, index: u64| {
        out.push(op);
        leb_u64(out, index);
    };
    let divide = matches!(opcode, 0x7f | 0x80);
    local(out, 0x21, b); // local.set $b
    local(out, 0x22, a); // local.tee $a
    local(out, 0x20, b); // local.get $b
    out.push(0x84); // i64.or
    out.extend_from_slice(&[0x42, 32]); // i64.const 32
    out.push(0x88); // i64.shr_u
    out.push(0x50); // i64.eqz
    out.extend_from_slice(&[0x04, 0x7e]); // if (result i64)
    local(out, 0x20, a);
    out.push(0xa7); // i32.wrap_i64
    local(out, 0x20, b);
    out.push(0xa7);
    out.push(if divide { 0x6e } else { 0x70 }); // i32.div_u / i32.rem_u
    out.push(0xad); // i64.extend_i32_u
    out.push(0x05); // else
    local(out, 0x20, a);
    local(out, 0x20, b);
    out.push(opcode);
    out.push(0x0b); // end
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store, Trap};

    const DIVIDING: &str = r#"(module
        (func (export "div_s") (param i64 i64) (result i64) (i64.div_s (local.get 0) (local.get 1)))
        (func (export "div_u") (param i64 i64) (result i64) (i64.div_u (local.get 0) (local.get 1)))
        (func (export "rem_s") (param i64 i64) (result i64) (i64.rem_s (local.get 0) (local.get 1)))
        (func (export "rem_u") (param i64 i64) (result i64)
          (local i32 f64)
          (i64.rem_u (local.get 0) (local.get 1))))"#;

    /// Every entry's result (or trap) on `(a, b)`.
    fn answers(
        store: &mut Store<()>,
        instance: &Instance,
        a: i64,
        b: i64,
    ) -> Vec<Result<i64, Trap>> {
        ["div_s", "div_u", "rem_s", "rem_u"]
            .iter()
            .map(|name| {
                let f = instance
                    .get_typed_func::<(i64, i64), i64>(&mut *store, name)
                    .unwrap();
                f.call(&mut *store, (a, b))
                    .map_err(|e| *e.downcast_ref::<Trap>().unwrap())
            })
            .collect()
    }

    #[test]
    fn the_fast_path_answers_and_traps_as_the_instruction_does() {
        let original = wat::parse_str(DIVIDING).unwrap();
        let rewritten = rewrite(&original).unwrap();
        assert_ne!(original, rewritten);
        let engine = Engine::default();
        let mut store = Store::new(&engine, ());
        let before =
            Instance::new(&mut store, &Module::new(&engine, &original).unwrap(), &[]).unwrap();
        let after =
            Instance::new(&mut store, &Module::new(&engine, &rewritten).unwrap(), &[]).unwrap();
        let edges = [
            0,
            1,
            -1,
            2,
            7,
            (1 << 31) - 1,
            1 << 31,
            (1 << 32) - 1,
            1 << 32,
            -(1 << 31),
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Mostly small, sometimes any width.
            match seed % 4 {
                0 => seed as i64,
                1 => (seed >> 33) as i64,
                2 => (seed >> 32) as i64,
                _ => (seed % 100) as i64,
            }
        };
        let mut pairs: Vec<(i64, i64)> = Vec::new();
        for &a in &edges {
            for &b in &edges {
                pairs.push((a, b));
            }
        }
        pairs.extend((0..20_000).map(|_| (random(), random())));
        for (a, b) in pairs {
            assert_eq!(
                answers(&mut store, &after, a, b),
                answers(&mut store, &before, a, b),
                "{a} and {b}"
            );
        }
    }

    #[test]
    fn modules_without_64_bit_division_are_unchanged_and_bad_ones_refused() {
        let plain = wat::parse_str(r#"(module (func (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1))))"#).unwrap();
        assert_eq!(rewrite(&plain).unwrap(), plain);
        // An `i32` divided as an `i64`: the text parses, validation refuses it.
        let bad = wat::parse_str(
            r#"(module (func (result i64) (i64.div_s (i32.const 1) (i64.const 2))))"#,
        )
        .unwrap();
        assert!(rewrite(&bad).is_err());
    }
}
