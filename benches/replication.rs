//! The replicated path against Redis, same machine, same run: what issue 11's goals are
//! measured with.
//!
//! Setups: a local three-node ferrite cluster (clients talk to the leader: reads confirm
//! leadership with a quorum, writes are fsynced on a majority), a single ferrite node (a
//! one-member cluster, fsynced), `redis-server` without persistence and with
//! `appendfsync always`. Workloads, each against the Redis setup it is judged by:
//! - GET (random keys, loaded first) against in-memory Redis;
//! - a read-only call, `FCALL_RO probe.get 1 {t}a` (a WASM function answering the length of
//!   the key's value) against `EVALSHA` of a Lua script doing the same on in-memory Redis;
//! - SET (random keys) against Redis `appendfsync always`;
//! - a write call, `FCALL probe.incr 1 {t}a` (INCRBY through `call`) against `EVALSHA` of an
//!   INCRBY script on Redis `appendfsync always`.
//!
//! The calls use one key (`{t}a`, the only one the hand-written probe module touches).
//!
//! Each runs with 1, 4, 16, 50 and 64 clients, and with pipeline 16 at 50 clients. The
//! table gives requests/s, p50 and p99 latency and the ratio to the reference setup; a
//! summary checks the issue's goals; an SVG plot of throughput against clients is written to
//! `docs/benchmarks/replication.svg` (or `$FERRITE_BENCH_PLOT`). Run with
//! `cargo bench --bench replication`; `FERRITE_BENCH_REQUESTS` (default 20000) scales every
//! cell (reads run five times as many requests, one client a quarter).
//!
//! redis-benchmark connects to one node (the leader): `--cluster` mode of redis-benchmark 7.0
//! refuses a cluster with a single master ("Invalid cluster: 1 node(s)").

use std::time::Duration;

use ferrite_testkit::bench::redis_benchmark;
use ferrite_testkit::plot::{Chart, Series, svg};
use ferrite_testkit::{Cluster, RedisServer, Server};

const PROBE: &str = include_str!("../tests/wasm/modules/probe.wat");
const LUA_GET: &str =
    "local v = redis.call('GET', KEYS[1]) if v then return string.len(v) end return -1";
const LUA_INCR: &str = "return redis.call('INCRBY', KEYS[1], 1)";
const CLIENTS: [u32; 5] = [1, 4, 16, 50, 64];
const KEYSPACE: &str = "100000";

/// What runs a setup: the processes stay alive while it is measured.
#[allow(dead_code)] // Held for their Drop, which stops the processes.
enum Processes {
    Cluster(Cluster),
    Ferrite(Server),
    Redis(RedisServer),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ferrite3,
    Ferrite1,
    RedisMemory,
    RedisAlways,
}

struct Setup {
    kind: Kind,
    name: &'static str,
    port: u16,
    /// SHA-1 of the read script and of the write script (Redis only).
    shas: Option<(String, String)>,
    _processes: Processes,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Get,
    ReadCall,
    Set,
    WriteCall,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Get => "GET",
            Workload::ReadCall => "read-only call",
            Workload::Set => "SET",
            Workload::WriteCall => "write call",
        }
    }

    fn reads(self) -> bool {
        matches!(self, Workload::Get | Workload::ReadCall)
    }

    /// The setups measured, the reference (Redis) last.
    fn setups(self) -> [Kind; 3] {
        if self.reads() {
            [Kind::Ferrite3, Kind::Ferrite1, Kind::RedisMemory]
        } else {
            [Kind::Ferrite3, Kind::Ferrite1, Kind::RedisAlways]
        }
    }

    /// redis-benchmark's arguments for this workload on `setup`.
    fn command(self, setup: &Setup) -> Vec<String> {
        let key = "{t}a".to_owned();
        let script = |read: bool| {
            let (get, incr) = setup.shas.clone().expect("scripts loaded on Redis");
            vec![
                "EVALSHA".into(),
                if read { get } else { incr },
                "1".into(),
                key.clone(),
            ]
        };
        let redis = setup.shas.is_some();
        match self {
            Workload::Get => vec!["-t".into(), "get".into()],
            Workload::Set => vec!["-t".into(), "set".into()],
            Workload::ReadCall if redis => script(true),
            Workload::WriteCall if redis => script(false),
            Workload::ReadCall => ["FCALL_RO", "probe.get", "1"]
                .map(String::from)
                .into_iter()
                .chain([key])
                .collect(),
            Workload::WriteCall => ["FCALL", "probe.incr", "1"]
                .map(String::from)
                .into_iter()
                .chain([key])
                .collect(),
        }
    }
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

