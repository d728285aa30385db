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

use std::time::Duration;

use ferrite_testkit::bench::redis_benchmark;
use ferrite_testkit::{Cluster, RedisServer, Server};

const PROBE: &str = include_str!("../tests/wasm/modules/probe.wat");
const LUA_INCR: &str = "return redis.call('INCRBY', KEYS[1], 1)";

/// What runs a setup: the processes stay alive while it is measured.
#[allow(dead_code)] // Held for their Drop, which stops the processes.
enum Processes {
    Cluster(Cluster),
    Ferrite(Server),
    Redis(RedisServer),
}

struct Setup {
    name: &'static str,
    port: u16,
    /// The write call's command line for redis-benchmark.
    call: Vec<String>,
    _processes: Processes,
}

fn connect(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn load_probe(port: u16) {
    let _: () = redis::cmd("WASM.LOAD")
        .arg("probe")
        .arg(PROBE)
        .arg("PERMISSIONS")
        .arg("READ")
        .arg("WRITE")
        .query(&mut connect(port))
        .expect("load the probe module");
}

/// A three-node cluster; the leader's client port.
fn ferrite_cluster() -> (Cluster, u16) {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let port = cluster.node(leader).port;
    load_probe(port);
    (cluster, port)
}

/// A single node (a one-member cluster, fsynced).
fn ferrite_single() -> (Server, u16) {
    let server = Server::start(&[]);
    let port = server.port;
    load_probe(port);
    (server, port)
}

fn redis_server(fsync: &str) -> (RedisServer, String) {
    let server = RedisServer::start(&["--save", "", "--appendonly", "yes", "--appendfsync", fsync]);
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(LUA_INCR)
        .query(&mut connect(server.port))
        .unwrap();
    (server, sha)
}

/// (requests/s, p50 ms, p99 ms) of one redis-benchmark run.
fn bench(port: u16, clients: u32, requests: u64, command: &[String]) -> (f64, f64, f64) {
    let (clients, requests) = (clients.to_string(), requests.to_string());
    let mut args = vec!["-c", &clients, "-n", &requests];
    args.extend(command.iter().map(String::as_str));
    let row = &redis_benchmark(port, &args)[0];
    (row.rps(), row.p50(), row.p99())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests: u64 = std::env::var("FERRITE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let fcall: Vec<String> = ["FCALL", "probe.incr", "1", "{t}a"]
        .map(String::from)
        .into();
    let mut setups = Vec::new();
    let (cluster, port) = ferrite_cluster();
    setups.push(Setup {
        name: "ferrite, 3-node cluster",
        port,
        call: fcall.clone(),
        _processes: Processes::Cluster(cluster),
    });
    let (server, port) = ferrite_single();
    setups.push(Setup {
        name: "ferrite, single node",
        port,
        call: fcall,
        _processes: Processes::Ferrite(server),
    });
    for fsync in ["always", "everysec"] {
        let (server, sha) = redis_server(fsync);
        setups.push(Setup {
            name: if fsync == "always" {
                "redis, appendfsync always"
            } else {
                "redis, appendfsync everysec"
            },
            port: server.port,
            call: vec!["EVALSHA".into(), sha, "1".into(), "{t}a".into()],
            _processes: Processes::Redis(server),
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
