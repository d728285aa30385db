//! The set family: SADD, SREM, SMEMBERS, SISMEMBER, SCARD, SPOP, SRANDMEMBER.
//!
//! SPOP and SRANDMEMBER pick members with a generator seeded by the operation, over the set's
//! deterministic slot order, so every replica pops the same members.

use bytes::Bytes;

use super::op::Op;
use super::{Keyspace, KeyspaceError, Kind, KsResult, ParseCtx, ScanMap, SplitMix, Value};
use crate::args::{Args, parse_i64};
use crate::reply::Reply;

/// Most members `SRANDMEMBER key -count` returns.
const MAX_RANDOM_REPEATS: i64 = 16 * 1024 * 1024;

pub(super) fn parse(name: &str, a: &[Bytes], ctx: &ParseCtx) -> Option<KsResult<Op>> {
    let mut args = Args::new(a);
    let op = match name {
        "sadd" | "srem" => {
            let key = args.take();
            let members = args.rest().to_vec();
            Ok(if name == "sadd" {
                Op::SAdd { key, members }
            } else {
                Op::SRem { key, members }
            })
        }
        "smembers" => Ok(Op::SMembers { key: args.take() }),
        "sismember" => Ok(Op::SIsMember {
            key: args.take(),
            member: args.take(),
        }),
        "scard" => Ok(Op::SCard { key: args.take() }),
        "spop" => {
            let key = args.take();
            match args.next_arg().map(|c| parse_i64(c)) {
                None => Ok(Op::SPop {
                    key,
                    count: None,
                    seed: ctx.seed,
                }),
                Some(Some(c)) if c >= 0 => Ok(Op::SPop {
                    key,
                    count: Some(c as u64),
                    seed: ctx.seed,
                }),
                Some(_) => Err(KeyspaceError::NotPositive),
            }
        }
        "srandmember" => {
            let key = args.take();
            match args.next_arg().map(|c| parse_i64(c)) {
                None => Ok(Op::SRandMember {
                    key,
                    count: None,
                    seed: ctx.seed,
                }),
                // Redis refuses i64::MIN. Negative counts (repeats allowed) are also capped
                // here, so one command cannot build an unbounded reply.
                Some(Some(c)) if c < -MAX_RANDOM_REPEATS => {
                    Err(KeyspaceError::OutOfRange(if c == i64::MIN {
                        -i64::MAX
                    } else {
                        -MAX_RANDOM_REPEATS
                    }))
                }
                Some(Some(c)) => Ok(Op::SRandMember {
                    key,
                    count: Some(c),
                    seed: ctx.seed,
                }),
                Some(None) => Err(KeyspaceError::NotInteger),
            }
        }
        _ => return None,
    };
    if !args.is_done() && matches!(name, "spop" | "srandmember") {
        return Some(Err(KeyspaceError::Syntax));
    }
    Some(op)
}

fn pick_set(value: &mut Value) -> Option<&mut ScanMap<()>> {
    match value {
        Value::Set(s) => Some(s),
        _ => None,
    }
}

fn new_set() -> Value {
    Value::Set(Box::default())
}

/// A member chosen by `rng` among the set's slots.
fn random_member(set: &ScanMap<()>, rng: &mut SplitMix) -> Option<Bytes> {
    let slots = set.capacity_slots();
    if slots == 0 {
        return None;
    }
    set.entry_at_or_after(rng.below(slots))
        .map(|(m, _)| m.clone())
}

