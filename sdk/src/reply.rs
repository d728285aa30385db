//! The reply a function returns, and the ABI's tagged encoding of it.

/// A reply, covering every tag of the ABI.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Nil (tag 0).
    Nil,
    /// An integer (tag 1).
    Int(i64),
    /// A bulk string (tag 2).
    Bulk(Vec<u8>),
    /// A status line such as `OK` (tag 3); no CR or LF.
    Status(String),
    /// A whole error line such as `ERR bad input` (tag 4).
    Error(String),
    /// An array (tag 5).
    Array(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Status("OK".to_owned())
    }

    /// The ABI encoding. CR and LF in a status or error line become spaces (the ABI forbids
    /// them there).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Nil => ferrite_abi::put_nil(out),
            Reply::Int(i) => ferrite_abi::put_int(out, *i),
            Reply::Bulk(b) => ferrite_abi::put_bulk(out, b),
            Reply::Status(s) => {
                ferrite_abi::put_status(out, s.replace(['\r', '\n'], " ").as_bytes())
            }
            Reply::Error(e) => ferrite_abi::put_error(out, e.replace(['\r', '\n'], " ").as_bytes()),
            Reply::Array(items) => {
                ferrite_abi::put_array(out, items.len());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    /// Decodes the ABI encoding (a `call` result); `None` if malformed.
    pub fn decode(buf: &[u8]) -> Option<Reply> {
        ferrite_abi::decode_reply(buf).ok()
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The bytes, if this is a bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            _ => None,
        }
    }
}

impl ferrite_abi::FromAbi for Reply {
    fn nil() -> Reply {
        Reply::Nil
    }
    fn int(value: i64) -> Reply {
        Reply::Int(value)
    }
    fn bulk(data: &[u8]) -> Reply {
        Reply::Bulk(data.to_vec())
    }
    fn status(line: &[u8]) -> Reply {
        Reply::Status(String::from_utf8_lossy(line).into_owned())
    }
    fn error(line: &[u8]) -> Reply {
        Reply::Error(String::from_utf8_lossy(line).into_owned())
    }
    fn array(items: Vec<Reply>) -> Reply {
        Reply::Array(items)
    }
}

impl From<i64> for Reply {
    fn from(v: i64) -> Reply {
        Reply::Int(v)
    }
}

impl From<&str> for Reply {
    fn from(v: &str) -> Reply {
        Reply::Bulk(v.as_bytes().to_vec())
    }
}

impl From<String> for Reply {
    fn from(v: String) -> Reply {
        Reply::Bulk(v.into_bytes())
    }
}

impl From<Vec<u8>> for Reply {
    fn from(v: Vec<u8>) -> Reply {
        Reply::Bulk(v)
    }
}

impl<T: Into<Reply>> From<Option<T>> for Reply {
    fn from(v: Option<T>) -> Reply {
        v.map_or(Reply::Nil, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::Reply;

    #[test]
    fn replies_round_trip() {
        let reply = Reply::Array(vec![
            Reply::Nil,
            Reply::Int(-5),
            Reply::Bulk(b"x\r\n".to_vec()),
            Reply::ok(),
            Reply::Error("ERR no".into()),
        ]);
        let mut buf = Vec::new();
        reply.encode(&mut buf);
        assert_eq!(Reply::decode(&buf), Some(reply));
        assert_eq!(Reply::decode(&[7]), None);
    }
}
