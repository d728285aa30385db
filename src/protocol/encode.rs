//! Replies out: a [`Reply`] is written straight into the connection's output buffer in the
//! client's protocol version (RESP3 shapes degrade to their RESP2 forms, as in Redis). Nothing
//! is allocated for the common replies (a bulk string, a status, an integer): this runs once
//! per command. A unit test checks the bytes against `redis-protocol`'s encoders, which this
//! replaced.

use bytes::{BufMut, BytesMut};

use super::RespCodec;
use crate::reply::{Reply, format_double};

impl RespCodec {
    /// Appends `reply` to `dst` in the client's protocol version. Every [`Reply`] has a form
    /// in both versions, so this cannot fail.
    pub fn encode(&self, reply: &Reply, dst: &mut BytesMut) {
        write_reply(reply, self.resp3, dst);
    }
}

/// Appends `reply` to `dst` as RESP3 (`resp3`) or RESP2.
fn write_reply(reply: &Reply, resp3: bool, dst: &mut BytesMut) {
    match reply {
        Reply::Status(s) => line(b'+', s, dst),
        Reply::Error(e) => line(b'-', e, dst),
        Reply::Int(i) => header(b':', *i, dst),
        Reply::Bulk(b) => bulk(b, dst),
        Reply::Nil if resp3 => dst.put_slice(b"_\r\n"),
        Reply::Nil => dst.put_slice(b"$-1\r\n"),
        Reply::NilArray if resp3 => dst.put_slice(b"_\r\n"),
        Reply::NilArray => dst.put_slice(b"*-1\r\n"),
        Reply::Array(items) => items_of(b'*', items, resp3, dst),
        Reply::Set(items) => items_of(if resp3 { b'~' } else { b'*' }, items, resp3, dst),
        Reply::Map(pairs) => {
            if resp3 {
                header(b'%', pairs.len() as i64, dst);
            } else {
                header(b'*', 2 * pairs.len() as i64, dst);
            }
            for (k, v) in pairs {
                write_reply(k, resp3, dst);
                write_reply(v, resp3, dst);
            }
        }
        Reply::Double(d) if resp3 => {
            dst.put_u8(b',');
            dst.put_slice(resp3_double(*d).as_bytes());
            dst.put_slice(b"\r\n");
        }
        Reply::Double(d) => bulk(format_double(*d).as_bytes(), dst),
        Reply::Bool(b) if resp3 => dst.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Reply::Bool(b) => header(b':', *b as i64, dst),
        Reply::Verbatim(text) if resp3 => {
            header(b'=', text.len() as i64 + 4, dst);
            dst.put_slice(b"txt:");
            dst.put_slice(text.as_bytes());
            dst.put_slice(b"\r\n");
        }
        Reply::Verbatim(text) => bulk(text.as_bytes(), dst),
    }
}

/// `<kind><n>\r\n`: an integer reply, or the header of a bulk string or an aggregate.
fn header(kind: u8, n: i64, dst: &mut BytesMut) {
    let mut buffer = [0u8; 20];
    let digits = decimal(n, &mut buffer);
    dst.reserve(digits.len() + 3);
    dst.put_u8(kind);
    dst.put_slice(digits);
    dst.put_slice(b"\r\n");
}

