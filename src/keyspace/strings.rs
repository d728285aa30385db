//! The string family: GET, SET and its variants, MGET, MSET(NX), GETDEL, GETEX, INCR and
//! friends, INCRBYFLOAT, APPEND, STRLEN, GETRANGE, SETRANGE.

use bytes::{Bytes, BytesMut};

use super::op::{GetExExpire, Op, SetCond, SetExpiry, SetOp, SetReply};
use super::{
    Entry, Keyspace, KeyspaceError, KsResult, MAX_STRING_LEN, ParseCtx, SmallBytes, Value,
};
use crate::args::{Args, parse_f64, parse_i64};
use crate::reply::{Reply, format_double};

/// Reads `EX s | PX ms | EXAT s | PXAT ms` at the cursor, if present, as an absolute time in
/// ms. Values must be positive integers, and the result must not overflow.
pub(super) fn parse_expiry_option(
    args: &mut Args<'_>,
    command: &str,
    now_ms: u64,
) -> Option<KsResult<i64>> {
    let (unit_ms, relative) = if args.eat("EX") {
        (1000, true)
    } else if args.eat("PX") {
        (1, true)
    } else if args.eat("EXAT") {
        (1000, false)
    } else if args.eat("PXAT") {
        (1, false)
    } else {
        return None;
    };
    let Some(raw) = args.next_arg() else {
        return Some(Err(KeyspaceError::Syntax));
    };
    Some(expiry_from(raw, unit_ms, relative, command, now_ms))
}

/// Converts a TTL argument to an absolute time in ms; `value` must be a positive integer.
pub(super) fn expiry_from(
    raw: &[u8],
    unit_ms: i64,
    relative: bool,
    command: &str,
    now_ms: u64,
) -> KsResult<i64> {
    let value = parse_i64(raw).ok_or(KeyspaceError::NotInteger)?;
    let invalid = || KeyspaceError::InvalidExpire(command.to_owned());
    if value <= 0 {
        return Err(invalid());
    }
    let ms = value.checked_mul(unit_ms).ok_or_else(invalid)?;
    if relative {
        ms.checked_add(now_ms as i64).ok_or_else(invalid)
    } else {
        Ok(ms)
    }
}

