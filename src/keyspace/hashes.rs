//! The hash family: HSET/HMSET/HSETNX, HGET, HMGET, HGETALL, HDEL, HEXISTS, HLEN, HKEYS,
//! HVALS, HSTRLEN, HINCRBY, HINCRBYFLOAT, HSCAN.

use bytes::Bytes;

use super::op::{HSetMode, Op};
use super::scan::{ScanOp, parse_scan};
use super::{Keyspace, KeyspaceError, Kind, KsResult, ParseCtx, ScanMap, Value};
use crate::args::{Args, parse_f64, parse_i64};
use crate::glob;
use crate::reply::{Reply, format_double};

pub(super) fn parse(name: &str, a: &[Bytes], _ctx: &ParseCtx) -> Option<KsResult<Op>> {
    let mut args = Args::new(a);
    let op = match name {
        "hset" | "hmset" | "hsetnx" => {
            let key = args.take();
            let rest = args.rest();
            if !rest.len().is_multiple_of(2) || rest.is_empty() {
                Err(KeyspaceError::WrongArity(name.to_owned()))
            } else {
                let mode = match name {
                    "hset" => HSetMode::HSet,
                    "hmset" => HSetMode::HMSet,
                    _ => HSetMode::HSetNx,
                };
                let pairs = rest
                    .chunks_exact(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                Ok(Op::HSet { key, pairs, mode })
            }
        }
        "hget" => Ok(Op::HGet {
            key: args.take(),
            field: args.take(),
        }),
        "hmget" => Ok(Op::HMGet {
            key: args.take(),
            fields: args.rest().to_vec(),
        }),
        "hgetall" => Ok(Op::HGetAll { key: args.take() }),
        "hdel" => Ok(Op::HDel {
            key: args.take(),
            fields: args.rest().to_vec(),
        }),
        "hexists" => Ok(Op::HExists {
            key: args.take(),
            field: args.take(),
        }),
        "hlen" => Ok(Op::HLen { key: args.take() }),
        "hkeys" => Ok(Op::HKeys { key: args.take() }),
        "hvals" => Ok(Op::HVals { key: args.take() }),
        "hstrlen" => Ok(Op::HStrLen {
            key: args.take(),
            field: args.take(),
        }),
        "hincrby" => {
            let (key, field) = (args.take(), args.take());
            parse_i64(&args.take())
                .ok_or(KeyspaceError::NotInteger)
                .map(|by| Op::HIncrBy { key, field, by })
        }
        "hincrbyfloat" => {
            let (key, field) = (args.take(), args.take());
            parse_f64(&args.take())
                .ok_or(KeyspaceError::NotFloat)
                .map(|by| Op::HIncrByFloat { key, field, by })
        }
        "hscan" => {
            let key = args.take();
            parse_scan(&mut args, true).map(|scan| Op::HScan { key, scan })
        }
        _ => return None,
    };
    Some(op)
}

fn pick_hash(value: &mut Value) -> Option<&mut ScanMap<Bytes>> {
    match value {
        Value::Hash(h) => Some(h),
        _ => None,
    }
}

fn new_hash() -> Value {
    Value::Hash(Box::default())
}

impl Keyspace {
    /// The live hash at `key`, if any; WRONGTYPE for another type.
    fn hash(&self, key: &[u8], now: u64) -> KsResult<Option<&ScanMap<Bytes>>> {
        match self.lookup(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(KeyspaceError::WrongType),
        }
    }

    pub(super) fn hset(
        &mut self,
        key: &Bytes,
        pairs: Vec<(Bytes, Bytes)>,
        mode: HSetMode,
        now: u64,
    ) -> KsResult<Reply> {
        if mode == HSetMode::HSetNx
            && self
                .hash(key, now)?
                .is_some_and(|h| h.contains_key(&pairs[0].0))
        {
            return Ok(Reply::Int(0));
        }
        let hash = self.container_mut(key, now, Kind::Hash, new_hash, pick_hash)?;
        let mut added = 0;
        for (field, value) in pairs {
            if hash.insert(field, value).is_none() {
                added += 1;
            }
        }
        Ok(match mode {
            HSetMode::HSet => Reply::Int(added),
            HSetMode::HMSet => Reply::ok(),
            HSetMode::HSetNx => Reply::Int(1),
        })
    }

    pub(super) fn hget(&self, key: &Bytes, field: &[u8], now: u64) -> KsResult<Reply> {
        Ok(Reply::opt_stored(
            self.hash(key, now)?.and_then(|h| h.get(field)),
        ))
    }

    pub(super) fn hmget(&self, key: &Bytes, fields: &[Bytes], now: u64) -> KsResult<Reply> {
        let hash = self.hash(key, now)?;
        Ok(Reply::Array(
            fields
                .iter()
                .map(|f| Reply::opt_stored(hash.and_then(|h| h.get(f))))
                .collect(),
        ))
    }

    pub(super) fn hgetall(&self, key: &Bytes, now: u64) -> KsResult<Reply> {
        let pairs = self.hash(key, now)?.map_or_else(Vec::new, |h| {
            h.iter()
                .map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v.clone())))
                .collect()
        });
        Ok(Reply::Map(pairs))
    }

    pub(super) fn hdel(&mut self, key: &Bytes, fields: &[Bytes], now: u64) -> KsResult<Reply> {
        if self.hash(key, now)?.is_none() {
            return Ok(Reply::Int(0));
        }
        let hash = self.container_mut(key, now, Kind::Hash, new_hash, pick_hash)?;
        let removed = fields.iter().filter(|f| hash.remove(f).is_some()).count();
        self.drop_if_empty(key);
        Ok(Reply::Int(removed as i64))
    }

    pub(super) fn hexists(&self, key: &Bytes, field: &[u8], now: u64) -> KsResult<Reply> {
        Ok(Reply::Int(
            self.hash(key, now)?.is_some_and(|h| h.contains_key(field)) as i64,
        ))
    }

    pub(super) fn hlen(&self, key: &Bytes, now: u64) -> KsResult<Reply> {
        Ok(Reply::Int(
            self.hash(key, now)?.map_or(0, ScanMap::len) as i64
        ))
    }

    pub(super) fn hkeys_or_vals(&self, key: &Bytes, keys: bool, now: u64) -> KsResult<Reply> {
        let items = self.hash(key, now)?.map_or_else(Vec::new, |h| {
            h.iter()
                .map(|(f, v)| Reply::Bulk(if keys { f.clone() } else { v.clone() }))
                .collect()
        });
        Ok(Reply::Array(items))
    }

    pub(super) fn hstrlen(&self, key: &Bytes, field: &[u8], now: u64) -> KsResult<Reply> {
        Ok(Reply::Int(
            self.hash(key, now)?
                .and_then(|h| h.get(field))
                .map_or(0, Bytes::len) as i64,
        ))
    }

    pub(super) fn hincr_by(
        &mut self,
        key: &Bytes,
        field: Bytes,
        by: i64,
        now: u64,
    ) -> KsResult<Reply> {
        let current = match self.hash(key, now)?.and_then(|h| h.get(&field)) {
            Some(v) => parse_i64(v).ok_or(KeyspaceError::HashNotInteger)?,
            None => 0,
        };
        let next = current.checked_add(by).ok_or(KeyspaceError::Overflow)?;
        let hash = self.container_mut(key, now, Kind::Hash, new_hash, pick_hash)?;
        hash.insert(field, Bytes::from(next.to_string()));
        Ok(Reply::Int(next))
    }

    pub(super) fn hincr_by_float(
        &mut self,
        key: &Bytes,
        field: Bytes,
        by: f64,
        now: u64,
    ) -> KsResult<Reply> {
        let current = match self.hash(key, now)?.and_then(|h| h.get(&field)) {
            Some(v) => parse_f64(v).ok_or(KeyspaceError::HashNotFloat)?,
            None => 0.0,
        };
        let next = current + by;
        if !next.is_finite() {
            return Err(KeyspaceError::NanOrInfinity);
        }
        let text = Bytes::from(format_double(next));
        let hash = self.container_mut(key, now, Kind::Hash, new_hash, pick_hash)?;
        hash.insert(field, text.clone());
        Ok(Reply::Bulk(text))
    }

    pub(super) fn hscan(&self, key: &Bytes, scan: &ScanOp, now: u64) -> KsResult<Reply> {
        let mut found = Vec::new();
        let next = match self.hash(key, now)? {
            None => 0,
            Some(h) => h.scan(scan.cursor, scan.count, |f, v| {
                if scan.pattern.as_ref().is_none_or(|p| glob::matches(p, f)) {
                    found.push(Reply::Bulk(f.clone()));
                    if !scan.novalues {
                        found.push(Reply::Bulk(v.clone()));
                    }
                }
            }),
        };
        Ok(Reply::Array(vec![
            Reply::bulk_display(next),
            Reply::Array(found),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ks: &mut Keyspace, words: &[&str]) -> Reply {
        super::super::run_command(ks, 0, 1, words)
    }

    #[test]
    fn hash_commands_follow_redis() {
        let mut ks = Keyspace::new();
        assert_eq!(
            run(&mut ks, &["hset", "h", "a", "1", "b", "2"]),
            Reply::Int(2)
        );
        assert_eq!(
            run(&mut ks, &["hset", "h", "a", "3", "c", "4"]),
            Reply::Int(1)
        );
        assert_eq!(
            run(&mut ks, &["hset", "h", "a"]),
            Reply::Error("ERR wrong number of arguments for 'hset' command".into())
        );
        assert_eq!(run(&mut ks, &["hsetnx", "h", "a", "9"]), Reply::Int(0));
        assert_eq!(run(&mut ks, &["hsetnx", "h", "d", "9"]), Reply::Int(1));
        assert_eq!(run(&mut ks, &["hmset", "h", "e", "5"]), Reply::ok());
        assert_eq!(run(&mut ks, &["hget", "h", "a"]), Reply::bulk("3"));
        assert_eq!(
            run(&mut ks, &["hmget", "h", "a", "zz"]),
            Reply::Array(vec![Reply::bulk("3"), Reply::Nil])
        );
        assert_eq!(run(&mut ks, &["hlen", "h"]), Reply::Int(5));
        assert_eq!(run(&mut ks, &["hstrlen", "h", "a"]), Reply::Int(1));
        assert_eq!(run(&mut ks, &["hexists", "h", "b"]), Reply::Int(1));
        assert_eq!(
            run(&mut ks, &["hkeys", "h"]),
            Reply::bulks(["a", "b", "c", "d", "e"].map(Bytes::from))
        );
        assert_eq!(run(&mut ks, &["hincrby", "h", "a", "10"]), Reply::Int(13));
        assert_eq!(
            run(&mut ks, &["hincrbyfloat", "h", "a", "0.5"]),
            Reply::bulk("13.5")
        );
        assert_eq!(
            run(&mut ks, &["hincrby", "h", "a", "1"]),
            Reply::error(KeyspaceError::HashNotInteger)
        );
        run(&mut ks, &["hset", "h", "s", "abc"]);
        assert_eq!(
            run(&mut ks, &["hincrbyfloat", "h", "s", "1"]),
            Reply::error(KeyspaceError::HashNotFloat)
        );
        assert_eq!(
            run(&mut ks, &["hdel", "h", "a", "b", "nope"]),
            Reply::Int(2)
        );
        let Reply::Map(all) = run(&mut ks, &["hgetall", "h"]) else {
            panic!()
        };
        assert_eq!(all.len(), 4);
        run(&mut ks, &["set", "str", "x"]);
        assert_eq!(
            run(&mut ks, &["hget", "str", "a"]),
            Reply::error(KeyspaceError::WrongType)
        );
        assert_eq!(
            run(&mut ks, &["hset", "str", "a", "1"]),
            Reply::error(KeyspaceError::WrongType)
        );
        assert_eq!(
            run(&mut ks, &["hdel", "h", "c", "d", "e", "s"]),
            Reply::Int(4)
        );
        assert_eq!(
            run(&mut ks, &["exists", "h"]),
            Reply::Int(0),
            "an emptied hash is deleted"
        );
    }

    #[test]
    fn hscan_walks_all_fields() {
        let mut ks = Keyspace::new();
        for i in 0..25 {
            run(&mut ks, &["hset", "h", &format!("f{i}"), "v"]);
        }
        let mut cursor = "0".to_owned();
        let mut fields = 0;
        loop {
            let Reply::Array(page) =
                run(&mut ks, &["hscan", "h", &cursor, "COUNT", "4", "NOVALUES"])
            else {
                panic!()
            };
            let (Reply::Bulk(next), Reply::Array(found)) = (&page[0], &page[1]) else {
                panic!()
            };
            fields += found.len();
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(fields, 25);
    }
}
