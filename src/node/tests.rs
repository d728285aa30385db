//! The node over a real disk and a real Raft group of one: the write path, active expiry and
//! recovery after a restart. Every wait has a deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::gated::{GatedDisk, gated_node};
use super::*;
use crate::replication::WalDisk;

/// How long any wait in these tests may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

pub(super) fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

/// Waits for `future`, failing the test after [`DEADLINE`].
pub(super) async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {DEADLINE:?}"))
}

/// A one-member node on a temporary data directory, leading.
pub(super) async fn single_node(dir: &std::path::Path) -> Node {
    let disk = Arc::new(WalDisk::open(&dir.join("wal"), dir.join("raft.snapshot")).unwrap());
    single_node_on(dir, disk, Options::default()).await
}

/// The default `cluster.max_entry_bytes`.
const DEFAULT_ENTRY: usize = crate::config::DEFAULT_MAX_ENTRY_BYTES as usize;

/// What a test node's settings may differ in.
pub(super) struct Options {
    pub(super) write_timeout: Duration,
    pub(super) clock: Arc<Clock>,
    pub(super) max_entry_bytes: usize,
    pub(super) batch_wait: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            write_timeout: Duration::from_secs(5),
            clock: Arc::default(),
            max_entry_bytes: DEFAULT_ENTRY,
            batch_wait: Duration::from_micros(crate::config::DEFAULT_BATCH_WAIT_US),
        }
    }
}

/// A one-member node on `disk` with `options`, leading.
pub(super) async fn single_node_on<K: replication::Disk>(
    dir: &std::path::Path,
    disk: Arc<K>,
    options: Options,
) -> Node {
    let node = start_on(dir, disk, options).await.unwrap();
    node.bootstrap(BTreeMap::from([(1, me())])).await.unwrap();
    let mut metrics = node.metrics.clone();
    within("leadership", async {
        while !node.is_leader() {
            metrics.changed().await.unwrap();
        }
    })
    .await;
    node
}

fn me() -> Member {
    Member {
        host: "127.0.0.1".into(),
        port: 1,
        cport: 2,
    }
}

/// Starts the one-member node of [`single_node_on`] without waiting for anything.
async fn start_on<K: replication::Disk>(
    dir: &std::path::Path,
    disk: Arc<K>,
    options: Options,
) -> Result<Node, StartError> {
    let Options {
        write_timeout,
        clock,
        max_entry_bytes,
        batch_wait,
    } = options;
    let options = NodeOptions {
        id: 1,
        me: me(),
        raft: replication::Settings {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            snapshot_logs: 100,
            keep_logs: 10,
            snapshot_timeout: Duration::from_secs(10),
            lease_reads: true,
            clock_drift_percent: 10,
        },
        write_timeout,
        clock,
        max_entry_bytes,
        batch_wait,
        helpers: Arc::new(crate::blocking::Helpers::start(1, 8 << 20).expect("helper thread")),
    };
    let state = Arc::new(
        StateMachine::new(
            crate::wasm::EngineSettings::default(),
            Some(dir.join("wasm-cache")),
        )
        .unwrap(),
    );
    Node::start(
        options,
        state,
        disk,
        Arc::new(crate::net::TcpDialer),
        crate::replication::Bus {
            auth: crate::replication::BusAuth::none(1),
            clocks: Arc::new(crate::replication::PeerClocks::new(
                Arc::default(),
                250,
                Duration::from_secs(1),
            )),
            cluster: Arc::default(),
            dials: Arc::default(),
        },
    )
    .await
}

