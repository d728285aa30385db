//! The list family: LPUSH, RPUSH, LPOP, RPOP, LLEN, LRANGE, LINDEX, LSET, LREM, LTRIM.

use std::collections::VecDeque;

use bytes::Bytes;

use super::op::Op;
use super::{Keyspace, KeyspaceError, Kind, KsResult, ParseCtx, Value, clamp_range};
use crate::args::{Args, parse_i64};
use crate::reply::Reply;

pub(super) fn parse(name: &str, a: &[Bytes], _ctx: &ParseCtx) -> Option<KsResult<Op>> {
    let mut args = Args::new(a);
    let int = |arg: Bytes| parse_i64(&arg).ok_or(KeyspaceError::NotInteger);
    let op = match name {
        "lpush" | "rpush" => {
            let key = args.take();
            Ok(Op::Push {
                key,
                values: args.rest().to_vec(),
                left: name == "lpush",
            })
        }
        "lpop" | "rpop" => {
            let key = args.take();
            let count = match args.next_arg() {
                None => Ok(None),
                Some(c) => match parse_i64(c) {
                    None => Err(KeyspaceError::NotPositive),
                    Some(c) if c < 0 => Err(KeyspaceError::NotPositive),
                    Some(c) => Ok(Some(c as u64)),
                },
            };
            count.map(|count| Op::Pop {
                key,
                left: name == "lpop",
                count,
            })
        }
        "llen" => Ok(Op::LLen { key: args.take() }),
        "lrange" | "ltrim" => {
            let key = args.take();
            int(args.take()).and_then(|start| {
                int(args.take()).map(|stop| {
                    if name == "lrange" {
                        Op::LRange { key, start, stop }
                    } else {
                        Op::LTrim { key, start, stop }
                    }
                })
            })
        }
        "lindex" => {
            let key = args.take();
            int(args.take()).map(|index| Op::LIndex { key, index })
        }
        "lset" => {
            let key = args.take();
            int(args.take()).map(|index| Op::LSet {
                key,
                index,
                value: args.take(),
            })
        }
        "lrem" => {
            let key = args.take();
            int(args.take()).map(|count| Op::LRem {
                key,
                count,
                value: args.take(),
            })
        }
        _ => return None,
    };
    Some(op)
}

fn pick_list(value: &mut Value) -> Option<&mut VecDeque<Bytes>> {
    match value {
        Value::List(l) => Some(l),
        _ => None,
    }
}

fn new_list() -> Value {
    Value::List(Box::default())
}

/// Resolves a possibly negative list index.
fn resolve(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&i).then_some(i as usize)
}

