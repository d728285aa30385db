//! The cluster bus against strangers: a connection must prove it holds the cluster secret
//! before any Raft RPC, frames before that are tiny, connections are capped, and a node
//! holding another secret cannot join.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferrite_testkit::{Cluster, cmd, err, wait_until};
use openraft::{CommittedLeaderId, LogId, Vote, raft::VoteRequest};
use redis::Value;
use serde::Serialize;

use super::{ELECTION, text};

/// What a node of today's wire format would read as a Raft request, written by hand: no
/// handshake, straight to the RPC.
#[derive(Serialize)]
struct RawRequest {
    group: u64,
    rpc: RawRpc,
}

#[derive(Serialize)]
#[allow(dead_code)]
enum RawRpc {
    Append(()),
    Vote(VoteRequest<u64>),
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn term_seen_by(cluster: &Cluster, id: usize) -> u64 {
    let info = text(cmd(&mut cluster.client(id), &["INFO", "cluster"]).unwrap());
    info.lines()
        .find_map(|l| l.strip_prefix("raft_term:"))
        .and_then(|t| t.trim().parse().ok())
        .expect("INFO cluster has raft_term")
}

/// Whether the node closed `stream` within `within` (a read returns end of file or an error).
fn closed_within(mut stream: &TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A handshake reply to something that looked like a hello: keep reading.
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn a_vote_from_an_unauthenticated_connection_does_not_unseat_the_leader() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    // Past the leader lease that follows an election (openraft refuses every vote until then).
    std::thread::sleep(Duration::from_secs(3));
    let term = term_seen_by(&cluster, leader);
    let forged_term = term + 1000;
    let other = if leader == 1 { 2 } else { 1 };
    let vote = VoteRequest::new(
        Vote::new(forged_term, other as u64),
        Some(LogId::new(
            CommittedLeaderId::new(forged_term, other as u64),
            1_000_000,
        )),
    );
    let request = RawRequest {
        group: 0,
        rpc: RawRpc::Vote(vote),
    };
    let payload = bincode::serde::encode_to_vec(&request, bincode::config::standard()).unwrap();
    let cport = cluster.ports[leader - 1].1;
    let mut stranger = TcpStream::connect(("127.0.0.1", cport)).unwrap();
    stranger.write_all(&frame(&payload)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        cluster.wait_for_leader(ELECTION),
        leader,
        "the leader kept its place"
    );
    let now = term_seen_by(&cluster, leader);
    assert!(
        now < forged_term,
        "the forged vote moved the term from {term} to {now}"
    );
    assert!(
        closed_within(&stranger, Duration::from_secs(5)),
        "the node dropped the stranger"
    );
    // A frame header announcing a gigabyte, and bytes that are not a frame at all.
    let mut huge = TcpStream::connect(("127.0.0.1", cport)).unwrap();
    huge.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    assert!(closed_within(&huge, Duration::from_secs(5)));
    let mut noise = TcpStream::connect(("127.0.0.1", cport)).unwrap();
    let _ = noise.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed_within(&noise, Duration::from_secs(5)));
    assert_eq!(
        cmd(&mut cluster.client(leader), &["SET", "after", "stranger"]).unwrap(),
        Value::Okay
    );
    assert!(
        cluster
            .node(leader)
            .log()
            .iter()
            .any(|l| l.contains("cluster bus: connection refused")),
        "the refusal is logged"
    );
}

#[test]
fn connections_beyond_the_cap_are_closed_and_idle_strangers_time_out() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let cport = cluster.ports[leader - 1].1;
    let strangers: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", cport)).unwrap())
        .collect();
    // Those over the cap are closed at once; the rest within the handshake deadline.
    let started = Instant::now();
    let quickly = strangers
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(300)))
        .count();
    assert!(
        started.elapsed() < Duration::from_secs(2) || quickly >= 36,
        "checked too slowly to tell"
    );
    assert!(
        quickly >= 36,
        "only {quickly} of 100 closed at once (cap 64)"
    );
    for s in &strangers {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "an idle stranger is let go after the handshake deadline"
        );
    }
    // The members' own connections were never in danger.
    assert_eq!(
        cmd(&mut cluster.client(leader), &["SET", "k", "v"]).unwrap(),
        Value::Okay
    );
}

#[test]
fn a_node_holding_another_secret_cannot_join() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION);
    let joiner = cluster.spawn_joiner_with_secret("not the cluster's secret at all");
    let (port, cport) = cluster.ports[joiner - 1];
    let mut l = cluster.client(leader);
    let refused = err(
        &mut l,
        &[
            "CLUSTER",
            "ADDNODE",
            &joiner.to_string(),
            &format!("127.0.0.1:{port}@{cport}"),
        ],
    );
    assert!(refused.contains("made no progress"), "{refused}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            text(cmd(&mut cluster.client(leader), &["CLUSTER", "NODES"]).unwrap())
                .lines()
                .count()
                == 3
        }),
        "the learner was taken back out"
    );
    assert!(
        cluster
            .node(joiner)
            .log()
            .iter()
            .any(|l| l.contains("cluster bus: connection refused")),
        "the joiner refused the leader's connections"
    );
    // The cluster goes on.
    assert_eq!(cmd(&mut l, &["SET", "k", "v"]).unwrap(), Value::Okay);
}
