//! `Op`: every data command as a serializable value, and the two functions that run one:
//! [`Op::read`] for reads against `&Keyspace`, [`Op::apply`] for anything against
//! `&mut Keyspace`.
//!
//! An `Op` is complete: it carries absolute expiry times and random seeds, so applying it
//! depends only on the keyspace and the [`Ctx`] it travels with. The argument types of its
//! variants live here too; each family file parses its commands into `Op`s and implements
//! their semantics, and nothing here imports a family file. The variant order is part of the
//! log format: append, never reorder.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::scan::ScanOp;
use super::{Ctx, Keyspace, KeyspaceError, KsResult, SmallBytes, WatchToken};
use crate::reply::Reply;

/// SET's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCond {
    /// Always set.
    Always,
    /// NX: only if absent.
    IfAbsent,
    /// XX: only if present.
    IfPresent,
}

/// What SET does to the key's TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetExpiry {
    /// No TTL (any old one is dropped).
    Persist,
    /// Expire at this absolute time (ms); a time not after the operation's deletes the key.
    At(i64),
    /// KEEPTTL.
    Keep,
}

/// How SET answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetReply {
    /// `+OK`, or nil when the condition failed.
    Ok,
    /// The old value (GET option, GETSET).
    OldValue,
    /// `:1` or `:0` (SETNX).
    Flag,
}

/// SET, SETNX, SETEX, PSETEX and GETSET as one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetOp {
    /// The key.
    pub key: Bytes,
    /// The new value.
    pub value: Bytes,
    /// NX / XX.
    pub cond: SetCond,
    /// The TTL to leave on the key.
    pub expiry: SetExpiry,
    /// The reply shape.
    pub reply: SetReply,
}

/// GETEX's expiry change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GetExExpire {
    /// Leave the TTL alone.
    Unchanged,
    /// Set an absolute expiry (ms).
    At(i64),
    /// PERSIST.
    Persist,
}

/// EXPIRE's condition (Redis 7 NX/XX/GT/LT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpireCond {
    /// Always.
    Always,
    /// NX: only if the key has no TTL.
    IfNoTtl,
    /// XX: only if it has one.
    IfTtl,
    /// GT: only if the new time is later (no TTL counts as infinite).
    IfLater,
    /// LT: only if the new time is earlier.
    IfEarlier,
}

/// Which of the hash setters, for its reply and NX behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::enum_variant_names)] // The variants are the command names.
pub enum HSetMode {
    /// HSET: replies with the number of new fields.
    HSet,
    /// HMSET: replies OK.
    HMSet,
    /// HSETNX: sets only a new field, replies 1 or 0.
    HSetNx,
}

