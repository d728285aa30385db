//! The write path: a write is queued on the leader, proposed to the log with the writes that
//! queued beside it, and answered with the reply its own apply produced.
//!
//! This is the group commit: openraft appends a leader's entries one flush after another, so
//! one command per entry would cost one fsync per write however many clients wait; batching
//! makes a busy leader pay one fsync (and one replication round) for a whole batch. A write
//! whose entry may or may not commit (timeout, leadership lost in flight) answers
//! `UNCERTAIN`, never OK.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::linger::Linger;
use super::{Node, NodeError, Raft, Uncertain};
use crate::keyspace::{Op, ParseCtx};
use crate::replication::{self, Payload};
use crate::reply::Reply;
use crate::slot::key_slot;
use crate::state_machine::LogCommand;

/// Most commands carried by one log entry.
const MAX_BATCH: usize = 1024;

/// An entry takes no more commands once it holds this many bytes (a single larger command,
/// up to `cluster.max_entry_bytes`, travels alone): small entries replicate and apply without
/// holding up the ones behind them.
const BATCH_BYTES: usize = 1 << 20;

/// How many of the largest writes (`cluster.max_entry_bytes`) may wait to be proposed at
/// once: the queue holds at most this many times that in bytes.
const QUEUED_ENTRIES: usize = 4;

/// A write waiting for its log entry, already encoded (on the caller's task) so the batcher
/// only counts and concatenates bytes.
pub(super) struct Pending {
    encoded: Vec<u8>,
    reply: oneshot::Sender<Result<Reply, NodeError>>,
}

/// The queue of writes waiting to be proposed, bounded in bytes: a write that would take it
/// past its limit is refused at once (it never happened), so a flood of pipelined writes
/// cannot grow the leader's memory without end.
pub(super) struct Queue {
    sender: mpsc::UnboundedSender<Pending>,
    bytes: Arc<AtomicUsize>,
    limit: usize,
    /// Set when the node stops: nothing more is queued.
    stopping: AtomicBool,
    /// Tells the batcher to stop once its entry in flight is answered.
    stop: Arc<Notify>,
    batcher: Mutex<Option<JoinHandle<()>>>,
}

impl Queue {
    /// Queues `pending`, or refuses it when the queue is full or the node is stopping.
    fn push(&self, pending: Pending) -> Result<(), NodeError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(NodeError::ShuttingDown);
        }
        let size = pending.encoded.len();
        let queued = self.bytes.fetch_add(size, Ordering::Relaxed);
        if queued + size > self.limit {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(NodeError::Backlog {
                queued,
                limit: self.limit,
            });
        }
        self.sender.send(pending).map_err(|_| {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            NodeError::ShuttingDown
        })
    }

    /// Whether the node has begun to stop (new writes are refused).
    #[cfg(test)]
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Refuses new writes and waits (up to `within`) for the batcher to finish the entry it
    /// has in flight, so Raft is never stopped under a proposal. Writes still queued then were
    /// never proposed; their callers are answered that the node is shutting down.
    pub(super) async fn stop(&self, within: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.notify_one();
        let batcher = self.batcher.lock().take();
        if let Some(batcher) = batcher
            && tokio::time::timeout(within, batcher).await.is_err()
        {
            tracing::warn!("the write batcher did not stop in time");
        }
    }
}

