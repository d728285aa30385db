//! RESP framing: requests in, replies out.
//!
//! Decoding follows Redis's `processInputBuffer`: a buffer starting with `*` is a multibulk
//! request, anything else an inline command (`PING\r\n` from telnet or redis-benchmark). A
//! multibulk request is walked once, incrementally across reads, checking every header against
//! the limits (count, bulk length, header line, query buffer) so a hostile header never makes us
//! buffer or allocate without bound; the walk records where each argument lies, so a complete
//! request is split without parsing it again. (`redis-protocol`'s decoder has no limits and no
//! inline commands, and re-parses an incomplete frame from its start on every read; a unit test
//! checks that our split agrees with it.) Replies are written straight into the output buffer
//! in the client's protocol version, RESP2 or RESP3 (`encode.rs`; a unit test checks the bytes
//! against `redis-protocol`'s encoders); inline commands are split like `sdssplitargs`
//! (`inline.rs`). This module knows nothing about commands.

mod encode;
mod inline;

pub use inline::split_inline;

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::Decoder;

use crate::reply::RedisError;

/// Redis's limits on a multibulk count and bulk length before a client authenticates.
const UNAUTHENTICATED_MAX_MULTIBULK: u64 = 10;
const UNAUTHENTICATED_MAX_BULK: u64 = 16 * 1024;

/// The size limits a connection enforces, read from the live configuration per connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Longest bulk string (`proto-max-bulk-len`).
    pub max_bulk_len: u64,
    /// Most elements in one request.
    pub max_multibulk_len: u64,
    /// Longest inline command or header line.
    pub max_inline_len: u64,
    /// Most bytes of unfinished request buffered.
    pub query_buffer_limit: u64,
}

/// A request that cannot be parsed. The connection answers `-ERR Protocol error: ...` and
/// closes, as Redis does.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Multibulk count out of range.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// Multibulk count above 10 before AUTH.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// Bulk length out of range.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// Bulk length above 16 KB before AUTH.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// A multibulk element that is not a bulk string.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// The `*n` line is too long.
    #[error("Protocol error: too big mbulk count string")]
    BigMultibulkHeader,
    /// The `$n` line is too long.
    #[error("Protocol error: too big bulk count string")]
    BigBulkHeader,
    /// An inline command longer than the limit.
    #[error("Protocol error: too big inline request")]
    BigInline,
    /// An inline command with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// More unparsed input than the query buffer limit.
    #[error("Protocol error: query buffer limit reached")]
    QueryBufferLimit,
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// `ERR Protocol error: ...`, as Redis answers before it closes the connection.
impl RedisError for ProtocolError {}

/// Progress through a partly received multibulk request, kept between reads so a large request
/// arriving in pieces is scanned once, not once per read.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes of the buffer already checked.
    offset: usize,
    /// Elements still to come, once the `*n` header is read.
    remaining: Option<u64>,
    /// Length of the bulk whose `$n` header was read but whose payload is incomplete.
    pending_bulk: Option<u64>,
    /// The header announced no elements (`*0`, `*-1`).
    empty: bool,
    /// Where each argument's bytes lie, relative to the start of the request.
    args: Vec<(usize, usize)>,
}

/// The connection's codec: decodes requests into argument vectors and encodes `Reply`s in the
/// protocol version the client negotiated.
#[derive(Debug)]
pub struct RespCodec {
    limits: Limits,
    authenticated: bool,
    resp3: bool,
    scan: Scan,
}

/// One decoded request: the command name and its arguments, binary-safe.
///
/// The arguments of a multibulk request share the connection's read buffer, so that a request
/// that only reads costs no copy. Whoever keeps an argument beyond the request (the keyspace,
/// the log, a MULTI queue) must [`detach`] the request first, or the argument would pin the
/// whole (much larger, reused) buffer.
pub type Request = Vec<Bytes>;

/// Copies the arguments of `argv` into one allocation of their own, so they no longer share
/// the read buffer they were decoded from.
pub fn detach(argv: &mut [Bytes]) {
    let total = argv.iter().map(Bytes::len).sum();
    let mut copy = BytesMut::with_capacity(total);
    for arg in argv.iter() {
        copy.extend_from_slice(arg);
    }
    let copy = copy.freeze();
    let mut at = 0;
    for arg in argv.iter_mut() {
        let len = arg.len();
        *arg = copy.slice(at..at + len);
        at += len;
    }
}