/// A data command, parsed. Variants group by family; each family file holds the parser and the
/// semantics of its variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // The variants are Redis commands; their fields are the arguments.
pub enum Op {
    // Strings.
    Get {
        key: Bytes,
    },
    Set(SetOp),
    MGet {
        keys: Vec<Bytes>,
    },
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
        nx: bool,
    },
    GetDel {
        key: Bytes,
    },
    GetEx {
        key: Bytes,
        expire: GetExExpire,
    },
    IncrBy {
        key: Bytes,
        by: i64,
    },
    IncrByFloat {
        key: Bytes,
        by: f64,
    },
    Append {
        key: Bytes,
        value: Bytes,
    },
    StrLen {
        key: Bytes,
    },
    GetRange {
        key: Bytes,
        start: i64,
        end: i64,
    },
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    // Keys.
    Del {
        keys: Vec<Bytes>,
    },
    Exists {
        keys: Vec<Bytes>,
    },
    Type {
        key: Bytes,
    },
    Rename {
        from: Bytes,
        to: Bytes,
        nx: bool,
    },
    Expire {
        key: Bytes,
        at_ms: i64,
        cond: ExpireCond,
    },
    Ttl {
        key: Bytes,
        millis: bool,
        absolute: bool,
    },
    Persist {
        key: Bytes,
    },
    Keys {
        pattern: Bytes,
    },
    Scan(ScanOp),
    RandomKey {
        seed: u64,
    },
    DbSize,
    FlushAll,
    /// Removes the listed keys that are expired at the operation's time: the active expiry
    /// cycle's write.
    PurgeExpired {
        keys: Vec<Bytes>,
    },
    // Hashes.
    HSet {
        key: Bytes,
        pairs: Vec<(Bytes, Bytes)>,
        mode: HSetMode,
    },
    HGet {
        key: Bytes,
        field: Bytes,
    },
    HMGet {
        key: Bytes,
        fields: Vec<Bytes>,
    },
    HGetAll {
        key: Bytes,
    },
    HDel {
        key: Bytes,
        fields: Vec<Bytes>,
    },
    HExists {
        key: Bytes,
        field: Bytes,
    },
    HLen {
        key: Bytes,
    },
    HKeys {
        key: Bytes,
    },
    HVals {
        key: Bytes,
    },
    HStrLen {
        key: Bytes,
        field: Bytes,
    },
    HIncrBy {
        key: Bytes,
        field: Bytes,
        by: i64,
    },
    HIncrByFloat {
        key: Bytes,
        field: Bytes,
        by: f64,
    },
    HScan {
        key: Bytes,
        scan: ScanOp,
    },
    // Lists.
    Push {
        key: Bytes,
        values: Vec<Bytes>,
        left: bool,
    },
    Pop {
        key: Bytes,
        left: bool,
        count: Option<u64>,
    },
    LLen {
        key: Bytes,
    },
    LRange {
        key: Bytes,
        start: i64,
        stop: i64,
    },
    LIndex {
        key: Bytes,
        index: i64,
    },
    LSet {
        key: Bytes,
        index: i64,
        value: Bytes,
    },
    LRem {
        key: Bytes,
        count: i64,
        value: Bytes,
    },
    LTrim {
        key: Bytes,
        start: i64,
        stop: i64,
    },
    // Sets.
    SAdd {
        key: Bytes,
        members: Vec<Bytes>,
    },
    SRem {
        key: Bytes,
        members: Vec<Bytes>,
    },
    SMembers {
        key: Bytes,
    },
    SIsMember {
        key: Bytes,
        member: Bytes,
    },
    SCard {
        key: Bytes,
    },
    SPop {
        key: Bytes,
        count: Option<u64>,
        seed: u64,
    },
    SRandMember {
        key: Bytes,
        count: Option<i64>,
        seed: u64,
    },
    // Transactions.
    /// MULTI ... EXEC: the queued operations run as one atomic batch, unless a watched key
    /// changed, in which case nothing runs and the reply is the null array.
    Exec {
        ops: Vec<Op>,
        watches: Vec<WatchToken>,
    },
}

impl Op {
    /// Whether this operation walks its key's whole value whatever its arguments and its reply
    /// (LREM compares every element), so that its cost grows with the value, not with what it
    /// is given or gives back.
    pub fn scans_value(&self) -> bool {
        matches!(self, Op::LRem { .. })
    }

    /// The string key this operation may lengthen to a size given by its arguments rather than
    /// by the bytes it carries (SETRANGE at an offset zero-fills up to it), with that size.
    pub fn extends_string_to(&self) -> Option<(&Bytes, u64)> {
        match self {
            Op::SetRange { key, offset, value } if !value.is_empty() => {
                Some((key, offset.saturating_add(value.len() as u64)))
            }
            _ => None,
        }
    }

    /// Whether running this operation may change the keyspace, i.e. whether it must go through
    /// the write path (and, later, the Raft log).
    pub fn is_write(&self) -> bool {
        match self {
            Op::Get { .. }
            | Op::MGet { .. }
            | Op::StrLen { .. }
            | Op::GetRange { .. }
            | Op::Exists { .. }
            | Op::Type { .. }
            | Op::Ttl { .. }
            | Op::Keys { .. }
            | Op::Scan(_)
            | Op::RandomKey { .. }
            | Op::DbSize
            | Op::HGet { .. }
            | Op::HMGet { .. }
            | Op::HGetAll { .. }
            | Op::HExists { .. }
            | Op::HLen { .. }
            | Op::HKeys { .. }
            | Op::HVals { .. }
            | Op::HStrLen { .. }
            | Op::HScan { .. }
            | Op::LLen { .. }
            | Op::LRange { .. }
            | Op::LIndex { .. }
            | Op::SMembers { .. }
            | Op::SIsMember { .. }
            | Op::SCard { .. }
            | Op::SRandMember { .. } => false,
            Op::Exec { ops, .. } => ops.iter().any(Op::is_write),
            _ => true,
        }
    }

