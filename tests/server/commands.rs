//! Every data command family through a real client: replies, errors, TTL expiry.

use std::time::Duration;

use redis::{Commands, Value};

use ferrite_testkit::{Server, cmd, err, wait_until};

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn strings_behave_like_redis() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    assert_eq!(cmd(&mut c, &["SET", "k", "w", "NX"]).unwrap(), Value::Nil);
    assert_eq!(
        cmd(&mut c, &["SET", "k", "w", "XX", "GET"]).unwrap(),
        bulk("v")
    );
    assert_eq!(cmd(&mut c, &["SETNX", "k", "x"]).unwrap(), Value::Int(0));
    assert_eq!(c.incr::<_, _, i64>("n", 5).unwrap(), 5);
    assert_eq!(cmd(&mut c, &["DECRBY", "n", "7"]).unwrap(), Value::Int(-2));
    assert_eq!(
        cmd(&mut c, &["INCRBYFLOAT", "f", "10.5"]).unwrap(),
        bulk("10.5")
    );
    assert_eq!(
        cmd(&mut c, &["INCRBYFLOAT", "f", "0.1"]).unwrap(),
        bulk("10.6")
    );
    assert_eq!(cmd(&mut c, &["APPEND", "k", "!!"]).unwrap(), Value::Int(3));
    assert_eq!(cmd(&mut c, &["STRLEN", "k"]).unwrap(), Value::Int(3));
    assert_eq!(
        cmd(&mut c, &["GETRANGE", "k", "0", "0"]).unwrap(),
        bulk("w")
    );
    assert_eq!(
        cmd(&mut c, &["SETRANGE", "k", "1", "XY"]).unwrap(),
        Value::Int(3)
    );
    assert_eq!(
        cmd(&mut c, &["MSET", "{t}a", "1", "{t}b", "2"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut c, &["MGET", "{t}a", "{t}b", "{t}nope"]).unwrap(),
        Value::Array(vec![bulk("1"), bulk("2"), Value::Nil])
    );
    assert_eq!(
        cmd(&mut c, &["MSETNX", "{t}a", "9", "{t}z", "9"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(cmd(&mut c, &["GETSET", "{t}a", "10"]).unwrap(), bulk("1"));
    assert_eq!(cmd(&mut c, &["GETDEL", "{t}a"]).unwrap(), bulk("10"));
    assert_eq!(
        cmd(&mut c, &["GETEX", "{t}b", "PX", "100000"]).unwrap(),
        bulk("2")
    );
    assert!(
        matches!(cmd(&mut c, &["PTTL", "{t}b"]).unwrap(), Value::Int(t) if t > 99_000 && t <= 100_000)
    );
    assert_eq!(
        cmd(&mut c, &["SETEX", "e", "100", "v"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut c, &["PSETEX", "p", "100000", "v"]).unwrap(),
        Value::Okay
    );
    assert_eq!(cmd(&mut c, &["TTL", "e"]).unwrap(), Value::Int(100));
    assert_eq!(
        err(&mut c, &["INCR", "k"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut c, &["SET", "k", "v", "EX", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&mut c, &["SET", "k", "v", "NX", "XX"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["SETEX", "k", "-1", "v"]),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        err(&mut c, &["INCRBYFLOAT", "k", "x"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        err(&mut c, &["MSET", "a"]),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        err(&mut c, &["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    let _: () = c.set("big", i64::MAX).unwrap();
    assert_eq!(
        err(&mut c, &["INCR", "big"]),
        "ERR increment or decrement would overflow"
    );
}

#[test]
fn wrong_types_get_wrongtype() {
    let server = Server::start(&[]);
    let mut c = server.client();
    cmd(&mut c, &["RPUSH", "list", "a"]).unwrap();
    cmd(&mut c, &["SET", "str", "a"]).unwrap();
    let wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for words in [
        &["GET", "list"][..],
        &["INCR", "list"],
        &["APPEND", "list", "x"],
        &["HSET", "str", "f", "v"],
        &["HGET", "str", "f"],
        &["LPUSH", "str", "x"],
        &["LRANGE", "str", "0", "-1"],
        &["SADD", "str", "m"],
        &["SMEMBERS", "list"],
        &["SET", "list", "x", "GET"],
    ] {
        assert_eq!(err(&mut c, words), wrongtype, "{words:?}");
    }
    assert_eq!(
        cmd(&mut c, &["TYPE", "list"]).unwrap(),
        Value::SimpleString("list".into())
    );
    assert_eq!(
        cmd(&mut c, &["SET", "list", "now-a-string"]).unwrap(),
        Value::Okay
    );
}

#[test]
fn keys_expire_on_time_and_are_purged() {
    let server = Server::start(&[]);
    let mut c = server.client();
    cmd(&mut c, &["SET", "short", "v", "PX", "150"]).unwrap();
    cmd(&mut c, &["SET", "long", "v", "EX", "1000"]).unwrap();
    cmd(&mut c, &["SET", "forever", "v"]).unwrap();
    for key in ["short", "long", "forever"] {
        assert_eq!(cmd(&mut c, &["EXISTS", key]).unwrap(), Value::Int(1));
    }
    // Multi-key commands need their keys in one slot (cluster rules).
    assert_eq!(
        err(&mut c, &["EXISTS", "short", "long"]),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    assert!(
        wait_until(Duration::from_secs(5), || cmd(&mut c, &["GET", "short"])
            .unwrap()
            == Value::Nil),
        "the key never expired"
    );
    assert_eq!(cmd(&mut c, &["TTL", "short"]).unwrap(), Value::Int(-2));
    // Active expiry removes it from the keyspace (DBSIZE counts unpurged keys, like Redis).
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut c,
        &["DBSIZE"]
    )
    .unwrap()
        == Value::Int(2)));
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(info.contains("expired_keys:1"), "{info}");
    assert_eq!(cmd(&mut c, &["PERSIST", "long"]).unwrap(), Value::Int(1));
    assert_eq!(cmd(&mut c, &["TTL", "long"]).unwrap(), Value::Int(-1));
    assert_eq!(
        cmd(&mut c, &["EXPIRE", "forever", "100", "XX"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        cmd(&mut c, &["EXPIRE", "forever", "100", "NX"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut c, &["PEXPIREAT", "forever", "1"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(cmd(&mut c, &["EXISTS", "forever"]).unwrap(), Value::Int(0));
    cmd(&mut c, &["SET", "x", "1"]).unwrap();
    let at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 500)
        .to_string();
    assert_eq!(cmd(&mut c, &["EXPIREAT", "x", &at]).unwrap(), Value::Int(1));
    assert_eq!(
        cmd(&mut c, &["EXPIRETIME", "x"]).unwrap(),
        Value::Int(at.parse().unwrap())
    );
}

#[test]
fn generic_key_commands() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for i in 0..50 {
        cmd(&mut c, &["SET", &format!("user:{i}"), "x"]).unwrap();
    }
    cmd(&mut c, &["HSET", "h", "f", "v"]).unwrap();
    let mut keys: Vec<String> = c.keys("user:4*").unwrap();
    keys.sort();
    assert_eq!(keys.len(), 11);
    let scanned: Vec<String> = c
        .scan_match::<_, String>("user:*")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(scanned.len(), 50);
    let hashes: Value = cmd(&mut c, &["SCAN", "0", "COUNT", "1000", "TYPE", "hash"]).unwrap();
    assert_eq!(
        hashes,
        Value::Array(vec![bulk("0"), Value::Array(vec![bulk("h")])])
    );
    assert_eq!(err(&mut c, &["SCAN", "abc"]), "ERR invalid cursor");
    cmd(&mut c, &["SET", "{user:1}b", "v"]).unwrap();
    assert_eq!(
        cmd(&mut c, &["DEL", "user:1", "{user:1}b", "{user:1}nope"]).unwrap(),
        Value::Int(2)
    );
    assert_eq!(cmd(&mut c, &["DEL", "user:2"]).unwrap(), Value::Int(1));
    assert_eq!(cmd(&mut c, &["UNLINK", "user:3"]).unwrap(), Value::Int(1));
    assert_eq!(
        cmd(&mut c, &["RENAME", "user:4", "{user:4}renamed"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut c, &["RENAMENX", "{user:4}renamed", "{user:4}renamed"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        err(&mut c, &["RENAME", "{m}missing", "{m}x"]),
        "ERR no such key"
    );
    assert!(matches!(
        cmd(&mut c, &["RANDOMKEY"]).unwrap(),
        Value::BulkString(_)
    ));
    assert_eq!(cmd(&mut c, &["DBSIZE"]).unwrap(), Value::Int(48));
    assert_eq!(cmd(&mut c, &["FLUSHDB"]).unwrap(), Value::Okay);
    assert_eq!(cmd(&mut c, &["DBSIZE"]).unwrap(), Value::Int(0));
    assert_eq!(cmd(&mut c, &["RANDOMKEY"]).unwrap(), Value::Nil);
    assert_eq!(cmd(&mut c, &["FLUSHALL", "ASYNC"]).unwrap(), Value::Okay);
}

#[test]
fn hashes_lists_and_sets() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        cmd(&mut c, &["HSET", "h", "a", "1", "b", "2"]).unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        cmd(&mut c, &["HGETALL", "h"]).unwrap(),
        Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")])
    );
    assert_eq!(
        cmd(&mut c, &["HINCRBY", "h", "a", "5"]).unwrap(),
        Value::Int(6)
    );
    assert_eq!(
        cmd(&mut c, &["HINCRBYFLOAT", "h", "b", "0.5"]).unwrap(),
        bulk("2.5")
    );
    assert_eq!(
        cmd(&mut c, &["HMGET", "h", "a", "x"]).unwrap(),
        Value::Array(vec![bulk("6"), Value::Nil])
    );
    assert_eq!(cmd(&mut c, &["HLEN", "h"]).unwrap(), Value::Int(2));
    assert_eq!(
        cmd(&mut c, &["HKEYS", "h"]).unwrap(),
        Value::Array(vec![bulk("a"), bulk("b")])
    );
    assert_eq!(
        cmd(&mut c, &["HVALS", "h"]).unwrap(),
        Value::Array(vec![bulk("6"), bulk("2.5")])
    );
    assert_eq!(cmd(&mut c, &["HSTRLEN", "h", "b"]).unwrap(), Value::Int(3));
    assert_eq!(cmd(&mut c, &["HEXISTS", "h", "a"]).unwrap(), Value::Int(1));
    assert_eq!(
        cmd(&mut c, &["HSETNX", "h", "a", "0"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(cmd(&mut c, &["HMSET", "h", "c", "3"]).unwrap(), Value::Okay);
    let scanned: Vec<(String, String)> = c
        .hscan::<_, (String, String)>("h")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(scanned.len(), 3);
    assert_eq!(
        cmd(&mut c, &["HDEL", "h", "a", "b", "c"]).unwrap(),
        Value::Int(3)
    );
    assert_eq!(cmd(&mut c, &["EXISTS", "h"]).unwrap(), Value::Int(0));
    assert_eq!(
        err(&mut c, &["HINCRBY", "s", "f", "x"]),
        "ERR value is not an integer or out of range"
    );

    assert_eq!(
        cmd(&mut c, &["RPUSH", "l", "a", "b", "c"]).unwrap(),
        Value::Int(3)
    );
    assert_eq!(cmd(&mut c, &["LPUSH", "l", "z"]).unwrap(), Value::Int(4));
    assert_eq!(
        cmd(&mut c, &["LRANGE", "l", "0", "-1"]).unwrap(),
        Value::Array(vec![bulk("z"), bulk("a"), bulk("b"), bulk("c")])
    );
    assert_eq!(cmd(&mut c, &["LINDEX", "l", "-1"]).unwrap(), bulk("c"));
    assert_eq!(cmd(&mut c, &["LSET", "l", "0", "Z"]).unwrap(), Value::Okay);
    assert_eq!(
        err(&mut c, &["LSET", "l", "10", "Z"]),
        "ERR index out of range"
    );
    assert_eq!(
        cmd(&mut c, &["LREM", "l", "0", "a"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(cmd(&mut c, &["LTRIM", "l", "0", "1"]).unwrap(), Value::Okay);
    assert_eq!(cmd(&mut c, &["LLEN", "l"]).unwrap(), Value::Int(2));
    assert_eq!(cmd(&mut c, &["LPOP", "l"]).unwrap(), bulk("Z"));
    assert_eq!(
        cmd(&mut c, &["RPOP", "l", "5"]).unwrap(),
        Value::Array(vec![bulk("b")])
    );
    assert_eq!(cmd(&mut c, &["LPOP", "l"]).unwrap(), Value::Nil);

    assert_eq!(
        cmd(&mut c, &["SADD", "s", "a", "b", "c", "a"]).unwrap(),
        Value::Int(3)
    );
    assert_eq!(cmd(&mut c, &["SCARD", "s"]).unwrap(), Value::Int(3));
    assert_eq!(
        cmd(&mut c, &["SISMEMBER", "s", "b"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut c, &["SREM", "s", "b", "q"]).unwrap(),
        Value::Int(1)
    );
    let mut members: Vec<String> = c.smembers("s").unwrap();
    members.sort();
    assert_eq!(members, ["a", "c"]);
    assert!(matches!(
        cmd(&mut c, &["SRANDMEMBER", "s"]).unwrap(),
        Value::BulkString(_)
    ));
    assert!(
        matches!(cmd(&mut c, &["SRANDMEMBER", "s", "-5"]).unwrap(), Value::Array(v) if v.len() == 5)
    );
    assert!(matches!(cmd(&mut c, &["SPOP", "s", "2"]).unwrap(), Value::Array(v) if v.len() == 2));
    assert_eq!(cmd(&mut c, &["EXISTS", "s"]).unwrap(), Value::Int(0));
}
