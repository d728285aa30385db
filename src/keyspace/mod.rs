//! The keyspace: Redis data types held as a deterministic state machine.
//!
//! Every data command is parsed into an [`Op`]. Reads run against `&Keyspace`; writes run
//! through [`Op::apply`] against `&mut Keyspace` with the time the operation was created
//! ([`Ctx::now_ms`]), never a clock of its own. Relative TTLs are turned into absolute times when
//! the operation is parsed, so applying the same sequence of operations to two empty keyspaces
//! gives identical keyspaces and replies: this is what the Raft log will replicate.
//!
//! Architecture invariant: this module does no I/O, reads no clock, spawns nothing and awaits
//! nothing; its iteration orders depend only on the operations applied (see [`ScanMap`]).

mod hashes;
mod keys;
mod lists;
mod op;
mod parse;
mod scan;
mod scanmap;
mod sets;
mod small;
mod strings;

#[cfg(test)]
mod determinism;

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use thiserror::Error;

use crate::reply::RedisError;

pub use op::{ExpireCond, GetExExpire, HSetMode, Op, SetCond, SetExpiry, SetOp, SetReply};
pub use parse::parse;
pub use scan::ScanOp;
pub use scanmap::ScanMap;
pub use small::SmallBytes;

/// The time an operation executes at, carried by the operation, never read from a clock here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// Milliseconds since the Unix epoch, as the node that created the operation saw it.
    pub now_ms: u64,
}

/// What a parser needs besides the arguments: the time relative TTLs count from and a seed for
/// commands that pick at random.
#[derive(Debug, Clone, Copy)]
pub struct ParseCtx {
    /// Milliseconds since the epoch when the command arrived.
    pub now_ms: u64,
    /// Seed for SPOP, SRANDMEMBER and RANDOMKEY.
    pub seed: u64,
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// A binary string (short ones held inline: [`SmallBytes`]).
    String(SmallBytes),
    /// A hash of fields to values.
    Hash(Box<ScanMap<Bytes>>),
    /// A list.
    List(Box<VecDeque<Bytes>>),
    /// A set of members.
    Set(Box<ScanMap<()>>),
}

/// The type of a value, without the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// A hash.
    Hash,
    /// A list.
    List,
    /// A set.
    Set,
}

impl Value {
    /// How many elements copying this value copies: 1 for a string (its bytes are shared), the
    /// number of fields, elements or members otherwise.
    pub fn elements(&self) -> u64 {
        match self {
            Value::String(_) => 1,
            Value::Hash(h) => h.len() as u64,
            Value::List(l) => l.len() as u64,
            Value::Set(s) => s.len() as u64,
        }
    }

    /// The value's type.
    pub fn kind(&self) -> Kind {
        match self {
            Value::String(_) => Kind::String,
            Value::Hash(_) => Kind::Hash,
            Value::List(_) => Kind::List,
            Value::Set(_) => Kind::Set,
        }
    }

    /// The name `TYPE` answers with.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
        }
    }

    /// Whether a container holds nothing (Redis deletes a key whose container empties).
    fn is_empty_container(&self) -> bool {
        match self {
            Value::String(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }
}

/// A key's value and metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// Absolute expiry time in ms since the epoch, if the key is volatile.
    pub expire_at: Option<u64>,
    /// The write sequence number of the last modification: what WATCH compares.
    pub version: u64,
}

impl Entry {
    fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at.is_some_and(|at| at <= now_ms)
    }
}

