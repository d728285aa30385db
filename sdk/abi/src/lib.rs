//! The guest ABI of Ferrite functions, version 1: the names a module imports and exports, the
//! reply tags, and the byte encodings of a call's input, of the `call` import's argument vector
//! and of replies. `docs/abi.md` states the contract in words; this crate is the one place
//! where its numbers and layouts are written, used by the server (the host) and by the SDK
//! (the guest), so the two cannot drift apart.
//!
//! `no_std` (with `alloc`) and free of dependencies, so any guest can use it. Decoding is
//! defensive: every length is checked against the buffer, array nesting is bounded, and a
//! malformed buffer is an [`AbiError`], never a panic, because the bytes come from the other
//! side of a trust boundary.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// The ABI version this crate describes.
pub const VERSION: u32 = 1;

/// The import module every host function lives in.
pub const IMPORT_MODULE: &str = "ferrite";

/// Host functions a module may import from [`IMPORT_MODULE`].
pub mod import {
    /// `get_key(kptr: i32, klen: i32) -> i64`: a string value, placed with `alloc` and
    /// [`pack`](super::pack)ed, or [`KEY_NOT_FOUND`](super::KEY_NOT_FOUND).
    pub const GET_KEY: &str = "get_key";
    /// `set_key(kptr: i32, klen: i32, vptr: i32, vlen: i32) -> i32`: sets a string value;
    /// returns 0.
    pub const SET_KEY: &str = "set_key";
    /// `del_key(kptr: i32, klen: i32) -> i32`: 1 if the key existed, else 0.
    pub const DEL_KEY: &str = "del_key";
    /// `call(ptr: i32, len: i32) -> i64`: runs one data command given as an argument vector
    /// ([`encode_args`](super::encode_args)); its encoded reply, placed with `alloc` and packed.
    pub const CALL: &str = "call";
    /// `reply(ptr: i32, len: i32)`: sets the call's reply (an encoded value).
    pub const REPLY: &str = "reply";
    /// `log(level: i32, ptr: i32, len: i32)`: writes a UTF-8 message to the server's log
    /// ([`LogLevel`](super::LogLevel)).
    pub const LOG: &str = "log";
    /// `panic(ptr: i32, len: i32)`: reports a panic message before the guest traps (an
    /// extension of version 1; the call then ends with `ERR wasm: panic: <message>`).
    pub const PANIC: &str = "panic";
    /// Every host function, in the order above.
    pub const ALL: [&str; 7] = [GET_KEY, SET_KEY, DEL_KEY, CALL, REPLY, LOG, PANIC];
}

/// What a module must export.
pub mod export {
    /// The module's linear memory, where the host reads and writes buffers.
    pub const MEMORY: &str = "memory";
    /// `alloc(len: i32) -> i32`: the address of `len` fresh bytes; never called with 0.
    pub const ALLOC: &str = "alloc";
    /// The entry point called when the caller names none (`WASM.CALL module`). Every entry
    /// point has the type `(ptr: i32, len: i32) -> i64`.
    pub const DEFAULT_ENTRY: &str = "main";
}

/// What `get_key` returns for a key that does not exist.
pub const KEY_NOT_FOUND: i64 = -1;

/// Packs a buffer's address and length into the `i64` that `get_key` and `call` return:
/// `(ptr << 32) | len`.
pub const fn pack(ptr: u32, len: u32) -> i64 {
    ((ptr as i64) << 32) | len as i64
}

/// The address and length [`pack`] packed.
pub const fn unpack(packed: i64) -> (u32, u32) {
    ((packed >> 32) as u32, (packed & 0xffff_ffff) as u32)
}

/// The levels of the `log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum LogLevel {
    /// Something failed.
    Error = 0,
    /// Something looks wrong.
    Warn = 1,
    /// Progress.
    Info = 2,
    /// Detail.
    Debug = 3,
    /// Everything; also what any level above 4 means.
    Trace = 4,
}

