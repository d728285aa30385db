//! The value a command answers with, independent of the wire protocol.
//!
//! Every layer that produces answers (the keyspace, the command handlers, later the WASM
//! executor and the Raft state machine) speaks `Reply`; only `protocol` turns it into RESP2 or
//! RESP3 bytes. It is serializable because replicated operations return it through the log.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Stored values up to this size are copied into their replies rather than shared
/// ([`Reply::stored`]).
const COPIED_REPLY_BYTES: usize = 128;

/// A protocol-independent reply. RESP3-only shapes (maps, sets, doubles, booleans) degrade to
/// their RESP2 equivalents when encoded for a RESP2 client, exactly as Redis does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// `+OK` and friends.
    Status(String),
    /// A complete error line, prefix included: `ERR syntax error`, `WRONGTYPE ...`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// A binary-safe string.
    Bulk(Bytes),
    /// The null bulk string (`$-1` in RESP2, `_` in RESP3).
    Nil,
    /// The null array (`*-1` in RESP2, `_` in RESP3): EXEC after a failed WATCH.
    NilArray,
    /// An ordered array.
    Array(Vec<Reply>),
    /// A map (RESP3); a flat `[k1, v1, k2, v2, ...]` array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set (RESP3); an array in RESP2.
    Set(Vec<Reply>),
    /// A double (RESP3); a bulk string in RESP2.
    Double(f64),
    /// A boolean (RESP3); the integer 1 or 0 in RESP2.
    Bool(bool),
    /// A verbatim text (RESP3 `=` with format `txt`); a bulk string in RESP2.
    Verbatim(String),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Status("OK".to_owned())
    }

    /// A bulk string copied from `data`.
    pub fn bulk(data: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(data.as_ref()))
    }

    /// A bulk string holding the decimal form of `value`, as Redis writes numbers it returns
    /// as strings.
    pub fn bulk_display(value: impl std::fmt::Display) -> Reply {
        Reply::Bulk(Bytes::from(value.to_string()))
    }

    /// An error reply from anything that knows its Redis error line.
    pub fn error(err: impl RedisError) -> Reply {
        Reply::Error(err.line())
    }

    /// A bulk reply of a value the keyspace keeps: copied when small, shared when large.
    /// Sharing a stored value touches the count on its allocation (a cache miss on a cold key,
    /// and two atomic operations), which costs more than copying a few dozen bytes that the
    /// reply reads anyway.
    pub fn stored(value: &Bytes) -> Reply {
        if value.len() <= COPIED_REPLY_BYTES {
            Reply::Bulk(Bytes::copy_from_slice(value))
        } else {
            Reply::Bulk(value.clone())
        }
    }

    /// [`Reply::stored`] for `Some`, nil for `None`.
    pub fn opt_stored(value: Option<&Bytes>) -> Reply {
        value.map_or(Reply::Nil, Reply::stored)
    }

    /// A bulk reply for `Some`, nil for `None`.
    pub fn opt_bulk(value: Option<Bytes>) -> Reply {
        value.map_or(Reply::Nil, Reply::Bulk)
    }

    /// An array of bulk strings.
    pub fn bulks<I: IntoIterator<Item = Bytes>>(items: I) -> Reply {
        Reply::Array(items.into_iter().map(Reply::Bulk).collect())
    }

    /// Whether this reply is an error line.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// An error that knows which Redis error prefix it travels under.
///
/// This is the one place an error becomes a reply line: `prefix()` is the code clients match on
/// (`ERR`, `WRONGTYPE`, `MOVED`, `NOPERM`, ...), `Display` is the rest of the line.
pub trait RedisError: std::fmt::Display {
    /// The error code, the first word of the reply line.
    fn prefix(&self) -> &'static str {
        "ERR"
    }

    /// The whole error line, prefix included.
    fn line(&self) -> String {
        format!("{} {}", self.prefix(), self)
    }
}

/// Redis's textual form of a double, as INCRBYFLOAT and HINCRBYFLOAT print it.
///
/// Redis computes in `long double` and prints 17 digits, trimming trailing zeros, so sums like
/// `0.1 + 0.2` come out as `0.3`. With `f64` we get the same human results by rounding to 15
/// significant digits (all an `f64` holds exactly in decimal) and printing the shortest form of
/// that, never in exponent notation.
pub fn format_double(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let rounded: f64 = format!("{value:.14e}").parse().unwrap_or(value);
    if rounded == 0.0 {
        return "0".to_owned();
    }
    format!("{rounded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_redis() {
        for (value, expected) in [
            (10.5, "10.5"),
            (3.0, "3"),
            (-0.25, "-0.25"),
            (5.0e3, "5000"),
            (0.1 + 0.2, "0.3"),
            (1.0e20, "100000000000000000000"),
            (-0.0, "0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(format_double(value), expected, "{value}");
        }
    }

    #[test]
    fn error_lines_carry_their_prefix() {
        struct WrongType;
        impl std::fmt::Display for WrongType {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Operation against a key holding the wrong kind of value")
            }
        }
        impl RedisError for WrongType {
            fn prefix(&self) -> &'static str {
                "WRONGTYPE"
            }
        }
        assert_eq!(
            Reply::error(WrongType),
            Reply::Error(
                "WRONGTYPE Operation against a key holding the wrong kind of value".to_owned()
            )
        );
    }
}
