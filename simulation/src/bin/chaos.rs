//! Chaos with real processes: the workload of the simulation (`ferrite_simulation::workload`)
//! run by five client threads over real TCP against three Ferrite containers, while a nemesis
//! pauses, kills, disconnects and restarts containers with the Docker CLI. Every operation is
//! recorded with its invocation and completion time (unknown outcomes as such); once the
//! faults are healed the leader's final reads close the history, and it goes through the same
//! linearizability checker as the simulation's. A lost acknowledged write fails the final
//! reads' check.
//!
//! ```text
//! chaos SECONDS SEED NETWORK CONTAINER=IP CONTAINER=IP CONTAINER=IP
//! ```
//!
//! `cluster/docker-test.sh` runs it against its docker-compose cluster (port 6379 on each IP).
//! It exits with 1 and prints a minimal failing sub-history when the checker finds an anomaly.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ferrite_simulation::harness::{LOAD_PROBE, Rng};
use ferrite_simulation::workload::{
    COUNTER, EXPIRING, Ended, History, LISTS, REGISTERS, check_history, plan, record,
};
use ferrite_testkit::resp::{SyncClient, Value as Reply};

/// Client threads.
const CLIENTS: usize = 5;

/// The cluster under test.
struct Cluster {
    network: String,
    containers: Vec<String>,
    ips: Vec<IpAddr>,
    started: Instant,
}

impl Cluster {
    /// Microseconds since the run started: the clock every record uses.
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn addr(&self, node: usize) -> SocketAddr {
        SocketAddr::new(self.ips[node], 6379)
    }