impl LogLevel {
    /// The level a guest passed; values above 4 (or below 0) are read as [`LogLevel::Trace`].
    pub const fn from_i32(level: i32) -> LogLevel {
        match level {
            0 => LogLevel::Error,
            1 => LogLevel::Warn,
            2 => LogLevel::Info,
            3 => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }
}

/// The tag byte that starts every encoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// Nil; no body.
    Nil = 0,
    /// An integer; body `i64`.
    Int = 1,
    /// A bulk string; body `u32 len, bytes`.
    Bulk = 2,
    /// A simple status such as `OK`; body `u32 len, bytes`, no CR or LF.
    Status = 3,
    /// A whole error line such as `ERR bad input`; body `u32 len, bytes`, no CR or LF.
    Error = 4,
    /// An array; body `u32 count, count × value`.
    Array = 5,
}

impl Tag {
    /// The tag of `byte`, if it is one.
    pub const fn from_u8(byte: u8) -> Option<Tag> {
        Some(match byte {
            0 => Tag::Nil,
            1 => Tag::Int,
            2 => Tag::Bulk,
            3 => Tag::Status,
            4 => Tag::Error,
            5 => Tag::Array,
            _ => return None,
        })
    }
}

/// The deepest array nesting a decoder accepts.
pub const MAX_REPLY_DEPTH: usize = 64;

/// A buffer that does not follow the ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbiError {
    /// The buffer ends before a length says it should; names what was being read.
    Truncated(&'static str),
    /// Bytes left over after the value.
    Trailing(usize),
    /// An unknown tag byte.
    UnknownTag(u8),
    /// Arrays nested deeper than [`MAX_REPLY_DEPTH`].
    TooDeep,
    /// A status or error line holding CR or LF.
    LineBreak,
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbiError::Truncated(what) => write!(f, "truncated {what}"),
            AbiError::Trailing(n) => write!(f, "{n} trailing bytes after the reply"),
            AbiError::UnknownTag(tag) => write!(f, "unknown reply tag {tag}"),
            AbiError::TooDeep => write!(f, "reply nested deeper than {MAX_REPLY_DEPTH}"),
            AbiError::LineBreak => f.write_str("status or error line contains CR or LF"),
        }
    }
}

impl core::error::Error for AbiError {}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u32).to_le_bytes());
}

/// Appends a list as `u32 n, n × (u32 len, bytes)`.
fn put_list<T: AsRef<[u8]>>(out: &mut Vec<u8>, items: &[T]) {
    put_u32(out, items.len());
    for item in items {
        let item = item.as_ref();
        put_u32(out, item.len());
        out.extend_from_slice(item);
    }
}

fn list_size<T: AsRef<[u8]>>(items: &[T]) -> usize {
    4 + items.iter().map(|i| 4 + i.as_ref().len()).sum::<usize>()
}

/// Encodes a call's input: `u32 nkeys, nkeys × (u32 len, bytes), u32 nargs, nargs × (u32 len,
/// bytes)`.
pub fn encode_input<K: AsRef<[u8]>, A: AsRef<[u8]>>(keys: &[K], args: &[A]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list_size(keys) + list_size(args));
    put_list(&mut out, keys);
    put_list(&mut out, args);
    out
}

/// Encodes the argument vector of the `call` import, the command name first:
/// `u32 n, n × (u32 len, bytes)`.
pub fn encode_args<A: AsRef<[u8]>>(argv: &[A]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list_size(argv));
    put_list(&mut out, argv);
    out
}

/// Appends an encoded nil.
pub fn put_nil(out: &mut Vec<u8>) {
    out.push(Tag::Nil as u8);
}

/// Appends an encoded integer.
pub fn put_int(out: &mut Vec<u8>, value: i64) {
    out.push(Tag::Int as u8);
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends an encoded bulk string.
pub fn put_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(Tag::Bulk as u8);
    put_u32(out, data.len());
    out.extend_from_slice(data);
}

/// Appends an encoded status line. The line must hold no CR or LF (decoders refuse it).
pub fn put_status(out: &mut Vec<u8>, line: &[u8]) {
    out.push(Tag::Status as u8);
    put_u32(out, line.len());
    out.extend_from_slice(line);
}

/// Appends an encoded error line (`CODE message`). The line must hold no CR or LF.
pub fn put_error(out: &mut Vec<u8>, line: &[u8]) {
    out.push(Tag::Error as u8);
    put_u32(out, line.len());
    out.extend_from_slice(line);
}

/// Appends the header of an array of `count` values; the values follow.
pub fn put_array(out: &mut Vec<u8>, count: usize) {
    out.push(Tag::Array as u8);
    put_u32(out, count);
}