/// The decimal digits of `n` (with its sign), written at the end of `buffer`.
fn decimal(n: i64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut rest = n.unsigned_abs();
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

/// `$<len>\r\n<data>\r\n`.
fn bulk(data: &[u8], dst: &mut BytesMut) {
    header(b'$', data.len() as i64, dst);
    dst.reserve(data.len() + 2);
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// A status or error line. Such lines cannot hold CR or LF; Redis replaces them with spaces.
fn line(kind: u8, text: &str, dst: &mut BytesMut) {
    dst.reserve(text.len() + 3);
    dst.put_u8(kind);
    let start = dst.len();
    dst.put_slice(text.as_bytes());
    for b in &mut dst[start..] {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    dst.put_slice(b"\r\n");
}

fn items_of(kind: u8, items: &[Reply], resp3: bool, dst: &mut BytesMut) {
    header(kind, items.len() as i64, dst);
    for item in items {
        write_reply(item, resp3, dst);
    }
}

/// A RESP3 double as Redis clients read it: `inf`, `-inf`, `nan`, otherwise the shortest
/// decimal that reads back as the same value.
fn resp3_double(d: f64) -> std::borrow::Cow<'static, str> {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        d.to_string().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Limits;

    fn limits() -> Limits {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            query_buffer_limit: 1024 * 1024 * 1024,
        }
    }

    fn encoded(reply: Reply, resp3: bool) -> String {
        let mut codec = RespCodec::new(limits(), true);
        codec.set_resp3(resp3);
        let mut out = BytesMut::new();
        codec.encode(&reply, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn replies_encode_for_each_protocol() {
        let map = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(encoded(map.clone(), false), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(encoded(map, true), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(encoded(Reply::Nil, false), "$-1\r\n");
        assert_eq!(encoded(Reply::NilArray, false), "*-1\r\n");
        assert_eq!(encoded(Reply::Nil, true), "_\r\n");
        assert_eq!(encoded(Reply::Double(1.5), false), "$3\r\n1.5\r\n");
        assert_eq!(encoded(Reply::Double(1.5), true), ",1.5\r\n");
        assert_eq!(encoded(Reply::Bool(true), false), ":1\r\n");
        assert_eq!(
            encoded(Reply::Error("ERR a\r\nb".into()), false),
            "-ERR a  b\r\n"
        );
        assert_eq!(
            encoded(Reply::Verbatim("x".into()), true),
            "=5\r\ntxt:x\r\n"
        );
    }

    /// The encoder this one replaced: replies converted to `redis-protocol` frames and encoded
    /// by its codecs. The direct encoder must write the same bytes.
    mod reference {
        use bytes::{Bytes, BytesMut};
        use redis_protocol::codec::{Resp2, Resp3};
        use redis_protocol::resp2::types::BytesFrame as Frame2;
        use redis_protocol::resp3::types::{BytesFrame as Frame3, VerbatimStringFormat};
        use tokio_util::codec::Encoder;

        use crate::reply::{Reply, format_double};

        fn one_line(text: String) -> String {
            text.replace(['\r', '\n'], " ")
        }

        fn to_resp2(reply: Reply) -> Frame2 {
            match reply {
                Reply::Status(s) => Frame2::SimpleString(Bytes::from(one_line(s))),
                Reply::Error(e) => Frame2::Error(one_line(e).into()),
                Reply::Int(i) => Frame2::Integer(i),
                Reply::Bulk(b) => Frame2::BulkString(b),
                Reply::Nil | Reply::NilArray => Frame2::Null,
                Reply::Array(items) | Reply::Set(items) => {
                    Frame2::Array(items.into_iter().map(to_resp2).collect())
                }
                Reply::Map(pairs) => Frame2::Array(
                    pairs
                        .into_iter()
                        .flat_map(|(k, v)| [to_resp2(k), to_resp2(v)])
                        .collect(),
                ),
                Reply::Double(d) => Frame2::BulkString(Bytes::from(format_double(d))),
                Reply::Bool(b) => Frame2::Integer(b as i64),
                Reply::Verbatim(text) => Frame2::BulkString(Bytes::from(text)),
            }
        }

        fn to_resp3(reply: Reply) -> Frame3 {
            let attributes = None;
            match reply {
                Reply::Status(s) => Frame3::SimpleString {
                    data: Bytes::from(one_line(s)),
                    attributes,
                },
                Reply::Error(e) => Frame3::SimpleError {
                    data: one_line(e).into(),
                    attributes,
                },
                Reply::Int(data) => Frame3::Number { data, attributes },
                Reply::Bulk(data) => Frame3::BlobString { data, attributes },
                Reply::Nil | Reply::NilArray => Frame3::Null,
                Reply::Array(items) => Frame3::Array {
                    data: items.into_iter().map(to_resp3).collect(),
                    attributes,
                },
                Reply::Set(items) => Frame3::Set {
                    data: items.into_iter().map(to_resp3).collect(),
                    attributes,
                },
                Reply::Map(pairs) => Frame3::Map {
                    data: pairs
                        .into_iter()
                        .map(|(k, v)| (to_resp3(k), to_resp3(v)))
                        .collect(),
                    attributes,
                },
                Reply::Double(data) => Frame3::Double { data, attributes },
                Reply::Bool(data) => Frame3::Boolean { data, attributes },
                Reply::Verbatim(text) => Frame3::VerbatimString {
                    data: Bytes::from(text),
                    format: VerbatimStringFormat::Text,
                    attributes,
                },
            }
        }

        pub fn encoded(reply: Reply, resp3: bool) -> Vec<u8> {
            let mut out = BytesMut::new();
            if resp3 {
                Resp3::default().encode(to_resp3(reply), &mut out).unwrap();
            } else if reply == Reply::NilArray {
                out.extend_from_slice(b"*-1\r\n");
            } else {
                Resp2::default().encode(to_resp2(reply), &mut out).unwrap();
            }
            out.to_vec()
        }
    }

    /// Replies of every shape, with the edge values of each field.
    fn every_shape() -> Vec<Reply> {
        let mut replies = vec![
            Reply::ok(),
            Reply::Status(String::new()),
            Reply::Status("a\r\nb\nc".into()),
            Reply::Error("WRONGTYPE Operation\r\n".into()),
            Reply::Nil,
            Reply::NilArray,
            Reply::Bulk(bytes::Bytes::new()),
            Reply::bulk(b"\r\n\0\xff binary"),
            Reply::bulk(vec![b'x'; 70_000]),
            Reply::Array(vec![]),
            // redis-protocol keeps a RESP3 set in a hash set (its order is the hasher's, and
            // aggregates cannot be members): one scalar member here, the order checked below.
            Reply::Set(vec![Reply::bulk("a")]),
            Reply::Map(vec![]),
            Reply::Bool(true),
            Reply::Bool(false),
            Reply::Verbatim(String::new()),
            Reply::Verbatim("line\r\nline".into()),
        ];
        for i in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            99,
            1000,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ] {
            replies.push(Reply::Int(i));
        }
        for d in [
            0.0,
            -0.0,
            1.5,
            -2.25,
            1e300,
            1e-300,
            3.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            replies.push(Reply::Double(d));
        }
        // redis-protocol's RESP2 frames have no null array: the replaced encoder wrote one
        // only at the top level, and a nested one as the null bulk string. It is `*-1` here
        // at any depth, as Redis writes it (checked below).
        let nested = Reply::Array(
            replies
                .iter()
                .filter(|r| **r != Reply::NilArray)
                .cloned()
                .collect(),
        );
        replies.push(Reply::Map(vec![
            (Reply::bulk("k"), nested.clone()),
            (Reply::Int(2), Reply::Set(vec![Reply::Int(-1)])),
        ]));
        replies
    }

    #[test]
    fn the_direct_encoder_writes_what_redis_protocol_writes() {
        for resp3 in [false, true] {
            for reply in every_shape() {
                let mut ours = BytesMut::new();
                write_reply(&reply, resp3, &mut ours);
                assert_eq!(
                    ours.to_vec(),
                    reference::encoded(reply.clone(), resp3),
                    "{reply:?} (resp3 {resp3})"
                );
            }
        }
        assert_eq!(encoded(Reply::Double(f64::NAN), true), ",nan\r\n");
        let set = Reply::Set(vec![Reply::bulk("b"), Reply::bulk("a"), Reply::Int(3)]);
        assert_eq!(
            encoded(set.clone(), true),
            "~3\r\n$1\r\nb\r\n$1\r\na\r\n:3\r\n"
        );
        assert_eq!(encoded(set, false), "*3\r\n$1\r\nb\r\n$1\r\na\r\n:3\r\n");
        assert_eq!(
            encoded(Reply::Array(vec![Reply::NilArray, Reply::Nil]), false),
            "*2\r\n*-1\r\n$-1\r\n"
        );
    }
}