impl RespCodec {
    /// A codec enforcing `limits`; `authenticated` false applies Redis's pre-AUTH limits.
    pub fn new(limits: Limits, authenticated: bool) -> RespCodec {
        RespCodec {
            limits,
            authenticated,
            resp3: false,
            scan: Scan::default(),
        }
    }

    /// Lifts the pre-AUTH limits once the client authenticates (or lowers them on RESET).
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
    }

    /// Switches replies to RESP3 (`HELLO 3`) or back to RESP2.
    pub fn set_resp3(&mut self, resp3: bool) {
        self.resp3 = resp3;
    }

    /// Whether replies are RESP3.
    pub fn is_resp3(&self) -> bool {
        self.resp3
    }

    /// Replaces the limits (after `CONFIG SET`).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    fn max_multibulk(&self) -> u64 {
        if self.authenticated {
            self.limits.max_multibulk_len
        } else {
            UNAUTHENTICATED_MAX_MULTIBULK
        }
    }

    fn max_bulk(&self) -> u64 {
        if self.authenticated {
            self.limits.max_bulk_len
        } else {
            UNAUTHENTICATED_MAX_BULK
        }
    }

    /// Scans the multibulk request at the start of `src` from where the last call stopped.
    /// Returns `Ok(true)` once the whole request is in the buffer.
    fn scan_multibulk(&mut self, src: &BytesMut) -> Result<bool, ProtocolError> {
        loop {
            let rest = &src[self.scan.offset..];
            if let Some(len) = self.scan.pending_bulk {
                let need = len as usize + 2;
                if rest.len() < need {
                    return Ok(false);
                }
                self.scan.offset += need;
                self.scan.pending_bulk = None;
                continue;
            }
            match self.scan.remaining {
                None => {
                    let Some((value, used)) = read_header(
                        rest,
                        self.limits.max_inline_len,
                        ProtocolError::BigMultibulkHeader,
                    )?
                    else {
                        return Ok(false);
                    };
                    if value > self.max_multibulk() as i64 {
                        return Err(if self.authenticated {
                            ProtocolError::InvalidMultibulkLength
                        } else {
                            ProtocolError::UnauthenticatedMultibulkLength
                        });
                    }
                    self.scan.offset += used;
                    self.scan.remaining = Some(value.max(0) as u64);
                    self.scan.empty = value <= 0;
                }
                Some(0) => return Ok(true),
                Some(n) => {
                    let Some(&first) = rest.first() else {
                        return Ok(false);
                    };
                    if first != b'$' {
                        return Err(ProtocolError::ExpectedBulk(first as char));
                    }
                    let Some((len, used)) = read_header(
                        rest,
                        self.limits.max_inline_len,
                        ProtocolError::BigBulkHeader,
                    )?
                    else {
                        return Ok(false);
                    };
                    if len < 0 || len as u64 > self.limits.max_bulk_len {
                        return Err(ProtocolError::InvalidBulkLength);
                    }
                    if len as u64 > self.max_bulk() {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    self.scan.offset += used;
                    let start = self.scan.offset;
                    self.scan.args.push((start, start + len as usize));
                    self.scan.pending_bulk = Some(len as u64);
                    self.scan.remaining = Some(n - 1);
                }
            }
        }
    }

    fn decode_multibulk(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        if !self.scan_multibulk(src)? {
            if src.len() as u64 > self.limits.query_buffer_limit {
                return Err(ProtocolError::QueryBufferLimit);
            }
            return Ok(None);
        }
        let offset = self.scan.offset;
        let empty = self.scan.empty;
        self.scan.offset = 0;
        self.scan.remaining = None;
        self.scan.pending_bulk = None;
        self.scan.empty = false;
        // A zero or negative count is an empty request, which Redis skips without a reply.
        if empty {
            self.scan.args.clear();
            src.advance(offset);
            return Ok(Some(Vec::new()));
        }
        // The arguments are slices of the read buffer, not copies: see [`Request`]. The scan
        // already located every argument; its list keeps its capacity for the next request.
        let request = src.split_to(offset).freeze();
        Ok(Some(
            self.scan
                .args
                .drain(..)
                .map(|(start, end)| request.slice(start..end))
                .collect(),
        ))
    }

    fn decode_inline(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        let Some(newline) = src.iter().position(|&b| b == b'\n') else {
            if src.len() as u64 > self.limits.max_inline_len {
                return Err(ProtocolError::BigInline);
            }
            return Ok(None);
        };
        if newline as u64 > self.limits.max_inline_len {
            return Err(ProtocolError::BigInline);
        }
        let line = src.split_to(newline + 1);
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        split_inline(line).map(Some)
    }
}