/// A cursor over an encoded buffer.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AbiError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(AbiError::Truncated(what))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<usize, AbiError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], AbiError> {
        let len = self.u32(what)?;
        self.take(len, what)
    }

    fn list(&mut self, count: &'static str, item: &'static str) -> Result<Vec<&'a [u8]>, AbiError> {
        let n = self.u32(count)?;
        // Each item needs at least its 4-byte length: bound the allocation by the buffer.
        let mut out = Vec::with_capacity(n.min(self.remaining() / 4));
        for _ in 0..n {
            out.push(self.bytes(item)?);
        }
        Ok(out)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn finish(&self) -> Result<(), AbiError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(AbiError::Trailing(n)),
        }
    }
}

/// A call's input, borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input<'a> {
    /// The keys, in order.
    pub keys: Vec<&'a [u8]>,
    /// The arguments, in order.
    pub args: Vec<&'a [u8]>,
}

/// Decodes what [`encode_input`] produced.
pub fn decode_input(buf: &[u8]) -> Result<Input<'_>, AbiError> {
    let mut r = Reader { buf, pos: 0 };
    let keys = r.list("key count", "key")?;
    let args = r.list("argument count", "argument")?;
    r.finish()?;
    Ok(Input { keys, args })
}

/// Decodes what [`encode_args`] produced.
pub fn decode_args(buf: &[u8]) -> Result<Vec<&[u8]>, AbiError> {
    let mut r = Reader { buf, pos: 0 };
    let argv = r.list("argument count", "argument")?;
    r.finish()?;
    Ok(argv)
}

/// A value type a reply decodes into: the host's reply and the SDK's each implement it.
pub trait FromAbi: Sized {
    /// Nil.
    fn nil() -> Self;
    /// An integer.
    fn int(value: i64) -> Self;
    /// A bulk string.
    fn bulk(data: &[u8]) -> Self;
    /// A status line (checked to hold no CR or LF).
    fn status(line: &[u8]) -> Self;
    /// An error line (checked to hold no CR or LF).
    fn error(line: &[u8]) -> Self;
    /// An array.
    fn array(items: Vec<Self>) -> Self;
}

/// Decodes one encoded value that fills `buf` exactly.
pub fn decode_reply<V: FromAbi>(buf: &[u8]) -> Result<V, AbiError> {
    let mut r = Reader { buf, pos: 0 };
    let value = read_value(&mut r, 0)?;
    r.finish()?;
    Ok(value)
}