/// Starts the batcher proposing what is queued on the returned queue, which holds up to
/// [`QUEUED_ENTRIES`] times `max_entry_bytes`.
pub(super) fn start(
    raft: Raft,
    write_timeout: Duration,
    max_entry_bytes: usize,
    batch_wait: Duration,
) -> Queue {
    let (sender, pending) = mpsc::unbounded_channel();
    let bytes = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(batcher(
        raft,
        pending,
        bytes.clone(),
        write_timeout,
        stop.clone(),
        batch_wait,
    ));
    Queue {
        sender,
        bytes,
        limit: max_entry_bytes.saturating_mul(QUEUED_ENTRIES),
        stopping: AtomicBool::new(false),
        stop,
        batcher: Mutex::new(Some(task)),
    }
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
async fn batcher(
    raft: Raft,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    queued: Arc<AtomicUsize>,
    write_timeout: Duration,
    stop: Arc<Notify>,
    batch_wait: Duration,
) {
    // One entry in flight at a time: measured, two in flight split the batches and lowered
    // throughput (openraft flushes a leader's appends one after another anyway).
    let mut carried: Option<Pending> = None;
    let mut linger = Linger::new(batch_wait);
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => tokio::select! {
                biased;
                _ = stop.notified() => return,
                next = queue.recv() => match next {
                    Some(p) => p,
                    None => return,
                },
            },
        };
        let mut bytes = first.encoded.len();
        let mut batch = vec![first];
        while has_room(&batch, bytes) {
            let Ok(next) = queue.try_recv() else { break };
            carried = add(&mut batch, &mut bytes, next);
            if carried.is_some() {
                break;
            }
        }
        // Writers the last entry answered are likely on their way back: wait a little for
        // them rather than split the writers into two groups taking turns (`linger.rs`).
        if let Some(wait) = linger.wait_for(batch.len()).filter(|_| carried.is_none()) {
            linger.start(wait);
            let before = batch.len();
            while has_room(&batch, bytes) && !linger.enough(batch.len()) {
                let next = tokio::select! {
                    biased;
                    next = queue.recv() => next,
                    _ = linger.elapsed() => None,
                };
                let Some(next) = next else { break };
                carried = add(&mut batch, &mut bytes, next);
                if carried.is_some() {
                    break;
                }
            }
            linger.stop(batch.len() - before + usize::from(carried.is_some()));
        }
        queued.fetch_sub(bytes, Ordering::Relaxed);
        // A write whose caller stopped waiting (answered UNCERTAIN after the write timeout, or
        // gone) before it was proposed is dropped, not committed long after that answer.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let payload = Payload(Bytes::from(entry_payload(&batch)));
        let waiters: Vec<_> = batch.into_iter().map(|p| p.reply).collect();
        let proposed = tokio::time::Instant::now();
        let written = tokio::time::timeout(write_timeout, raft.client_write(payload)).await;
        let failure = match written {
            Ok(Ok(response)) if response.data.len() == waiters.len() => {
                linger.answered(waiters.len(), queue.len(), proposed.elapsed());
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
        linger.failed();
        let failure = NodeError::Uncertain(failure);
        for waiter in waiters {
            let _ = waiter.send(Err(failure.clone()));
        }
    }
}

/// Whether `batch`, holding `bytes`, may take another write.
fn has_room(batch: &[Pending], bytes: usize) -> bool {
    batch.len() < MAX_BATCH && bytes < BATCH_BYTES
}

/// Adds `next` to `batch` (holding `bytes`), or hands it back when it would take the batch
/// past [`BATCH_BYTES`]: it then starts the next entry.
fn add(batch: &mut Vec<Pending>, bytes: &mut usize, next: Pending) -> Option<Pending> {
    if *bytes + next.encoded.len() > BATCH_BYTES {
        return Some(next);
    }
    *bytes += next.encoded.len();
    batch.push(next);
    None
}

/// The entry's payload: the encoding of the batch's commands as one `Vec<LogCommand>` (its
/// length, then each command's own encoding), made from the commands encoded one by one.
fn entry_payload(batch: &[Pending]) -> Vec<u8> {
    let mut payload = replication::encode(&(batch.len() as u64));
    payload.reserve(batch.iter().map(|p| p.encoded.len()).sum());
    for p in batch {
        payload.extend_from_slice(&p.encoded);
    }
    payload
}

impl Node {
    /// Appends `command` to the log and waits for its reply from the local apply. Commands
    /// proposed while an entry is in flight travel together in the next one.
    pub(super) async fn propose(&self, command: LogCommand, slot: u16) -> Result<Reply, NodeError> {
        Ok(self.enqueue(command, slot)?.wait().await)
    }

    /// Queues `command` for the log (after the leadership check) without waiting.
    pub(super) fn enqueue(&self, command: LogCommand, slot: u16) -> Result<Ticket, NodeError> {
        self.must_lead(|| slot)?;
        self.push(command)
    }

    /// Queues `command` for the log without waiting; the caller checked that this node leads.
    fn push(&self, command: LogCommand) -> Result<Ticket, NodeError> {
        let encoded = replication::encode(&command);
        if encoded.len() > self.max_entry_bytes {
            return Err(NodeError::TooLarge {
                size: encoded.len(),
                limit: self.max_entry_bytes,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.proposals.push(Pending { encoded, reply })?;
        Ok(Ticket {
            answer,
            timeout: self.write_timeout,
        })
    }

    /// Queues the write `op` for the log and returns at once; the reply comes from the
    /// [`Ticket`]. Writes queued one after another apply in that order, so a pipeline of
    /// writes from one client can be queued whole and share log entries.
    pub fn submit(&self, op: Op, ctx: &ParseCtx) -> Result<Ticket, NodeError> {
        // The slot only names itself in a MOVED: hashed only then.
        self.must_lead(|| op.keys().first().map_or(0, |k| key_slot(k)))?;
        self.push(LogCommand::Op {
            now_ms: ctx.now_ms,
            op,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_made_of_commands_encoded_one_by_one_decodes_as_the_batch() {
        let commands: Vec<LogCommand> = (0..300u64)
            .map(|i| LogCommand::ClusterId(i * 1_000_003))
            .chain([LogCommand::Unload {
                name: "m".repeat(200),
            }])
            .collect();
        let batch: Vec<Pending> = commands
            .iter()
            .map(|c| Pending {
                encoded: replication::encode(c),
                reply: oneshot::channel().0,
            })
            .collect();
        let payload = entry_payload(&batch);
        assert_eq!(payload, replication::encode(&commands));
    }
}
