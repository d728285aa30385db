//! Large values through the log, with real processes: a follower that was down while the
//! leader took a backlog of large writes catches up. openraft gives each AppendEntries one
//! heartbeat (100 ms) to be sent, written and fsynced on the follower; a request carrying
//! hundreds of large entries cannot make it, so the cluster bus caps the bytes per request.

use std::time::Duration;

use ferrite_testkit::{Cluster, cmd, wait_until};
use redis::Value;

use super::ELECTION;

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
    let applied = |cluster: &Cluster, id: usize| cluster.info_u64(id, "raft_applied_index");
    let target = applied(&cluster, leader);
    cluster.start_node(behind);
    assert!(
        wait_until(Duration::from_secs(60), || applied(&cluster, behind)
            >= target),
        "node {behind} stayed at index {} of {target}",
        applied(&cluster, behind)
    );
    let mut f = cluster.client(behind);
    cmd(&mut f, &["READONLY"]).unwrap();
    assert_eq!(
        cmd(&mut f, &["STRLEN", "k199"]).unwrap(),
        Value::Int(512 * 1024)
    );
}
