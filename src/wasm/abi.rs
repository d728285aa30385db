//! The host's side of the guest ABI (`docs/abi.md`): the server's [`Reply`] in and out of the
//! ABI's reply encoding, and the call input and argument vector as the host handles them. The
//! names, tags and layouts themselves are the `ferrite_abi` crate's, which the guest SDK uses
//! too; decoding there is defensive (lengths checked, nesting bounded, errors not panics).

use bytes::Bytes;

pub use ferrite_abi::{AbiError, MAX_REPLY_DEPTH};

use crate::reply::Reply;

/// Encodes the call input: the keys, then the arguments.
pub fn encode_input(keys: &[Bytes], args: &[Bytes]) -> Vec<u8> {
    ferrite_abi::encode_input(keys, args)
}

/// Decodes the argument vector of the `call` host function.
pub fn decode_call_args(buf: &[u8]) -> Result<Vec<Bytes>, AbiError> {
    Ok(ferrite_abi::decode_args(buf)?
        .into_iter()
        .map(Bytes::copy_from_slice)
        .collect())
}

/// A guest reply as the server's [`Reply`]; an empty error line becomes `ERR`.
struct Decoded(Reply);

impl ferrite_abi::FromAbi for Decoded {
    fn nil() -> Self {
        Decoded(Reply::Nil)
    }
    fn int(value: i64) -> Self {
        Decoded(Reply::Int(value))
    }
    fn bulk(data: &[u8]) -> Self {
        Decoded(Reply::Bulk(Bytes::copy_from_slice(data)))
    }
    fn status(line: &[u8]) -> Self {
        Decoded(Reply::Status(String::from_utf8_lossy(line).into_owned()))
    }
    fn error(line: &[u8]) -> Self {
        let text = String::from_utf8_lossy(line).into_owned();
        Decoded(Reply::Error(if text.is_empty() {
            "ERR".to_owned()
        } else {
            text
        }))
    }
    fn array(items: Vec<Self>) -> Self {
        Decoded(Reply::Array(items.into_iter().map(|d| d.0).collect()))
    }
}

/// Decodes a reply the guest passed to `reply`.
pub fn decode_reply(buf: &[u8]) -> Result<Reply, AbiError> {
    ferrite_abi::decode_reply::<Decoded>(buf).map(|d| d.0)
}

/// Encodes a reply for the guest (the result of the `call` host function). RESP3-only shapes
/// become their RESP2 forms: maps flatten to arrays, doubles to bulk strings, booleans to 1/0.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    use ferrite_abi::{put_array, put_bulk, put_error, put_int, put_nil, put_status};
    match reply {
        Reply::Nil | Reply::NilArray => put_nil(out),
        Reply::Int(i) => put_int(out, *i),
        Reply::Bool(b) => put_int(out, i64::from(*b)),
        Reply::Bulk(b) => put_bulk(out, b),
        Reply::Verbatim(text) => put_bulk(out, text.as_bytes()),
        Reply::Double(d) => put_bulk(out, crate::reply::format_double(*d).as_bytes()),
        Reply::Status(s) => put_status(out, s.as_bytes()),
        Reply::Error(e) => put_error(out, e.as_bytes()),
        Reply::Array(items) | Reply::Set(items) => {
            put_array(out, items.len());
            for item in items {
                encode_reply(item, out);
            }
        }
        Reply::Map(pairs) => {
            put_array(out, pairs.len() * 2);
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
            ferrite_abi::put_array(&mut deep, 1);
        }
        ferrite_abi::put_nil(&mut deep);
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
