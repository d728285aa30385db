//! The guest ABI's byte formats (`shared/udf-abi.md`, version 1): the call input, the argument
//! vector of the `call` host function, and the tagged reply encoding in both directions.
//!
//! Decoding is defensive: every length is checked against the buffer, nesting is bounded, and
//! a malformed buffer is an error, never a panic, because the bytes come from guest code.

use bytes::Bytes;
use thiserror::Error;

use crate::reply::Reply;

/// Reply tags.
const TAG_NIL: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_BULK: u8 = 2;
const TAG_STATUS: u8 = 3;
const TAG_ERROR: u8 = 4;
const TAG_ARRAY: u8 = 5;

/// Deepest array nesting accepted in a guest reply.
pub const MAX_REPLY_DEPTH: usize = 64;

/// A guest buffer that does not follow the ABI.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AbiError {
    /// The buffer ends before a length says it should.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Bytes left over after the value.
    #[error("{0} trailing bytes after the reply")]
    Trailing(usize),
    /// An unknown reply tag.
    #[error("unknown reply tag {0}")]
    UnknownTag(u8),
    /// Arrays nested deeper than [`MAX_REPLY_DEPTH`].
    #[error("reply nested deeper than {MAX_REPLY_DEPTH}")]
    TooDeep,
    /// A status or error line holding CR or LF.
    #[error("status or error line contains CR or LF")]
    LineBreak,
}

/// Encodes the call input: `u32 nkeys, nkeys × (u32 len, bytes), u32 nargs, nargs × (u32 len,
/// bytes)`.
pub fn encode_input(keys: &[Bytes], args: &[Bytes]) -> Vec<u8> {
    let size = 8 + keys.iter().chain(args).map(|b| 4 + b.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    for list in [keys, args] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for item in list {
            out.extend_from_slice(&(item.len() as u32).to_le_bytes());
            out.extend_from_slice(item);
        }
    }
    out
}

/// A cursor over a guest buffer.
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

    fn u32(&mut self, what: &'static str) -> Result<u32, AbiError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], AbiError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn finish(&self) -> Result<(), AbiError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(AbiError::Trailing(n)),
        }
    }
}

/// Decodes the argument vector of the `call` host function: `u32 n, n × (u32 len, bytes)`.
pub fn decode_call_args(buf: &[u8]) -> Result<Vec<Bytes>, AbiError> {
    let mut r = Reader { buf, pos: 0 };
    let n = r.u32("argument count")? as usize;
    // Each argument needs at least its 4-byte length: bound the allocation by the buffer.
    let mut out = Vec::with_capacity(n.min(buf.len() / 4));
    for _ in 0..n {
        out.push(Bytes::copy_from_slice(r.bytes("argument")?));
    }
    r.finish()?;
    Ok(out)
}

/// Decodes a reply the guest passed to `reply` (or built for `call`'s caller).
pub fn decode_reply(buf: &[u8]) -> Result<Reply, AbiError> {
    let mut r = Reader { buf, pos: 0 };
    let reply = read_value(&mut r, 0)?;
    r.finish()?;
    Ok(reply)
}

fn read_value(r: &mut Reader<'_>, depth: usize) -> Result<Reply, AbiError> {
    if depth > MAX_REPLY_DEPTH {
        return Err(AbiError::TooDeep);
    }
    let tag = r.take(1, "reply tag")?[0];
    Ok(match tag {
        TAG_NIL => Reply::Nil,
        TAG_INT => {
            let b = r.take(8, "integer")?;
            Reply::Int(i64::from_le_bytes(
                b.try_into().map_err(|_| AbiError::Truncated("integer"))?,
            ))
        }
        TAG_BULK => Reply::Bulk(Bytes::copy_from_slice(r.bytes("bulk string")?)),
        TAG_STATUS | TAG_ERROR => {
            let line = r.bytes("status line")?;
            if line.contains(&b'\r') || line.contains(&b'\n') {
                return Err(AbiError::LineBreak);
            }
            let text = String::from_utf8_lossy(line).into_owned();
            if tag == TAG_STATUS {
                Reply::Status(text)
            } else if text.is_empty() {
                Reply::Error("ERR".to_owned())
            } else {
                Reply::Error(text)
            }
        }
        TAG_ARRAY => {
            let n = r.u32("array length")? as usize;
            // Every element takes at least one byte: bound the allocation by what is left.
            let mut items = Vec::with_capacity(n.min(r.buf.len() - r.pos));
            for _ in 0..n {
                items.push(read_value(r, depth + 1)?);
            }
            Reply::Array(items)
        }
        other => return Err(AbiError::UnknownTag(other)),
    })
}

