//! Cluster mode with real processes: three (or four) ferrite nodes on 127.0.0.1 forming one
//! Raft group, driven by the redis crate (plain and cluster clients).

use std::collections::BTreeSet;
use std::time::Duration;

use ferrite_testkit::{Cluster, ConfigFile, Server, cmd, err, wait_until};
use redis::Value;

mod bus;
mod checks;
mod clocks;
mod identity;
mod large;
mod reads;

const ELECTION: Duration = Duration::from_secs(15);

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b).unwrap(),
        Value::VerbatimString { text, .. } => text,
        Value::SimpleString(s) => s,
        other => panic!("not text: {other:?}"),
    }
}

fn cluster_client(cluster: &Cluster) -> redis::cluster::ClusterConnection {
    redis::cluster::ClusterClient::builder(cluster.urls())
        .retries(10)
        .build()
        .unwrap()
        .get_connection()
        .unwrap()
}

fn followers(cluster: &Cluster, leader: usize) -> Vec<usize> {
    cluster
        .running()
        .into_iter()
        .filter(|id| *id != leader)
        .collect()
}

/// The hand-written test module of `tests/wasm` (its `incr` export is a write call).
fn probe() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasm/modules/probe.wat"),
    )
    .unwrap()
}

/// Loads the probe module with READ and WRITE through `c` (the leader).
fn load_probe(c: &mut redis::Connection) {
    load_module(c, "probe", &probe());
}

/// Loads the probe module as `name`, its bytes made unique by a comment naming it (so each
/// one is compiled on its own).
fn load_probe_as(c: &mut redis::Connection, name: &str) {
    load_module(c, name, &format!("{}\n;; {name}\n", probe()));
}

fn load_module(c: &mut redis::Connection, name: &str, source: &str) {
    let words = ["WASM.LOAD", name, source, "PERMISSIONS", "READ", "WRITE"];
    assert_eq!(cmd(c, &words).unwrap(), Value::Okay);
}

/// CLUSTER NODES without the `myself,` marker, which differs per node by design.
fn nodes_view(cluster: &Cluster, id: usize) -> String {
    text(cmd(&mut cluster.client(id), &["CLUSTER", "NODES"]).unwrap()).replace("myself,", "")
}

