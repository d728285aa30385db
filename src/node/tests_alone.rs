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
    let first = submit(&node, "set", "chain", "first");
    let second = submit(&node, "append", "chain", "+second");
    assert_eq!(node.writes_proposed_alone(), alone + 1);
    // Time for the batcher to take the second one off the queue: it must not propose it
    // before the first, which holds the token until it is answered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(within("the first", first.wait()).await, Reply::ok());
    assert_eq!(within("the second", second.wait()).await, Reply::Int(12));
    assert_eq!(
        run(&node, "get", &["chain"]).await,
        Reply::Bulk(bytes::Bytes::from_static(b"first+second"))
    );
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
    // A burst: the first goes alone, the rest queue behind it, and the lone mode ends.
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
