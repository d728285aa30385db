//! A three-node cluster under turmoil, started through the same composition root as the
//! binary: the hosts, their configuration, the live-node registry the scenarios consult, a
//! seeded generator for fault schedules, and the seed list parser.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrite::app::{App, Environment, Process};
use ferrite::commands::Shared;
use ferrite::config::{Config, Peers};
use ferrite::replication::ClockRate;

use crate::{SimDialer, SimDisk, SimListener};

/// The simulated hosts, node ids 1 to 3 in order.
pub const HOSTS: [&str; 3] = ["n1", "n2", "n3"];
/// A fourth host, node id 4, that starts empty and waits to be added (`add_joiner`).
pub const JOINER: &str = "n4";
/// Client port of every host.
pub const PORT: u16 = 6379;
/// Cluster port of every host.
pub const CPORT: u16 = 16379;
/// The cluster secret every simulated node holds.
const SECRET: &str = "the simulated cluster's secret";
/// The hand-written test module (`probe.incr` is a write call on `{t}a`).
pub const PROBE: &str = include_str!("../../tests/wasm/modules/probe.wat");

/// The request that loads [`PROBE`] as `probe`, with READ and WRITE.
pub const LOAD_PROBE: [&[u8]; 6] = [
    b"WASM.LOAD",
    b"probe",
    PROBE.as_bytes(),
    b"PERMISSIONS",
    b"READ",
    b"WRITE",
];

/// The nodes running now, by id: each registers itself once started.
pub type Live = Arc<Mutex<BTreeMap<u64, Arc<Shared>>>>;

/// Each host's wall-clock offset from simulated time, in ms (node ids 1 to 3 in order): the
/// nemesis sets and jumps them while the nodes run.
pub type Offsets = Arc<[AtomicI64; 4]>;

thread_local! {
    /// Each host's clock rate (node ids 1 to 4 in order) and the rate it was drawn with, per
    /// simulation.
    static RATES: std::cell::RefCell<Vec<(ClockRate, f64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Host `id`'s clock rate in this simulation (which the nemesis may change).
pub fn clock_rate(id: u64) -> ClockRate {
    RATES.with(|r| r.borrow()[id as usize - 1].0.clone())
}

/// Puts every host's clock back at the rate it was drawn with.
pub fn reset_clock_rates() {
    RATES.with(|r| r.borrow().iter().for_each(|(rate, drawn)| rate.set(*drawn)));
}

/// Draws each host's clock rate for `seed`, between 0.95 and 1.05 of simulated time, so a
/// follower's clock runs at most 10.5% faster than a leader's, inside the 10% the leader lease
/// allows for (`cluster.max_clock_drift_percent`). (The `ClockRatesApart` sabotage has the
/// nemesis slow a leader it cuts off to a twentieth of its rate, far beyond.)
fn draw_clock_rates(seed: u64) {
    let mut rng = Rng(seed ^ 0x0C10_C4A7_E5EE_D000);
    let rates = (0..4)
        .map(|_| {
            let rate = 0.95 + rng.between(0, 1_001) as f64 / 10_000.0;
            (ClockRate::new(rate), rate)
        })
        .collect();
    RATES.with(|r| *r.borrow_mut() = rates);
}

/// A small deterministic generator (splitmix64) for schedules and workloads.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low)
    }
}

/// Node `id`'s configuration: short Raft timings, frequent snapshots, a small instance pool.
pub fn config_for(id: u64) -> Config {
    let mut config = Config::default();
    config.server.bind = "0.0.0.0".to_owned();
    config.server.port = PORT;
    let c = &mut config.cluster;
    c.node_id = id;
    c.peers = "1@n1:6379@16379,2@n2:6379@16379,3@n3:6379@16379"
        .parse()
        .expect("a valid peer list");
    c.heartbeat_ms = 50;
    c.election_timeout_min_ms = 300;
    c.election_timeout_max_ms = 600;
    // Small, so snapshots, compaction and snapshot installs happen during the run.
    c.snapshot_logs = 100;
    c.snapshot_keep_logs = 20;
    // Restores here are small; a transfer a partition cut off is started again soon.
    c.snapshot_timeout_ms = 1000;
    c.write_timeout_ms = 3000;
    c.secret = SECRET.to_owned();
    if id as usize > HOSTS.len() {
        // The joiner: no initial group, it waits for CLUSTER ADDNODE.
        c.peers = Peers::none();
        c.join = true;
        c.announce_ip = JOINER.to_owned();
    }
    // Often, so a replica that diverges is caught by its digest during the run.
    c.state_check_interval_ms = 1000;
    config.wasm.pool.max_instances = 4;
    config
}