#[test]
fn three_nodes_agree_redirect_and_serve_cluster_clients() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let (leader_port, _) = cluster.ports[leader - 1];

    // Every node describes the same cluster.
    let nodes = nodes_view(&cluster, leader);
    assert!(nodes.ends_with('\n'), "{nodes:?}");
    assert_eq!(nodes.lines().count(), 3);
    assert_eq!(nodes.matches(" master ").count(), 1, "{nodes}");
    assert!(nodes.contains(&format!("127.0.0.1:{leader_port}@")));
    let slots = cmd(&mut cluster.client(leader), &["CLUSTER", "SLOTS"]).unwrap();
    let shards = cmd(&mut cluster.client(leader), &["CLUSTER", "SHARDS"]).unwrap();
    let mut ids = BTreeSet::new();
    for id in cluster.running() {
        assert!(wait_until(Duration::from_secs(5), || nodes_view(
            &cluster, id
        ) == nodes));
        let mut c = cluster.client(id);
        assert_eq!(cmd(&mut c, &["CLUSTER", "SLOTS"]).unwrap(), slots);
        assert_eq!(cmd(&mut c, &["CLUSTER", "SHARDS"]).unwrap(), shards);
        let info = text(cmd(&mut c, &["CLUSTER", "INFO"]).unwrap());
        assert!(info.starts_with("cluster_state:ok\r\n"), "{info}");
        assert!(info.contains("cluster_known_nodes:3\r\n"), "{info}");
        let myid = text(cmd(&mut c, &["CLUSTER", "MYID"]).unwrap());
        assert_eq!(myid.len(), 40);
        assert!(nodes.contains(&myid));
        ids.insert(myid);
        let server_info: String = redis::cmd("INFO").query(&mut c).unwrap();
        assert!(server_info.contains("cluster_enabled:1"));
        assert_eq!(
            cmd(&mut c, &["CLUSTER", "KEYSLOT", "foo{hash_tag}"]).unwrap(),
            Value::Int(2515)
        );
    }
    assert_eq!(ids.len(), 3, "distinct node ids");

    // A write on a follower is redirected to the leader; a read too, unless READONLY.
    let follower = followers(&cluster, leader)[0];
    let mut f = cluster.client(follower);
    assert_eq!(
        err(&mut f, &["SET", "foo", "bar"]),
        format!("MOVED 12182 127.0.0.1:{leader_port}")
    );
    let mut l = cluster.client(leader);
    assert_eq!(cmd(&mut l, &["SET", "foo", "bar"]).unwrap(), Value::Okay);
    assert_eq!(cmd(&mut l, &["GET", "foo"]).unwrap(), bulk("bar"));
    assert_eq!(
        err(&mut f, &["GET", "foo"]),
        format!("MOVED 12182 127.0.0.1:{leader_port}")
    );
    assert_eq!(cmd(&mut f, &["READONLY"]).unwrap(), Value::Okay);
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut f,
        &["GET", "foo"]
    )
    .unwrap()
        == bulk("bar")));
    assert_eq!(
        err(&mut f, &["SET", "foo", "baz"]),
        format!("MOVED 12182 127.0.0.1:{leader_port}"),
        "READONLY does not make a follower writable"
    );
    assert_eq!(
        err(&mut l, &["MSET", "a", "1", "b", "2"]),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    assert_eq!(
        cmd(&mut l, &["MSET", "{u}a", "1", "{u}b", "2"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut l, &["CLUSTER", "COUNTKEYSINSLOT", "12182"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut l, &["CLUSTER", "GETKEYSINSLOT", "12182", "10"]).unwrap(),
        Value::Array(vec![bulk("foo")])
    );

    // The redis crate's cluster client, seeded with every node, follows the topology.
    let mut cc = cluster_client(&cluster);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(i)
            .query(&mut cc)
            .unwrap();
    }
    for i in (0..200).step_by(17) {
        let v: i64 = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut cc)
            .unwrap();
        assert_eq!(v, i);
    }
    // Seeded with a follower only, it still lands writes (MOVED or the slot table).
    let mut only_follower = redis::cluster::ClusterClient::new(vec![cluster.node(follower).url()])
        .unwrap()
        .get_connection()
        .unwrap();
    let n: i64 = redis::cmd("INCR")
        .arg("counter")
        .query(&mut only_follower)
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn the_leader_dies_a_new_one_serves_and_no_acknowledged_write_is_lost() {
    let mut cluster = Cluster::start(3, &[]);
    let old = cluster.wait_for_leader(ELECTION);
    let mut l = cluster.client(old);
    for i in 0..300 {
        assert_eq!(
            cmd(&mut l, &["SET", &format!("k{i}"), &i.to_string()]).unwrap(),
            Value::Okay
        );
    }
    cluster.kill(old);
    let new = cluster.wait_for_leader(ELECTION);
    assert_ne!(new, old);
    let mut n = cluster.client(new);
    assert_eq!(
        cmd(&mut n, &["SET", "after", "failover"]).unwrap(),
        Value::Okay
    );
    for i in 0..300 {
        assert_eq!(
            cmd(&mut n, &["GET", &format!("k{i}")]).unwrap(),
            bulk(&i.to_string()),
            "acknowledged write k{i} lost"
        );
    }
    // The old leader comes back as a follower and catches up.
    cluster.start_node(old);
    let leader = cluster.wait_for_leader(ELECTION);
    assert_eq!(
        leader, new,
        "a returning node does not disrupt a healthy leader"
    );
    let mut back = cluster.client(old);
    cmd(&mut back, &["READONLY"]).unwrap();
    assert!(wait_until(Duration::from_secs(10), || cmd(
        &mut back,
        &["GET", "after"]
    )
    .unwrap()
        == bulk("failover")));
    assert_eq!(cmd(&mut back, &["DBSIZE"]).unwrap(), Value::Int(301));
}

#[test]
fn all_nodes_restart_with_their_data_and_modules() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let mut l = cluster.client(leader);
    load_probe(&mut l);
    for i in 0..50 {
        cmd(&mut l, &["RPUSH", "list", &i.to_string()]).unwrap();
    }
    assert_eq!(
        cmd(&mut l, &["FCALL", "probe.incr", "1", "{t}a"]).unwrap(),
        Value::Int(1)
    );
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.start_node(id);
    }
    let leader = cluster.wait_for_leader(ELECTION);
    let mut l = cluster.client(leader);
    assert_eq!(cmd(&mut l, &["LLEN", "list"]).unwrap(), Value::Int(50));
    let got = cmd(&mut l, &["GET", "{t}a"]).unwrap();
    if got != bulk("1") {
        eprintln!("INFO {:?}", cmd(&mut l, &["WASM.INFO", "probe"]));
        for id in 1..=3 {
            eprintln!("LOG{id} {:?}", cluster.node(id).log());
        }
    }
    assert_eq!(got, bulk("1"));
    assert_eq!(
        cmd(&mut l, &["FCALL", "probe.incr", "1", "{t}a"]).unwrap(),
        Value::Int(2),
        "the module came back with the data"
    );
}

