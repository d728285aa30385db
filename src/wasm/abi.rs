//! The host's side of the guest ABI (`docs/abi.md`): the server's [`Reply`] in and out of the
//! ABI's reply encoding, and the call input and argument vector as the host handles them. The
//! names, tags and layouts themselves are the `ferrite_abi` crate's, which the guest SDK uses
//! too; decoding there is defensive (lengths checked, nesting bounded, errors not panics).

use bytes::Bytes;

pub use ferrite_abi::AbiError;

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
    //! The byte layouts are tested in `ferrite-abi`; these test the host's side: the server's
    //! replies in and out of them.
    use super::*;

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
    fn resp3_shapes_reach_the_guest_in_their_resp2_forms() {
        let mut buf = Vec::new();
        encode_reply(
            &Reply::Map(vec![(Reply::bulk("k"), Reply::Bool(true))]),
            &mut buf,
        );
        assert_eq!(
            decode_reply(&buf).unwrap(),
            Reply::Array(vec![Reply::bulk("k"), Reply::Int(1)])
        );
        buf.clear();
        encode_reply(&Reply::Double(2.5), &mut buf);
        assert_eq!(decode_reply(&buf).unwrap(), Reply::bulk("2.5"));
    }

    #[test]
    fn an_empty_error_line_becomes_err_and_bad_buffers_are_refused() {
        let mut buf = Vec::new();
        ferrite_abi::put_error(&mut buf, b"");
        assert_eq!(decode_reply(&buf).unwrap(), Reply::Error("ERR".into()));
        assert_eq!(decode_reply(&[9]), Err(AbiError::UnknownTag(9)));
        assert_eq!(
            decode_call_args(&ferrite_abi::encode_args(&["GET", "k"])).unwrap(),
            vec![Bytes::from("GET"), Bytes::from("k")]
        );
        assert!(decode_call_args(&[1]).is_err());
    }
}
