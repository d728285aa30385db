//! Compatibility with the real thing: the same command script against `redis-server` and
//! ferrite must give the same replies and error texts, and `redis-cli` must work against
//! ferrite. Both programs come from the `redis-server`/`redis-tools` packages, which the test
//! command installs.

use std::process::{Command, Stdio};
use std::time::Duration;

use redis::Value;

use ferrite_testkit::{RedisServer, Server, error_line, eventually, which};

/// A `redis-server` in cluster mode owning every slot: Ferrite always runs as a (one-shard)
/// cluster, so the comparison uses Redis's cluster rules too (CROSSSLOT).
fn redis_cluster_of_one() -> RedisServer {
    let server = RedisServer::start(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--cluster-enabled",
        "yes",
    ]);
    let mut c = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query(&mut c)
        .unwrap();
    eventually(
        "redis-server's cluster ready",
        Duration::from_secs(10),
        || {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?;
            info.contains("cluster_state:ok").then_some(())
        },
    );
    server
}

/// Commands whose replies are fully determined by the commands before them.
const SCRIPT: &[&[&str]] = &[
    &["SET", "s", "hello"],
    &["SET", "s", "x", "NX"],
    &["SET", "s", "world", "XX", "GET"],
    &["SET", "s", "v", "NX", "XX"],
    &["SET", "s", "v", "EX", "0"],
    &["SET", "s", "v", "EX", "-5"],
    &["SET", "s", "v", "EX", "abc"],
    &["SET", "s", "v", "PX", "100", "EX", "100"],
    &["SET", "s", "v", "KEEPTTL", "EX", "100"],
    &["SET", "s", "v", "BOGUS"],
    &["SET", "s"],
    &["SET", "t", "v", "EX", "100"],
    &["TTL", "t"],
    &["SET", "t", "w", "KEEPTTL"],
    &["TTL", "t"],
    &["SET", "t", "w"],
    &["TTL", "t"],
    &["GET", "s"],
    &["GET", "missing"],
    &["GET"],
    &["GET", "a", "b"],
    &["SETNX", "s", "v"],
    &["SETNX", "n1", "v"],
    &["SETEX", "e", "0", "v"],
    &["SETEX", "e", "100", "v"],
    &["PSETEX", "e", "-1", "v"],
    &["GETSET", "s", "again"],
    &["GETDEL", "s"],
    &["GETDEL", "s"],
    &["GETEX", "e", "PERSIST"],
    &["GETEX", "e", "EX", "0"],
    &["GETEX", "e", "FOO"],
    &["TTL", "e"],
    &["MSET", "a", "1", "b", "2", "c"],
    &["MSET", "a", "1", "b", "2"],
    &["MGET", "a", "b", "zz"],
    &["MSETNX", "a", "5", "new", "6"],
    &["MSETNX", "new", "5", "new2", "6"],
    &["INCR", "a"],
    &["INCRBY", "a", "10"],
    &["INCRBY", "a", "ten"],
    &["DECR", "a"],
    &["DECRBY", "a", "-9223372036854775808"],
    &["SET", "max", "9223372036854775807"],
    &["INCR", "max"],
    &["SET", "spaced", " 1"],
    &["INCR", "spaced"],
    &["INCR", "new"],
    &["INCRBYFLOAT", "fl", "1.5"],
    &["INCRBYFLOAT", "fl", "2"],
    &["INCRBYFLOAT", "fl", "-0.25"],
    &["INCRBYFLOAT", "fl", "1e3"],
    &["INCRBYFLOAT", "fl", "nan"],
    &["INCRBYFLOAT", "spaced", "1"],
    &["APPEND", "ap", "abc"],
    &["APPEND", "ap", "def"],
    &["STRLEN", "ap"],
    &["STRLEN", "nothing"],
    &["GETRANGE", "ap", "1", "3"],
    &["GETRANGE", "ap", "-3", "-1"],
    &["GETRANGE", "ap", "-1", "-3"],
    &["GETRANGE", "ap", "10", "20"],
    &["GETRANGE", "ap", "x", "1"],
    &["SETRANGE", "ap", "2", "ZZ"],
    &["SETRANGE", "pad", "3", "x"],
    &["GET", "pad"],
    &["SETRANGE", "pad", "-1", "x"],
    &["SETRANGE", "empty", "5", ""],
    &["EXISTS", "empty"],
    &["DEL", "a", "b", "nope"],
    &["UNLINK", "c"],
    &["EXISTS", "ap", "ap", "nope"],
    &["TYPE", "ap"],
    &["TYPE", "nope"],
    &["RENAME", "ap", "ap2"],
    &["RENAME", "nope", "x"],
    &["RENAMENX", "ap2", "pad"],
    &["RENAMENX", "ap2", "ap3"],
    &["RENAME", "ap3", "ap3"],
    &["EXPIRE", "ap3", "100"],
    &["EXPIRE", "ap3", "50", "GT"],
    &["EXPIRE", "ap3", "50", "LT"],
    &["TTL", "ap3"],
    &["EXPIRE", "ap3", "10", "NX"],
    &["EXPIRE", "ap3", "10", "XX"],
    &["EXPIRE", "ap3", "10", "NX", "XX"],
    &["EXPIRE", "ap3", "10", "GT", "LT"],
    &["EXPIRE", "ap3", "10", "FOO"],
    &["EXPIRE", "ap3", "ten"],
    &["EXPIRE", "ap3", "9223372036854775807"],
    &["PEXPIRE", "ap3", "100000"],
    &["TTL", "ap3"],
    &["PERSIST", "ap3"],
    &["PERSIST", "ap3"],
    &["TTL", "ap3"],
    &["TTL", "nope"],
    &["PTTL", "nope"],
    &["EXPIRETIME", "ap3"],
    &["EXPIRETIME", "nope"],
    &["EXPIRE", "ap3", "-1"],
    &["EXISTS", "ap3"],
    &["EXPIRE", "nope", "10"],
    &["SCAN", "x"],
    &["SCAN", "0", "COUNT", "0"],
    &["SCAN", "0", "BOGUS"],
    &["HSET", "h", "a", "1", "b", "2"],
    &["HSET", "h", "a"],
    &["HSET", "h", "a", "3", "c", "4"],
    &["HSETNX", "h", "a", "x"],
    &["HSETNX", "h", "z", "26"],
    &["HMSET", "h", "m", "1"],
    &["HGET", "h", "a"],
    &["HGET", "h", "nope"],
    &["HGET", "nope", "a"],
    &["HMGET", "h", "a", "nope", "b"],
    &["HGETALL", "h"],
    &["HKEYS", "h"],
    &["HVALS", "h"],
    &["HLEN", "h"],
    &["HSTRLEN", "h", "z"],
    &["HEXISTS", "h", "z"],
    &["HINCRBY", "h", "a", "5"],
    &["HINCRBY", "h", "a", "x"],
    &["HINCRBYFLOAT", "h", "f", "0.5"],
    &["HINCRBYFLOAT", "h", "f", "1e2"],
    &["HSET", "h", "str", "abc"],
    &["HINCRBY", "h", "str", "1"],
    &["HINCRBYFLOAT", "h", "str", "1"],
    &["HDEL", "h", "a", "b", "nope"],
    &["HSCAN", "h", "0", "COUNT", "100"],
    &["HSCAN", "h", "x"],
    &["HGETALL", "nope"],
    &["GET", "h"],
    &["RPUSH", "l", "a", "b", "c"],
    &["LPUSH", "l", "x", "y"],
    &["LRANGE", "l", "0", "-1"],
    &["LRANGE", "l", "1", "2"],
    &["LRANGE", "l", "-100", "100"],
    &["LRANGE", "l", "5", "1"],
    &["LRANGE", "l", "a", "1"],
    &["LINDEX", "l", "0"],
    &["LINDEX", "l", "-1"],
    &["LINDEX", "l", "99"],
    &["LSET", "l", "0", "Y"],
    &["LSET", "l", "99", "Y"],
    &["LSET", "nope", "0", "Y"],
    &["LLEN", "l"],
    &["LLEN", "nope"],
    &["RPUSH", "l", "a", "a", "b", "a"],
    &["LREM", "l", "2", "a"],
    &["LREM", "l", "-1", "a"],
    &["LREM", "l", "0", "b"],
    &["LRANGE", "l", "0", "-1"],
    &["LTRIM", "l", "1", "-1"],
    &["LRANGE", "l", "0", "-1"],
    &["LPOP", "l"],
    &["RPOP", "l", "2"],
    &["LPOP", "l", "-1"],
    &["LPOP", "l", "0"],
    &["LPOP", "nope"],
    &["LPOP", "nope", "2"],
    &["LPUSH", "h", "x"],
    &["SADD", "s1", "1", "2", "3", "2"],
    &["SADD", "s1", "4"],
    &["SCARD", "s1"],
    &["SISMEMBER", "s1", "2"],
    &["SISMEMBER", "s1", "9"],
    &["SMEMBERS", "s1"],
    &["SREM", "s1", "1", "9"],
    &["SPOP", "s1", "-1"],
    &["SRANDMEMBER", "s1", "x"],
    &["SRANDMEMBER", "s1", "-9223372036854775808"],
    &["SRANDMEMBER", "s1", "9223372036854775807"],
    &["SRANDMEMBER", "nope"],
    &["SRANDMEMBER", "nope", "5"],
    &["SPOP", "nope"],
    &["SMEMBERS", "h"],
    &["SELECT", "0"],
    &["SELECT", "x"],
    &["PING"],
    &["PING", "msg"],
    &["PING", "a", "b"],
    &["ECHO", "x"],
    &["NOSUCHCOMMAND", "a", "b"],
    &["CONFIG", "NOPE"],
    &["CONFIG", "GET"],
    &["CONFIG", "GET", "appendonly"],
    &["CONFIG", "SET", "nosuchparameter", "1"],
    &["COMMAND", "GETKEYS", "GET", "key"],
    &["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
    &["COMMAND", "GETKEYS", "PING"],
    &["COMMAND", "INFO", "get"],
    &["CLIENT", "SETNAME", "bad name"],
    &["CLIENT", "SETNAME", "good"],
    &["CLIENT", "GETNAME"],
    &["CLIENT", "NOPE"],
    &["AUTH", "pw"],
    &["HELLO", "4"],
    &["HELLO", "x"],
    &["MULTI"],
    &["SET", "m", "1"],
    &["INCR", "spaced"],
    &["GET", "m"],
    &["EXEC"],
    &["MULTI"],
    &["SET", "m"],
    &["EXEC"],
    &["EXEC"],
    &["DISCARD"],
    &["WATCH", "m"],
    &["MULTI"],
    &["WATCH", "m"],
    &["DISCARD"],
    &["DBSIZE"],
    &["FLUSHALL", "BOGUS"],
    &["FLUSHALL"],
    &["DBSIZE"],
];

fn run_script(url: &str) -> Vec<String> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    SCRIPT
        .iter()
        .map(|words| {
            let mut command = redis::cmd(words[0]);
            for w in &words[1..] {
                command.arg(*w);
            }
            match command.query::<Value>(&mut c) {
                Ok(value) => format!("{value:?}"),
                Err(e) => format!("error: {}", error_line(&e)),
            }
        })
        .collect()
}