/// Fields of a WASM.LIST entry that must agree across members (compile time is each node's
/// own measurement).
fn replicated_fields(list: Value) -> Vec<(String, Value)> {
    let Value::Array(modules) = list else {
        panic!("{list:?}")
    };
    let mut out = Vec::new();
    for m in modules {
        let pairs: Vec<(Value, Value)> = match m {
            Value::Map(p) => p,
            Value::Array(flat) => flat
                .chunks(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect(),
            other => panic!("{other:?}"),
        };
        for (k, v) in pairs {
            let k = text(k);
            if k != "compile_time_us" {
                out.push((k, v));
            }
        }
    }
    out
}

fn module_field(c: &mut redis::Connection, module: &str, name: &str) -> Value {
    let Value::Array(flat) = cmd(c, &["WASM.INFO", module]).unwrap() else {
        panic!()
    };
    flat.chunks(2)
        .find(|kv| kv[0] == bulk(name))
        .map(|kv| kv[1].clone())
        .unwrap()
}

#[test]
fn modules_and_write_calls_replicate_with_the_same_fuel() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let mut l = cluster.client(leader);
    let follower = followers(&cluster, leader)[0];
    let mut f = cluster.client(follower);
    assert!(
        err(&mut f, &["WASM.LOAD", "probe", &probe()]).starts_with("MOVED 0 "),
        "loads go to the leader"
    );
    load_probe(&mut l);
    let expected = replicated_fields(cmd(&mut l, &["WASM.LIST"]).unwrap());
    for id in cluster.running() {
        let mut c = cluster.client(id);
        assert!(
            wait_until(Duration::from_secs(5), || replicated_fields(
                cmd(&mut c, &["WASM.LIST"]).unwrap()
            ) == expected),
            "node {id} lists other modules"
        );
    }
    // A write call runs on the leader and, from the log, on every replica.
    for n in 1..=5 {
        assert_eq!(
            cmd(&mut l, &["FCALL", "probe.incr", "1", "{t}a"]).unwrap(),
            Value::Int(n)
        );
    }
    assert!(err(&mut f, &["FCALL", "probe.incr", "1", "{t}a"]).starts_with("MOVED "));
    // As documented: a call without keys is a read of slot 0, redirected from a follower
    // unless READONLY; keyless commands are answered by any member from its own state.
    assert!(err(&mut f, &["FCALL_RO", "probe.nkeys", "0"]).starts_with("MOVED 0 "));
    assert!(matches!(cmd(&mut f, &["DBSIZE"]).unwrap(), Value::Int(_)));
    let fuel = module_field(&mut l, "probe", "fuel_total");
    assert!(matches!(fuel, Value::Int(n) if n > 0));
    for id in followers(&cluster, leader) {
        let mut c = cluster.client(id);
        cmd(&mut c, &["READONLY"]).unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || cmd(&mut c, &["GET", "{t}a"])
                .unwrap()
                == bulk("5")),
            "node {id} did not apply the calls"
        );
        assert_eq!(
            module_field(&mut c, "probe", "fuel_total"),
            fuel,
            "node {id}"
        );
        assert_eq!(module_field(&mut c, "probe", "call_count"), Value::Int(5));
        // Read-only calls run on any member against its own state.
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", "probe.get_via_call", "1", "{t}a"]).unwrap(),
            bulk("5")
        );
        assert_eq!(
            cmd(&mut c, &["FCALL_RO", "probe.nkeys", "0"]).unwrap(),
            Value::Int(0)
        );
    }
    assert_eq!(
        cmd(&mut f, &["WASM.UNLOAD", "probe"]).map_err(|e| e.code().map(str::to_owned)),
        Err(Some("MOVED".to_owned()))
    );
    assert_eq!(cmd(&mut l, &["WASM.UNLOAD", "probe"]).unwrap(), Value::Okay);
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut f,
        &["WASM.LIST"]
    )
    .unwrap()
        == Value::Array(vec![])));
}