pub(super) async fn run(node: &Node, name: &str, words: &[&str]) -> Reply {
    let ctx = node.parse_ctx();
    let op = crate::keyspace::parse(name, &args(words), &ctx)
        .unwrap()
        .unwrap();
    node.execute(op, &ctx, node.linearizable()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_cycle_purges_expired_keys_through_the_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    for i in 0..500 {
        run(&node, "set", &[&format!("k{i}"), "v", "PX", "1"]).await;
    }
    run(&node, "set", &["keep", "v"]).await;
    let written = node.now_ms();
    within("the clock to pass the TTLs", async {
        while node.now_ms() <= written + 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut removed = 0;
    within("the expired keys to be purged", async {
        while node.keyspace_stats().keys > 1 {
            removed += node.expire_cycle().await;
        }
    })
    .await;
    assert_eq!(removed, 500);
    let stats = node.keyspace_stats();
    assert_eq!((stats.keys, stats.expires, stats.expired), (1, 0, 500));
}

/// A read judges expiry no earlier than the writes already applied: a node whose clock lags
/// the time of an entry (stamped by a leader whose clock ran ahead) does not show a key that
/// the entry's time had already expired, and stamps its own later writes no earlier either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_never_judges_expiry_before_an_applied_write() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let disk =
        Arc::new(WalDisk::open(&dir.path().join("wal"), dir.path().join("raft.snapshot")).unwrap());
    let wall = Arc::new(AtomicU64::new(1_000_000));
    let source = wall.clone();
    let clock = Arc::new(Clock::new(Arc::new(move || source.load(Ordering::Relaxed))));
    let options = Options {
        clock,
        ..Options::default()
    };
    let node = single_node_on(dir.path(), disk, options).await;
    assert_eq!(
        run(&node, "set", &["k", "v", "PX", "100"]).await,
        Reply::ok()
    );
    // An entry stamped 500 ms later by another leader's clock.
    let ahead = ParseCtx {
        now_ms: 1_000_500,
        seed: 0,
    };
    let op = crate::keyspace::parse("set", &args(&["other", "x"]), &ahead)
        .unwrap()
        .unwrap();
    assert_eq!(
        node.execute(op, &ahead, node.linearizable()).await,
        Reply::ok()
    );
    // This node's wall clock still says 1,000,000: k would look alive.
    assert_eq!(run(&node, "get", &["k"]).await, Reply::Nil);
    assert_eq!(run(&node, "exists", &["k"]).await, Reply::Int(0));
    assert!(node.now_ms() >= 1_000_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_restart_through_log_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = single_node(dir.path()).await;
        // More entries than the snapshot threshold: recovery uses a snapshot and the log.
        for i in 0..250 {
            assert_eq!(
                run(&node, "set", &[&format!("k{i}"), &i.to_string()]).await,
                Reply::ok()
            );
        }
        run(&node, "hset", &["h", "f", "v"]).await;
        let wat = Bytes::from_static(
            b"(module (memory (export \"memory\") 1) (func (export \"alloc\") (param i32) (result i32) i32.const 0) (func (export \"main\") (param i32 i32) (result i64) i64.const 7))",
        );
        assert_eq!(
            node.wasm_load("seven".into(), wat, Permissions::READ, false)
                .await,
            Reply::ok()
        );
        node.shutdown().await;
    }
    let node = single_node(dir.path()).await;
    assert_eq!(run(&node, "get", &["k249"]).await, Reply::bulk("249"));
    assert_eq!(run(&node, "hget", &["h", "f"]).await, Reply::bulk("v"));
    assert_eq!(node.keyspace_stats().keys, 251);
    assert!(node.modules().get("seven").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_are_answered_in_order_from_shared_entries() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    let (_, entries_before) = node.disk_stats();
    let mut tickets = Vec::new();
    for i in 0..200 {
        let ctx = node.parse_ctx();
        let op = crate::keyspace::parse("incrby", &args(&["n", &i.to_string()]), &ctx)
            .unwrap()
            .unwrap();
        tickets.push(node.submit(op, &ctx).unwrap());
    }
    let mut total = 0;
    for (i, ticket) in tickets.into_iter().enumerate() {
        total += i as i64;
        assert_eq!(
            within("a queued write", ticket.wait()).await,
            Reply::Int(total)
        );
    }
    let (_, entries_after) = node.disk_stats();
    assert!(
        entries_after - entries_before < 200,
        "200 queued writes took {} entries",
        entries_after - entries_before
    );
}

/// A committed entry this version cannot read (a newer version wrote it, or it is damaged)
/// stops the replica, again after a restart: it is never skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_entry_that_cannot_be_read_stops_the_replica_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let stopped = |reply: Reply| {
        matches!(&reply, Reply::Error(e) if e.starts_with("CLUSTERDOWN this replica stopped serving: this replica cannot read log entry"))
            .then_some(())
            .ok_or(reply)
    };
    {
        let node = single_node(dir.path()).await;
        assert_eq!(run(&node, "set", &["k", "v"]).await, Reply::ok());
        let unreadable = replication::Payload(Bytes::from_static(b"\xff\xff\xff"));
        let _ = tokio::time::timeout(DEADLINE, node.raft.client_write(unreadable)).await;
        stopped(run(&node, "get", &["k"]).await).unwrap();
        stopped(run(&node, "set", &["k2", "v"]).await).unwrap();
        node.shutdown().await;
    }
    // Restarted, the node meets the same entry again: re-applying it at start (when its
    // commit was saved) fails the start, or applying it once committed again stops the node.
    let disk =
        Arc::new(WalDisk::open(&dir.path().join("wal"), dir.path().join("raft.snapshot")).unwrap());
    let options = Options {
        max_entry_bytes: 1 << 20,
        ..Options::default()
    };
    match start_on(dir.path(), disk, options).await {
        Err(e) => assert!(e.to_string().contains("cannot read log entry 3"), "{e}"),
        Ok(node) => {
            node.bootstrap(BTreeMap::from([(1, me())])).await.unwrap();
            within("the node to stop again", async {
                while stopped(run(&node, "get", &["k"]).await).is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_while_a_snapshot_is_still_being_saved() {
    let dir = tempfile::tempdir().unwrap();
    let disk = GatedDisk::new(dir.path(), tokio::sync::watch::channel(true).1, true);
    let node = single_node_on(dir.path(), disk.clone(), Options::default()).await;
    // A snapshot is built every 100 entries; the first one's save never ends.
    for i in 0..250 {
        let key = format!("k{i}");
        assert_eq!(run(&node, "set", &[&key, "v"]).await, Reply::ok(), "{key}");
    }
    assert!(
        disk.snapshot_saves
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(
        run(&node, "get", &["k249"]).await,
        Reply::Bulk(Bytes::from("v"))
    );
    node.shutdown().await;
}

/// A one-member leader counts its own copy of an entry from the moment the entry is queued
/// for the disk, so the entry commits at once; it must still neither answer the write nor show
/// it to a read until the disk holds it (`replication::durable`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_neither_answered_nor_readable_before_its_entry_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        write_timeout: Duration::from_millis(400),
        ..Options::default()
    };
    let (node, gate) = gated_node(dir.path(), options).await;
    let ctx = node.parse_ctx();
    let op = crate::keyspace::parse("set", &args(&["k", "v"]), &ctx)
        .unwrap()
        .unwrap();
    let entry = node.metrics.borrow().last_log_index.map_or(0, |i| i + 1);
    let ticket = node.submit(op, &ctx).unwrap();
    // The entry commits (the leader counts its queued copy), yet it must not apply while the
    // disk is shut.
    within("the entry to commit", async {
        while node
            .raft
            .with_raft_state(|st| st.committed.map_or(0, |c| c.index))
            .await
            .unwrap()
            < entry
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut metrics = node.metrics.clone();
    let applied = tokio::time::timeout(
        Duration::from_millis(200),
        metrics.wait_for(|m| m.last_applied.is_some_and(|l| l.index >= entry)),
    )
    .await;
    assert!(applied.is_err(), "an entry applied before it was on disk");
    // Nil, or TRYAGAIN when the read waits for an apply that waits for the disk.
    let read = run(&node, "get", &["k"]).await;
    assert_ne!(
        read,
        Reply::Bulk(Bytes::from_static(b"v")),
        "a read saw a write its disk does not hold"
    );
    uncertain(ticket).await;
    gate.send_replace(true);
    until_set(&node, "k").await;
}

/// Queues `SET key v` on `node`.
pub(super) fn set(node: &Node, key: &str) -> Result<super::Ticket, NodeError> {
    let ctx = node.parse_ctx();
    let op = crate::keyspace::parse("set", &args(&[key, "v"]), &ctx).unwrap();
    node.submit(op.unwrap(), &ctx)
}

/// Waits for `ticket`'s answer, which must be UNCERTAIN (the write never reached the disk in
/// time).
async fn uncertain(ticket: super::Ticket) {
    let reply = within("an answer", ticket.wait()).await;
    assert!(
        matches!(&reply, Reply::Error(e) if e.starts_with("UNCERTAIN")),
        "{reply:?}"
    );
}

/// Waits until `key` reads as "v".
async fn until_set(node: &Node, key: &str) {
    within("the write to apply", async {
        while run(node, "get", &[key]).await != Reply::Bulk(Bytes::from_static(b"v")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_caller_is_gone_before_it_is_proposed_never_commits() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(400);
    let options = Options {
        write_timeout: timeout,
        ..Options::default()
    };
    let (node, gate) = gated_node(dir.path(), options).await;
    let submit = |key: &str| set(&node, key).unwrap();
    // `first` is proposed at once and sticks on the shut disk; `gone` queues behind it, and
    // its caller goes away (its connection closed) before `first`'s proposal times out;
    // `kept` queues behind it with a caller that waits.
    let first = submit("first");
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(submit("gone"));
    let kept = submit("kept");
    for ticket in [first, kept] {
        uncertain(ticket).await;
    }
    gate.send_replace(true);
    until_set(&node, "kept").await;
    assert_eq!(
        run(&node, "get", &["gone"]).await,
        Reply::Nil,
        "a write nobody waited for any more was proposed and committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_queue_limit_are_refused_and_never_happen() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, open) = tokio::sync::watch::channel(true);
    let disk = GatedDisk::new(dir.path(), open, false);
    // Entries of at most 1,024 bytes: the queue holds at most 4,096.
    let options = Options {
        max_entry_bytes: 1024,
        ..Options::default()
    };
    let node = single_node_on(dir.path(), disk, options).await;
    gate.send_replace(false);
    let value = "x".repeat(500);
    let submit = |key: String| {
        let ctx = node.parse_ctx();
        let op = crate::keyspace::parse("set", &args(&[&key, &value]), &ctx)
            .unwrap()
            .unwrap();
        node.submit(op, &ctx)
    };
    // The disk is shut: whatever the batcher takes sticks there, and the writes behind it
    // queue until the queue is full.
    let mut tickets = Vec::new();
    let mut refused = Vec::new();
    for i in 0..20 {
        match submit(format!("k{i}")) {
            Ok(ticket) => tickets.push(ticket),
            Err(e) => refused.push((i, e)),
        }
    }
    assert!(tickets.len() > 2, "only {} writes queued", tickets.len());
    let (first_refused, error) = &refused[0];
    assert!(
        matches!(error, NodeError::Backlog { limit: 4096, .. }),
        "{error:?}"
    );
    let reply = Reply::error(error.clone());
    assert!(
        matches!(&reply, Reply::Error(e) if e.starts_with("ERR too many writes")),
        "{reply:?}"
    );
    gate.send_replace(true);
    for ticket in tickets {
        assert_eq!(within("a queued write", ticket.wait()).await, Reply::ok());
    }
    // The queue drained: writes are taken again; the refused ones never happened.
    submit("after".into()).unwrap().wait().await;
    let key = format!("k{first_refused}");
    assert_eq!(run(&node, "get", &[&key]).await, Reply::Nil);
}

/// Shutdown refuses new writes and answers the entry in flight (the cluster's name) first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_writes_and_lets_the_entry_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (node, gate) = gated_node(dir.path(), Options::default()).await;
    let node = Arc::new(node);
    // Proposed at once (appended to the log), then held by the shut disk.
    let entry = node.metrics.borrow().last_log_index.map_or(0, |i| i + 1);
    let in_flight = set(&node, "k").unwrap();
    let proposed = |m: &RaftMetrics<NodeId, Member>| m.last_log_index >= Some(entry);
    within("the proposal", node.metrics.clone().wait_for(proposed))
        .await
        .unwrap();
    let stopping = tokio::spawn({
        let node = node.clone();
        async move { node.shutdown().await }
    });
    within("the shutdown to begin", async {
        while !node.proposals.is_stopping() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        matches!(set(&node, "late"), Err(NodeError::ShuttingDown)),
        "a write was queued after the shutdown began"
    );
    assert!(!stopping.is_finished(), "Raft stopped under a proposal");
    gate.send_replace(true);
    assert_eq!(within("the answer", in_flight.wait()).await, Reply::ok());
    within("the shutdown", stopping).await.unwrap();
}

/// Two writers taking turns (each writes again once answered) share entries: once an entry is
/// answered the batcher waits, up to the entry's round, for the writer it answered
/// (`linger.rs`); with `cluster.batch_wait_us = 0` each write takes an entry of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_taking_turns_share_entries_when_the_batcher_waits_for_them() {
    for (batch_wait, entries) in [(Duration::from_secs(10), 1), (Duration::ZERO, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            batch_wait,
            ..Options::default()
        };
        let (node, gate) = gated_node(dir.path(), options).await;
        let last = |node: &Node| node.metrics.borrow().last_log_index.unwrap_or(0);
        // `a1` is proposed and held by the shut disk for a round of 200 ms; `b1` queues. Its
        // index is read before it is submitted: the batcher runs on the other worker and may
        // append it at once.
        let held = last(&node) + 1;
        let a1 = set(&node, "a1").unwrap();
        let proposed = |m: &RaftMetrics<NodeId, Member>| m.last_log_index >= Some(held);
        within("the proposal", node.metrics.clone().wait_for(proposed))
            .await
            .unwrap();
        let b1 = set(&node, "b1").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        gate.send_replace(true);
        assert_eq!(within("a1", a1.wait()).await, Reply::ok());
        // The first writer writes again a moment after its answer.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let a2 = set(&node, "a2").unwrap();
        assert_eq!(within("b1", b1.wait()).await, Reply::ok());
        assert_eq!(within("a2", a2.wait()).await, Reply::ok());
        assert_eq!(
            last(&node) - held,
            entries,
            "entries for b1 and a2 with batch_wait {batch_wait:?}"
        );
    }
}
