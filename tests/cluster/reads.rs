//! Long read-only calls on the leader, one per core, against the cluster's liveness: they run
//! off the async workers and hold no lock while their guests run, so heartbeats go on, no
//! election starts, and writes commit while they run.

use std::time::Duration;

use ferrite_testkit::{Cluster, ConfigFile, cmd, error_line, wait_until};
use redis::Value;

use super::{ELECTION, load_probe};

fn term(cluster: &Cluster, id: usize) -> String {
    cluster
        .info_field(id, "raft_term")
        .expect("INFO cluster has raft_term")
}

#[test]
fn a_long_read_only_call_per_core_changes_no_term_and_writes_go_on() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let mut l = cluster.client(leader);
    load_probe(&mut l);
    cmd(&mut l, &["CONFIG", "SET", "wasm-max-fuel", "1000000000000"]).unwrap();
    cmd(&mut l, &["CONFIG", "SET", "wasm-max-duration-ms", "5000"]).unwrap();
    let before = term(&cluster, leader);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..cores)
        .map(|_| {
            let mut s = cluster.client(leader);
            std::thread::spawn(move || {
                cmd(&mut s, &["WASM.CALL_RO", "probe.spin"]).map_err(|e| error_line(&e))
            })
        })
        .collect();
    let running = wait_until(Duration::from_secs(10), || {
        cluster
            .node(leader)
            .log()
            .iter()
            .filter(|l| l.contains("spinning") && l.contains("module=probe"))
            .count()
            // Each call logs once per run: in its first time slice, then again off the worker.
            >= 2 * cores
    });
    assert!(running, "the spinning calls never all started");
    // Writes commit through the whole cluster while every spinner still runs.
    for i in 0..20 {
        assert_eq!(
            cmd(&mut l, &["SET", &format!("k{i}"), "v"]).unwrap(),
            Value::Okay,
            "write {i}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "the writes were answered only once the calls had ended"
    );
    for spinner in spinners {
        assert_eq!(spinner.join().unwrap(), Err("ERR wasm: timeout".to_owned()));
    }
    assert_eq!(term(&cluster, leader), before, "an election ran meanwhile");
    assert_eq!(cluster.wait_for_leader(ELECTION), leader);
}

/// A cluster whose leader confirms leadership with a heartbeat round for every batch of reads
/// (no lease).
fn read_index_cluster() -> (Cluster, ConfigFile) {
    let config = ConfigFile::new("[cluster]\nlease_reads = false\n");
    (Cluster::start(3, &["--config", config.arg()]), config)
}

/// openraft asks for a new client to each follower for every linearizable read: the bus keeps
/// idle connections, so reads reuse them rather than dial (and handshake) each time.
#[test]
fn linearizable_reads_reuse_bus_connections() {
    let (cluster, _config) = read_index_cluster();
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let mut c = cluster.client(leader);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let dials_before = cluster.info_u64(leader, "cluster_bus_dials");
    for _ in 0..300 {
        let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
        assert_eq!(v, "v");
    }
    let dials = cluster.info_u64(leader, "cluster_bus_dials") - dials_before;
    assert!(dials < 30, "300 reads dialled the followers {dials} times");
}

/// Reads share leadership confirmations (the read-index queue): a pipeline of reads, all sent
/// before the leader read them off the socket, is served by a round or two, not one round per
/// read; each read still sees every write acknowledged before it.
#[test]
fn pipelined_reads_share_a_leadership_round() {
    let (cluster, _config) = read_index_cluster();
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let mut c = cluster.client(leader);
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    let rounds_before = cluster.info_u64(leader, "cluster_read_rounds");
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("GET").arg(format!("k{i}"));
    }
    let got: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(got, (0..200).collect::<Vec<i64>>());
    let rounds = cluster.info_u64(leader, "cluster_read_rounds") - rounds_before;
    assert!(
        (1..=10).contains(&rounds),
        "200 pipelined reads ran {rounds} leadership rounds"
    );
}

/// Under its lease (the default) a leader answers reads with no heartbeat round, each seeing
/// the writes acknowledged before it; once its followers are gone and the lease has run out,
/// it answers no read from its own state any more (a new leader may be writing elsewhere).
#[test]
fn a_leader_reads_under_its_lease_and_stops_once_the_lease_runs_out() {
    let config = ConfigFile::new("[cluster]\nwrite_timeout_ms = 1000\n");
    let mut cluster = Cluster::start(3, &["--config", config.arg()]);
    let leader = cluster.wait_for_leader(ELECTION);
    let mut c = cluster.client(leader);
    let rounds_before = cluster.info_u64(leader, "cluster_read_rounds");
    for i in 0..200 {
        let key = format!("k{i}");
        assert_eq!(cmd(&mut c, &["SET", &key, "v"]).unwrap(), Value::Okay);
        assert_eq!(
            cmd(&mut c, &["GET", &key]).unwrap(),
            Value::BulkString(b"v".to_vec()),
            "{key}"
        );
    }
    let rounds = cluster.info_u64(leader, "cluster_read_rounds") - rounds_before;
    assert!(rounds <= 2, "200 reads under the lease ran {rounds} rounds");

    for id in (1..=3).filter(|&id| id != leader) {
        cluster.kill(id);
    }
    // The lease ends 0.9 s after the last heartbeat a follower accepted (election timeout
    // 1 s); past it a read needs a round, which no follower answers.
    let mut last = None;
    let refused = wait_until(Duration::from_secs(10), || {
        let read = cmd(&mut c, &["GET", "k1"]);
        let refused = read.is_err();
        last = Some(read);
        refused
    });
    assert!(
        refused,
        "a leader without followers kept answering reads: {last:?}"
    );
    assert!(cluster.info_u64(leader, "cluster_read_rounds") > rounds_before + rounds);
}