#[test]
fn a_node_added_at_run_time_catches_up_by_snapshot_and_a_removed_one_stops_serving() {
    let config = ConfigFile::new("[cluster]\nsnapshot_logs = 50\nsnapshot_keep_logs = 0\n");
    let mut cluster = Cluster::start(3, &["--config", config.arg()]);
    let leader = cluster.wait_for_leader(ELECTION);
    let mut l = cluster.client(leader);
    for i in 0..400 {
        cmd(&mut l, &["SET", &format!("k{i}"), "v"]).unwrap();
    }
    // The log has been compacted behind a snapshot by now, so the newcomer cannot replay it.
    let joiner = cluster.spawn_joiner();
    let (port, cport) = cluster.ports[joiner - 1];
    assert_eq!(
        cmd(
            &mut l,
            &[
                "CLUSTER",
                "ADDNODE",
                &joiner.to_string(),
                &format!("127.0.0.1:{port}@{cport}")
            ]
        )
        .unwrap(),
        Value::Okay
    );
    let mut j = cluster.client(joiner);
    cmd(&mut j, &["READONLY"]).unwrap();
    assert!(wait_until(Duration::from_secs(10), || cmd(
        &mut j,
        &["DBSIZE"]
    )
    .unwrap()
        == Value::Int(400)));
    assert!(
        cluster
            .node(joiner)
            .log()
            .iter()
            .any(|line| line.contains("snapshot installed")),
        "the newcomer caught up by snapshot"
    );
    assert_eq!(nodes_view(&cluster, leader).lines().count(), 4);
    cmd(&mut l, &["SET", "k400", "v"]).unwrap();
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut j,
        &["DBSIZE"]
    )
    .unwrap()
        == Value::Int(401)));

    // Removing it: the others stop listing it, and it refuses to serve.
    assert_eq!(
        cmd(&mut l, &["CLUSTER", "REMOVENODE", &joiner.to_string()]).unwrap(),
        Value::Okay
    );
    for id in 1..=3 {
        assert!(wait_until(Duration::from_secs(5), || nodes_view(
            &cluster, id
        )
        .lines()
        .count()
            == 3));
    }
    let mut j = cluster.client(joiner);
    assert!(
        wait_until(Duration::from_secs(10), || cmd(&mut j, &["SET", "x", "y"])
            .is_err()),
        "a removed node keeps accepting writes"
    );
    let e = err(&mut j, &["SET", "x", "y"]);
    assert!(
        e.starts_with("CLUSTERDOWN") || e.starts_with("MOVED"),
        "{e}"
    );
    assert_eq!(cmd(&mut l, &["SET", "x", "y"]).unwrap(), Value::Okay);
}

#[test]
fn redis_py_cluster_client_routes_through_the_cluster() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let follower = followers(&cluster, leader)[0];
    // Seeded with a follower: redis-py reads CLUSTER SLOTS and COMMAND, then routes by slot.
    let script = r#"
import sys
from redis.cluster import RedisCluster, ClusterNode
rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", int(sys.argv[1]))], decode_responses=True)
assert len(rc.get_primaries()) == 1, rc.get_primaries()
assert len(rc.get_replicas()) == 2, rc.get_replicas()
for i in range(50):
    assert rc.set(f"py:{i}", i)
assert [rc.get(f"py:{i}") for i in range(50)] == [str(i) for i in range(50)]
assert rc.incr("py:counter") == 1
assert rc.mset_nonatomic({"{p}a": 1, "{p}b": 2}) == [True]
print("ok")
"#;
    let port = cluster.ports[follower - 1].0.to_string();
    let out = std::process::Command::new("python3")
        .args(["-c", script, &port])
        .output()
        .expect("python3 with redis-py (the test command installs it)");
    assert!(
        out.status.success(),
        "redis-py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let mut l = cluster.client(leader);
    assert_eq!(cmd(&mut l, &["GET", "py:49"]).unwrap(), bulk("49"));
    assert_eq!(cmd(&mut l, &["GET", "py:counter"]).unwrap(), bulk("1"));
}