    /// Runs `docker args`; whether it succeeded.
    fn docker(&self, args: &[&str]) -> bool {
        Command::new("docker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Puts every container back: running, unpaused, on the network.
    fn heal(&self) {
        for (c, ip) in self.containers.iter().zip(&self.ips) {
            self.docker(&["unpause", c]);
            self.docker(&["start", c]);
            let ip = ip.to_string();
            self.docker(&["network", "connect", "--ip", &ip, &self.network, c]);
        }
    }
}

/// One client's connection: to one node at a time, following MOVED.
struct Conn {
    cluster: Arc<Cluster>,
    target: usize,
    client: Option<SyncClient>,
}

impl Conn {
    fn new(cluster: Arc<Cluster>, target: usize) -> Conn {
        Conn {
            cluster,
            target,
            client: None,
        }
    }

    fn next_node(&mut self) {
        self.target = (self.target + 1) % self.cluster.ips.len();
        self.client = None;
    }

    /// Sends `args`, never retrying a request whose outcome is unknown.
    fn send(&mut self, args: &[&[u8]]) -> Ended {
        for _ in 0..20 {
            if self.client.is_none() {
                let addr = self.cluster.addr(self.target);
                let timeout = Duration::from_secs(3);
                match SyncClient::connect_to(addr, Duration::from_secs(1), timeout) {
                    Ok(c) => self.client = Some(c),
                    Err(_) => {
                        // Nothing was sent.
                        self.next_node();
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
            let Some(client) = self.client.as_mut() else {
                continue;
            };
            match client.request(args) {
                Ok(Reply::Error(e)) if e.starts_with("MOVED ") => {
                    let ip = e.rsplit(' ').next().and_then(|a| a.split(':').next());
                    let ip: Option<IpAddr> = ip.and_then(|ip| ip.parse().ok());
                    match self.cluster.ips.iter().position(|i| Some(*i) == ip) {
                        Some(node) if node != self.target => {
                            self.target = node;
                            self.client = None;
                        }
                        _ => self.next_node(),
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(Reply::Error(e))
                    if e.starts_with("CLUSTERDOWN") || e.starts_with("TRYAGAIN") =>
                {
                    self.next_node();
                    thread::sleep(Duration::from_millis(100));
                }
                Ok(Reply::Error(e)) if e.starts_with("UNCERTAIN") => {
                    self.next_node();
                    return Ended::Unknown;
                }
                Ok(reply) => return Ended::Reply(reply),
                Err(_) => {
                    self.next_node();
                    return Ended::Unknown;
                }
            }
        }
        Ended::Refused
    }
}

/// One client's loop until `until`: random operations of the simulation's workload.
fn client(
    cluster: Arc<Cluster>,
    id: usize,
    seed: u64,
    until: Duration,
    history: &Mutex<History>,
) -> Result<(), String> {
    let mut rng = Rng(seed ^ (id as u64).wrapping_mul(0x5851_F42D_4C95_7F2D));
    let mut conn = Conn::new(cluster.clone(), id % 3);
    let mut n = 0;
    while cluster.started.elapsed() < until {
        n += 1;
        thread::sleep(Duration::from_millis(rng.between(2, 25)));
        let roll = rng.between(10, 100);
        let (args, kind) = plan(&mut rng, id, n, roll);
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let invoke = cluster.now();
        let ended = conn.send(&refs);
        let mut h = history.lock().map_err(|_| "a client panicked")?;
        record(&mut h, id, invoke, cluster.now(), &args, kind, ended)?;
    }
    Ok(())
}

/// The faults the nemesis injects, each healed after a while.
const FAULTS: [&str; 5] = ["pause", "kill", "disconnect", "restart", "kill all"];

/// Injects a random fault every few seconds until `until`, healing each before the next.
fn nemesis(cluster: &Cluster, seed: u64, until: Duration, events: &Mutex<Vec<String>>) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let log = |what: String| {
        let at = cluster.started.elapsed().as_secs_f64();
        println!("{at:7.2}s {what}");
        events.lock().map(|mut e| e.push(what)).ok();
    };
    while cluster.started.elapsed() + Duration::from_secs(5) < until {
        thread::sleep(Duration::from_millis(rng.between(1000, 3000)));
        let fault = FAULTS[rng.between(0, FAULTS.len() as u64) as usize];
        let node = rng.between(0, 3) as usize;
        let c = cluster.containers[node].as_str();
        let ok = match fault {
            "pause" => cluster.docker(&["pause", c]),
            "kill" => cluster.docker(&["kill", c]),
            "disconnect" => cluster.docker(&["network", "disconnect", "-f", &cluster.network, c]),
            "restart" => cluster.docker(&["restart", "-t", "0", c]),
            _ => cluster
                .containers
                .iter()
                .all(|c| cluster.docker(&["kill", c])),
        };
        let target = if fault == "kill all" {
            "all nodes".to_owned()
        } else {
            format!("node {}", node + 1)
        };
        log(format!(
            "{fault} {target}{}",
            if ok { "" } else { " (docker refused)" }
        ));
        thread::sleep(Duration::from_millis(rng.between(1000, 4000)));
        cluster.heal();
        log("healed".to_owned());
    }
}

/// Loads the probe module through whichever node leads.
fn load_probe(cluster: &Arc<Cluster>) -> Result<(), String> {
    let mut conn = Conn::new(cluster.clone(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match conn.send(&LOAD_PROBE) {
            Ended::Reply(Reply::Status(_)) => return Ok(()),
            Ended::Reply(Reply::Error(e)) if e.contains("already exists") => return Ok(()),
            Ended::Reply(other) => return Err(format!("WASM.LOAD: {other:?}")),
            Ended::Unknown | Ended::Refused => thread::sleep(Duration::from_millis(200)),
        }
    }
    Err("no node took the module within 60 s".to_owned())
}

/// Reads every key on the leader once the faults are healed: the history's last operations.
fn final_reads(cluster: &Arc<Cluster>, history: &Mutex<History>) -> Result<(), String> {
    let mut conn = Conn::new(cluster.clone(), 0);
    let mut reads: Vec<(Vec<Vec<u8>>, u8)> = Vec::new();
    for key in REGISTERS {
        reads.push((vec![b"GET".to_vec(), key.into()], 1));
    }
    for key in EXPIRING {
        reads.push((vec![b"GET".to_vec(), key.into()], 7));
    }
    reads.push((vec![b"GET".to_vec(), COUNTER.into()], 3));
    for key in LISTS {
        reads.push((
            vec![
                b"LRANGE".to_vec(),
                key.into(),
                b"0".to_vec(),
                b"-1".to_vec(),
            ],
            5,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for (args, kind) in reads {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        loop {
            if Instant::now() > deadline {
                return Err("the cluster did not answer the final reads within 90 s".to_owned());
            }
            let invoke = cluster.now();
            let ended = conn.send(&refs);
            if let Ended::Reply(_) = ended {
                let mut h = history.lock().map_err(|_| "a client panicked")?;
                record(&mut h, CLIENTS, invoke, cluster.now(), &args, kind, ended)?;
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

fn parse_args() -> Result<(Duration, u64, Cluster), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: chaos SECONDS SEED NETWORK CONTAINER=IP CONTAINER=IP CONTAINER=IP";
    let [seconds, seed, network, nodes @ ..] = args.as_slice() else {
        return Err(usage.to_owned());
    };
    let seconds: u64 = seconds.parse().map_err(|_| usage)?;
    let seed: u64 = seed.parse().map_err(|_| usage)?;
    let mut containers = Vec::new();
    let mut ips = Vec::new();
    for node in nodes {
        let (c, ip) = node.split_once('=').ok_or(usage)?;
        containers.push(c.to_owned());
        ips.push(ip.parse().map_err(|_| usage)?);
    }
    if ips.len() != 3 {
        return Err(usage.to_owned());
    }
    let cluster = Cluster {
        network: network.clone(),
        containers,
        ips,
        started: Instant::now(),
    };
    Ok((Duration::from_secs(seconds), seed, cluster))
}

fn run() -> Result<String, String> {
    let (duration, seed, cluster) = parse_args()?;
    let cluster = Arc::new(cluster);
    load_probe(&cluster)?;
    let workload = cluster.started.elapsed() + duration;
    let history = Arc::new(Mutex::new(History::default()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (cluster, history) = (cluster.clone(), history.clone());
            thread::spawn(move || client(cluster, id, seed, workload, &history))
        })
        .collect();
    let nemesis = {
        let (cluster, events) = (cluster.clone(), events.clone());
        thread::spawn(move || nemesis(&cluster, seed, workload, &events))
    };
    let mut errors = Vec::new();
    for c in clients {
        match c.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a client thread panicked".to_owned()),
        }
    }
    let _ = nemesis.join();
    cluster.heal();
    if let Some(e) = errors.first() {
        return Err(format!("a client stopped: {e}"));
    }
    final_reads(&cluster, &history)?;
    let h = history.lock().map_err(|_| "a client panicked")?;
    if h.completed < 100 {
        return Err(format!(
            "only {} operations completed: nothing was tested",
            h.completed
        ));
    }
    let checked = check_history(&h)?;
    let faults = events.lock().map_or(0, |e| e.len() / 2);
    Ok(format!(
        "seed {seed}: {checked} operations linearizable ({} completed, {} unknown), {faults} faults",
        h.completed, h.unknown
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::FAILURE
        }
    }
}