fn redis_setup(kind: Kind) -> Setup {
    let args: &[&str] = if kind == Kind::RedisAlways {
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
    } else {
        &["--save", "", "--appendonly", "no"]
    };
    let server = RedisServer::start(args);
    let load = |script: &str| -> String {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query(&mut connect(server.port))
            .unwrap()
    };
    let shas = (load(LUA_GET), load(LUA_INCR));
    Setup {
        kind,
        name: if kind == Kind::RedisAlways {
            "redis, appendfsync always"
        } else {
            "redis, in memory"
        },
        port: server.port,
        shas: Some(shas),
        _processes: Processes::Redis(server),
    }
}

fn setups() -> Vec<Setup> {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let port = cluster.node(leader).port;
    load_probe(port);
    let single = Server::start(&[]);
    load_probe(single.port);
    vec![
        Setup {
            kind: Kind::Ferrite3,
            name: "ferrite, 3 nodes (leader)",
            port,
            shas: None,
            _processes: Processes::Cluster(cluster),
        },
        Setup {
            kind: Kind::Ferrite1,
            name: "ferrite, 1 node",
            port: single.port,
            shas: None,
            _processes: Processes::Ferrite(single),
        },
        redis_setup(Kind::RedisMemory),
        redis_setup(Kind::RedisAlways),
    ]
}

/// One measured cell.
struct Cell {
    workload: Workload,
    clients: u32,
    pipeline: u32,
    kind: Kind,
    rps: f64,
    p50: f64,
    p99: f64,
}

fn run(setup: &Setup, workload: Workload, clients: u32, pipeline: u32, requests: u64) -> Cell {
    let (c, n, p) = (
        clients.to_string(),
        requests.to_string(),
        pipeline.to_string(),
    );
    let mut args = vec!["-c", &c, "-n", &n, "-P", &p, "-r", KEYSPACE];
    let command = workload.command(setup);
    args.extend(command.iter().map(String::as_str));
    let row = &redis_benchmark(setup.port, &args)[0];
    Cell {
        workload,
        clients,
        pipeline,
        kind: setup.kind,
        rps: row.rps(),
        p50: row.p50(),
        p99: row.p99(),
    }
}

fn find(cells: &[Cell], w: Workload, clients: u32, pipeline: u32, kind: Kind) -> Option<&Cell> {
    cells.iter().find(|c| {
        c.workload == w && c.clients == clients && c.pipeline == pipeline && c.kind == kind
    })
}