impl Keyspace {
    /// The live list at `key`, if any; WRONGTYPE for another type.
    fn list(&self, key: &[u8], now: u64) -> KsResult<Option<&VecDeque<Bytes>>> {
        match self.lookup(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::List(l)) => Ok(Some(l)),
            Some(_) => Err(KeyspaceError::WrongType),
        }
    }

    pub(super) fn push(
        &mut self,
        key: &Bytes,
        values: Vec<Bytes>,
        left: bool,
        now: u64,
    ) -> KsResult<Reply> {
        let list = self.container_mut(key, now, Kind::List, new_list, pick_list)?;
        for value in values {
            if left {
                list.push_front(value);
            } else {
                list.push_back(value);
            }
        }
        Ok(Reply::Int(list.len() as i64))
    }

    pub(super) fn pop(
        &mut self,
        key: &Bytes,
        left: bool,
        count: Option<u64>,
        now: u64,
    ) -> KsResult<Reply> {
        if self.list(key, now)?.is_none() {
            return Ok(if count.is_some() {
                Reply::NilArray
            } else {
                Reply::Nil
            });
        }
        let list = self.container_mut(key, now, Kind::List, new_list, pick_list)?;
        let take = count.unwrap_or(1).min(list.len() as u64) as usize;
        let popped: Vec<Bytes> = (0..take)
            .filter_map(|_| {
                if left {
                    list.pop_front()
                } else {
                    list.pop_back()
                }
            })
            .collect();
        self.drop_if_empty(key);
        Ok(match count {
            None => Reply::opt_bulk(popped.into_iter().next()),
            Some(_) => Reply::bulks(popped),
        })
    }

    pub(super) fn llen(&self, key: &Bytes, now: u64) -> KsResult<Reply> {
        Ok(Reply::Int(
            self.list(key, now)?.map_or(0, VecDeque::len) as i64
        ))
    }

    pub(super) fn lrange(&self, key: &Bytes, start: i64, stop: i64, now: u64) -> KsResult<Reply> {
        let Some(list) = self.list(key, now)? else {
            return Ok(Reply::Array(Vec::new()));
        };
        Ok(match clamp_range(start, stop, list.len()) {
            Some((from, to)) => Reply::bulks(list.range(from..=to).cloned()),
            None => Reply::Array(Vec::new()),
        })
    }

    pub(super) fn lindex(&self, key: &Bytes, index: i64, now: u64) -> KsResult<Reply> {
        let list = self.list(key, now)?;
        Ok(Reply::opt_bulk(list.and_then(|l| {
            resolve(index, l.len()).map(|i| l[i].clone())
        })))
    }

    pub(super) fn lset(
        &mut self,
        key: &Bytes,
        index: i64,
        value: Bytes,
        now: u64,
    ) -> KsResult<Reply> {
        let len = self.list(key, now)?.ok_or(KeyspaceError::NoSuchKey)?.len();
        let i = resolve(index, len).ok_or(KeyspaceError::IndexOutOfRange)?;
        let list = self.container_mut(key, now, Kind::List, new_list, pick_list)?;
        list[i] = value;
        Ok(Reply::ok())
    }

    pub(super) fn lrem(
        &mut self,
        key: &Bytes,
        count: i64,
        value: &[u8],
        now: u64,
    ) -> KsResult<Reply> {
        if self
            .list(key, now)?
            .is_none_or(|l| !l.iter().any(|v| v == value))
        {
            return Ok(Reply::Int(0));
        }
        let list = self.container_mut(key, now, Kind::List, new_list, pick_list)?;
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        let mut removed = 0;
        if count >= 0 {
            list.retain(|v| {
                if removed < limit && v == value {
                    removed += 1;
                    false
                } else {
                    true
                }
            });
        } else {
            let mut kept: VecDeque<Bytes> = VecDeque::with_capacity(list.len());
            while let Some(v) = list.pop_back() {
                if removed < limit && v == value {
                    removed += 1;
                } else {
                    kept.push_front(v);
                }
            }
            *list = kept;
        }
        self.drop_if_empty(key);
        Ok(Reply::Int(removed as i64))
    }

    pub(super) fn ltrim(
        &mut self,
        key: &Bytes,
        start: i64,
        stop: i64,
        now: u64,
    ) -> KsResult<Reply> {
        let Some(len) = self.list(key, now)?.map(VecDeque::len) else {
            return Ok(Reply::ok());
        };
        let list = self.container_mut(key, now, Kind::List, new_list, pick_list)?;
        match clamp_range(start, stop, len) {
            Some((from, to)) => {
                list.truncate(to + 1);
                list.drain(..from);
            }
            None => list.clear(),
        }
        self.drop_if_empty(key);
        Ok(Reply::ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ks: &mut Keyspace, words: &[&str]) -> Reply {
        super::super::run_command(ks, 0, 1, words)
    }

    fn list(items: &[&str]) -> Reply {
        Reply::bulks(items.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn list_commands_follow_redis() {
        let mut ks = Keyspace::new();
        assert_eq!(run(&mut ks, &["rpush", "l", "a", "b", "c"]), Reply::Int(3));
        assert_eq!(run(&mut ks, &["lpush", "l", "x", "y"]), Reply::Int(5));
        assert_eq!(
            run(&mut ks, &["lrange", "l", "0", "-1"]),
            list(&["y", "x", "a", "b", "c"])
        );
        assert_eq!(
            run(&mut ks, &["lrange", "l", "-2", "100"]),
            list(&["b", "c"])
        );
        assert_eq!(run(&mut ks, &["lrange", "l", "3", "1"]), list(&[]));
        assert_eq!(run(&mut ks, &["lindex", "l", "-1"]), Reply::bulk("c"));
        assert_eq!(run(&mut ks, &["lindex", "l", "10"]), Reply::Nil);
        assert_eq!(run(&mut ks, &["lset", "l", "1", "X"]), Reply::ok());
        assert_eq!(
            run(&mut ks, &["lset", "l", "9", "X"]),
            Reply::error(KeyspaceError::IndexOutOfRange)
        );
        assert_eq!(
            run(&mut ks, &["lset", "none", "0", "X"]),
            Reply::error(KeyspaceError::NoSuchKey)
        );
        assert_eq!(run(&mut ks, &["lpop", "l"]), Reply::bulk("y"));
        assert_eq!(run(&mut ks, &["rpop", "l", "2"]), list(&["c", "b"]));
        assert_eq!(run(&mut ks, &["lpop", "none", "2"]), Reply::NilArray);
        assert_eq!(run(&mut ks, &["lpop", "none"]), Reply::Nil);
        assert_eq!(
            run(&mut ks, &["lpop", "l", "-1"]),
            Reply::error(KeyspaceError::NotPositive)
        );
        run(&mut ks, &["rpush", "r", "a", "b", "a", "c", "a"]);
        assert_eq!(run(&mut ks, &["lrem", "r", "-2", "a"]), Reply::Int(2));
        assert_eq!(
            run(&mut ks, &["lrange", "r", "0", "-1"]),
            list(&["a", "b", "c"])
        );
        assert_eq!(run(&mut ks, &["lrem", "r", "0", "a"]), Reply::Int(1));
        run(&mut ks, &["rpush", "t", "1", "2", "3", "4", "5"]);
        assert_eq!(run(&mut ks, &["ltrim", "t", "1", "-2"]), Reply::ok());
        assert_eq!(
            run(&mut ks, &["lrange", "t", "0", "-1"]),
            list(&["2", "3", "4"])
        );
        assert_eq!(run(&mut ks, &["ltrim", "t", "5", "10"]), Reply::ok());
        assert_eq!(run(&mut ks, &["exists", "t"]), Reply::Int(0));
        assert_eq!(run(&mut ks, &["llen", "l"]), Reply::Int(2));
        run(&mut ks, &["set", "s", "x"]);
        assert_eq!(
            run(&mut ks, &["lpush", "s", "x"]),
            Reply::error(KeyspaceError::WrongType)
        );
        assert_eq!(
            run(&mut ks, &["llen", "s"]),
            Reply::error(KeyspaceError::WrongType)
        );
    }
}