    /// Runs a read-only operation. A write handed here is refused rather than run.
    pub fn read(&self, ks: &Keyspace, ctx: Ctx) -> Reply {
        self.try_read(ks, ctx).unwrap_or_else(Reply::error)
    }

    fn try_read(&self, ks: &Keyspace, ctx: Ctx) -> KsResult<Reply> {
        let now = ctx.now_ms;
        match self {
            Op::Get { key } => ks
                .get_string(key, now)
                .map(|v| v.map_or(Reply::Nil, SmallBytes::reply)),
            Op::MGet { keys } => Ok(ks.mget(keys, now)),
            Op::StrLen { key } => ks.strlen(key, now),
            Op::GetRange { key, start, end } => ks.getrange(key, *start, *end, now),
            Op::Exists { keys } => Ok(ks.exists(keys, now)),
            Op::Type { key } => Ok(ks.type_of(key, now)),
            Op::Ttl {
                key,
                millis,
                absolute,
            } => Ok(ks.ttl(key, *millis, *absolute, now)),
            Op::Keys { pattern } => Ok(ks.keys(pattern, now)),
            Op::Scan(scan) => Ok(ks.scan(scan, now)),
            Op::RandomKey { seed } => Ok(ks.random_key(*seed, now)),
            Op::DbSize => Ok(Reply::Int(ks.len() as i64)),
            Op::HGet { key, field } => ks.hget(key, field, now),
            Op::HMGet { key, fields } => ks.hmget(key, fields, now),
            Op::HGetAll { key } => ks.hgetall(key, now),
            Op::HExists { key, field } => ks.hexists(key, field, now),
            Op::HLen { key } => ks.hlen(key, now),
            Op::HKeys { key } => ks.hkeys_or_vals(key, true, now),
            Op::HVals { key } => ks.hkeys_or_vals(key, false, now),
            Op::HStrLen { key, field } => ks.hstrlen(key, field, now),
            Op::HScan { key, scan } => ks.hscan(key, scan, now),
            Op::LLen { key } => ks.llen(key, now),
            Op::LRange { key, start, stop } => ks.lrange(key, *start, *stop, now),
            Op::LIndex { key, index } => ks.lindex(key, *index, now),
            Op::SMembers { key } => ks.smembers(key, now),
            Op::SIsMember { key, member } => ks.sismember(key, member, now),
            Op::SCard { key } => ks.scard(key, now),
            Op::SRandMember { key, count, seed } => ks.srandmember(key, *count, *seed, now),
            Op::Exec { ops, watches } => {
                if watches.iter().any(|w| ks.watch_broken(w, now)) {
                    return Ok(Reply::NilArray);
                }
                Ok(Reply::Array(
                    ops.iter().map(|op| op.read(ks, ctx)).collect(),
                ))
            }
            _ => Err(KeyspaceError::WriteAsRead),
        }
    }

    /// Runs any operation, mutating the keyspace if it writes. Deterministic: the outcome
    /// depends only on `ks`, the operation and `ctx`.
    pub fn apply(self, ks: &mut Keyspace, ctx: Ctx) -> Reply {
        if !self.is_write() {
            return self.read(ks, ctx);
        }
        ks.begin_write();
        self.try_apply(ks, ctx).unwrap_or_else(Reply::error)
    }