/// One node, started through the same composition root as the binary, with turmoil's
/// network, a disk that loses unsynced writes, and simulated time (so a seed replays the same
/// timestamps).
pub async fn run_node(
    id: u64,
    disk: Arc<SimDisk>,
    live: Live,
    offsets: Offsets,
) -> Result<(), Box<dyn Error>> {
    // This host's own monotonic clock (openraft's timers, the leader lease).
    ferrite::replication::use_clock_rate(&clock_rate(id));
    let peers = SimListener(turmoil::net::TcpListener::bind(("0.0.0.0", CPORT)).await?);
    let clients = SimListener(turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?);
    let env = Environment {
        dialer: Arc::new(SimDialer),
        disk,
        clock: Arc::new(move || {
            let simulated = turmoil::since_epoch().map_or(0, |d| d.as_millis() as i64);
            let offset = offsets[id as usize - 1].load(Ordering::Relaxed);
            simulated.saturating_add(offset).max(0) as u64
        }),
        compile_cache: None,
        entropy: crate::entropy,
    };
    let app = App::start(config_for(id), PORT, Some(peers), env, Process::fixed()).await?;
    live.lock().unwrap().insert(id, app.shared().clone());
    app.serve(clients).await;
    Ok(())
}

/// Adds the three hosts to `sim`, each on its own disk (created here, surviving crashes), with
/// its clock `offsets` from simulated time.
pub fn add_hosts(sim: &mut turmoil::Sim<'_>, live: &Live, offsets: &Offsets) -> Vec<Arc<SimDisk>> {
    let disks: Vec<Arc<SimDisk>> = (0..3).map(|_| Arc::default()).collect();
    for (i, host) in HOSTS.iter().enumerate() {
        let (disk, live, offsets) = (disks[i].clone(), live.clone(), offsets.clone());
        sim.host(*host, move || {
            run_node(i as u64 + 1, disk.clone(), live.clone(), offsets.clone())
        });
    }
    disks
}

/// Adds the joiner host (node 4, on a disk of its own): it starts empty and waits for
/// `CLUSTER ADDNODE 4 n4:6379@16379` on the leader.
pub fn add_joiner(sim: &mut turmoil::Sim<'_>, live: &Live, offsets: &Offsets) -> Arc<SimDisk> {
    let disk: Arc<SimDisk> = Arc::default();
    let (d, live, offsets) = (disk.clone(), live.clone(), offsets.clone());
    sim.host(JOINER, move || {
        run_node(4, d.clone(), live.clone(), offsets.clone())
    });
    disk
}

/// Runs the simulation one step: whether every client has finished.
pub fn step(sim: &mut turmoil::Sim<'_>) -> Result<bool, String> {
    sim.step().map_err(|e| e.to_string())
}

/// The name of node `id`'s host.
pub fn host_name(id: u64) -> &'static str {
    HOSTS.get(id as usize - 1).copied().unwrap_or(JOINER)
}

/// The node id of host `name`, if it is one of ours.
pub fn host_id(name: &str) -> Option<u64> {
    HOSTS
        .iter()
        .chain([JOINER].iter())
        .position(|h| *h == name)
        .map(|i| i as u64 + 1)
}

/// `host:port` of node `id`.
pub fn host_addr(id: u64) -> String {
    format!("{}:{PORT}", host_name(id))
}

/// The leader's id, if one running node leads.
pub fn leader(live: &Live) -> Option<u64> {
    live.lock()
        .unwrap()
        .iter()
        .find(|(_, s)| s.node.is_leader())
        .map(|(id, _)| *id)
}

/// A running node that stopped serving (a state check found its state different, or it met an
/// entry it cannot read).
pub fn diverged(live: &Live) -> Option<String> {
    live.lock().unwrap().iter().find_map(|(id, s)| {
        s.node
            .topology()
            .diverged
            .map(|why| format!("n{id} stopped serving: {why}"))
    })
}

/// Fingerprints of every node, once all three are running and agree.
pub fn agreed(live: &Live) -> Option<(u64, String)> {
    let live = live.lock().unwrap();
    if live.len() < 3 {
        return None;
    }
    let prints: Vec<(u64, String)> = live.values().map(|s| s.node.state_fingerprint()).collect();
    (prints.iter().all(|p| *p == prints[0]) && prints[0].0 > 0).then(|| prints[0].clone())
}

/// The seeds to run: `FERRITE_SIM_SEEDS` when set, else `default`.
pub fn seeds(default: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    match std::env::var("FERRITE_SIM_SEEDS") {
        Ok(text) => parse_seeds(&text).unwrap_or_else(|e| panic!("FERRITE_SIM_SEEDS: {e}")),
        Err(_) => default.collect(),
    }
}

