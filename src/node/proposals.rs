//! The write path: a write is queued on the leader, proposed to the log with the writes that
//! queued beside it, and answered with the reply its own apply produced.
//!
//! This is the group commit: openraft appends a leader's entries one flush after another, so
//! one command per entry would cost one fsync per write however many clients wait; batching
//! makes a busy leader pay one fsync (and one replication round) for a whole batch. A write
//! whose entry may or may not commit (timeout, leadership lost in flight) answers
//! `UNCERTAIN`, never OK.

use std::time::Duration;

use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use super::{Node, NodeError, Raft, Uncertain};
use crate::keyspace::{Op, ParseCtx};
use crate::replication::{self, Payload};
use crate::reply::Reply;
use crate::slot::key_slot;
use crate::state_machine::LogCommand;

/// Most commands carried by one log entry.
const MAX_BATCH: usize = 1024;

/// A write waiting for its log entry.
pub(super) struct Pending {
    command: LogCommand,
    reply: oneshot::Sender<Result<Reply, NodeError>>,
}

/// The queue of writes waiting to be proposed.
pub(super) type Queue = mpsc::UnboundedSender<Pending>;

/// Starts the batcher proposing what is queued on the returned queue.
pub(super) fn start(raft: Raft, write_timeout: Duration) -> Queue {
    let (queue, pending) = mpsc::unbounded_channel();
    tokio::spawn(batcher(raft, pending, write_timeout));
    queue
}

/// The reply to come for a queued write.
#[derive(Debug)]
pub struct Ticket {
    answer: oneshot::Receiver<Result<Reply, NodeError>>,
    timeout: Duration,
}

impl Ticket {
    /// Waits for the write's reply: its applied result, or UNCERTAIN when the write timed
    /// out or its entry's fate is unknown.
    pub async fn wait(self) -> Reply {
        let uncertain = |cause| Reply::error(NodeError::Uncertain(cause));
        match tokio::time::timeout(self.timeout, self.answer).await {
            Ok(Ok(result)) => result.unwrap_or_else(Reply::error),
            Ok(Err(_)) => uncertain(Uncertain::ShuttingDown),
            Err(_) => uncertain(Uncertain::TimedOut(self.timeout.as_millis())),
        }
    }
}

/// Proposes queued writes: everything that queued while the previous entry was in flight
/// goes into the next entry, applied in queue order, each command with its own reply.
async fn batcher(raft: Raft, mut queue: mpsc::UnboundedReceiver<Pending>, write_timeout: Duration) {
    // One entry in flight at a time: measured, two in flight split the batches and lowered
    // throughput (openraft flushes a leader's appends one after another anyway).
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // A write whose caller stopped waiting (answered UNCERTAIN after the write timeout, or
        // gone) before it was proposed is dropped, not committed long after that answer.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (commands, waiters): (Vec<LogCommand>, Vec<_>) =
            batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        let payload = Payload(Bytes::from(replication::encode(&commands)));
        let written = tokio::time::timeout(write_timeout, raft.client_write(payload)).await;
        let failure = match written {
            Ok(Ok(response)) if response.data.len() == waiters.len() => {
                for (waiter, reply) in waiters.into_iter().zip(response.data) {
                    let _ = waiter.send(Ok(reply));
                }
                continue;
            }
            Ok(Ok(response)) => Uncertain::Unanswered {
                writes: waiters.len(),
                answered: response.data.len(),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Uncertain::LeaderChanged
            }
            Ok(Err(e)) => Uncertain::Raft(Box::new(e)),
            Err(_) => Uncertain::TimedOut(write_timeout.as_millis()),
        };
        let failure = NodeError::Uncertain(failure);
        for waiter in waiters {
            let _ = waiter.send(Err(failure.clone()));
        }
    }
}

impl Node {
    /// Appends `command` to the log and waits for its reply from the local apply. Commands
    /// proposed while an entry is in flight travel together in the next one.
    pub(super) async fn propose(&self, command: LogCommand, slot: u16) -> Result<Reply, NodeError> {
        Ok(self.enqueue(command, slot)?.wait().await)
    }

    /// Queues `command` for the log (after the leadership check) without waiting.
    fn enqueue(&self, command: LogCommand, slot: u16) -> Result<Ticket, NodeError> {
        self.must_lead(slot)?;
        let (reply, answer) = oneshot::channel();
        if self.proposals.send(Pending { command, reply }).is_err() {
            return Err(NodeError::ShuttingDown);
        }
        Ok(Ticket {
            answer,
            timeout: self.write_timeout,
        })
    }

    /// Queues the write `op` for the log and returns at once; the reply comes from the
    /// [`Ticket`]. Writes queued one after another apply in that order, so a pipeline of
    /// writes from one client can be queued whole and share log entries.
    pub fn submit(&self, op: Op, ctx: &ParseCtx) -> Result<Ticket, NodeError> {
        let slot = op.keys().first().map_or(0, |k| key_slot(k));
        self.enqueue(
            LogCommand::Op {
                now_ms: ctx.now_ms,
                op,
            },
            slot,
        )
    }
}
