//! A small RESP2 client: requests as arrays of bulk strings, replies parsed whole (arrays
//! included). [`Client`] runs over any async stream (tokio's or turmoil's TCP); [`SyncClient`]
//! over a blocking `std` TCP stream.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+...`
    Status(String),
    /// `-...`: the whole line after the dash.
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n` (`None`: `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (`None`: `*-1`).
    Array(Option<Vec<Value>>),
}

/// A request: an array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed reply: {what}"),
    )
}

/// Parses the reply at the start of `buf`: the value and the bytes it took, `None` when
/// `buf` holds only part of it.
pub fn parse(buf: &[u8]) -> io::Result<Option<(Value, usize)>> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> io::Result<Option<(Value, usize)>> {
    if depth > 64 {
        return Err(malformed("nested too deep"));
    }
    let Some(end) = buf
        .get(at..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"\r\n"))
        .map(|p| at + p)
    else {
        return Ok(None);
    };
    let tag = buf[at];
    let line = std::str::from_utf8(&buf[at + 1..end]).map_err(|_| malformed("not UTF-8"))?;
    let after = end + 2;
    let number = || line.parse::<i64>().map_err(|_| malformed("bad number"));
    Ok(Some(match tag {
        b'+' => (Value::Status(line.to_owned()), after),
        b'-' => (Value::Error(line.to_owned()), after),
        b':' => (Value::Int(number()?), after),
        b'$' => {
            let n = number()?;
            if n < 0 {
                (Value::Bulk(None), after)
            } else {
                let stop = after + n as usize;
                if buf.len() < stop + 2 {
                    return Ok(None);
                }
                (Value::Bulk(Some(buf[after..stop].to_vec())), stop + 2)
            }
        }
        b'*' => {
            let n = number()?;
            if n < 0 {
                (Value::Array(None), after)
            } else {
                let mut items = Vec::new();
                let mut next = after;
                for _ in 0..n {
                    match parse_at(buf, next, depth + 1)? {
                        Some((item, used)) => {
                            items.push(item);
                            next = used;
                        }
                        None => return Ok(None),
                    }
                }
                (Value::Array(Some(items)), next)
            }
        }
        _ => return Err(malformed("unknown type byte")),
    }))
}

/// A RESP client over an async stream.
#[derive(Debug)]
pub struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client over a connected stream.
    pub fn new(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one request and reads its reply.
    pub async fn request(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        self.stream.write_all(&encode(args)).await?;
        loop {
            if let Some((value, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(value);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A RESP client over a blocking TCP stream.
#[derive(Debug)]
pub struct SyncClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl SyncClient {
    /// Connects to `127.0.0.1:port`; every read gives up after `timeout`.
    pub fn connect(port: u16, timeout: Duration) -> io::Result<SyncClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(timeout))?;
        Ok(SyncClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// Connects to `addr` within `connect`; every read gives up after `timeout`.
    pub fn connect_to(
        addr: std::net::SocketAddr,
        connect: Duration,
        timeout: Duration,
    ) -> io::Result<SyncClient> {
        let stream = TcpStream::connect_timeout(&addr, connect)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(SyncClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends one request and reads its reply.
    pub fn request(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        self.stream.write_all(&encode(args))?;
        loop {
            if let Some((value, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(value);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Whether something answers `PING` with `PONG` on `127.0.0.1:port`.
pub fn pongs(port: u16) -> bool {
    SyncClient::connect(port, Duration::from_secs(2))
        .and_then(|mut c| c.request(&[b"PING"]))
        .is_ok_and(|v| v == Value::Status("PONG".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_wait_for_more() {
        let wire = b"*3\r\n+OK\r\n$3\r\nabc\r\n*2\r\n:-7\r\n$-1\r\n-ERR no\r\n";
        let (value, used) = parse(wire).unwrap().unwrap();
        assert_eq!(
            value,
            Value::Array(Some(vec![
                Value::Status("OK".into()),
                Value::Bulk(Some(b"abc".to_vec())),
                Value::Array(Some(vec![Value::Int(-7), Value::Bulk(None)])),
            ]))
        );
        assert_eq!(
            parse(&wire[used..]).unwrap(),
            Some((Value::Error("ERR no".into()), wire.len() - used))
        );
        for cut in 0..used {
            assert_eq!(parse(&wire[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(b"?what\r\n").is_err());
    }

    #[test]
    fn requests_are_arrays_of_bulk_strings() {
        assert_eq!(encode(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