#[test]
fn replies_and_errors_match_real_redis() {
    let redis = redis_cluster_of_one();
    let ferrite = Server::start(&[]);
    let expected = run_script(&redis.url());
    let got = run_script(&ferrite.url());
    let mut mismatches = Vec::new();
    for ((words, want), have) in SCRIPT.iter().zip(&expected).zip(&got) {
        if want != have {
            mismatches.push(format!(
                "{}\n   redis:   {want}\n   ferrite: {have}",
                words.join(" ")
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} differences:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

fn redis_cli(port: u16, args: &[&str], stdin: Option<&str>) -> String {
    let binary =
        which("redis-cli").expect("redis-cli must be installed (the test command installs it)");
    let mut child = Command::new(binary)
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_cli_works_against_ferrite() {
    let server = Server::start(&[]);
    let port = server.port;
    assert_eq!(redis_cli(port, &["PING"], None).trim(), "PONG");
    assert_eq!(
        redis_cli(port, &["SET", "greeting", "hello"], None).trim(),
        "OK"
    );
    assert_eq!(redis_cli(port, &["GET", "greeting"], None).trim(), "hello");
    assert_eq!(
        redis_cli(port, &["HSET", "h", "a", "1", "b", "2"], None).trim(),
        "2"
    );
    // redis-cli prints a RESP3 map this way when its output is not a terminal.
    assert_eq!(redis_cli(port, &["-3", "HGETALL", "h"], None), "a 1\nb 2\n");
    assert_eq!(
        redis_cli(port, &["--no-raw", "INCR", "greeting"], None).trim(),
        "(error) ERR value is not an integer or out of range"
    );
    // Commands read from standard input, one per line, as in a shell pipeline.
    let piped = redis_cli(port, &[], Some("RPUSH l a b c\nLRANGE l 0 -1\nDBSIZE\n"));
    assert_eq!(piped, "3\na\nb\nc\n3\n");
    // `-x` sends standard input as the last argument (how WASM.LOAD will take module files).
    assert_eq!(
        redis_cli(port, &["-x", "SET", "blob"], Some("binary\u{0}data")).trim(),
        "OK"
    );
    assert_eq!(redis_cli(port, &["STRLEN", "blob"], None).trim(), "11");
    let info = redis_cli(port, &["INFO", "server"], None);
    assert!(info.contains("redis_version:"), "{info}");
}
