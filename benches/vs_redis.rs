//! Throughput against real Redis, same machine, same run.
//!
//! Starts the release `ferrite` binary and `redis-server` (no persistence) on free ports, runs
//! `redis-benchmark -t set,get,incr,lpush,hset -c 50` against each, unpipelined and with
//! `-P 16`, alternating servers per round, and prints a Markdown table of the best requests/s
//! per cell and the ferrite/Redis ratio. Run with `cargo bench --bench vs_redis`; set
//! `FERRITE_BENCH_REQUESTS` (default 200000) and `FERRITE_BENCH_ROUNDS` (default 3).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

#[path = "common/mod.rs"]
mod common;

use common::{Proc, free_port, wait_for_port};

const TESTS: &str = "set,get,incr,lpush,hset";
const CLIENTS: &str = "50";

fn start_ferrite(dir: &std::path::Path) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args([
            "--port",
            &port.to_string(),
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(dir.join("ferrite"))
        .stdout(Stdio::null())
        .spawn()
        .expect("start ferrite");
    wait_for_port(port);
    (Proc(child), port)
}

fn start_redis(dir: &std::path::Path) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server (apt-get install redis-server)");
    wait_for_port(port);
    (Proc(child), port)
}

/// Runs redis-benchmark and returns requests/s per test.
fn bench(port: u16, pipeline: u32, requests: u64) -> BTreeMap<String, f64> {
    let (requests, pipeline) = (requests.to_string(), pipeline.to_string());
    let args = [
        "-t", TESTS, "-c", CLIENTS, "-n", &requests, "-P", &pipeline, "-r", "100000",
    ];
    common::redis_benchmark(port, &args)
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
    let dir = tempfile::tempdir().unwrap();
    let (_ferrite, ferrite_port) = start_ferrite(dir.path());
    let (_redis, redis_port) = start_redis(dir.path());

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
