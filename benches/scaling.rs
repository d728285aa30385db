//! Read-only calls on one core and on two: compute-bound `FCALL_RO` throughput with two command
//! threads against one (issue 12 asks for at least 1.7×; Redis runs every script on one
//! thread).
//!
//! Each round starts a single ferrite with `--threads 1`, then one with `--threads 2` (the
//! async worker, and a helper that takes long read-only calls off it while it is free:
//! `src/blocking.rs`), loads two guests (`examples/bench_udf`
//! with the SDK, `examples/c/bench_udf.c` in C) and runs `FCALL_RO <guest>.primes 0 3000` from
//! `redis-benchmark` with 4 and with 8 clients. The client runs on the same cores: what it uses
//! is not there for the server. Prints calls/s and p50/p99 per round and the ratio of two
//! threads to one. Run with `cargo bench --bench scaling`; `FERRITE_BENCH_ROUNDS` (default 3)
//! and `FERRITE_BENCH_REQUESTS` (default 30000 per cell) change the work.

use ferrite_testkit::Server;
use ferrite_testkit::bench::{BenchRow, bench_udf, c_udf, redis_benchmark};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A ferrite with `workers` command threads and both guests loaded.
fn start(workers: usize, guests: &[(&str, Vec<u8>)]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let config = dir.path().join("ferrite.toml");
    std::fs::write(&config, "[wasm.limits]\nmax_fuel = 100000000\n").expect("write config");
    let args: Vec<String> = [
        "--port",
        "0",
        "--data-dir",
        &data_dir.display().to_string(),
        "--config",
        &config.display().to_string(),
        "--threads",
        &workers.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Server::spawn_with_env(&args, Some(dir), data_dir, &[])
        .unwrap_or_else(|e| panic!("start ferrite: {e}"));
    let mut c = server.client();
    for (name, module) in guests {
        let loaded: String = redis::cmd("WASM.LOAD")
            .arg(*name)
            .arg(module.as_slice())
            .query(&mut c)
            .expect("load a guest");
        assert_eq!(loaded, "OK");
    }
    server
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = env_number("FERRITE_BENCH_ROUNDS", 3);
    let requests = env_number("FERRITE_BENCH_REQUESTS", 30_000).to_string();
    let guests = [("sdk", bench_udf()), ("c", c_udf())];
    let clients = [4usize, 8];
    // results[guest][clients][workers - 1] = one row per round.
    let mut results: Vec<Vec<[Vec<BenchRow>; 2]>> = guests
        .iter()
        .map(|_| clients.iter().map(|_| [Vec::new(), Vec::new()]).collect())
        .collect();
    for round in 1..=rounds {
        for workers in [1usize, 2] {
            let server = start(workers, &guests);
            for (g, (guest, _)) in guests.iter().enumerate() {
                for (k, n) in clients.iter().enumerate() {
                    let function = format!("{guest}.primes");
                    let row = redis_benchmark(
                        server.port,
                        &[
                            "-c",
                            &n.to_string(),
                            "-n",
                            &requests,
                            "FCALL_RO",
                            &function,
                            "0",
                            "3000",
                        ],
                    )
                    .remove(0);
                    eprintln!(
                        "round {round}, {workers} thread(s), {guest}, {n} clients: {:.0} calls/s",
                        row.rps()
                    );
                    results[g][k][workers - 1].push(row);
                }
            }
        }
    }
    println!(
        "FCALL_RO primes up to 3000, 2 command threads against 1 ({rounds} alternating rounds): calls/s and p50/p99 ms per round\n"
    );
    println!("| guest | clients | 1 thread | 2 threads | 2 ÷ 1 per round |");
    println!("|---|---:|---|---|---|");
    let cell = |rows: &[BenchRow]| {
        rows.iter()
            .map(|r| format!("{:.0} {:.3}/{:.3}", r.rps(), r.p50(), r.p99()))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    for (g, (guest, _)) in guests.iter().enumerate() {
        for (k, n) in clients.iter().enumerate() {
            let [one, two] = &results[g][k];
            let ratios = one
                .iter()
                .zip(two)
                .map(|(a, b)| format!("{:.2}×", b.rps() / a.rps()))
                .collect::<Vec<_>>()
                .join(" · ");
            println!(
                "| {guest} | {n} | {} | {} | {ratios} |",
                cell(one),
                cell(two)
            );
        }
    }
}