/// Errors a data command can answer with. The texts are Redis 7's, word for word.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum KeyspaceError {
    /// The key holds another type.
    #[error("Operation against a key holding the wrong kind of value")]
    WrongType,
    /// An argument or stored value is not a 64-bit integer.
    #[error("value is not an integer or out of range")]
    NotInteger,
    /// An argument or stored value is not a float.
    #[error("value is not a valid float")]
    NotFloat,
    /// INCR and friends would leave the i64 range.
    #[error("increment or decrement would overflow")]
    Overflow,
    /// DECRBY with i64::MIN.
    #[error("decrement would overflow")]
    DecrementOverflow,
    /// INCRBYFLOAT would produce NaN or infinity.
    #[error("increment would produce NaN or Infinity")]
    NanOrInfinity,
    /// A hash field is not an integer.
    #[error("hash value is not an integer")]
    HashNotInteger,
    /// A hash field is not a float.
    #[error("hash value is not a float")]
    HashNotFloat,
    /// Bad option combination or unknown option.
    #[error("syntax error")]
    Syntax,
    /// RENAME/LSET of a missing key.
    #[error("no such key")]
    NoSuchKey,
    /// LSET past the end.
    #[error("index out of range")]
    IndexOutOfRange,
    /// An expire time that is not positive or overflows; carries the command name.
    #[error("invalid expire time in '{0}' command")]
    InvalidExpire(String),
    /// A string would exceed proto-max-bulk-len.
    #[error("string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    /// SETRANGE with a negative offset.
    #[error("offset is out of range")]
    OffsetOutOfRange,
    /// A count that must not be negative.
    #[error("value is out of range, must be positive")]
    NotPositive,
    /// A count outside the range a command accepts.
    #[error("value is out of range, value must between {0} and 9223372036854775807")]
    OutOfRange(i64),
    /// SCAN with a non-numeric cursor.
    #[error("invalid cursor")]
    InvalidCursor,
    /// EXPIRE option conflicts.
    #[error("NX and XX, GT or LT options at the same time are not compatible")]
    ExpireNxConflict,
    /// EXPIRE GT with LT.
    #[error("GT and LT options at the same time are not compatible")]
    ExpireGtLtConflict,
    /// An option the command does not know.
    #[error("Unsupported option {0}")]
    UnsupportedOption(String),
    /// An argument count the command's shape refuses (odd pairs for MSET, HSET).
    #[error("wrong number of arguments for '{0}' command")]
    WrongArity(String),
    /// A write handed to the read path (`Op::read`), which refuses it rather than run it;
    /// the dispatcher never does this.
    #[error("a write cannot run as a read")]
    WriteAsRead,
}

impl RedisError for KeyspaceError {
    fn prefix(&self) -> &'static str {
        match self {
            KeyspaceError::WrongType => "WRONGTYPE",
            _ => "ERR",
        }
    }
}

/// Result of a keyspace operation.
pub type KsResult<T> = Result<T, KeyspaceError>;

/// Longest string a write may build (SETRANGE, APPEND): Redis's proto-max-bulk-len default.
pub const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

/// How many deleted-key versions WATCH remembers before it forgets them all (and treats older
/// watches of absent keys conservatively as modified).
const TOMBSTONE_LIMIT: usize = 65_536;

/// A key's version as WATCH saw it; EXEC aborts if any changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatchToken {
    /// The watched key.
    pub key: Bytes,
    /// Its version then (0 if it never existed as far as we remember).
    pub version: u64,
    /// The keyspace's write sequence number then.
    pub seq: u64,
}

/// The Redis keyspace (database 0). Serializable whole, for Raft snapshots: a keyspace rebuilt
/// from its bytes equals the original, iteration order and WATCH versions included.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Keyspace {
    entries: ScanMap<Entry>,
    /// Keys that carry a TTL, for INFO's `expires=`.
    volatile: usize,
    /// Write sequence number: incremented by every applied write operation.
    seq: u64,
    /// Versions of recently deleted keys, so WATCH sees a delete.
    #[serde(serialize_with = "sorted")]
    tombstones: HashMap<Bytes, u64>,
    /// Watches taken before this sequence number cannot trust the tombstones of absent keys.
    tombstone_floor: u64,
    /// Keys removed by expiry, for INFO's `expired_keys`.
    expired_total: u64,
}

/// Serializes a map in key order, so equal keyspaces serialize to equal bytes whatever their
/// hash seeds (replicas compare state by its bytes).
fn sorted<S: serde::Serializer>(
    map: &HashMap<Bytes, u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let ordered: std::collections::BTreeMap<&Bytes, &u64> = map.iter().collect();
    serde::Serialize::serialize(&ordered, serializer)
}

impl Keyspace {
    /// An empty keyspace.
    pub fn new() -> Keyspace {
        Keyspace::default()
    }

