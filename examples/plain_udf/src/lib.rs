//! The four benchmark workloads of `bench_udf`, written against the guest ABI (`docs/abi.md`)
//! with no SDK: `#[no_mangle]` exports, an `alloc` that leaks (every call gets a fresh
//! instance), the input decoded and the reply encoded by hand. `benches/vs_lua.rs` builds it
//! with the linker's defaults, as issue 12 describes a guest built without the SDK.

use serde::Deserialize;

#[link(wasm_import_module = "ferrite")]
unsafe extern "C" {
    fn get_key(kptr: *const u8, klen: usize) -> i64;
    fn reply(ptr: *const u8, len: usize);
}

/// The host asks for `len` bytes to write the input or a value into.
#[unsafe(no_mangle)]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(len);
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr
}

/// Keys and arguments: each list is `u32 count, count × (u32 len, bytes)`.
struct Input<'a> {
    keys: Vec<&'a [u8]>,
    args: Vec<&'a [u8]>,
}

fn input<'a>(ptr: *const u8, len: usize) -> Input<'a> {
    // SAFETY: the host wrote `len` bytes at `ptr` (an `alloc` result) before the call.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    let mut at = 0;
    let u32_at = |at: &mut usize| {
        let v = u32::from_le_bytes(bytes[*at..*at + 4].try_into().unwrap()) as usize;
        *at += 4;
        v
    };
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let count = u32_at(&mut at);
        for _ in 0..count {
            let n = u32_at(&mut at);
            list.push(&bytes[at..at + n]);
            at += n;
        }
    }
    let [keys, args] = lists;
    Input { keys, args }
}

fn get(key: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: the host reads `key` and answers with an `alloc`ed buffer it filled.
    let packed = unsafe { get_key(key.as_ptr(), key.len()) };
    if packed < 0 {
        return None;
    }
    let (ptr, len) = ((packed >> 32) as usize as *mut u8, packed as u32 as usize);
    // SAFETY: `alloc` made that buffer from a Vec with this capacity.
    Some(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// Tags of the reply encoding.
const INT: u8 = 1;
const BULK: u8 = 2;
const ERROR: u8 = 4;
const ARRAY: u8 = 5;

fn push_bulk(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn send(out: &[u8]) -> i64 {
    // SAFETY: the host copies the encoded value out of guest memory.
    unsafe { reply(out.as_ptr(), out.len()) };
    0
}

fn error(line: &str) -> i64 {
    let mut out = Vec::new();
    push_bulk(&mut out, ERROR, line.as_bytes());
    send(&out)
}

#[derive(Deserialize)]
struct Doc {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    active: bool,
    price: Option<f64>,
}

/// Sums `price` over the active items of the JSON document at the first key.
#[unsafe(no_mangle)]
pub extern "C" fn json(ptr: *const u8, len: usize) -> i64 {
    let input = input(ptr, len);
    let Some(raw) = input.keys.first().and_then(|k| get(k)) else {
        return error("ERR no such key");
    };
    let doc: Doc = match serde_json::from_slice(&raw) {
        Ok(doc) => doc,
        Err(e) => return error(&format!("ERR invalid JSON: {e}")),
    };
    let sum: f64 = doc
        .items
        .iter()
        .filter(|i| i.active)
        .filter_map(|i| i.price)
        .sum();
    let mut out = Vec::new();
    push_bulk(&mut out, BULK, format!("{sum}").as_bytes());
    send(&out)
}

/// The first argument reversed and uppercased, and how many ASCII letters it has.
#[unsafe(no_mangle)]
pub extern "C" fn string(ptr: *const u8, len: usize) -> i64 {
    let input = input(ptr, len);
    let Some(text) = input.args.first() else {
        return error("ERR an argument is needed");
    };
    let transformed: Vec<u8> = text.iter().rev().map(u8::to_ascii_uppercase).collect();
    let letters = text.iter().filter(|b| b.is_ascii_alphabetic()).count() as i64;
    let mut out = vec![ARRAY];
    out.extend_from_slice(&2u32.to_le_bytes());
    push_bulk(&mut out, BULK, &transformed);
    out.push(INT);
    out.extend_from_slice(&letters.to_le_bytes());
    send(&out)
}

/// How many primes there are up to the first argument, by trial division; the entry
/// point's result is the reply.
#[unsafe(no_mangle)]
pub extern "C" fn primes(ptr: *const u8, len: usize) -> i64 {
    let input = input(ptr, len);
    let Some(n) = input
        .args
        .first()
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| a.parse::<i64>().ok())
    else {
        return error("ERR the argument is not an integer");
    };
    let mut count = 0;
    for candidate in 2..=n {
        let mut divisor = 2;
        let mut prime = true;
        while divisor * divisor <= candidate {
            if candidate % divisor == 0 {
                prime = false;
                break;
            }
            divisor += 1;
        }
        count += prime as i64;
    }
    count
}

/// The length of the string at the first key (0 when there is none).
#[unsafe(no_mangle)]
pub extern "C" fn keylen(ptr: *const u8, len: usize) -> i64 {
    let input = input(ptr, len);
    input
        .keys
        .first()
        .and_then(|k| get(k))
        .map_or(0, |v| v.len() as i64)
}
