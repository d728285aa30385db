//! Clocks that disagree, with real processes: a member whose system clock runs an hour ahead
//! (under libfaketime) is refused by its peers. It never leads, so no write is stamped with
//! its time, and the other two serve with TTLs intact.

use std::time::Duration;

use ferrite_testkit::{Cluster, cmd, eventually, wait_until};
use redis::Value;

use super::{ELECTION, text};

/// libfaketime's preload library (Debian's `faketime` package).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The leader nodes 1 and 2 agree on (node 3 is cut off by its clock).
fn leader_of_the_two(cluster: &Cluster) -> usize {
    eventually("a leader nodes 1 and 2 agree on", ELECTION, || {
        let one = cluster.leader_seen_by(1)?;
        (cluster.leader_seen_by(2) == Some(one)).then_some(one)
    })
}

fn info_field(cluster: &Cluster, id: usize, field: &str) -> String {
    cluster
        .info_field(id, field)
        .unwrap_or_else(|| panic!("node {id}'s INFO cluster has no {field}"))
}

#[test]
fn a_member_an_hour_ahead_is_refused_and_never_stamps_a_write() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime"
    );
    let cluster = Cluster::start_with_env(3, &[], |id| {
        if id != 3 {
            return Vec::new();
        }
        vec![
            ("LD_PRELOAD".to_owned(), LIBFAKETIME.to_owned()),
            ("FAKETIME".to_owned(), "+3600".to_owned()),
            // Timers (tokio's, openraft's) keep real time; only the wall clock is off.
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
        ]
    });
    // The skew is real: node 3's TIME is an hour ahead of node 1's.
    let seconds = |id: usize| match cmd(&mut cluster.client(id), &["TIME"]).unwrap() {
        Value::Array(parts) => text(parts[0].clone()).parse::<i64>().unwrap(),
        other => panic!("TIME answered {other:?}"),
    };
    let skew = seconds(3) - seconds(1);
    assert!((3590..3610).contains(&skew), "node 3 is {skew} s ahead");

    let leader = leader_of_the_two(&cluster);
    assert_ne!(leader, 3, "the member an hour ahead was elected");
    // The leader says why it refuses node 3 (a follower that node 3 never contacts has
    // nothing to refuse).
    assert!(
        wait_until(Duration::from_secs(10), || {
            info_field(&cluster, leader, "cluster_clock_refusals") != "0"
        }),
        "the leader never refused node 3"
    );
    let mut c = cluster.client(leader);
    assert_eq!(
        cmd(&mut c, &["SET", "k", "v", "EX", "100"]).unwrap(),
        Value::Okay
    );
    // A while later the same two still serve, the TTL counts from their time, and node 3
    // took nothing from them: the write never reached it.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(leader_of_the_two(&cluster), leader);
    let term = info_field(&cluster, leader, "raft_term");
    let ttl = cmd(&mut c, &["TTL", "k"]).unwrap();
    assert!(
        matches!(ttl, Value::Int(t) if (90..=100).contains(&t)),
        "TTL {ttl:?}"
    );
    let mut n3 = cluster.client(3);
    cmd(&mut n3, &["READONLY"]).unwrap();
    assert_eq!(cmd(&mut n3, &["GET", "k"]).unwrap(), Value::Nil);
    assert_ne!(cluster.leader_seen_by(3), Some(3));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(info_field(&cluster, leader, "raft_term"), term);
}
