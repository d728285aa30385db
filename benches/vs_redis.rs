//! Throughput against real Redis, same machine, same run.
//!
//! Starts the release `ferrite` binary (or the one `FERRITE_BIN` names, to measure another
//! build in the same harness) and `redis-server` (no persistence), runs
//! `redis-benchmark -t set,get,incr,lpush,hset -c 50` against each, unpipelined and with
//! `-P 16`, alternating servers per round, and prints a Markdown table of the best requests/s
//! per cell and the ferrite/Redis ratio. Run with `cargo bench --bench vs_redis`; set
//! `FERRITE_BENCH_REQUESTS` (default 200000) and `FERRITE_BENCH_ROUNDS` (default 3).

use std::collections::BTreeMap;

use ferrite_testkit::bench::redis_benchmark;
use ferrite_testkit::{RedisServer, Server};

const TESTS: &str = "set,get,incr,lpush,hset";
const CLIENTS: &str = "50";

/// Runs redis-benchmark and returns requests/s per test.
fn bench(port: u16, pipeline: u32, requests: u64) -> BTreeMap<String, f64> {
    let (requests, pipeline) = (requests.to_string(), pipeline.to_string());
    let args = [
        "-t", TESTS, "-c", CLIENTS, "-n", &requests, "-P", &pipeline, "-r", "100000",
    ];
    redis_benchmark(port, &args)
        .into_iter()
        .map(|row| {
            let name = row.test.split_whitespace().next().unwrap_or("").to_owned();
            (name, row.values[0])
        })
        .collect()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests = env_u64("FERRITE_BENCH_REQUESTS", 200_000);
    let rounds = env_u64("FERRITE_BENCH_ROUNDS", 3);
    let ferrite = Server::start(&[]);
    let redis = RedisServer::start(&["--save", "", "--appendonly", "no"]);
    let (ferrite_port, redis_port) = (ferrite.port, redis.port);

    // (pipeline, test) -> (best redis, best ferrite)
    let mut best: BTreeMap<(u32, String), (f64, f64)> = BTreeMap::new();
    for round in 1..=rounds {
        for pipeline in [1, 16] {
            let n = if pipeline == 1 {
                requests
            } else {
                requests * 5
            };
            let r = bench(redis_port, pipeline, n);
            let f = bench(ferrite_port, pipeline, n);
            for (test, value) in r {
                let cell = best.entry((pipeline, test.clone())).or_default();
                cell.0 = cell.0.max(value);
                cell.1 = cell.1.max(f.get(&test).copied().unwrap_or(0.0));
            }
            eprintln!("round {round}/{rounds}, -P {pipeline} done");
        }
    }

    println!("redis-benchmark -c {CLIENTS} -r 100000, best of {rounds} rounds, requests/s");
    println!();
    println!("| test | pipeline | redis-server | ferrite | ferrite / redis |");
    println!("|---|---|---:|---:|---:|");
    let order = ["SET", "GET", "INCR", "LPUSH", "HSET"];
    for pipeline in [1, 16] {
        for test in order {
            if let Some((r, f)) = best.get(&(pipeline, test.to_owned())) {
                println!("| {test} | {pipeline} | {r:.0} | {f:.0} | {:.2} |", f / r);
            }
        }
    }
}
