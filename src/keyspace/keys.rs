//! The generic key family: DEL/UNLINK, EXISTS, TYPE, RENAME(NX), the EXPIRE and TTL families,
//! PERSIST, KEYS, SCAN, RANDOMKEY, DBSIZE, FLUSHALL/FLUSHDB, and the expiry purge.

use bytes::Bytes;

use super::op::{ExpireCond, Op};
use super::scan::{ScanOp, parse_scan};
use super::{Keyspace, KeyspaceError, KsResult, ParseCtx, SplitMix};
use crate::args::{Args, is, parse_i64};
use crate::glob;
use crate::reply::Reply;

pub(super) fn parse(name: &str, a: &[Bytes], ctx: &ParseCtx) -> Option<KsResult<Op>> {
    let mut args = Args::new(a);
    let now = ctx.now_ms as i64;
    let op = match name {
        "del" | "unlink" => Ok(Op::Del { keys: a.to_vec() }),
        "exists" => Ok(Op::Exists { keys: a.to_vec() }),
        "type" => Ok(Op::Type { key: args.take() }),
        "rename" | "renamenx" => Ok(Op::Rename {
            from: args.take(),
            to: args.take(),
            nx: name == "renamenx",
        }),
        "expire" | "pexpire" | "expireat" | "pexpireat" => {
            let key = args.take();
            let (unit, relative) = match name {
                "expire" => (1000, true),
                "pexpire" => (1, true),
                "expireat" => (1000, false),
                _ => (1, false),
            };
            parse_expire(&mut args, name, unit, relative, now).map(|(at_ms, cond)| Op::Expire {
                key,
                at_ms,
                cond,
            })
        }
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => Ok(Op::Ttl {
            key: args.take(),
            millis: name.starts_with('p'),
            absolute: name.ends_with("expiretime"),
        }),
        "persist" => Ok(Op::Persist { key: args.take() }),
        "keys" => Ok(Op::Keys {
            pattern: args.take(),
        }),
        "scan" => parse_scan(&mut args, false).map(Op::Scan),
        "randomkey" => Ok(Op::RandomKey { seed: ctx.seed }),
        "dbsize" => Ok(Op::DbSize),
        "flushall" | "flushdb" => match args.next_arg() {
            None => Ok(Op::FlushAll),
            Some(mode) if is(mode, "ASYNC") || is(mode, "SYNC") => Ok(Op::FlushAll),
            Some(_) => Err(KeyspaceError::Syntax),
        },
        _ => return None,
    };
    Some(op)
}

/// Reads the time and options of an EXPIRE-family command as an absolute time in ms.
fn parse_expire(
    args: &mut Args<'_>,
    name: &str,
    unit: i64,
    relative: bool,
    now: i64,
) -> KsResult<(i64, ExpireCond)> {
    let value = parse_i64(&args.take()).ok_or(KeyspaceError::NotInteger)?;
    let invalid = || KeyspaceError::InvalidExpire(name.to_owned());
    let mut at = value.checked_mul(unit).ok_or_else(invalid)?;
    if relative {
        at = at.checked_add(now).ok_or_else(invalid)?;
    }
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    while let Some(opt) = args.next_arg() {
        match opt.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return Err(KeyspaceError::UnsupportedOption(
                    String::from_utf8_lossy(opt).into_owned(),
                ));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(KeyspaceError::ExpireNxConflict);
    }
    if gt && lt {
        return Err(KeyspaceError::ExpireGtLtConflict);
    }
    let cond = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCond::IfNoTtl,
        (_, _, true, _) => ExpireCond::IfLater,
        (_, _, _, true) => ExpireCond::IfEarlier,
        (_, true, ..) => ExpireCond::IfTtl,
        _ => ExpireCond::Always,
    };
    Ok((at, cond))
}

impl Keyspace {
    pub(super) fn del(&mut self, keys: &[Bytes], now: u64) -> Reply {
        let mut removed = 0;
        for key in keys {
            self.expire_if_needed(key, now);
            if self.remove(key).is_some() {
                removed += 1;
            }
        }
        Reply::Int(removed)
    }

    pub(super) fn exists(&self, keys: &[Bytes], now: u64) -> Reply {
        Reply::Int(
            keys.iter()
                .filter(|k| self.lookup(k, now).is_some())
                .count() as i64,
        )
    }

    pub(super) fn type_of(&self, key: &Bytes, now: u64) -> Reply {
        Reply::Status(
            self.lookup(key, now)
                .map_or("none", |e| e.value.type_name())
                .to_owned(),
        )
    }

