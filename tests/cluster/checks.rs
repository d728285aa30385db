//! State checks through the log, with real processes: the leader proposes them, every member
//! digests its state at the same log position and compares with the leader's digest. (That a
//! member that differs stops serving is shown where a replica can be made to differ: the
//! state machine's tests and the simulation's apply-at-local-time sabotage.)

use std::time::Duration;

use ferrite_testkit::{Cluster, cmd, wait_until};
use redis::Value;

use super::ELECTION;

#[test]
fn members_check_their_states_against_the_leaders_at_the_same_log_positions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrite.toml");
    std::fs::write(&config, "[cluster]\nstate_check_interval_ms = 200\n").unwrap();
    let cluster = Cluster::start(3, &["--config", config.to_str().unwrap()]);
    let leader = cluster.wait_for_leader(ELECTION);
    let mut c = cluster.client(leader);
    for i in 0..200 {
        let key = format!("k{i}");
        assert_eq!(cmd(&mut c, &["SET", &key, "v"]).unwrap(), Value::Okay);
        assert_eq!(cmd(&mut c, &["INCR", "n"]).unwrap(), Value::Int(i + 1));
    }
    let index = |id: usize| cluster.info_u64(id, "cluster_state_check_index");
    // Checks keep coming, and every member applies each one (a later check compares the
    // leader's digest at the one before with each member's own).
    let first = index(leader);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let seen: Vec<u64> = (1..=3).map(index).collect();
            seen.iter().all(|i| *i > first) && seen.iter().all(|i| *i == seen[0])
        }),
        "members did not reach the same later check: {:?}",
        (1..=3).map(index).collect::<Vec<_>>()
    );
    for id in 1..=3 {
        assert_eq!(
            cluster.info_field(id, "cluster_state_diverged").as_deref(),
            Some("no"),
            "node {id}"
        );
    }
    assert_eq!(
        cmd(&mut c, &["GET", "n"]).unwrap(),
        Value::BulkString(b"200".to_vec())
    );
}