impl Keyspace {
    /// The live set at `key`, if any; WRONGTYPE for another type.
    fn set_at(&self, key: &[u8], now: u64) -> KsResult<Option<&ScanMap<()>>> {
        match self.lookup(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Set(s)) => Ok(Some(s)),
            Some(_) => Err(KeyspaceError::WrongType),
        }
    }

    pub(super) fn sadd(&mut self, key: &Bytes, members: Vec<Bytes>, now: u64) -> KsResult<Reply> {
        let set = self.container_mut(key, now, Kind::Set, new_set, pick_set)?;
        let added = members
            .into_iter()
            .filter(|m| set.insert(m.clone(), ()).is_none())
            .count();
        Ok(Reply::Int(added as i64))
    }

    pub(super) fn srem(&mut self, key: &Bytes, members: &[Bytes], now: u64) -> KsResult<Reply> {
        if self.set_at(key, now)?.is_none() {
            return Ok(Reply::Int(0));
        }
        let set = self.container_mut(key, now, Kind::Set, new_set, pick_set)?;
        let removed = members.iter().filter(|m| set.remove(m).is_some()).count();
        self.drop_if_empty(key);
        Ok(Reply::Int(removed as i64))
    }

    pub(super) fn smembers(&self, key: &Bytes, now: u64) -> KsResult<Reply> {
        let members = self
            .set_at(key, now)?
            .map_or_else(Vec::new, |s| s.keys().cloned().map(Reply::Bulk).collect());
        Ok(Reply::Set(members))
    }

    pub(super) fn sismember(&self, key: &Bytes, member: &[u8], now: u64) -> KsResult<Reply> {
        Ok(Reply::Int(
            self.set_at(key, now)?
                .is_some_and(|s| s.contains_key(member)) as i64,
        ))
    }

    pub(super) fn scard(&self, key: &Bytes, now: u64) -> KsResult<Reply> {
        Ok(Reply::Int(
            self.set_at(key, now)?.map_or(0, ScanMap::len) as i64
        ))
    }

    pub(super) fn spop(
        &mut self,
        key: &Bytes,
        count: Option<u64>,
        seed: u64,
        now: u64,
    ) -> KsResult<Reply> {
        let Some(len) = self.set_at(key, now)?.map(ScanMap::len) else {
            return Ok(if count.is_some() {
                Reply::Set(Vec::new())
            } else {
                Reply::Nil
            });
        };
        let take = count.unwrap_or(1).min(len as u64) as usize;
        let set = self.container_mut(key, now, Kind::Set, new_set, pick_set)?;
        let mut rng = SplitMix::new(seed);
        let mut popped = Vec::with_capacity(take);
        for _ in 0..take {
            if let Some(member) = random_member(set, &mut rng) {
                set.remove(&member);
                popped.push(member);
            }
        }
        self.drop_if_empty(key);
        Ok(match count {
            None => Reply::opt_bulk(popped.pop()),
            Some(_) => Reply::Set(popped.into_iter().map(Reply::Bulk).collect()),
        })
    }

    pub(super) fn srandmember(
        &self,
        key: &Bytes,
        count: Option<i64>,
        seed: u64,
        now: u64,
    ) -> KsResult<Reply> {
        let set = self.set_at(key, now)?;
        let mut rng = SplitMix::new(seed);
        let Some(count) = count else {
            return Ok(Reply::opt_bulk(
                set.and_then(|s| random_member(s, &mut rng)),
            ));
        };
        let Some(set) = set else {
            return Ok(Reply::Array(Vec::new()));
        };
        if count < 0 {
            // Repeats allowed: exactly |count| picks.
            let picks = (0..count.unsigned_abs()).filter_map(|_| random_member(set, &mut rng));
            return Ok(Reply::bulks(picks));
        }
        let wanted = (count as usize).min(set.len());
        if wanted == set.len() {
            return Ok(Reply::bulks(set.keys().cloned()));
        }
        // Distinct members by rejection: `wanted` < len here, so this terminates.
        let mut chosen: Vec<Bytes> = Vec::with_capacity(wanted);
        let mut seen = std::collections::HashSet::new();
        while chosen.len() < wanted {
            if let Some(member) = random_member(set, &mut rng)
                && seen.insert(member.clone())
            {
                chosen.push(member);
            }
        }
        Ok(Reply::bulks(chosen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ks: &mut Keyspace, seed: u64, words: &[&str]) -> Reply {
        super::super::run_command(ks, 0, seed, words)
    }

    #[test]
    fn set_commands_follow_redis() {
        let mut ks = Keyspace::new();
        assert_eq!(
            run(&mut ks, 1, &["sadd", "s", "a", "b", "c", "a"]),
            Reply::Int(3)
        );
        assert_eq!(run(&mut ks, 1, &["sadd", "s", "c", "d"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 1, &["scard", "s"]), Reply::Int(4));
        assert_eq!(run(&mut ks, 1, &["sismember", "s", "a"]), Reply::Int(1));
        assert_eq!(run(&mut ks, 1, &["sismember", "s", "z"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 1, &["srem", "s", "a", "z"]), Reply::Int(1));
        let Reply::Set(members) = run(&mut ks, 1, &["smembers", "s"]) else {
            panic!()
        };
        assert_eq!(members.len(), 3);
        let Reply::Array(sample) = run(&mut ks, 1, &["srandmember", "s", "2"]) else {
            panic!()
        };
        assert_eq!(sample.len(), 2);
        assert_ne!(
            sample[0], sample[1],
            "positive counts give distinct members"
        );
        let Reply::Array(sample) = run(&mut ks, 1, &["srandmember", "s", "-7"]) else {
            panic!()
        };
        assert_eq!(sample.len(), 7);
        let Reply::Array(all) = run(&mut ks, 1, &["srandmember", "s", "10"]) else {
            panic!()
        };
        assert_eq!(all.len(), 3);
        assert!(matches!(run(&mut ks, 1, &["spop", "s"]), Reply::Bulk(_)));
        let Reply::Set(rest) = run(&mut ks, 1, &["spop", "s", "5"]) else {
            panic!()
        };
        assert_eq!(rest.len(), 2);
        assert_eq!(run(&mut ks, 1, &["exists", "s"]), Reply::Int(0));
        assert_eq!(run(&mut ks, 1, &["spop", "s"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, 1, &["spop", "s", "-1"]),
            Reply::error(KeyspaceError::NotPositive)
        );
        run(&mut ks, 1, &["sadd", "s", "a"]);
        assert_eq!(
            run(&mut ks, 1, &["srandmember", "s", "-9223372036854775808"]),
            Reply::Error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807".into())
        );
        assert_eq!(
            run(&mut ks, 1, &["srandmember", "s", "-100000000"]),
            Reply::error(KeyspaceError::OutOfRange(-16 * 1024 * 1024))
        );
        assert!(
            matches!(run(&mut ks, 1, &["srandmember", "s", "9223372036854775807"]), Reply::Array(v) if v.len() == 1)
        );
        assert!(
            matches!(run(&mut ks, 1, &["srandmember", "s", "-1000"]), Reply::Array(v) if v.len() == 1000)
        );
        run(&mut ks, 1, &["set", "str", "x"]);
        assert_eq!(
            run(&mut ks, 1, &["sadd", "str", "x"]),
            Reply::error(KeyspaceError::WrongType)
        );
    }

    #[test]
    fn spop_is_deterministic_for_a_seed() {
        let build = || {
            let mut ks = Keyspace::new();
            for i in 0..50 {
                run(&mut ks, 0, &["sadd", "s", &i.to_string()]);
            }
            ks
        };
        let (mut a, mut b) = (build(), build());
        for seed in 0..20 {
            assert_eq!(
                run(&mut a, seed, &["spop", "s", "2"]),
                run(&mut b, seed, &["spop", "s", "2"])
            );
        }
        assert_eq!(a, b);
    }
}
