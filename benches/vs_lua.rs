//! WebAssembly functions on Ferrite against Lua scripts on Redis, same machine, same run.
//!
//! Four workloads, each as a Lua script (EVALSHA on `redis-server`) and, on ferrite
//! (FCALL_RO), as the exports of four guests:
//! - `examples/bench_udf` (the SDK) with the examples' linker settings (64 KiB of stack, 8
//!   pages);
//! - the same with the linker's defaults (1 MiB of stack at the bottom of memory, 17 pages, the
//!   heap grown on demand);
//! - `examples/plain_udf`, written without the SDK (`#[no_mangle]` exports, the input and the
//!   reply coded by hand, a leaking `alloc`), with the linker's defaults;
//! - `examples/c/bench_udf.c`, in C with no library, built by clang at `-O2`.
//!
//! The workloads:
//! 1. json: parse an 8 KB document (100 items) stored at a key, sum `price` over active items;
//! 2. string: uppercase, reverse and count the letters of a 4 KB argument;
//! 3. numeric: count primes up to 3000 by trial division;
//! 4. key access: GET a key and return its length.
//!
//! For each, at 1 and 4 clients: calls per second and p50/p99 latency from `redis-benchmark`,
//! and the ratio of WASM's throughput to Lua's (Lua's time ÷ WASM's); then, from the same runs,
//! each server's own time per call (`usec_per_call` of `INFO commandstats`, reset before each
//! run: from the command's dispatch to its reply, without the network or the queue before it)
//! and the ratio of Lua's to WASM's. Run with
//! `cargo bench --bench vs_lua`; `FERRITE_BENCH_REQUESTS` sets the calls per workload with 4
//! clients (a quarter with 1; five times as many for key access).

use std::process::{Command, Stdio};

use ferrite_testkit::bench::{
    BenchRow, bench_udf, bench_udf_default_linking, c_udf, plain_udf, redis_benchmark,
};
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

/// The words of `command`, borrowed.
fn refs(command: &[String]) -> Vec<&str> {
    command.iter().map(String::as_str).collect()
}

/// `redis-benchmark` running `command` from `clients` connections.
fn measure(port: u16, clients: u32, requests: u64, command: &[&str]) -> BenchRow {
    let (clients, requests) = (clients.to_string(), requests.to_string());
    let mut args = vec!["-c", &clients, "-n", &requests];
    args.extend_from_slice(command);
    redis_benchmark(port, &args).remove(0)
}

/// The server's own time per call of `command` since the last `CONFIG RESETSTAT`, in µs:
/// `usec_per_call` from `INFO commandstats` (the same field on both servers).
fn server_us(port: u16, command: &str) -> f64 {
    let info = redis_cmd(port, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{}:", command.to_ascii_lowercase());
    info.lines()
        .find_map(|line| line.trim().strip_prefix(&prefix))
        .and_then(|fields| {
            fields
                .split(',')
                .find_map(|field| field.strip_prefix("usec_per_call="))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in INFO commandstats on port {port}"))
}

/// [`measure`], with the server's own time per call (µs) over the same run.
fn measure_timed(port: u16, clients: u32, requests: u64, command: &[&str]) -> (BenchRow, f64) {
    assert_eq!(redis_cmd(port, &["CONFIG", "RESETSTAT"]), "OK");
    let row = measure(port, clients, requests, command);
    (row, server_us(port, command[0]))
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
    let guests = [
        ("b", bench_udf()),
        ("p", bench_udf_default_linking()),
        ("n", plain_udf()),
        ("c", c_udf()),
    ];
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
    for (name, module) in &guests {
        assert_eq!(
            redis_cmd_stdin(ferrite_port, &["WASM.LOAD", name], module),
            "OK"
        );
    }

    let workloads: [Workload; 4] = [
        (
            "json: 8 KB document, 100 items",
            LUA_JSON,
            "json",
            vec!["1", "doc"],
            vec![],
        ),
        (
            "string: 4 KB argument",
            LUA_STRING,
            "string",
            vec!["0"],
            vec![&text],
        ),
        (
            "numeric: primes up to 3000",
            LUA_PRIMES,
            "primes",
            vec!["0"],
            vec!["3000"],
        ),
        (
            "key access: GET + length",
            LUA_KEYLEN,
            "keylen",
            vec!["1", "key"],
            vec![],
        ),
    ];
    println!(
        "Lua on redis-server (EVALSHA) against WebAssembly on ferrite (FCALL_RO): calls/s and \
         p50/p99 ms from redis-benchmark; × Lua is WASM's throughput over Lua's"
    );
    println!();
    println!(
        "| workload | clients | Lua | SDK, SDK linking | × Lua | SDK, default linking | × Lua | \
         no SDK, default linking | × Lua | C | × Lua |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cell = |r: &BenchRow| format!("{:.0} {:.3}/{:.3}", r.rps(), r.p50(), r.p99());
    // The second table, of server time per call, printed after the first.
    let mut timed = Vec::new();
    for (name, lua, function, keys, args) in workloads {
        let sha = redis_cmd(redis_port, &["SCRIPT", "LOAD", lua]);
        // `verb target keys... args...`
        let command = |verb: &str, target: String| -> Vec<String> {
            [verb.to_owned(), target]
                .into_iter()
                .chain(keys.iter().chain(&args).map(|s| s.to_string()))
                .collect()
        };
        let lua_cmd = command("EVALSHA", sha.clone());
        let wasm_cmds: Vec<Vec<String>> = guests
            .iter()
            .map(|(guest, _)| command("FCALL_RO", format!("{guest}.{function}")))
            .collect();
        // Same answers first.
        let lua_answer = redis_cmd(redis_port, &refs(&lua_cmd));
        for wasm_cmd in &wasm_cmds {
            let wasm_answer = redis_cmd(ferrite_port, &refs(wasm_cmd));
            assert_eq!(lua_answer, wasm_answer, "{name}: Lua and WASM disagree");
        }
        let scale = if function == "keylen" { 5 } else { 1 };
        for clients in [1u32, 4] {
            let n = requests * scale / if clients == 1 { 4 } else { 1 };
            let (lua_row, lua_us) = measure_timed(redis_port, clients, n, &refs(&lua_cmd));
            let mut line = format!("| {name} | {clients} | {} |", cell(&lua_row));
            let mut time_line = format!("| {name} | {clients} | {lua_us:.2} |");
            for wasm_cmd in &wasm_cmds {
                let (row, us) = measure_timed(ferrite_port, clients, n, &refs(wasm_cmd));
                line += &format!(" {} | {:.2}× |", cell(&row), row.rps() / lua_row.rps());
                time_line += &format!(" {us:.2} | {:.2}× |", lua_us / us);
            }
            println!("{line}");
            timed.push(time_line);
        }
    }
    println!();
    println!(
        "Server time per call, µs (INFO commandstats usec_per_call, same runs); × Lua is Lua's \
         time over WASM's"
    );
    println!();
    println!(
        "| workload | clients | Lua | SDK, SDK linking | × Lua | SDK, default linking | × Lua | \
         no SDK, default linking | × Lua | C | × Lua |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for line in timed {
        println!("{line}");
    }
}
