//! A member that comes back with an empty disk, with real processes. It may have voted in the
//! current term before it lost its disk, and it lost the entries it had acknowledged: counting
//! its vote could elect a leader without an acknowledged write. Members of a named cluster
//! therefore get no vote from a node that holds no cluster state; it is caught up by a leader
//! first.

use std::time::Duration;

use ferrite_testkit::{Cluster, cmd, eventually};
use redis::Value;

use super::{ELECTION, bulk, text};

fn cluster_id(cluster: &Cluster, id: usize) -> String {
    let info = text(cmd(&mut cluster.client(id), &["INFO", "cluster"]).unwrap());
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_id:"))
        .expect("INFO cluster has cluster_id")
        .trim()
        .to_owned()
}

#[test]
fn a_member_back_with_an_empty_disk_cannot_elect_a_leader_that_lost_a_write() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let named = eventually("every member to hold the cluster id", ELECTION, || {
        let ids: Vec<String> = (1..=3).map(|id| cluster_id(&cluster, id)).collect();
        (ids[0] != "0000000000000000" && ids.iter().all(|i| *i == ids[0])).then(|| ids[0].clone())
    });
    let others: Vec<usize> = (1..=3).filter(|id| *id != leader).collect();
    let (behind, wiped) = (others[0], others[1]);

    // A write acknowledged by the leader and the member that will lose its disk, while the
    // third member is down: only those two hold it.
    cluster.kill(behind);
    let mut c = cluster.client(leader);
    assert_eq!(cmd(&mut c, &["SET", "w", "1"]).unwrap(), Value::Okay);
    cluster.kill(leader);
    cluster.kill(wiped);
    std::fs::remove_dir_all(cluster.data_dir(wiped)).unwrap();

    // The member without the write and the wiped one together are a majority of three.
    cluster.start_node(behind);
    cluster.start_node(wiped);
    std::thread::sleep(Duration::from_secs(6));
    for id in [behind, wiped] {
        assert_ne!(
            cluster.leader_seen_by(id),
            Some(behind),
            "node {behind}, which never had the write, was elected with the vote of node {wiped}, whose disk is empty"
        );
    }
    let refused = cmd(&mut cluster.client(behind), &["GET", "w"]);
    assert!(
        refused.is_err(),
        "GET w answered {refused:?} with no leader"
    );

    // The old leader comes back: the write is there, and the wiped member is caught up.
    cluster.start_node(leader);
    let now = cluster.wait_for_leader(ELECTION);
    assert_eq!(
        cmd(&mut cluster.client(now), &["GET", "w"]).unwrap(),
        bulk("1")
    );
    eventually("the wiped member to catch up", ELECTION, || {
        let mut c = cluster.client(wiped);
        cmd(&mut c, &["READONLY"]).ok()?;
        (cmd(&mut c, &["GET", "w"]).ok()? == bulk("1")).then_some(())
    });
    assert_eq!(cluster_id(&cluster, wiped), named);
}