#[test]
fn a_single_node_keeps_its_data_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    {
        let server = Server::start(&["--data-dir", data]);
        let mut c = server.client();
        let info: String = redis::cmd("INFO").arg("cluster").query(&mut c).unwrap();
        assert!(info.contains("cluster_enabled:1") && info.contains("raft_leader_id:1"));
        for i in 0..100 {
            cmd(&mut c, &["SET", &format!("k{i}"), &i.to_string()]).unwrap();
        }
        cmd(&mut c, &["HSET", "h", "f", "v"]).unwrap();
        // Dropped: SIGKILL, no shutdown.
    }
    let server = Server::start(&["--data-dir", data]);
    let mut c = server.client();
    assert_eq!(cmd(&mut c, &["DBSIZE"]).unwrap(), Value::Int(101));
    assert_eq!(cmd(&mut c, &["GET", "k99"]).unwrap(), bulk("99"));
    assert_eq!(cmd(&mut c, &["HGET", "h", "f"]).unwrap(), bulk("v"));
    assert_eq!(
        cmd(&mut c, &["SET", "after", "restart"]).unwrap(),
        Value::Okay
    );
}

/// A node restarted after a kill replays its log before it serves calls (two write calls that
/// each end out of fuel after about a second, then a load): the module loaded last is there.
/// (A leader that has not applied what it committed resolves a module only after its read
/// barrier; the docker chaos run found a new leader answering "no such module" before.)
#[test]
fn a_restarted_node_replays_its_log_before_serving_calls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    {
        let server = Server::start(&["--data-dir", data]);
        let mut c = server.client();
        load_probe(&mut c);
        cmd(&mut c, &["CONFIG", "SET", "wasm-max-fuel", "1000000000"]).unwrap();
        for _ in 0..2 {
            let spin = err(&mut c, &["FCALL", "probe.spin", "1", "{t}a"]);
            assert_eq!(spin, "ERR wasm: out of fuel");
        }
        load_probe_as(&mut c, "last");
    }
    let server = Server::start(&["--data-dir", data]);
    let mut c = server.client();
    assert_eq!(
        cmd(&mut c, &["FCALL_RO", "last.get", "1", "{t}a"]).unwrap(),
        Value::Int(-1)
    );
    assert_eq!(
        cmd(&mut c, &["FCALL", "last.set", "1", "{t}a"]).unwrap(),
        Value::Int(0)
    );
}

#[test]
fn a_node_cut_off_from_the_majority_answers_errors_not_hangs_or_stale_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrite.toml");
    std::fs::write(&config, "[cluster]\nwrite_timeout_ms = 1000\n").unwrap();
    let mut cluster = Cluster::start(3, &["--config", config.to_str().unwrap()]);
    let leader = cluster.wait_for_leader(ELECTION);
    let mut l = cluster.client(leader);
    assert_eq!(cmd(&mut l, &["SET", "k", "before"]).unwrap(), Value::Okay);
    // Kill both followers: the leader is left without a majority.
    for id in followers(&cluster, leader) {
        cluster.kill(id);
    }
    let mut l = cluster.client(leader);
    let write = err(&mut l, &["SET", "k", "during"]);
    assert!(
        write.starts_with("UNCERTAIN") || write.starts_with("CLUSTERDOWN"),
        "{write}"
    );
    let read = cmd(&mut l, &["GET", "k"]);
    match read {
        // A read cannot be confirmed without a majority; it must not return a value the
        // cluster may have overwritten.
        Err(e) => {
            let code = e.code().unwrap_or_default().to_owned();
            assert!(
                ["TRYAGAIN", "CLUSTERDOWN", "MOVED"].contains(&code.as_str()),
                "{e}"
            );
        }
        Ok(v) => panic!("a node without a majority served a linearizable read: {v:?}"),
    }
    // Stale reads remain available where the client asked for them.
    cmd(&mut l, &["READONLY"]).unwrap();
    let stale = cmd(&mut l, &["GET", "k"]).unwrap();
    assert!(
        stale == bulk("before") || stale == bulk("during"),
        "{stale:?}"
    );
}