/// The issue's goals: (workload, clients, pipeline, ferrite setup, least ratio).
const GOALS: &[(Workload, u32, u32, Kind, f64)] = &[
    (Workload::Get, 50, 1, Kind::Ferrite3, 0.8),
    (Workload::Get, 50, 16, Kind::Ferrite3, 0.6),
    (Workload::ReadCall, 50, 1, Kind::Ferrite3, 0.8),
    (Workload::ReadCall, 50, 16, Kind::Ferrite3, 0.6),
    (Workload::Set, 1, 1, Kind::Ferrite1, 1.0),
    (Workload::Set, 16, 1, Kind::Ferrite1, 1.0),
    (Workload::Set, 64, 1, Kind::Ferrite1, 1.0),
    (Workload::Set, 1, 1, Kind::Ferrite3, 0.5),
    (Workload::Set, 16, 1, Kind::Ferrite3, 0.8),
    (Workload::Set, 64, 1, Kind::Ferrite3, 0.8),
    (Workload::Get, 50, 16, Kind::Ferrite1, 0.9),
    (Workload::Set, 50, 16, Kind::Ferrite1, 1.0),
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests: u64 = std::env::var("FERRITE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let setups = setups();
    let setup = |kind: Kind| setups.iter().find(|s| s.kind == kind).expect("started");
    // Keys for the reads to find, and a number for the calls.
    for s in &setups {
        let args = [
            "-t", "set", "-r", KEYSPACE, "-n", "200000", "-c", "50", "-P", "16",
        ];
        redis_benchmark(s.port, &args);
        let _: () = redis::cmd("SET")
            .arg("{t}a")
            .arg("1000")
            .query(&mut connect(s.port))
            .unwrap();
    }
    let workloads = [
        Workload::Get,
        Workload::ReadCall,
        Workload::Set,
        Workload::WriteCall,
    ];
    let mut cells = Vec::new();
    for workload in workloads {
        let scale = if workload.reads() { 5 } else { 1 };
        let shapes = CLIENTS.iter().map(|&c| (c, 1)).chain([(50, 16)]);
        for (clients, pipeline) in shapes {
            let n = match (clients, pipeline) {
                (1, _) => requests * scale / 4,
                (_, 1) => requests * scale,
                _ => requests * scale * 8,
            };
            for kind in workload.setups() {
                cells.push(run(setup(kind), workload, clients, pipeline, n));
            }
        }
    }
    println!("| workload | clients | pipeline | setup | requests/s | p50 ms | p99 ms | × redis |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    for cell in &cells {
        let reference = cell.workload.setups()[2];
        let base = find(
            &cells,
            cell.workload,
            cell.clients,
            cell.pipeline,
            reference,
        )
        .map_or(f64::NAN, |r| r.rps);
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.2} |",
            cell.workload.name(),
            cell.clients,
            cell.pipeline,
            setup(cell.kind).name,
            cell.rps,
            cell.p50,
            cell.p99,
            cell.rps / base
        );
    }
    println!("\n| goal | clients | pipeline | setup | ratio | least | met |");
    println!("|---|---:|---:|---|---:|---:|---|");
    for &(w, clients, pipeline, kind, least) in GOALS {
        let reference = w.setups()[2];
        let ratio = match (
            find(&cells, w, clients, pipeline, kind),
            find(&cells, w, clients, pipeline, reference),
        ) {
            (Some(f), Some(r)) => f.rps / r.rps,
            _ => f64::NAN,
        };
        println!(
            "| {} against {} | {clients} | {pipeline} | {} | {ratio:.2} | {least:.1} | {} |",
            w.name(),
            setup(reference).name,
            setup(kind).name,
            if ratio >= least { "yes" } else { "no" }
        );
    }
    let charts: Vec<Chart> = workloads
        .iter()
        .map(|&w| Chart {
            title: w.name().to_owned(),
            series: w
                .setups()
                .iter()
                .map(|&kind| Series {
                    name: setup(kind).name.to_owned(),
                    points: CLIENTS
                        .iter()
                        .filter_map(|&c| {
                            find(&cells, w, c, 1, kind).map(|cell| (c as f64, cell.rps))
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let path = std::env::var("FERRITE_BENCH_PLOT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/benchmarks/replication.svg"
        )
        .to_owned()
    });
    let figure = svg(
        "Ferrite's replicated path against Redis (requests/s, no pipeline)",
        "clients",
        "requests/s",
        &charts,
    );
    if let Some(dir) = std::path::Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&path, figure) {
        Ok(()) => println!("\nplot: {path}"),
        Err(e) => eprintln!("could not write the plot to {path}: {e}"),
    }
}