    pub(super) fn rename(
        &mut self,
        from: &Bytes,
        to: Bytes,
        nx: bool,
        now: u64,
    ) -> KsResult<Reply> {
        if self.lookup(from, now).is_none() {
            return Err(KeyspaceError::NoSuchKey);
        }
        if from == &to {
            return Ok(if nx { Reply::Int(0) } else { Reply::ok() });
        }
        if nx && self.lookup(&to, now).is_some() {
            return Ok(Reply::Int(0));
        }
        let entry = self.remove(from).expect("checked above");
        self.expire_if_needed(&to, now);
        self.store(to, entry.value, entry.expire_at);
        Ok(if nx { Reply::Int(1) } else { Reply::ok() })
    }

    pub(super) fn expire(
        &mut self,
        key: &Bytes,
        at: i64,
        cond: ExpireCond,
        now: u64,
    ) -> KsResult<Reply> {
        let Some(entry) = self.lookup_mut(key, now) else {
            return Ok(Reply::Int(0));
        };
        let allowed = match (cond, entry.expire_at) {
            (ExpireCond::Always, _) => true,
            (ExpireCond::IfNoTtl, current) => current.is_none(),
            (ExpireCond::IfTtl, current) => current.is_some(),
            (ExpireCond::IfLater, current) => current.is_some_and(|c| at > c as i64),
            (ExpireCond::IfEarlier, current) => current.is_none_or(|c| at < c as i64),
        };
        if !allowed {
            return Ok(Reply::Int(0));
        }
        if at <= now as i64 {
            self.remove(key);
        } else {
            self.set_expiry(key, Some(at as u64));
        }
        Ok(Reply::Int(1))
    }

    pub(super) fn ttl(&self, key: &Bytes, millis: bool, absolute: bool, now: u64) -> Reply {
        let Some(entry) = self.lookup(key, now) else {
            return Reply::Int(-2);
        };
        let Some(at) = entry.expire_at else {
            return Reply::Int(-1);
        };
        let value = match (absolute, millis) {
            (true, true) => at,
            (true, false) => at / 1000,
            (false, true) => at - now,
            (false, false) => (at - now + 500) / 1000,
        };
        Reply::Int(value as i64)
    }

    pub(super) fn persist(&mut self, key: &Bytes, now: u64) -> Reply {
        match self.lookup_mut(key, now) {
            Some(entry) if entry.expire_at.is_some() => {
                self.set_expiry(key, None);
                Reply::Int(1)
            }
            _ => Reply::Int(0),
        }
    }

    pub(super) fn keys(&self, pattern: &[u8], now: u64) -> Reply {
        let all = pattern == b"*";
        Reply::bulks(
            self.entries
                .iter()
                .filter(|(k, e)| !e.is_expired(now) && (all || glob::matches(pattern, k)))
                .map(|(k, _)| k.clone()),
        )
    }

    pub(super) fn scan(&self, scan: &ScanOp, now: u64) -> Reply {
        let mut found = Vec::new();
        let next = self.entries.scan(scan.cursor, scan.count, |k, e| {
            let type_ok = scan
                .kind
                .as_deref()
                .is_none_or(|t| t == e.value.type_name());
            let match_ok = scan.pattern.as_ref().is_none_or(|p| glob::matches(p, k));
            if !e.is_expired(now) && type_ok && match_ok {
                found.push(Reply::Bulk(k.clone()));
            }
        });
        Reply::Array(vec![Reply::bulk_display(next), Reply::Array(found)])
    }

    pub(super) fn random_key(&self, seed: u64, now: u64) -> Reply {
        let mut rng = SplitMix::new(seed);
        for _ in 0..100 {
            let slots = self.entries.capacity_slots();
            if slots == 0 {
                break;
            }
            match self.entries.entry_at_or_after(rng.below(slots)) {
                Some((k, e)) if !e.is_expired(now) => return Reply::Bulk(k.clone()),
                Some(_) => continue,
                None => break,
            }
        }
        Reply::Nil
    }

