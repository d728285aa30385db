//! Replies out: a [`Reply`] becomes a `redis-protocol` frame for the client's protocol version
//! (RESP3 shapes degrade to their RESP2 forms, as in Redis) and is encoded by its codecs.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::{BytesFrame as Frame3, VerbatimStringFormat};
use tokio_util::codec::Encoder;

use super::{ProtocolError, RespCodec};
use crate::reply::{Reply, format_double};

impl Encoder<Reply> for RespCodec {
    type Error = ProtocolError;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let encode_err = ProtocolError::Encode;
        if self.resp3 {
            self.resp3_codec
                .encode(to_resp3(reply), dst)
                .map_err(encode_err)
        } else if reply == Reply::NilArray {
            // redis-protocol's RESP2 null is the null bulk string; EXEC wants the null array.
            dst.extend_from_slice(b"*-1\r\n");
            Ok(())
        } else {
            self.resp2.encode(to_resp2(reply), dst).map_err(encode_err)
        }
    }
}

/// Status and error lines cannot hold CR or LF; Redis replaces them with spaces.
fn one_line(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ")
    } else {
        text
    }
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
    match reply {
        Reply::Status(s) => Frame3::SimpleString {
            data: Bytes::from(one_line(s)),
            attributes: None,
        },
        Reply::Error(e) => Frame3::SimpleError {
            data: one_line(e).into(),
            attributes: None,
        },
        Reply::Int(i) => Frame3::Number {
            data: i,
            attributes: None,
        },
        Reply::Bulk(b) => Frame3::BlobString {
            data: b,
            attributes: None,
        },
        Reply::Nil | Reply::NilArray => Frame3::Null,
        Reply::Array(items) => Frame3::Array {
            data: items.into_iter().map(to_resp3).collect(),
            attributes: None,
        },
        Reply::Set(items) => Frame3::Set {
            data: items.into_iter().map(to_resp3).collect(),
            attributes: None,
        },
        Reply::Map(pairs) => Frame3::Map {
            data: pairs
                .into_iter()
                .map(|(k, v)| (to_resp3(k), to_resp3(v)))
                .collect(),
            attributes: None,
        },
        Reply::Double(d) => Frame3::Double {
            data: d,
            attributes: None,
        },
        Reply::Bool(b) => Frame3::Boolean {
            data: b,
            attributes: None,
        },
        Reply::Verbatim(text) => Frame3::VerbatimString {
            data: Bytes::from(text),
            format: VerbatimStringFormat::Text,
            attributes: None,
        },
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
        codec.encode(reply, &mut out).unwrap();
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
}