/// Encodes a reply for the guest (the result of the `call` host function). RESP3-only shapes
/// become their RESP2 forms: maps flatten to arrays, doubles to bulk strings, booleans to 1/0.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    let string = |out: &mut Vec<u8>, tag: u8, data: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    };
    match reply {
        Reply::Nil | Reply::NilArray => out.push(TAG_NIL),
        Reply::Int(i) => {
            out.push(TAG_INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Reply::Bool(b) => {
            out.push(TAG_INT);
            out.extend_from_slice(&(*b as i64).to_le_bytes());
        }
        Reply::Bulk(b) => string(out, TAG_BULK, b),
        Reply::Verbatim(text) => string(out, TAG_BULK, text.as_bytes()),
        Reply::Double(d) => string(out, TAG_BULK, crate::reply::format_double(*d).as_bytes()),
        Reply::Status(s) => string(out, TAG_STATUS, s.as_bytes()),
        Reply::Error(e) => string(out, TAG_ERROR, e.as_bytes()),
        Reply::Array(items) | Reply::Set(items) => {
            out.push(TAG_ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_le_bytes());
            for item in items {
                encode_reply(item, out);
            }
        }
        Reply::Map(pairs) => {
            out.push(TAG_ARRAY);
            out.extend_from_slice(&((pairs.len() * 2) as u32).to_le_bytes());
            for (k, v) in pairs {
                encode_reply(k, out);
                encode_reply(v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_layout_matches_the_abi() {
        let input = encode_input(&[Bytes::from("k")], &[Bytes::from("ab"), Bytes::new()]);
        assert_eq!(
            input,
            [
                &1u32.to_le_bytes()[..],
                &1u32.to_le_bytes(),
                b"k",
                &2u32.to_le_bytes(),
                &2u32.to_le_bytes(),
                b"ab",
                &0u32.to_le_bytes(),
            ]
            .concat()
        );
    }

    #[test]
    fn replies_round_trip() {
        let reply = Reply::Array(vec![
            Reply::Nil,
            Reply::Int(-42),
            Reply::bulk("bulk\r\nwith newline"),
            Reply::Status("OK".into()),
            Reply::Error("ERR bad input".into()),
            Reply::Array(vec![Reply::Int(1)]),
        ]);
        let mut buf = Vec::new();
        encode_reply(&reply, &mut buf);
        assert_eq!(decode_reply(&buf).unwrap(), reply);
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        assert_eq!(decode_reply(&[]), Err(AbiError::Truncated("reply tag")));
        assert_eq!(decode_reply(&[9]), Err(AbiError::UnknownTag(9)));
        assert_eq!(
            decode_reply(&[1, 0, 0]),
            Err(AbiError::Truncated("integer"))
        );
        assert_eq!(
            decode_reply(&[2, 255, 255, 255, 255, b'x']),
            Err(AbiError::Truncated("bulk string"))
        );
        assert_eq!(decode_reply(&[0, 0]), Err(AbiError::Trailing(1)));
        assert_eq!(
            decode_reply(&[5, 255, 255, 255, 255]),
            Err(AbiError::Truncated("reply tag"))
        );
        let mut status = vec![3];
        status.extend(2u32.to_le_bytes());
        status.extend(b"\r\n");
        assert_eq!(decode_reply(&status), Err(AbiError::LineBreak));
        let mut deep = Vec::new();
        for _ in 0..=MAX_REPLY_DEPTH + 1 {
            deep.push(TAG_ARRAY);
            deep.extend(1u32.to_le_bytes());
        }
        deep.push(TAG_NIL);
        assert_eq!(decode_reply(&deep), Err(AbiError::TooDeep));
    }

    #[test]
    fn call_arguments_decode() {
        let mut buf = 2u32.to_le_bytes().to_vec();
        for word in ["GET", "k"] {
            buf.extend((word.len() as u32).to_le_bytes());
            buf.extend(word.as_bytes());
        }
        assert_eq!(
            decode_call_args(&buf).unwrap(),
            vec![Bytes::from("GET"), Bytes::from("k")]
        );
        assert_eq!(
            decode_call_args(&u32::MAX.to_le_bytes()),
            Err(AbiError::Truncated("argument"))
        );
        assert!(decode_call_args(&[1]).is_err());
    }
}
