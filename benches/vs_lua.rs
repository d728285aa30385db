//! WebAssembly functions on Ferrite against Lua scripts on Redis, same machine, same run.
//!
//! Four workloads, each as a Lua script (EVALSHA on `redis-server`) and as an export of
//! `examples/bench_udf` (FCALL_RO on ferrite):
//! 1. json: parse an 8 KB document (100 items) stored at a key, sum `price` over active items;
//! 2. string: uppercase, reverse and count the letters of a 4 KB argument;
//! 3. numeric: count primes up to 3000 by trial division;
//! 4. key access: GET a key and return its length.
//!
//! For each: server-side µs per call with one client (each server's `INFO commandstats`,
//! `usec_per_call` of EVALSHA / FCALL_RO) and client throughput with ten (`redis-benchmark`). Run with
//! `cargo bench --bench vs_lua`; `FERRITE_BENCH_REQUESTS` sets the calls per workload.

use std::process::{Command, Stdio};

use ferrite_testkit::bench::{bench_udf, redis_benchmark};
use ferrite_testkit::{RedisServer, Server};

const LUA_JSON: &str = r#"
local doc = cjson.decode(redis.call('GET', KEYS[1]))
local sum = 0
for _, item in ipairs(doc.items) do
  if item.active == true and item.price then sum = sum + item.price end
end
return tostring(sum)"#;

const LUA_STRING: &str = r#"
local s = ARGV[1]
local _, letters = string.gsub(s, '%a', '')
return {string.upper(string.reverse(s)), letters}"#;

const LUA_PRIMES: &str = r#"
local n = tonumber(ARGV[1])
local count = 0
for candidate = 2, n do
  local prime = true
  local divisor = 2
  while divisor * divisor <= candidate do
    if candidate % divisor == 0 then prime = false break end
    divisor = divisor + 1
  end
  if prime then count = count + 1 end
end
return count"#;

const LUA_KEYLEN: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then return string.len(v) else return 0 end"#;

/// The 8 KB, 100-item document.
fn document() -> String {
    let items: Vec<String> = (0..100)
        .map(|i| {
            format!(
                r#"{{"id":{i},"active":{},"price":{}.25,"name":"item number {i:03}","tags":["alpha","beta"],"stock":{}}}"#,
                i % 3 != 0,
                i % 17 + 1,
                i * 7 % 50
            )
        })
        .collect();
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

fn redis_cmd(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn redis_cmd_stdin(port: u16, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-x"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    child.stdin.take().unwrap().write_all(input).unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout)
        .trim()
        .to_owned()
}

/// `usec_per_call` of `command` from INFO commandstats.
fn usec_per_call(port: u16, command: &str) -> f64 {
    let info = redis_cmd(port, &["INFO", "commandstats"]);
    info.lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split(',').find(|f| f.starts_with("usec_per_call=")))
        .and_then(|f| f["usec_per_call=".len()..].parse().ok())
        .unwrap_or_else(|| panic!("no usec_per_call for {command}: {info}"))
}

/// Requests per second of `redis-benchmark` running `command` from `clients` connections.
fn throughput(port: u16, clients: u32, requests: u64, command: &[&str]) -> f64 {
    let (clients, requests) = (clients.to_string(), requests.to_string());
    let mut args = vec!["-c", &clients, "-n", &requests];
    args.extend_from_slice(command);
    redis_benchmark(port, &args)[0].rps()
}

/// (name, Lua script, function, keys with numkeys, arguments).
type Workload<'a> = (&'a str, &'a str, &'a str, Vec<&'a str>, Vec<&'a str>);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests: u64 = std::env::var("FERRITE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let module = bench_udf();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrite.toml");
    // The JSON workload needs more than the default million fuel.
    std::fs::write(&config, "[wasm.limits]\nmax_fuel = 100000000\n").unwrap();

    let ferrite = Server::start(&["--config", config.to_str().expect("a UTF-8 path")]);
    let redis = RedisServer::start(&["--save", "", "--appendonly", "no"]);
    let (ferrite_port, redis_port) = (ferrite.port, redis.port);

    let doc = document();
    let text: String = "The quick brown fox jumps over the lazy dog 0123456789! "
        .chars()
        .cycle()
        .take(4096)
        .collect();
    for port in [redis_port, ferrite_port] {
        redis_cmd_stdin(port, &["SET", "doc"], doc.as_bytes());
        redis_cmd(port, &["SET", "key", "a value of some length"]);
    }
    assert_eq!(
        redis_cmd_stdin(ferrite_port, &["WASM.LOAD", "b"], &module),
        "OK"
    );

    let workloads: [Workload; 4] = [
        (
            "json: 8 KB document, 100 items",
            LUA_JSON,
            "b.json",
            vec!["1", "doc"],
            vec![],
        ),
        (
            "string: 4 KB argument",
            LUA_STRING,
            "b.string",
            vec!["0"],
            vec![&text],
        ),
        (
            "numeric: primes up to 3000",
            LUA_PRIMES,
            "b.primes",
            vec!["0"],
            vec!["3000"],
        ),
        (
            "key access: GET + length",
            LUA_KEYLEN,
            "b.keylen",
            vec!["1", "key"],
            vec![],
        ),
    ];
    println!(
        "Lua on redis-server (EVALSHA) vs WebAssembly on ferrite (FCALL_RO): µs per call from each \
         server's commandstats with 1 client ({} calls), calls/s with 10 clients ({requests} calls)",
        requests / 4
    );
    println!();
    println!("| workload | Lua µs/call | WASM µs/call | speed-up | Lua calls/s | WASM calls/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, lua, function, keys, args) in workloads {
        let sha = redis_cmd(redis_port, &["SCRIPT", "LOAD", lua]);
        let mut lua_cmd = vec!["EVALSHA", sha.as_str()];
        lua_cmd.extend(&keys);
        lua_cmd.extend(&args);
        let mut wasm_cmd = vec!["FCALL_RO", function];
        wasm_cmd.extend(&keys);
        wasm_cmd.extend(&args);
        // Same answers first.
        let (lua_answer, wasm_answer) = (
            redis_cmd(redis_port, &lua_cmd),
            redis_cmd(ferrite_port, &wasm_cmd),
        );
        assert_eq!(lua_answer, wasm_answer, "{name}: Lua and WASM disagree");
        // Server-side time per call with one client: no call waits for another (Ferrite runs
        // calls one at a time, and its timing would otherwise include that wait, which Redis's
        // single-threaded timing never sees).
        for port in [redis_port, ferrite_port] {
            redis_cmd(port, &["CONFIG", "RESETSTAT"]);
        }
        throughput(redis_port, 1, requests / 4, &lua_cmd);
        throughput(ferrite_port, 1, requests / 4, &wasm_cmd);
        let lua_us = usec_per_call(redis_port, "evalsha");
        let wasm_us = usec_per_call(ferrite_port, "fcall_ro");
        // Client throughput with ten clients.
        let lua_rps = throughput(redis_port, 10, requests, &lua_cmd);
        let wasm_rps = throughput(ferrite_port, 10, requests, &wasm_cmd);
        println!(
            "| {name} | {lua_us:.2} | {wasm_us:.2} | {:.1}× | {lua_rps:.0} | {wasm_rps:.0} |",
            lua_us / wasm_us
        );
    }
}