pub(super) fn parse(name: &str, a: &[Bytes], ctx: &ParseCtx) -> Option<KsResult<Op>> {
    let mut args = Args::new(a);
    let now = ctx.now_ms;
    let op = match name {
        "get" => Ok(Op::Get { key: args.take() }),
        "set" => parse_set(&mut args, now),
        "setnx" => Ok(Op::Set(SetOp {
            key: args.take(),
            value: args.take(),
            cond: SetCond::IfAbsent,
            expiry: SetExpiry::Persist,
            reply: SetReply::Flag,
        })),
        "setex" | "psetex" => {
            let key = args.take();
            let unit = if name == "setex" { 1000 } else { 1 };
            expiry_from(&args.take(), unit, true, name, now).map(|at| {
                Op::Set(SetOp {
                    key,
                    value: args.take(),
                    cond: SetCond::Always,
                    expiry: SetExpiry::At(at),
                    reply: SetReply::Ok,
                })
            })
        }
        "getset" => Ok(Op::Set(SetOp {
            key: args.take(),
            value: args.take(),
            cond: SetCond::Always,
            expiry: SetExpiry::Persist,
            reply: SetReply::OldValue,
        })),
        "mget" => Ok(Op::MGet { keys: a.to_vec() }),
        "mset" | "msetnx" if a.is_empty() || !a.len().is_multiple_of(2) => {
            Err(KeyspaceError::WrongArity(name.to_owned()))
        }
        "mset" | "msetnx" => Ok(Op::MSet {
            pairs: a
                .chunks_exact(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
            nx: name == "msetnx",
        }),
        "getdel" => Ok(Op::GetDel { key: args.take() }),
        "getex" => parse_getex(&mut args, now),
        "incr" => Ok(Op::IncrBy {
            key: args.take(),
            by: 1,
        }),
        "decr" => Ok(Op::IncrBy {
            key: args.take(),
            by: -1,
        }),
        "incrby" | "decrby" => {
            let key = args.take();
            match parse_i64(&args.take()) {
                None => Err(KeyspaceError::NotInteger),
                Some(by) if name == "incrby" => Ok(Op::IncrBy { key, by }),
                Some(i64::MIN) => Err(KeyspaceError::DecrementOverflow),
                Some(by) => Ok(Op::IncrBy { key, by: -by }),
            }
        }
        "incrbyfloat" => {
            let key = args.take();
            parse_f64(&args.take())
                .ok_or(KeyspaceError::NotFloat)
                .map(|by| Op::IncrByFloat { key, by })
        }
        "append" => Ok(Op::Append {
            key: args.take(),
            value: args.take(),
        }),
        "strlen" => Ok(Op::StrLen { key: args.take() }),
        "getrange" | "substr" => {
            let key = args.take();
            match (parse_i64(&args.take()), parse_i64(&args.take())) {
                (Some(start), Some(end)) => Ok(Op::GetRange { key, start, end }),
                _ => Err(KeyspaceError::NotInteger),
            }
        }
        "setrange" => {
            let key = args.take();
            match parse_i64(&args.take()) {
                None => Err(KeyspaceError::NotInteger),
                Some(offset) if offset < 0 => Err(KeyspaceError::OffsetOutOfRange),
                Some(offset) => Ok(Op::SetRange {
                    key,
                    offset: offset as u64,
                    value: args.take(),
                }),
            }
        }
        _ => return None,
    };
    Some(op)
}

fn parse_set(args: &mut Args<'_>, now: u64) -> KsResult<Op> {
    let key = args.take();
    let value = args.take();
    let mut cond = SetCond::Always;
    let mut expiry = SetExpiry::Persist;
    let mut expiry_given = false;
    let mut reply = SetReply::Ok;
    while !args.is_done() {
        if args.eat("NX") && cond != SetCond::IfPresent {
            cond = SetCond::IfAbsent;
        } else if args.eat("XX") && cond != SetCond::IfAbsent {
            cond = SetCond::IfPresent;
        } else if args.eat("GET") {
            reply = SetReply::OldValue;
        } else if !expiry_given && args.eat("KEEPTTL") {
            expiry = SetExpiry::Keep;
            expiry_given = true;
        } else if !expiry_given && let Some(at) = parse_expiry_option(args, "set", now) {
            expiry = SetExpiry::At(at?);
            expiry_given = true;
        } else {
            return Err(KeyspaceError::Syntax);
        }
    }
    Ok(Op::Set(SetOp {
        key,
        value,
        cond,
        expiry,
        reply,
    }))
}

fn parse_getex(args: &mut Args<'_>, now: u64) -> KsResult<Op> {
    let key = args.take();
    let expire = if args.is_done() {
        GetExExpire::Unchanged
    } else if args.eat("PERSIST") {
        GetExExpire::Persist
    } else {
        match parse_expiry_option(args, "getex", now) {
            Some(at) => GetExExpire::At(at?),
            None => return Err(KeyspaceError::Syntax),
        }
    };
    if !args.is_done() {
        return Err(KeyspaceError::Syntax);
    }
    Ok(Op::GetEx { key, expire })
}

/// Parses a stored string as an integer the way INCR does.
fn stored_i64(value: &[u8]) -> KsResult<i64> {
    parse_i64(value).ok_or(KeyspaceError::NotInteger)
}

/// A mutable buffer holding `bytes`, reusing its allocation when nobody else holds it.
fn into_mut(bytes: Bytes) -> BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

impl Keyspace {
    pub(super) fn set(&mut self, op: SetOp, now: u64) -> KsResult<Reply> {
        if op.cond == SetCond::Always && op.reply == SetReply::Ok {
            // A plain SET needs nothing of the old entry: one probe of the map, not three.
            let expire_at = match op.expiry {
                SetExpiry::Persist => None,
                SetExpiry::At(at) => Some(at.max(0) as u64),
                SetExpiry::Keep => return self.set_slow(op, now),
            };
            let old = if expire_at.is_some_and(|at| at <= now) {
                self.remove(&op.key)
            } else {
                self.store(op.key, Value::String(SmallBytes::new(op.value)), expire_at)
            };
            if old.is_some_and(|o| o.is_expired(now)) {
                self.expired_total += 1;
            }
            return Ok(Reply::ok());
        }
        self.set_slow(op, now)
    }

    /// SET with a condition, KEEPTTL or a reply that needs the old entry.
    fn set_slow(&mut self, op: SetOp, now: u64) -> KsResult<Reply> {
        let old = match self.lookup_mut(&op.key, now) {
            None => None,
            Some(entry) => match &entry.value {
                Value::String(s) => Some((s.to_bytes(), entry.expire_at)),
                _ if op.reply == SetReply::OldValue => return Err(KeyspaceError::WrongType),
                _ => Some((Bytes::new(), entry.expire_at)),
            },
        };
        let allowed = match op.cond {
            SetCond::Always => true,
            SetCond::IfAbsent => old.is_none(),
            SetCond::IfPresent => old.is_some(),
        };
        if allowed {
            let expire_at = match op.expiry {
                SetExpiry::Persist => None,
                SetExpiry::Keep => old.as_ref().and_then(|(_, at)| *at),
                SetExpiry::At(at) => Some(at.max(0) as u64),
            };
            if expire_at.is_some_and(|at| at <= now) {
                self.remove(&op.key);
            } else {
                self.store(op.key, Value::String(SmallBytes::new(op.value)), expire_at);
            }
        }
        Ok(match op.reply {
            SetReply::Ok if allowed => Reply::ok(),
            SetReply::Ok => Reply::Nil,
            SetReply::OldValue => Reply::opt_bulk(old.map(|(v, _)| v)),
            SetReply::Flag => Reply::Int(allowed as i64),
        })
    }

    pub(super) fn mget(&self, keys: &[Bytes], now: u64) -> Reply {
        Reply::Array(
            keys.iter()
                .map(|k| match self.get_string(k, now) {
                    Ok(Some(v)) => v.reply(),
                    _ => Reply::Nil,
                })
                .collect(),
        )
    }

    pub(super) fn mset(&mut self, pairs: Vec<(Bytes, Bytes)>, nx: bool, now: u64) -> Reply {
        if nx && pairs.iter().any(|(k, _)| self.lookup(k, now).is_some()) {
            return Reply::Int(0);
        }
        for (key, value) in pairs {
            self.expire_if_needed(&key, now);
            self.store(key, Value::String(SmallBytes::new(value)), None);
        }
        if nx { Reply::Int(1) } else { Reply::ok() }
    }

    pub(super) fn getdel(&mut self, key: &Bytes, now: u64) -> KsResult<Reply> {
        let value = self.get_string(key, now)?.map(SmallBytes::to_bytes);
        if value.is_some() {
            self.remove(key);
        }
        Ok(Reply::opt_bulk(value))
    }

    pub(super) fn getex(&mut self, key: &Bytes, expire: GetExExpire, now: u64) -> KsResult<Reply> {
        let Some(value) = self.get_string(key, now)?.map(SmallBytes::to_bytes) else {
            return Ok(Reply::Nil);
        };
        match expire {
            GetExExpire::Unchanged => {}
            GetExExpire::Persist => self.set_expiry(key, None),
            GetExExpire::At(at) if at <= now as i64 => {
                self.remove(key);
            }
            GetExExpire::At(at) => self.set_expiry(key, Some(at as u64)),
        }
        Ok(Reply::Bulk(value))
    }

    pub(super) fn incr_by(&mut self, key: &Bytes, by: i64, now: u64) -> KsResult<Reply> {
        let current = match self.get_string(key, now)? {
            Some(v) => stored_i64(v)?,
            None => 0,
        };
        let next = current.checked_add(by).ok_or(KeyspaceError::Overflow)?;
        self.replace_string(key, Bytes::from(next.to_string()), now);
        Ok(Reply::Int(next))
    }

    pub(super) fn incr_by_float(&mut self, key: &Bytes, by: f64, now: u64) -> KsResult<Reply> {
        let current = match self.get_string(key, now)? {
            Some(v) => parse_f64(v).ok_or(KeyspaceError::NotFloat)?,
            None => 0.0,
        };
        let next = current + by;
        if !next.is_finite() {
            return Err(KeyspaceError::NanOrInfinity);
        }
        let text = Bytes::from(format_double(next));
        self.replace_string(key, text.clone(), now);
        Ok(Reply::Bulk(text))
    }

    /// Replaces a string's value keeping its TTL, or creates it without one.
    fn replace_string(&mut self, key: &Bytes, value: Bytes, now: u64) {
        match self.modify(key, now) {
            Some(entry) => entry.value = Value::String(SmallBytes::new(value)),
            None => {
                self.store(key.clone(), Value::String(SmallBytes::new(value)), None);
            }
        }
    }

    pub(super) fn append(&mut self, key: &Bytes, value: &[u8], now: u64) -> KsResult<Reply> {
        let len = self.get_string(key, now)?.map_or(0, |v| v.len());
        if (len + value.len()) as u64 > MAX_STRING_LEN {
            return Err(KeyspaceError::StringTooLong);
        }
        let Some(entry) = self.modify(key, now) else {
            self.store(
                key.clone(),
                Value::String(SmallBytes::copy_from_slice(value)),
                None,
            );
            return Ok(Reply::Int(value.len() as i64));
        };
        let Value::String(current) = &mut entry.value else {
            return Err(KeyspaceError::WrongType);
        };
        let mut buffer = into_mut(std::mem::take(current).into_bytes());
        buffer.extend_from_slice(value);
        let new_len = buffer.len();
        *current = SmallBytes::new(buffer.freeze());
        Ok(Reply::Int(new_len as i64))
    }

    pub(super) fn strlen(&self, key: &Bytes, now: u64) -> KsResult<Reply> {
        Ok(Reply::Int(
            self.get_string(key, now)?.map_or(0, |v| v.len()) as i64,
        ))
    }

    pub(super) fn getrange(&self, key: &Bytes, start: i64, end: i64, now: u64) -> KsResult<Reply> {
        let value = (self.get_string(key, now)?)
            .map(SmallBytes::to_bytes)
            .unwrap_or_default();
        let len = value.len() as i64;
        if len == 0 || (start < 0 && end < 0 && start > end) {
            return Ok(Reply::Bulk(Bytes::new()));
        }
        let start = if start < 0 {
            (len + start).max(0)
        } else {
            start
        };
        let end = if end < 0 {
            (len + end).max(0)
        } else {
            end.min(len - 1)
        };
        if start > end {
            return Ok(Reply::Bulk(Bytes::new()));
        }
        Ok(Reply::Bulk(value.slice(start as usize..=end as usize)))
    }

    pub(super) fn setrange(
        &mut self,
        key: &Bytes,
        offset: u64,
        value: &[u8],
        now: u64,
    ) -> KsResult<Reply> {
        let len = self.get_string(key, now)?.map_or(0, |v| v.len());
        if value.is_empty() {
            return Ok(Reply::Int(len as i64));
        }
        if offset + value.len() as u64 > MAX_STRING_LEN {
            return Err(KeyspaceError::StringTooLong);
        }
        let end = offset as usize + value.len();
        let current = match self.modify(key, now) {
            Some(Entry {
                value: Value::String(s),
                ..
            }) => std::mem::take(s).into_bytes(),
            _ => Bytes::new(),
        };
        let mut buffer = into_mut(current);
        if buffer.len() < end {
            buffer.resize(end, 0);
        }
        buffer[offset as usize..end].copy_from_slice(value);
        let new_len = buffer.len();
        self.replace_string(key, buffer.freeze(), now);
        Ok(Reply::Int(new_len as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ks: &mut Keyspace, now: u64, words: &[&str]) -> Reply {
        super::super::run_command(ks, now, 7, words)
    }

    fn bulk(s: &str) -> Reply {
        Reply::bulk(s)
    }

    #[test]
    fn set_options_follow_redis() {
        let mut ks = Keyspace::new();
        assert_eq!(run(&mut ks, 0, &["set", "k", "v", "NX"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["set", "k", "w", "NX"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["set", "k", "w", "XX", "GET"]), bulk("v"));
        assert_eq!(run(&mut ks, 0, &["set", "missing", "w", "XX"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["set", "k", "v", "NX", "XX"]),
            Reply::error(KeyspaceError::Syntax)
        );
        assert_eq!(
            run(&mut ks, 0, &["set", "k", "v", "EX", "10", "PX", "5"]),
            Reply::error(KeyspaceError::Syntax)
        );
        assert_eq!(
            run(&mut ks, 0, &["set", "k", "v", "EX", "0"]),
            Reply::Error("ERR invalid expire time in 'set' command".into())
        );
        assert_eq!(
            run(&mut ks, 0, &["set", "k", "v", "EX", "x"]),
            Reply::error(KeyspaceError::NotInteger)
        );
        assert_eq!(
            run(&mut ks, 1000, &["set", "t", "v", "EX", "10"]),
            Reply::ok()
        );
        assert_eq!(run(&mut ks, 1000, &["pttl", "t"]), Reply::Int(10_000));
        assert_eq!(
            run(&mut ks, 2000, &["set", "t", "w", "KEEPTTL"]),
            Reply::ok()
        );
        assert_eq!(run(&mut ks, 2000, &["pttl", "t"]), Reply::Int(9_000));
        assert_eq!(run(&mut ks, 10_999, &["get", "t"]), bulk("w"));
        assert_eq!(run(&mut ks, 11_000, &["get", "t"]), Reply::Nil);
        assert_eq!(run(&mut ks, 0, &["setnx", "n", "1"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["setnx", "n", "2"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["getset", "n", "3"]), bulk("1"));
        run(&mut ks, 0, &["rpush", "l", "a"]);
        assert_eq!(
            run(&mut ks, 0, &["set", "l", "x", "GET"]),
            Reply::error(KeyspaceError::WrongType)
        );
        assert_eq!(
            run(&mut ks, 0, &["set", "l", "x"]),
            Reply::ok(),
            "plain SET overwrites any type"
        );
    }

    #[test]
    fn counters_check_types_and_overflow() {
        let mut ks = Keyspace::new();
        assert_eq!(run(&mut ks, 0, &["incr", "c"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["incrby", "c", "41"]), Reply::Int(42));
        assert_eq!(run(&mut ks, 0, &["decrby", "c", "2"]), Reply::Int(40));
        assert_eq!(run(&mut ks, 0, &["decr", "c"]), Reply::Int(39));
        run(&mut ks, 0, &["set", "big", "9223372036854775807"]);
        assert_eq!(
            run(&mut ks, 0, &["incr", "big"]),
            Reply::error(KeyspaceError::Overflow)
        );
        run(&mut ks, 0, &["set", "s", "abc"]);
        assert_eq!(
            run(&mut ks, 0, &["incr", "s"]),
            Reply::error(KeyspaceError::NotInteger)
        );
        assert_eq!(run(&mut ks, 0, &["incrbyfloat", "f", "10.5"]), bulk("10.5"));
        assert_eq!(run(&mut ks, 0, &["incrbyfloat", "f", "0.1"]), bulk("10.6"));
        assert_eq!(
            run(&mut ks, 0, &["incrbyfloat", "f", "-5e3"]),
            bulk("-4989.4")
        );
        assert_eq!(
            run(&mut ks, 0, &["incrbyfloat", "s", "1"]),
            Reply::error(KeyspaceError::NotFloat)
        );
        assert_eq!(
            run(&mut ks, 0, &["incrbyfloat", "f", "inf"]),
            Reply::error(KeyspaceError::NanOrInfinity)
        );
    }

    #[test]
    fn ranges_and_appends() {
        let mut ks = Keyspace::new();
        assert_eq!(run(&mut ks, 0, &["append", "s", "Hello"]), Reply::Int(5));
        assert_eq!(run(&mut ks, 0, &["append", "s", " World"]), Reply::Int(11));
        assert_eq!(run(&mut ks, 0, &["getrange", "s", "0", "4"]), bulk("Hello"));
        assert_eq!(
            run(&mut ks, 0, &["getrange", "s", "-5", "-1"]),
            bulk("World")
        );
        assert_eq!(run(&mut ks, 0, &["getrange", "s", "5", "2"]), bulk(""));
        assert_eq!(
            run(&mut ks, 0, &["getrange", "s", "0", "100"]),
            bulk("Hello World")
        );
        assert_eq!(
            run(&mut ks, 0, &["setrange", "s", "6", "Redis"]),
            Reply::Int(11)
        );
        assert_eq!(run(&mut ks, 0, &["get", "s"]), bulk("Hello Redis"));
        assert_eq!(run(&mut ks, 0, &["setrange", "p", "3", "x"]), Reply::Int(4));
        assert_eq!(run(&mut ks, 0, &["get", "p"]), Reply::bulk(b"\0\0\0x"));
        assert_eq!(
            run(&mut ks, 0, &["setrange", "p", "-1", "x"]),
            Reply::error(KeyspaceError::OffsetOutOfRange)
        );
        assert_eq!(run(&mut ks, 0, &["strlen", "s"]), Reply::Int(11));
        assert_eq!(run(&mut ks, 0, &["strlen", "none"]), Reply::Int(0));
    }

    #[test]
    fn multi_key_and_getex() {
        let mut ks = Keyspace::new();
        assert_eq!(run(&mut ks, 0, &["mset", "a", "1", "b", "2"]), Reply::ok());
        assert_eq!(
            run(&mut ks, 0, &["mget", "a", "b", "c"]),
            Reply::Array(vec![bulk("1"), bulk("2"), Reply::Nil])
        );
        assert_eq!(
            run(&mut ks, 0, &["msetnx", "c", "3", "a", "9"]),
            Reply::Int(0)
        );
        assert_eq!(run(&mut ks, 0, &["get", "c"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 0, &["msetnx", "c", "3", "d", "4"]),
            Reply::Int(1)
        );
        assert_eq!(run(&mut ks, 0, &["getex", "a", "PX", "100"]), bulk("1"));
        assert_eq!(run(&mut ks, 0, &["pttl", "a"]), Reply::Int(100));
        assert_eq!(run(&mut ks, 0, &["getex", "a", "PERSIST"]), bulk("1"));
        assert_eq!(run(&mut ks, 0, &["pttl", "a"]), Reply::Int(-1));
        assert_eq!(
            run(&mut ks, 0, &["getex", "a", "BOGUS"]),
            Reply::error(KeyspaceError::Syntax)
        );
        assert_eq!(run(&mut ks, 0, &["getdel", "a"]), bulk("1"));
        assert_eq!(run(&mut ks, 0, &["exists", "a"]), Reply::Int(0));
    }
}
