//! A lone writer's own proposals (`proposals.rs`): taken only when nothing else is queued or
//! in flight, and never ahead of a write queued before them.

use std::time::Duration;

use super::tests::{args, run, single_node, within};
use super::*;

/// Queues `command key value` on `node` without waiting.
fn submit(node: &Node, command: &str, key: &str, value: &str) -> Ticket {
    let ctx = node.parse_ctx();
    let op = crate::keyspace::parse(command, &args(&[key, value]), &ctx)
        .unwrap()
        .unwrap();
    node.submit(op, &ctx).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_queued_behind_a_lone_writers_proposal_applies_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    // One writer waiting for each reply: after two entries of one write, it goes alone.
    for i in 0..10 {
        let reply = within(
            "a write",
            submit(&node, "set", &format!("k{i}"), "v").wait(),
        )
        .await;
        assert_eq!(reply, Reply::ok());
    }
    let alone = node.writes_proposed_alone();
    assert!(alone >= 5, "{alone} of 10 lone writes went on their own");
    // Two writes made in order, neither awaited yet: the first takes the token (it is
    // proposed when awaited), the second is queued for the batcher.
    let entries = node.raft.metrics().borrow().last_log_index;
    let first = submit(&node, "set", "chain", "first");
    let second = submit(&node, "append", "chain", "+second");
    // Time for the batcher to take the second one off the queue: it must not propose it
    // before the first, which holds the token until it is proposed or handed over.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(within("the first", first.wait()).await, Reply::ok());
    assert_eq!(within("the second", second.wait()).await, Reply::Int(12));
    assert_eq!(
        run(&node, "get", &["chain"]).await,
        Reply::Bulk(bytes::Bytes::from_static(b"first+second"))
    );
    // A write behind it when it was awaited: the first was handed to the batcher to lead
    // that write's entry, rather than proposed alone with the second's entry after it.
    assert_eq!(node.writes_proposed_alone(), alone);
    let entries = node.raft.metrics().borrow().last_log_index.unwrap() - entries.unwrap();
    assert_eq!(
        entries, 1,
        "two writes made together took {entries} entries"
    );
}

/// Entries of one write in a row after which a writer goes alone, and one more.
const LONE_WARMUP: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_made_while_a_lone_writer_proposes_applies_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    for round in 0..50 {
        // Two writes waited for one by one put the writer in the lone mode again.
        for _ in 0..LONE_WARMUP {
            within("a write", submit(&node, "set", "warm", "v").wait()).await;
        }
        let key = format!("chain{round}");
        let first = submit(&node, "set", &key, "first");
        // Awaited on another task while this one makes the next write: it goes alone or
        // leads the batcher's entry, by the race; either way it applies first.
        let first = tokio::spawn(within("the first", first.wait()));
        tokio::task::yield_now().await;
        let second = submit(&node, "append", &key, "+second");
        assert_eq!(within("the second", second.wait()).await, Reply::Int(12));
        assert_eq!(first.await.unwrap(), Reply::ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_together_are_batched_not_proposed_alone() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    for i in 0..10 {
        within(
            "a write",
            submit(&node, "set", &format!("k{i}"), "v").wait(),
        )
        .await;
    }
    // A burst: the first takes the lone ticket, the rest queue behind it before it is
    // awaited, so it leads their entry instead of going alone, and the lone mode ends.
    let burst: Vec<Ticket> = (0..50)
        .map(|i| submit(&node, "set", &format!("b{i}"), "v"))
        .collect();
    let alone = node.writes_proposed_alone();
    for ticket in burst {
        assert_eq!(within("a burst write", ticket.wait()).await, Reply::ok());
    }
    let more: Vec<Ticket> = (0..50)
        .map(|i| submit(&node, "set", &format!("m{i}"), "v"))
        .collect();
    for ticket in more {
        assert_eq!(within("a later write", ticket.wait()).await, Reply::ok());
    }
    assert_eq!(
        node.writes_proposed_alone(),
        alone,
        "writes queued while others were in flight went alone"
    );
}

/// A lone writer's write handed over after the queue stopped (the stop gave up waiting for
/// the writer's token) is refused at once as never proposed, not left to time out as
/// UNCERTAIN, and never applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_handed_over_after_the_queue_stopped_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path()).await;
    for _ in 0..LONE_WARMUP {
        within("a write", submit(&node, "set", "warm", "v").wait()).await;
    }
    // The first holds the token until it is awaited; the second queues behind it.
    let first = submit(&node, "set", "late", "first");
    let second = submit(&node, "append", "late", "+second");
    assert!(format!("{first:?}").contains("direct"), "{first:?}");
    node.proposals.stop(Duration::from_millis(50)).await;
    assert_eq!(
        within("the first", first.wait()).await,
        Reply::error(NodeError::ShuttingDown)
    );
    let _ = within("the second", second.wait()).await;
    let value = run(&node, "get", &["late"]).await;
    assert!(
        !matches!(&value, Reply::Bulk(v) if v.starts_with(b"first")),
        "a refused write applied: {value:?}"
    );
}