fn read_value<V: FromAbi>(r: &mut Reader<'_>, depth: usize) -> Result<V, AbiError> {
    if depth > MAX_REPLY_DEPTH {
        return Err(AbiError::TooDeep);
    }
    let byte = r.take(1, "reply tag")?[0];
    let tag = Tag::from_u8(byte).ok_or(AbiError::UnknownTag(byte))?;
    Ok(match tag {
        Tag::Nil => V::nil(),
        Tag::Int => {
            let b = r.take(8, "integer")?;
            let mut raw = [0u8; 8];
            raw.copy_from_slice(b);
            V::int(i64::from_le_bytes(raw))
        }
        Tag::Bulk => V::bulk(r.bytes("bulk string")?),
        Tag::Status | Tag::Error => {
            let line = r.bytes("status line")?;
            if line.contains(&b'\r') || line.contains(&b'\n') {
                return Err(AbiError::LineBreak);
            }
            if tag == Tag::Status {
                V::status(line)
            } else {
                V::error(line)
            }
        }
        Tag::Array => {
            let n = r.u32("array length")?;
            // Every element takes at least one byte: bound the allocation by what is left.
            let mut items = Vec::with_capacity(n.min(r.remaining()));
            for _ in 0..n {
                items.push(read_value(r, depth + 1)?);
            }
            V::array(items)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    /// A minimal value type for the tests.
    #[derive(Debug, PartialEq)]
    enum V {
        Nil,
        Int(i64),
        Bulk(Vec<u8>),
        Status(String),
        Error(String),
        Array(Vec<V>),
    }

    impl FromAbi for V {
        fn nil() -> V {
            V::Nil
        }
        fn int(value: i64) -> V {
            V::Int(value)
        }
        fn bulk(data: &[u8]) -> V {
            V::Bulk(data.to_vec())
        }
        fn status(line: &[u8]) -> V {
            V::Status(String::from_utf8_lossy(line).into_owned())
        }
        fn error(line: &[u8]) -> V {
            V::Error(String::from_utf8_lossy(line).into_owned())
        }
        fn array(items: Vec<V>) -> V {
            V::Array(items)
        }
    }

    #[test]
    fn input_layout_is_the_documented_one() {
        let input = encode_input(&[b"k".as_slice()], &[b"ab".as_slice(), b"".as_slice()]);
        let expected: Vec<u8> = [
            &1u32.to_le_bytes()[..],
            &1u32.to_le_bytes(),
            b"k",
            &2u32.to_le_bytes(),
            &2u32.to_le_bytes(),
            b"ab",
            &0u32.to_le_bytes(),
        ]
        .concat();
        assert_eq!(input, expected);
        let decoded = decode_input(&input).unwrap();
        assert_eq!(decoded.keys, vec![b"k".as_slice()]);
        assert_eq!(decoded.args, vec![b"ab".as_slice(), b"".as_slice()]);
        assert_eq!(
            decode_input(&[1, 0, 0]),
            Err(AbiError::Truncated("key count"))
        );
        assert_eq!(
            decode_input(&[&input[..], &[0]].concat()),
            Err(AbiError::Trailing(1))
        );
    }

    #[test]
    fn argument_vectors_round_trip_and_refuse_short_buffers() {
        let buf = encode_args(&["GET", "k"]);
        assert_eq!(decode_args(&buf).unwrap(), vec![b"GET".as_slice(), b"k"]);
        assert_eq!(
            decode_args(&u32::MAX.to_le_bytes()),
            Err(AbiError::Truncated("argument"))
        );
        assert!(decode_args(&[1]).is_err());
    }

    #[test]
    fn replies_round_trip_through_the_writers() {
        let mut buf = Vec::new();
        put_array(&mut buf, 5);
        put_nil(&mut buf);
        put_int(&mut buf, -42);
        put_bulk(&mut buf, b"bulk\r\nwith newline");
        put_status(&mut buf, b"OK");
        put_array(&mut buf, 1);
        put_error(&mut buf, b"ERR bad input");
        assert_eq!(
            decode_reply::<V>(&buf).unwrap(),
            V::Array(vec![
                V::Nil,
                V::Int(-42),
                V::Bulk(b"bulk\r\nwith newline".to_vec()),
                V::Status("OK".into()),
                V::Array(vec![V::Error("ERR bad input".into())]),
            ])
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        assert_eq!(
            decode_reply::<V>(&[]),
            Err(AbiError::Truncated("reply tag"))
        );
        assert_eq!(decode_reply::<V>(&[9]), Err(AbiError::UnknownTag(9)));
        assert_eq!(
            decode_reply::<V>(&[1, 0, 0]),
            Err(AbiError::Truncated("integer"))
        );
        assert_eq!(
            decode_reply::<V>(&[2, 255, 255, 255, 255, b'x']),
            Err(AbiError::Truncated("bulk string"))
        );
        assert_eq!(decode_reply::<V>(&[0, 0]), Err(AbiError::Trailing(1)));
        assert_eq!(
            decode_reply::<V>(&[5, 255, 255, 255, 255]),
            Err(AbiError::Truncated("reply tag"))
        );
        let mut status = Vec::new();
        put_status(&mut status, b"\r\n");
        assert_eq!(decode_reply::<V>(&status), Err(AbiError::LineBreak));
        let mut deep = Vec::new();
        for _ in 0..=MAX_REPLY_DEPTH + 1 {
            put_array(&mut deep, 1);
        }
        put_nil(&mut deep);
        assert_eq!(decode_reply::<V>(&deep), Err(AbiError::TooDeep));
    }

    #[test]
    fn packing_keeps_both_halves() {
        assert_eq!(unpack(pack(0x1234, 0xffff_ffff)), (0x1234, 0xffff_ffff));
        assert_eq!(unpack(pack(u32::MAX, 0)), (u32::MAX, 0));
        assert_eq!(LogLevel::from_i32(9), LogLevel::Trace);
        assert_eq!(LogLevel::from_i32(1), LogLevel::Warn);
    }
}