    fn try_apply(self, ks: &mut Keyspace, ctx: Ctx) -> KsResult<Reply> {
        let now = ctx.now_ms;
        match self {
            Op::Set(set) => ks.set(set, now),
            Op::MSet { pairs, nx } => Ok(ks.mset(pairs, nx, now)),
            Op::GetDel { key } => ks.getdel(&key, now),
            Op::GetEx { key, expire } => ks.getex(&key, expire, now),
            Op::IncrBy { key, by } => ks.incr_by(&key, by, now),
            Op::IncrByFloat { key, by } => ks.incr_by_float(&key, by, now),
            Op::Append { key, value } => ks.append(&key, &value, now),
            Op::SetRange { key, offset, value } => ks.setrange(&key, offset, &value, now),
            Op::Del { keys } => Ok(ks.del(&keys, now)),
            Op::Rename { from, to, nx } => ks.rename(&from, to, nx, now),
            Op::Expire { key, at_ms, cond } => ks.expire(&key, at_ms, cond, now),
            Op::Persist { key } => Ok(ks.persist(&key, now)),
            Op::FlushAll => {
                ks.flush();
                Ok(Reply::ok())
            }
            Op::PurgeExpired { keys } => Ok(ks.purge_expired(&keys, now)),
            Op::HSet { key, pairs, mode } => ks.hset(&key, pairs, mode, now),
            Op::HDel { key, fields } => ks.hdel(&key, &fields, now),
            Op::HIncrBy { key, field, by } => ks.hincr_by(&key, field, by, now),
            Op::HIncrByFloat { key, field, by } => ks.hincr_by_float(&key, field, by, now),
            Op::Push { key, values, left } => ks.push(&key, values, left, now),
            Op::Pop { key, left, count } => ks.pop(&key, left, count, now),
            Op::LSet { key, index, value } => ks.lset(&key, index, value, now),
            Op::LRem { key, count, value } => ks.lrem(&key, count, &value, now),
            Op::LTrim { key, start, stop } => ks.ltrim(&key, start, stop, now),
            Op::SAdd { key, members } => ks.sadd(&key, members, now),
            Op::SRem { key, members } => ks.srem(&key, &members, now),
            Op::SPop { key, count, seed } => ks.spop(&key, count, seed, now),
            Op::Exec { ops, watches } => {
                if watches.iter().any(|w| ks.watch_broken(w, now)) {
                    return Ok(Reply::NilArray);
                }
                Ok(Reply::Array(
                    ops.into_iter().map(|op| op.apply(ks, ctx)).collect(),
                ))
            }
            read => read.try_read(ks, ctx),
        }
    }

    /// The keys this operation touches, for slot checks and WATCH.
    pub fn keys(&self) -> Vec<&Bytes> {
        match self {
            Op::Get { key }
            | Op::GetDel { key }
            | Op::GetEx { key, .. }
            | Op::IncrBy { key, .. }
            | Op::IncrByFloat { key, .. }
            | Op::Append { key, .. }
            | Op::StrLen { key }
            | Op::GetRange { key, .. }
            | Op::SetRange { key, .. }
            | Op::Type { key }
            | Op::Expire { key, .. }
            | Op::Ttl { key, .. }
            | Op::Persist { key }
            | Op::HSet { key, .. }
            | Op::HGet { key, .. }
            | Op::HMGet { key, .. }
            | Op::HGetAll { key }
            | Op::HDel { key, .. }
            | Op::HExists { key, .. }
            | Op::HLen { key }
            | Op::HKeys { key }
            | Op::HVals { key }
            | Op::HStrLen { key, .. }
            | Op::HIncrBy { key, .. }
            | Op::HIncrByFloat { key, .. }
            | Op::HScan { key, .. }
            | Op::Push { key, .. }
            | Op::Pop { key, .. }
            | Op::LLen { key }
            | Op::LRange { key, .. }
            | Op::LIndex { key, .. }
            | Op::LSet { key, .. }
            | Op::LRem { key, .. }
            | Op::LTrim { key, .. }
            | Op::SAdd { key, .. }
            | Op::SRem { key, .. }
            | Op::SMembers { key }
            | Op::SIsMember { key, .. }
            | Op::SCard { key }
            | Op::SPop { key, .. }
            | Op::SRandMember { key, .. } => vec![key],
            Op::Set(set) => vec![&set.key],
            Op::MGet { keys }
            | Op::Del { keys }
            | Op::Exists { keys }
            | Op::PurgeExpired { keys } => keys.iter().collect(),
            Op::MSet { pairs, .. } => pairs.iter().map(|(k, _)| k).collect(),
            Op::Rename { from, to, .. } => vec![from, to],
            Op::Exec { ops, .. } => ops.iter().flat_map(Op::keys).collect(),
            Op::Keys { .. } | Op::Scan(_) | Op::RandomKey { .. } | Op::DbSize | Op::FlushAll => {
                Vec::new()
            }
        }
    }
}
