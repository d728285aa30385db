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

    /// The ABI encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, tag: u8, data: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        };
        match self {
            Reply::Nil => out.push(0),
            Reply::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Reply::Bulk(b) => string(out, 2, b),
            Reply::Status(s) => string(out, 3, s.replace(['\r', '\n'], " ").as_bytes()),
            Reply::Error(e) => string(out, 4, e.replace(['\r', '\n'], " ").as_bytes()),
            Reply::Array(items) => {
                out.push(5);
                out.extend_from_slice(&(items.len() as u32).to_le_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    /// Decodes the ABI encoding (a `call` result); `None` if malformed.
    pub fn decode(buf: &[u8]) -> Option<Reply> {
        let mut pos = 0;
        let reply = Reply::read(buf, &mut pos, 0)?;
        (pos == buf.len()).then_some(reply)
    }

    fn read(buf: &[u8], pos: &mut usize, depth: usize) -> Option<Reply> {
        if depth > 64 {
            return None;
        }
        let tag = *buf.get(*pos)?;
        *pos += 1;
        let u32_at = |pos: &mut usize| -> Option<usize> {
            let v = u32::from_le_bytes(buf.get(*pos..*pos + 4)?.try_into().ok()?) as usize;
            *pos += 4;
            Some(v)
        };
        Some(match tag {
            0 => Reply::Nil,
            1 => {
                let v = i64::from_le_bytes(buf.get(*pos..*pos + 8)?.try_into().ok()?);
                *pos += 8;
                Reply::Int(v)
            }
            2..=4 => {
                let len = u32_at(pos)?;
                let data = buf.get(*pos..*pos + len)?.to_vec();
                *pos += len;
                match tag {
                    2 => Reply::Bulk(data),
                    3 => Reply::Status(String::from_utf8_lossy(&data).into_owned()),
                    _ => Reply::Error(String::from_utf8_lossy(&data).into_owned()),
                }
            }
            5 => {
                let n = u32_at(pos)?;
                let mut items = Vec::with_capacity(n.min(buf.len()));
                for _ in 0..n {
                    items.push(Reply::read(buf, pos, depth + 1)?);
                }
                Reply::Array(items)
            }
            _ => return None,
        })
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
