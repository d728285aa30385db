//! Replicated writes against durable Redis, same machine, same run.
//!
//! Setups: a local three-node ferrite cluster (clients talk to the leader, every write is
//! fsynced on a majority), a single ferrite node (a one-member cluster, fsynced), and
//! `redis-server` with `appendfsync always` and with `appendfsync everysec`. Workloads: `SET`
//! (random keys) and a write call: on ferrite `FCALL probe.incr 1 {t}a` (a WASM function
//! incrementing a key through `call`), on Redis the same as a Lua script by `EVALSHA`.
//! redis-benchmark runs each with 1, 16 and 64 clients; the table gives requests/s and
//! p50/p99 latency. Run with `cargo bench --bench replication`; set `FERRITE_BENCH_REQUESTS`
//! (default 20000 per cell; a quarter of that with one client).
//!
//! redis-benchmark connects to one node (the leader): `--cluster` mode of redis-benchmark 7.0
//! refuses a cluster with a single master ("Invalid cluster: 1 node(s)").

use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "common/mod.rs"]
mod common;

use common::{Proc, free_port, wait_for_port};

const PROBE: &str = include_str!("../tests/wasm/modules/probe.wat");
const LUA_INCR: &str = "return redis.call('INCRBY', KEYS[1], 1)";

struct Setup {
    name: &'static str,
    port: u16,
    /// The write call's command line for redis-benchmark.
    call: Vec<String>,
    _procs: Vec<Proc>,
}

fn ferrite(dir: &std::path::Path, nodes: usize) -> (Vec<Proc>, u16) {
    let ports: Vec<(u16, u16)> = (0..nodes).map(|_| (free_port(), free_port())).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, (p, c))| format!("{}@127.0.0.1:{p}@{c}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = Vec::new();
    for (i, (port, cport)) in ports.iter().enumerate() {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferrite"));
        command
            .args([
                "--port",
                &port.to_string(),
                "--cluster-port",
                &cport.to_string(),
            ])
            .args(["--log-level", "warn", "--node-id", &(i + 1).to_string()])
            .arg("--data-dir")
            .arg(dir.join(format!("ferrite{nodes}-{i}")));
        if nodes > 1 {
            command.args(["--peers", &peers]);
        }
        procs.push(Proc(
            command
                .stdout(Stdio::null())
                .spawn()
                .expect("start ferrite"),
        ));
        wait_for_port(*port);
    }
    // The leader's client port, once every node agrees on it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Vec<Option<u64>> = ports.iter().map(|(p, _)| leader_seen_by(*p)).collect();
        if let Some(Some(l)) = seen.first()
            && seen.iter().all(|s| *s == Some(*l))
        {
            let port = ports[*l as usize - 1].0;
            let mut c = connect(port);
            let _: () = redis::cmd("WASM.LOAD")
                .arg("probe")
                .arg(PROBE)
                .arg("PERMISSIONS")
                .arg("READ")
                .arg("WRITE")
                .query(&mut c)
                .expect("load the probe module");
            return (procs, port);
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn connect(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn leader_seen_by(port: u16) -> Option<u64> {
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query(&mut connect(port))
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("raft_leader_id:"))
        .and_then(|v| v.trim().parse().ok())
}

fn redis_server(dir: &std::path::Path, fsync: &str) -> (Proc, u16, String) {
    let port = free_port();
    let data = dir.join(format!("redis-{fsync}"));
    std::fs::create_dir_all(&data).unwrap();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", fsync])
        .arg("--dir")
        .arg(&data)
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server (apt-get install redis-server)");
    wait_for_port(port);
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(LUA_INCR)
        .query(&mut connect(port))
        .unwrap();
    (Proc(child), port, sha)
}

/// (requests/s, p50 ms, p99 ms) of one redis-benchmark run.
fn bench(port: u16, clients: u32, requests: u64, command: &[String]) -> (f64, f64, f64) {
    let (clients, requests) = (clients.to_string(), requests.to_string());
    let mut args = vec!["-c", &clients, "-n", &requests];
    args.extend(command.iter().map(String::as_str));
    let row = &common::redis_benchmark(port, &args)[0];
    (row.values[0], row.values[3], row.values[5])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests: u64 = std::env::var("FERRITE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let fcall: Vec<String> = ["FCALL", "probe.incr", "1", "{t}a"]
        .map(String::from)
        .into();
    let mut setups = Vec::new();
    let (procs, port) = ferrite(dir.path(), 3);
    setups.push(Setup {
        name: "ferrite, 3-node cluster",
        port,
        call: fcall.clone(),
        _procs: procs,
    });
    let (procs, port) = ferrite(dir.path(), 1);
    setups.push(Setup {
        name: "ferrite, single node",
        port,
        call: fcall,
        _procs: procs,
    });
    for fsync in ["always", "everysec"] {
        let (proc, port, sha) = redis_server(dir.path(), fsync);
        setups.push(Setup {
            name: if fsync == "always" {
                "redis, appendfsync always"
            } else {
                "redis, appendfsync everysec"
            },
            port,
            call: vec!["EVALSHA".into(), sha, "1".into(), "{t}a".into()],
            _procs: vec![proc],
        });
    }
    println!("| workload | clients | setup | requests/s | p50 ms | p99 ms |");
    println!("|---|---:|---|---:|---:|---:|");
    let set: Vec<String> = ["-t", "set", "-r", "100000"].map(String::from).into();
    for (workload, is_call) in [("SET", false), ("write call", true)] {
        for clients in [1, 16, 64] {
            let n = if clients == 1 { requests / 4 } else { requests };
            for setup in &setups {
                let command = if is_call { &setup.call } else { &set };
                let (rps, p50, p99) = bench(setup.port, clients, n, command);
                println!(
                    "| {workload} | {clients} | {} | {rps:.0} | {p50:.3} | {p99:.3} |",
                    setup.name
                );
            }
        }
    }
}