/// Reads a `*n\r\n` or `$n\r\n` header at the start of `src`: `(n, bytes used)`, `None` if
/// the line is incomplete, an error if it is too long or not a number.
fn read_header(
    src: &[u8],
    max_line: u64,
    too_long: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some(cr) = src.iter().position(|&b| b == b'\r') else {
        if src.len() as u64 > max_line {
            return Err(too_long);
        }
        return Ok(None);
    };
    if src.len() < cr + 2 {
        return Ok(None);
    }
    let bad = || match src[0] {
        b'*' => ProtocolError::InvalidMultibulkLength,
        _ => ProtocolError::InvalidBulkLength,
    };
    if src[cr + 1] != b'\n' {
        return Err(bad());
    }
    let value = std::str::from_utf8(&src[1..cr])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(bad)?;
    Ok(Some((value, cr + 2)))
}

impl Decoder for RespCodec {
    type Item = Request;
    type Error = ProtocolError;

    /// Returns the next request. An empty request (a blank inline line, `*0`) is returned as an
    /// empty vector, which the caller skips without replying.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        match src.first() {
            None => Ok(None),
            Some(b'*') => self.decode_multibulk(src),
            Some(_) => self.decode_inline(src),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bulk_len: 1024 * 1024,
            max_multibulk_len: 1000,
            max_inline_len: 64 * 1024,
            query_buffer_limit: 16 * 1024 * 1024,
        }
    }

    fn decode_all(codec: &mut RespCodec, input: &[u8]) -> Result<Vec<Vec<String>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(req) = codec.decode(&mut buf)? {
            out.push(
                req.iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect(),
            );
        }
        Ok(out)
    }

    fn check(input: &[u8], expected: &[&[&str]]) {
        let mut codec = RespCodec::new(limits(), true);
        let got = decode_all(&mut codec, input).unwrap();
        let expected: Vec<Vec<String>> = expected
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect();
        assert_eq!(got, expected, "input {:?}", String::from_utf8_lossy(input));
    }

    fn check_err(input: &[u8], authenticated: bool, expected: ProtocolError) {
        let mut codec = RespCodec::new(limits(), authenticated);
        match decode_all(&mut codec, input) {
            Err(e) => assert_eq!(
                e.to_string(),
                expected.to_string(),
                "input {:?}",
                String::from_utf8_lossy(input)
            ),
            Ok(requests) => panic!("{requests:?} decoded; expected {expected}"),
        }
    }

    #[test]
    fn decodes_multibulk_and_inline_requests() {
        check(b"*1\r\n$4\r\nPING\r\n", &[&["PING"]]);
        check(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", &[&["ECHO", ""]]);
        check(b"PING\r\n", &[&["PING"]]);
        check(b"PING\n", &[&["PING"]]);
        check(b"  set  k   v \r\n", &[&["set", "k", "v"]]);
        check(b"set k \"a b\\x41\\n\"\r\n", &[&["set", "k", "a bA\n"]]);
        check(b"set k 'it\\'s'\r\n", &[&["set", "k", "it's"]]);
        check(b"\r\n", &[&[]]);
        check(b"*0\r\n", &[&[]]);
        check(b"*-1\r\n*1\r\n$4\r\nPING\r\n", &[&[], &["PING"]]);
        check(
            b"*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n$4\r\nPING\r\n",
            &[&["PING"], &["PING"], &["PING"]],
        );
    }

    /// Decoded arguments share the read buffer; detached ones share nothing with it, so a
    /// stored argument cannot keep the buffer alive.
    #[test]
    fn arguments_share_the_read_buffer_until_detached() {
        let mut codec = RespCodec::new(limits(), true);
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n*1\r\n$4\r\nPI");
        let whole = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
        let inside = |arg: &Bytes| whole.contains(&(arg.as_ptr() as usize));
        let mut argv = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(argv, [&b"SET"[..], b"k", b"value"]);
        assert!(argv.iter().all(inside), "decoded without a copy");
        detach(&mut argv);
        assert_eq!(argv, [&b"SET"[..], b"k", b"value"]);
        assert!(
            !argv.iter().any(inside),
            "detached arguments still share the buffer"
        );
        // The unfinished request after it stays in the buffer.
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPI");
        buf.extend_from_slice(b"NG\r\n");
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), [&b"PING"[..]]);
    }

    /// Our split must agree with redis-protocol's decoder on every well-formed request, also
    /// when the request arrives in random pieces.
    #[test]
    fn multibulk_split_agrees_with_redis_protocol() {
        use redis_protocol::resp2::decode::decode_bytes_mut;
        use redis_protocol::resp2::types::BytesFrame as Frame2;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let argc = 1 + next() % 6;
            let mut wire = format!("*{argc}\r\n").into_bytes();
            for _ in 0..argc {
                let len = (next() % 40) as usize;
                let arg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                wire.extend(format!("${len}\r\n").as_bytes());
                wire.extend(&arg);
                wire.extend(b"\r\n");
            }
            let (reference, _, _) = decode_bytes_mut(&mut BytesMut::from(&wire[..]))
                .unwrap()
                .unwrap();
            let Frame2::Array(items) = reference else {
                panic!()
            };
            let expected: Vec<Bytes> = items
                .into_iter()
                .map(|f| match f {
                    Frame2::BulkString(b) => b,
                    other => panic!("{other:?}"),
                })
                .collect();
            let mut codec = RespCodec::new(limits(), true);
            let mut buf = BytesMut::new();
            let mut got = None;
            let mut fed = 0;
            while fed < wire.len() {
                let take = (1 + next() % 16) as usize;
                let end = (fed + take).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
                if let Some(request) = codec.decode(&mut buf).unwrap() {
                    assert_eq!(fed, wire.len(), "complete before the last byte");
                    got = Some(request);
                }
            }
            assert_eq!(got, Some(expected));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn incomplete_requests_wait_for_more_bytes() {
        let mut codec = RespCodec::new(limits(), true);
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        let mut buf = BytesMut::new();
        for (i, byte) in full.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let got = codec.decode(&mut buf).unwrap();
            if i + 1 < full.len() {
                assert_eq!(got, None, "complete too early at byte {i}");
            } else {
                assert_eq!(
                    got.unwrap(),
                    vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("value")]
                );
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn limits_are_enforced() {
        check_err(
            b"*99999999\r\n",
            true,
            ProtocolError::InvalidMultibulkLength,
        );
        check_err(
            b"*11\r\n",
            false,
            ProtocolError::UnauthenticatedMultibulkLength,
        );
        check_err(
            b"*1\r\n$99999999999\r\n",
            true,
            ProtocolError::InvalidBulkLength,
        );
        check_err(
            b"*1\r\n$20000\r\n",
            false,
            ProtocolError::UnauthenticatedBulkLength,
        );
        check_err(b"*1\r\n$-5\r\n", true, ProtocolError::InvalidBulkLength);
        check_err(b"*1\r\n+PING\r\n", true, ProtocolError::ExpectedBulk('+'));
        check_err(b"*x\r\n", true, ProtocolError::InvalidMultibulkLength);
        check_err(b"*1\r\n$x\r\n", true, ProtocolError::InvalidBulkLength);
        check_err(&[b'a'; 70 * 1024], true, ProtocolError::BigInline);
        let mut big_header = b"*1".to_vec();
        big_header.extend(std::iter::repeat_n(b'1', 70 * 1024));
        check_err(&big_header, true, ProtocolError::BigMultibulkHeader);
        check_err(b"set k \"open\r\n", true, ProtocolError::UnbalancedQuotes);
        check_err(b"set k \"a\"b\r\n", true, ProtocolError::UnbalancedQuotes);
    }

    #[test]
    fn query_buffer_limit_applies_to_unfinished_requests() {
        let mut codec = RespCodec::new(
            Limits {
                query_buffer_limit: 2048,
                ..limits()
            },
            true,
        );
        let mut buf = BytesMut::from(&b"*1\r\n$10000\r\n"[..]);
        buf.extend_from_slice(&[b'x'; 4096]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::QueryBufferLimit)
        ));
    }
}