/// Parses a seed list: comma-separated seeds and ranges (`7`, `1,5,9`, `1-1000`). A word that
/// is not a seed, a backwards range, or a list naming no seed at all is an error: a run must
/// never pass by running nothing.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let mut seeds = Vec::new();
    for word in text.split(',').map(str::trim) {
        let number = |w: &str| {
            w.trim()
                .parse::<u64>()
                .map_err(|_| format!("'{w}' is not a seed (a number, or a range like 1-100)"))
        };
        match word.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(format!("the range '{word}' runs backwards"));
                }
                seeds.extend(first..=last);
            }
            None => seeds.push(number(word)?),
        }
    }
    Ok(seeds)
}

/// How many shards a tokio runtime's task list may have here: a power of two at least as
/// large as a current-thread runtime's (4).
const TASK_SHARDS: u64 = 64;

/// Moves tokio's process-wide task id counter to a multiple of [`TASK_SHARDS`].
///
/// A runtime keeps its tasks in lists sharded by task id, and shutting it down (a simulated
/// host crashing) drops them shard by shard: the order in which a crashed host's sockets close
/// depends on the ids its tasks got, which come from one counter for the whole process. Without
/// this, a seed replayed exactly only as the first simulation of a process; aligned, every run
/// of a seed spawns its tasks at the same ids modulo the shard count, wherever it runs.
fn align_task_ids() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime to spawn on");
    loop {
        let id = runtime.spawn(async {}).id().to_string();
        let id: u64 = id.parse().expect("a task id is a number");
        if id % TASK_SHARDS == TASK_SHARDS - 1 {
            break;
        }
    }
}

/// A simulation with the settings every scenario uses, seeded with `seed` (turmoil's network
/// randomness, openraft's election timeouts, bus nonces).
pub fn simulation(seed: u64, duration: Duration) -> turmoil::Sim<'static> {
    align_task_ids();
    ferrite::replication::seed_rng(seed);
    crate::seed_entropy(seed);
    draw_clock_rates(seed);
    turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .simulation_duration(duration)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .tcp_capacity(1 << 16)
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use ferrite::replication::{ClockRate, LocalInstant, sleep_local, use_clock_rate};

    use super::parse_seeds;

    /// A host whose clock runs at half rate reads half of simulated time, and a sleep on its
    /// clock (as openraft's timers sleep) lasts twice as long in simulated time; another
    /// host's clock is untouched.
    #[test]
    fn a_host_clock_runs_at_its_own_rate() {
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(60))
            .build();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for (host, rate) in [("slow", 0.5), ("plain", 1.0)] {
            let seen = seen.clone();
            sim.client(host, async move {
                let clock = ClockRate::new(rate);
                if rate != 1.0 {
                    use_clock_rate(&clock);
                }
                let local = LocalInstant::now();
                tokio::time::sleep(Duration::from_secs(4)).await;
                let read = LocalInstant::now() - local;
                let at = tokio::time::Instant::now();
                sleep_local(Duration::from_secs(1)).await;
                let slept = at.elapsed();
                // A rate changed on the way: the clock goes on from where it was.
                clock.set(rate * 2.0);
                let before = LocalInstant::now();
                tokio::time::sleep(Duration::from_secs(1)).await;
                let after = LocalInstant::now() - before;
                seen.lock().unwrap().push((host, read, slept, after));
                Ok(())
            });
        }
        sim.run().unwrap();
        let seen = seen.lock().unwrap();
        let of = |name| *seen.iter().find(|s| s.0 == name).unwrap();
        assert_eq!(of("slow").1, Duration::from_secs(2), "{seen:?}");
        assert_eq!(of("slow").2, Duration::from_secs(2), "{seen:?}");
        assert_eq!(of("plain").1, Duration::from_secs(4), "{seen:?}");
        assert_eq!(of("plain").2, Duration::from_secs(1), "{seen:?}");
        assert_eq!(of("slow").3, Duration::from_secs(1), "{seen:?}");
        assert_eq!(
            of("plain").3,
            Duration::from_secs(1),
            "a clock never followed"
        );
    }

    #[test]
    fn the_seed_list_is_parsed_strictly() {
        assert_eq!(parse_seeds("7"), Ok(vec![7]));
        assert_eq!(parse_seeds(" 1, 5,9 "), Ok(vec![1, 5, 9]));
        assert_eq!(parse_seeds("1-4,10"), Ok(vec![1, 2, 3, 4, 10]));
        for bad in ["", " ", "1,x", "1,,2", "seven", "5-2", "-3", "1-"] {
            assert!(parse_seeds(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
