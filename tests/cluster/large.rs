//! Large values through the log, with real processes: a follower that was down while the
//! leader took a backlog of large writes catches up. openraft gives each AppendEntries one
//! heartbeat (100 ms) to be sent, written and fsynced on the follower; a request carrying
//! hundreds of large entries cannot make it, so the cluster bus caps the bytes per request.

use std::time::Duration;

use ferrite_testkit::{Cluster, ConfigFile, cmd, wait_until};
use redis::Value;

use super::ELECTION;

/// Starts member `behind` again and waits until it applied all that `leader` had.
fn restart_and_catch_up(cluster: &mut Cluster, behind: usize, leader: usize) {
    let applied = |cluster: &Cluster, id: usize| cluster.info_u64(id, "raft_applied_index");
    let target = applied(cluster, leader);
    cluster.start_node(behind);
    assert!(
        wait_until(Duration::from_secs(60), || applied(cluster, behind)
            >= target),
        "node {behind} stayed at index {} of {target}",
        applied(cluster, behind)
    );
}

#[test]
fn a_follower_catches_up_on_a_backlog_of_large_values() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(behind);
    // 200 values of 512 KiB: 100 MiB of log the follower has never seen.
    let value = "x".repeat(512 * 1024);
    let mut c = cluster.client(leader);
    for i in 0..200 {
        assert_eq!(
            cmd(&mut c, &["SET", &format!("k{i}"), &value]).unwrap(),
            Value::Okay
        );
    }
    restart_and_catch_up(&mut cluster, behind, leader);
    let mut f = cluster.client(behind);
    cmd(&mut f, &["READONLY"]).unwrap();
    assert_eq!(
        cmd(&mut f, &["STRLEN", "k199"]).unwrap(),
        Value::Int(512 * 1024)
    );
}

/// A member that was down while the log moved on behind a snapshot catches up by installing
/// it, however long restoring the keyspace and compiling the modules takes (openraft gives an
/// install 200 ms unless told otherwise, and the leader started the transfer over each time).
#[test]
fn a_member_behind_a_large_snapshot_with_modules_catches_up() {
    let config = ConfigFile::new("[cluster]\nsnapshot_logs = 100\nsnapshot_keep_logs = 0\n");
    let mut cluster = Cluster::start(3, &["--config", config.arg()]);
    let leader = cluster.wait_for_leader(ELECTION);
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(behind);
    let mut c = cluster.client(leader);
    for i in 0..4 {
        super::load_probe_as(&mut c, &format!("m{i}"));
    }
    // 300,000 keys in 300 writes of 1,000.
    for batch in 0..300 {
        let mut mset = redis::cmd("MSET");
        for i in 0..1000 {
            mset.arg(format!("{{k{batch}}}:{i}")).arg(i);
        }
        assert_eq!(mset.query::<Value>(&mut c).unwrap(), Value::Okay);
    }
    restart_and_catch_up(&mut cluster, behind, leader);
    let mut f = cluster.client(behind);
    cmd(&mut f, &["READONLY"]).unwrap();
    assert_eq!(cmd(&mut f, &["DBSIZE"]).unwrap(), Value::Int(300_000));
    assert_eq!(
        cmd(&mut f, &["WASM.LIST"]).map(|v| matches!(v, Value::Array(ref a) if a.len() == 4)),
        Ok(true)
    );
}