    /// The first `count` keys (in iteration order) that hash to cluster `slot`, and how many
    /// there are; expired keys not yet purged count, as in DBSIZE.
    pub fn keys_in_slot(&self, slot: u16, count: usize) -> (Vec<Bytes>, usize) {
        let mut found = Vec::new();
        let mut total = 0;
        for key in self.entries.keys() {
            if crate::slot::key_slot(key) == slot {
                total += 1;
                if found.len() < count {
                    found.push(key.clone());
                }
            }
        }
        (found, total)
    }

    /// Number of keys, including expired ones not yet purged (as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of keys with a TTL.
    pub fn volatile_count(&self) -> usize {
        self.volatile
    }

    /// Keys removed because they expired, since start.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    /// The live entry for `key`: `None` if absent or expired at `now`.
    pub fn lookup(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.entries.get(key).filter(|e| !e.is_expired(now))
    }

    /// The live value of `key` if it is a string; WRONGTYPE if it is another type.
    pub fn get_string(&self, key: &[u8], now: u64) -> KsResult<Option<&SmallBytes>> {
        match self.lookup(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(KeyspaceError::WrongType),
        }
    }

    /// The write sequence number: it moves with every write operation, so an unchanged number
    /// means an unchanged keyspace.
    pub fn write_seq(&self) -> u64 {
        self.seq
    }

    /// Starts a write operation: bumps the sequence number that versions modifications.
    fn begin_write(&mut self) {
        self.seq += 1;
    }

    /// Removes `key` if it expired at `now`, so writes see it as absent. Deterministic
    /// because `now` comes from the operation.
    fn expire_if_needed(&mut self, key: &[u8], now: u64) {
        if self.entries.get(key).is_some_and(|e| e.is_expired(now)) {
            self.remove(key);
            self.expired_total += 1;
        }
    }