    pub(super) fn purge_expired(&mut self, keys: &[Bytes], now: u64) -> Reply {
        let before = self.expired_total;
        for key in keys {
            self.expire_if_needed(key, now);
        }
        Reply::Int((self.expired_total - before) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Ctx;
    use super::*;

    fn run(ks: &mut Keyspace, now: u64, words: &[&str]) -> Reply {
        super::super::run_command(ks, now, 3, words)
    }

    #[test]
    fn expire_family_follows_redis_7() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["set", "k", "v"]);
        assert_eq!(run(&mut ks, 0, &["ttl", "k"]), Reply::Int(-1));
        assert_eq!(run(&mut ks, 0, &["ttl", "nokey"]), Reply::Int(-2));
        assert_eq!(
            run(&mut ks, 0, &["expire", "k", "100", "XX"]),
            Reply::Int(0)
        );
        assert_eq!(
            run(&mut ks, 0, &["expire", "k", "100", "NX"]),
            Reply::Int(1)
        );
        assert_eq!(run(&mut ks, 0, &["expire", "k", "50", "GT"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["expire", "k", "50", "LT"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["ttl", "k"]), Reply::Int(50));
        assert_eq!(
            run(&mut ks, 400, &["ttl", "k"]),
            Reply::Int(50),
            "rounded like Redis"
        );
        assert_eq!(run(&mut ks, 0, &["pexpiretime", "k"]), Reply::Int(50_000));
        assert_eq!(run(&mut ks, 0, &["expiretime", "k"]), Reply::Int(50));
        assert_eq!(
            run(&mut ks, 0, &["expire", "k", "1", "NX", "XX"]),
            Reply::error(KeyspaceError::ExpireNxConflict)
        );
        assert_eq!(
            run(&mut ks, 0, &["expire", "k", "1", "GT", "LT"]),
            Reply::error(KeyspaceError::ExpireGtLtConflict)
        );
        assert_eq!(run(&mut ks, 0, &["persist", "k"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 0, &["persist", "k"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["expire", "k", "-1"]), Reply::Int(1));
        assert_eq!(
            run(&mut ks, 0, &["exists", "k"]),
            Reply::Int(0),
            "a past expiry deletes"
        );
        assert_eq!(
            run(&mut ks, 0, &["expire", "k", "9223372036854775807"]),
            Reply::Error("ERR invalid expire time in 'expire' command".into())
        );
    }

    #[test]
    fn rename_moves_value_and_ttl() {
        let mut ks = Keyspace::new();
        run(&mut ks, 0, &["set", "a", "1", "PX", "500"]);
        assert_eq!(run(&mut ks, 0, &["rename", "a", "b"]), Reply::ok());
        assert_eq!(run(&mut ks, 0, &["pttl", "b"]), Reply::Int(500));
        assert_eq!(
            run(&mut ks, 0, &["rename", "a", "b"]),
            Reply::error(KeyspaceError::NoSuchKey)
        );
        run(&mut ks, 0, &["set", "c", "3"]);
        assert_eq!(run(&mut ks, 0, &["renamenx", "b", "c"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 0, &["renamenx", "b", "d"]), Reply::Int(1));
        assert_eq!(
            run(&mut ks, 0, &["type", "d"]),
            Reply::Status("string".into())
        );
        assert_eq!(
            run(&mut ks, 0, &["type", "b"]),
            Reply::Status("none".into())
        );
    }

    #[test]
    fn keys_scan_and_expiry_purge() {
        let mut ks = Keyspace::new();
        for i in 0..30 {
            run(&mut ks, 0, &["set", &format!("user:{i}"), "x"]);
        }
        run(&mut ks, 0, &["rpush", "list", "x"]);
        run(&mut ks, 0, &["set", "gone", "x", "PX", "10"]);
        let Reply::Array(keys) = run(&mut ks, 100, &["keys", "user:1*"]) else {
            panic!()
        };
        assert_eq!(keys.len(), 11);
        let Reply::Array(all) = run(&mut ks, 100, &["keys", "*"]) else {
            panic!()
        };
        assert_eq!(all.len(), 31, "the expired key is invisible");
        let mut cursor = "0".to_owned();
        let mut seen = 0;
        loop {
            let Reply::Array(page) = run(
                &mut ks,
                100,
                &["scan", &cursor, "COUNT", "7", "TYPE", "string"],
            ) else {
                panic!()
            };
            let Reply::Bulk(next) = &page[0] else {
                panic!()
            };
            let Reply::Array(found) = &page[1] else {
                panic!()
            };
            seen += found.len();
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen, 30);
        assert_eq!(
            run(&mut ks, 100, &["scan", "x"]),
            Reply::error(KeyspaceError::InvalidCursor)
        );
        assert_eq!(run(&mut ks, 100, &["dbsize"]), Reply::Int(32));
        let (expired, _) = ks.expired_keys(0, 10, 100);
        assert_eq!(expired, vec![Bytes::from("gone")]);
        assert_eq!(ks.clone().volatile_count(), 1);
        let purge = Op::PurgeExpired { keys: expired };
        assert_eq!(purge.apply(&mut ks, Ctx { now_ms: 100 }), Reply::Int(1));
        assert_eq!(run(&mut ks, 100, &["dbsize"]), Reply::Int(31));
        assert_eq!(ks.volatile_count(), 0);
        assert!(matches!(run(&mut ks, 100, &["randomkey"]), Reply::Bulk(_)));
        assert_eq!(run(&mut ks, 100, &["flushall"]), Reply::ok());
        assert_eq!(run(&mut ks, 100, &["randomkey"]), Reply::Nil);
    }
}