    /// The live entry for `key`, mutably, without marking it modified.
    fn lookup_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.expire_if_needed(key, now);
        self.entries.get_mut(key)
    }

    /// The live entry for `key`, mutably, marked as modified (for WATCH).
    fn modify(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let seq = self.seq;
        let entry = self.lookup_mut(key, now)?;
        entry.version = seq;
        Some(entry)
    }

    /// Inserts or replaces `key` with `value` and expiry `expire_at`; the entry replaced.
    fn store(&mut self, key: Bytes, value: Value, expire_at: Option<u64>) -> Option<Entry> {
        if !self.tombstones.is_empty() {
            self.tombstones.remove(&key);
        }
        let entry = Entry {
            value,
            expire_at,
            version: self.seq,
        };
        if expire_at.is_some() {
            self.volatile += 1;
        }
        let old = self.entries.insert(key, entry);
        if old.as_ref().is_some_and(|o| o.expire_at.is_some()) {
            self.volatile -= 1;
        }
        old
    }

    /// Removes `key`; returns its entry.
    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let old = self.entries.remove(key)?;
        if old.expire_at.is_some() {
            self.volatile -= 1;
        }
        if self.tombstones.len() >= TOMBSTONE_LIMIT {
            self.tombstones.clear();
            self.tombstone_floor = self.seq;
        }
        self.tombstones
            .insert(Bytes::copy_from_slice(key), self.seq);
        Some(old)
    }

    /// Sets or clears the expiry of an existing key.
    fn set_expiry(&mut self, key: &[u8], expire_at: Option<u64>) {
        let seq = self.seq;
        if let Some(entry) = self.entries.get_mut(key) {
            match (entry.expire_at.is_some(), expire_at.is_some()) {
                (false, true) => self.volatile += 1,
                (true, false) => self.volatile -= 1,
                _ => {}
            }
            entry.expire_at = expire_at;
            entry.version = seq;
        }
    }

    /// Deletes `key` if its container became empty, as Redis does after HDEL, LPOP, SREM...
    fn drop_if_empty(&mut self, key: &[u8]) {
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.value.is_empty_container())
        {
            self.remove(key);
        }
    }

    /// The container at `key` for a write, created with `make` if absent; WRONGTYPE if the key
    /// holds another type. `pick` selects the variant.
    fn container_mut<T>(
        &mut self,
        key: &Bytes,
        now: u64,
        kind: Kind,
        make: fn() -> Value,
        pick: fn(&mut Value) -> Option<&mut T>,
    ) -> KsResult<&mut T> {
        self.expire_if_needed(key, now);
        match self.entries.get(key) {
            Some(entry) if entry.value.kind() != kind => {
                return Err(KeyspaceError::WrongType);
            }
            Some(_) => {}
            None => {
                self.store(key.clone(), make(), None);
            }
        }
        let seq = self.seq;
        let entry = self.entries.get_mut(key).expect("present");
        entry.version = seq;
        pick(&mut entry.value).ok_or(KeyspaceError::WrongType)
    }

    /// A copy of `key`'s entry as stored (expired or not), for undo logs.
    pub fn entry_snapshot(&self, key: &[u8]) -> Option<Entry> {
        self.entries.get(key).cloned()
    }

    /// Puts back an entry saved by [`Keyspace::entry_snapshot`] (`None`: the key was absent).
    pub fn restore_entry(&mut self, key: Bytes, entry: Option<Entry>) {
        let had_ttl = |e: &Entry| e.expire_at.is_some();
        match (self.entries.get_mut(&key), entry) {
            (Some(current), Some(saved)) => {
                match (had_ttl(current), had_ttl(&saved)) {
                    (true, false) => self.volatile -= 1,
                    (false, true) => self.volatile += 1,
                    _ => {}
                }
                *current = saved;
            }
            (Some(_), None) => {
                if let Some(old) = self.entries.remove(&key)
                    && had_ttl(&old)
                {
                    self.volatile -= 1;
                }
            }
            (None, Some(saved)) => {
                if had_ttl(&saved) {
                    self.volatile += 1;
                }
                self.entries.insert(key, saved);
            }
            (None, None) => {}
        }
    }

    /// The version WATCH records for `key`.
    pub fn watch(&self, key: &Bytes, now: u64) -> WatchToken {
        let version = match self.lookup(key, now) {
            Some(e) => e.version,
            None => self.tombstones.get(key).copied().unwrap_or(0),
        };
        WatchToken {
            key: key.clone(),
            version,
            seq: self.seq,
        }
    }

    /// Whether `token`'s key was modified since the WATCH that produced it. Conservative: a
    /// watch of an absent key older than the remembered deletions counts as modified.
    pub fn watch_broken(&self, token: &WatchToken, now: u64) -> bool {
        match self.lookup(&token.key, now) {
            Some(e) => e.version != token.version,
            None => match self.tombstones.get(&token.key) {
                Some(&deleted) => deleted != token.version,
                None => token.version != 0 || token.seq < self.tombstone_floor,
            },
        }
    }

    /// Up to `limit` keys that are expired at `now`, scanning from slot `cursor`; returns them
    /// and the cursor to continue from. The active expiry cycle proposes their removal.
    pub fn expired_keys(&self, cursor: u64, limit: usize, now: u64) -> (Vec<Bytes>, u64) {
        if self.volatile == 0 {
            return (Vec::new(), 0);
        }
        let mut found = Vec::new();
        let next = self.entries.scan(cursor, limit * 4, |k, e| {
            if e.is_expired(now) && found.len() < limit {
                found.push(k.clone());
            }
        });
        (found, next)
    }

    /// Removes every key (FLUSHALL/FLUSHDB); every outstanding WATCH breaks.
    fn flush(&mut self) {
        self.entries.clear();
        self.volatile = 0;
        self.tombstones.clear();
        self.tombstone_floor = self.seq + 1;
    }
}

/// Test helper for the family files: parses `words` (command name first) as if received at
/// `now` with `seed`, and applies it; parse errors become error replies.
#[cfg(test)]
fn run_command(ks: &mut Keyspace, now: u64, seed: u64, words: &[&str]) -> crate::reply::Reply {
    let args: Vec<Bytes> = words[1..]
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    let parse_ctx = ParseCtx { now_ms: now, seed };
    match parse(words[0], &args, &parse_ctx).expect("known command") {
        Ok(op) => op.apply(ks, Ctx { now_ms: now }),
        Err(e) => crate::reply::Reply::error(e),
    }
}

/// A small deterministic generator (SplitMix64) for SPOP/SRANDMEMBER/RANDOMKEY: the seed
/// travels in the operation so replicas pick the same members.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

/// Clamps a Redis range `start..=stop` (negative indexes count from the end) to `0..len`;
/// `None` if it is empty.
pub fn clamp_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len && stop >= 0).then_some((start as usize, stop as usize))
}
