//! The write path: a write is queued on the leader, proposed to the log with the writes that
//! queued beside it, and answered with the reply its own apply produced.
//!
//! This is the group commit: openraft appends a leader's entries one flush after another, so
//! one command per entry would cost one fsync per write however many clients wait; batching
//! makes a busy leader pay one fsync (and one replication round) for a whole batch. A write
//! whose entry may or may not commit (timeout, leadership lost in flight) answers
//! `UNCERTAIN`, never OK.
//!
//! A lone writer skips the batcher: when the last entries each carried one write and nothing
//! is queued or in flight, a write is proposed by its own connection's task when it is
//! awaited ([`Queue::ticket`]). There is nothing to batch then, and the batcher's two
//! hand-offs (connection to batcher, batcher back to connection) were two of the six or seven
//! a write crosses: on tokio's scheduler, a chain of more than three hand-offs wakes the
//! other worker. Who proposes is decided under one token, held by the batcher from the
//! moment it takes a write off the queue until openraft answers its entry, and by a direct
//! proposal until it is answered: a write goes direct only when it holds the token and the
//! queue is empty, so a connection's writes are proposed in the order it made them. A lone
//! ticket finding writes queued behind it when awaited (a pipeline, or other clients) hands
//! its write to the batcher, which puts it ahead of them in one entry, rather than
//! proposing two entries in a row ([`Lone::propose`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::linger::Linger;
use super::{Node, NodeError, Raft, Uncertain};
use crate::keyspace::{Op, ParseCtx};
use crate::peers::{Member, NodeId};
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
    turn: Turn,
    raft: Raft,
    write_timeout: Duration,
}

/// Who proposes next: shared by the queue and the batcher.
#[derive(Clone, Default)]
struct Turn {
    /// Held by whoever is proposing: the batcher (from taking a write off the queue until its
    /// entry is answered), or a lone writer's own proposal (until it is answered).
    token: Arc<tokio::sync::Mutex<()>>,
    /// The batcher's last entries each carried one write with nothing queued behind it: the
    /// next write may be proposed by its own task. Cleared by a write that finds the token
    /// taken, and by the batcher's next entry of more than one write.
    lone: Arc<AtomicBool>,
    /// A lone writer's write handed to the batcher because writes queued behind it before it
    /// was proposed: set while holding the token, taken by the batcher with the token, and
    /// proposed ahead of everything queued.
    handed: Arc<Mutex<Handoff>>,
    /// Writes proposed on their own (for INFO).
    alone: Arc<AtomicU64>,
}

/// The place where a lone writer hands its write to the batcher.
#[derive(Default)]
struct Handoff {
    write: Option<Pending>,
    /// The queue stopped: nothing handed now would be taken.
    closed: bool,
}

impl Queue {
    /// The ticket for the write `encoded`: proposed on its own when it is awaited, if the
    /// writer looks alone and nothing is queued or in flight; else queued for the batcher.
    fn ticket(&self, encoded: Vec<u8>) -> Result<Ticket, NodeError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(NodeError::ShuttingDown);
        }
        if self.turn.lone.load(Ordering::Relaxed) && self.bytes.load(Ordering::Relaxed) == 0 {
            // The queue is empty and the token free: every write queued before this one
            // (the caller's earlier ones included) has been proposed and answered.
            if let Ok(token) = self.turn.token.clone().try_lock_owned() {
                let lone = Lone {
                    token,
                    encoded,
                    raft: self.raft.clone(),
                    queued: self.bytes.clone(),
                    turn: self.turn.clone(),
                };
                return Ok(Ticket {
                    answer: Answer::Direct(Box::new(lone)),
                    timeout: self.write_timeout,
                });
            }
            self.turn.lone.store(false, Ordering::Relaxed);
        }
        let (reply, answer) = oneshot::channel();
        self.push(Pending { encoded, reply })?;
        Ok(Ticket {
            answer: Answer::Queued(answer),
            timeout: self.write_timeout,
        })
    }

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

    /// Writes proposed on their own rather than by the batcher.
    pub(super) fn proposed_alone(&self) -> u64 {
        self.turn.alone.load(Ordering::Relaxed)
    }

    /// Whether the node has begun to stop (new writes are refused).
    #[cfg(test)]
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Refuses new writes and waits (up to `within`) for the batcher to finish the entry it
    /// has in flight, and for a lone writer's proposal in flight, so Raft is never stopped
    /// under a proposal. Writes still queued then were never proposed; their callers are
    /// answered that the node is shutting down.
    pub(super) async fn stop(&self, within: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.notify_one();
        let batcher = self.batcher.lock().take();
        if let Some(batcher) = batcher
            && tokio::time::timeout(within, batcher).await.is_err()
        {
            tracing::warn!("the write batcher did not stop in time");
        }
        if tokio::time::timeout(within, self.turn.token.lock())
            .await
            .is_err()
        {
            tracing::warn!("a write proposed on its own did not end in time");
        }
        // A write handed to the batcher it stopped before taking was never proposed; one handed
        // from now on is refused when it is handed.
        let handed = {
            let mut handoff = self.turn.handed.lock();
            handoff.closed = true;
            handoff.write.take()
        };
        if let Some(write) = handed {
            let _ = write.reply.send(Err(NodeError::ShuttingDown));
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
    let turn = Turn::default();
    let task = tokio::spawn(batcher(
        raft.clone(),
        turn.clone(),
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
        turn,
        raft,
        write_timeout,
    }
}

/// The reply to come for a queued write.
pub struct Ticket {
    answer: Answer,
    timeout: Duration,
}

/// Where a write's reply comes from.
enum Answer {
    /// The batcher, once the write's entry is applied.
    Queued(oneshot::Receiver<Result<Reply, NodeError>>),
    /// The write's own proposal, made when the ticket is first awaited ([`Queue::ticket`]).
    Direct(Box<Lone>),
}

/// A lone writer's write, holding the token from its ticket's making until it is answered or
/// handed to the batcher.
struct Lone {
    token: tokio::sync::OwnedMutexGuard<()>,
    encoded: Vec<u8>,
    raft: Raft,
    /// The queue's byte count.
    queued: Arc<AtomicUsize>,
    turn: Turn,
}

impl Lone {
    /// Proposes the write on its own, or, when writes have queued behind it since its ticket
    /// was made (a pipeline, or other clients), hands it to the batcher to lead their entry:
    /// one entry rather than two in a row.
    fn propose(
        self,
        write_timeout: Duration,
    ) -> Result<impl Future<Output = Reply>, oneshot::Receiver<Result<Reply, NodeError>>> {
        if self.queued.load(Ordering::Relaxed) > 0 {
            // The batcher cannot have taken them (it needs the token): it will take this one
            // first.
            let (reply, answer) = oneshot::channel();
            let mut handoff = self.turn.handed.lock();
            if handoff.closed {
                let _ = reply.send(Err(NodeError::ShuttingDown));
            } else {
                handoff.write = Some(Pending {
                    encoded: self.encoded,
                    reply,
                });
            }
            drop(handoff);
            drop(self.token);
            return Err(answer);
        }
        self.turn.alone.fetch_add(1, Ordering::Relaxed);
        Ok(propose_alone(
            self.raft,
            self.token,
            self.encoded,
            write_timeout,
        ))
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = match self.answer {
            Answer::Queued(_) => "queued",
            Answer::Direct(_) => "direct",
        };
        f.debug_struct("Ticket").field("answer", &from).finish()
    }
}

impl Ticket {
    /// Waits for the write's reply: its applied result, or UNCERTAIN when the write timed
    /// out or its entry's fate is unknown.
    pub async fn wait(self) -> Reply {
        let mut answer = match self.answer {
            Answer::Direct(lone) => match lone.propose(self.timeout) {
                Ok(proposal) => return proposal.await,
                Err(handed) => handed,
            },
            Answer::Queued(answer) => answer,
        };
        // A pipelined write's reply is usually in by the time the connection gets to it (its
        // entry answered every write it carried at once): taken without arming a timer.
        let uncertain = |cause| Reply::error(NodeError::Uncertain(cause));
        match answer.try_recv() {
            Ok(answer) => return answer.unwrap_or_else(Reply::error),
            // Dropped unanswered (the queue stopped); the receiver is spent, not to be awaited.
            Err(oneshot::error::TryRecvError::Closed) => {
                return uncertain(Uncertain::ShuttingDown);
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        match tokio::time::timeout(self.timeout, answer).await {
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
    turn: Turn,
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
    // Entries in a row that carried one write with nothing queued behind them.
    let mut single_write_entries = 0u32;
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
        // Taken before anything leaves the queue's count, held until openraft answers the entry.
        let token = turn.token.lock().await;
        // A lone writer's write handed over leads the entry: it was made before these.
        let handed = turn.handed.lock().write.take();
        let handed_bytes = handed.as_ref().map_or(0, |p| p.encoded.len());
        let mut bytes = handed_bytes;
        let mut batch: Vec<Pending> = handed.into_iter().collect();
        if batch.is_empty() {
            bytes = first.encoded.len();
            batch.push(first);
        } else {
            carried = add(&mut batch, &mut bytes, first);
        }
        while carried.is_none() && has_room(&batch, bytes) {
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
        queued.fetch_sub(bytes - handed_bytes, Ordering::Relaxed);
        // A write whose caller stopped waiting (answered UNCERTAIN after the write timeout, or
        // gone) before it was proposed is dropped, not committed long after that answer.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let encoded = batch.iter().map(|p| p.encoded.as_slice());
        let payload = Payload(Bytes::from(entry_payload(encoded)));
        let waiters: Vec<_> = batch.into_iter().map(|p| p.reply).collect();
        let proposed = tokio::time::Instant::now();
        let written = tokio::time::timeout(write_timeout, raft.client_write(payload)).await;
        // Freed before the writers hear back: one of them may go alone next, and the entry
        // is applied (or its fate settled) by now, so nothing can be proposed ahead of it.
        drop(token);
        match replies(written, waiters.len(), write_timeout) {
            Ok(replies) => {
                let behind = queue.len();
                linger.answered(waiters.len(), behind, proposed.elapsed());
                single_write_entries = if waiters.len() == 1 && behind == 0 {
                    single_write_entries.saturating_add(1)
                } else {
                    0
                };
                turn.lone
                    .store(single_write_entries >= LONE_ENTRIES, Ordering::Relaxed);
                for (waiter, reply) in waiters.into_iter().zip(replies) {
                    let _ = waiter.send(Ok(reply));
                }
            }
            Err(failure) => {
                linger.failed();
                single_write_entries = 0;
                turn.lone.store(false, Ordering::Relaxed);
                let failure = NodeError::Uncertain(failure);
                for waiter in waiters {
                    let _ = waiter.send(Err(failure.clone()));
                }
            }
        }
    }
}

/// Entries in a row carrying one write, with nothing queued behind, after which the batcher
/// takes its writer for a lone one.
const LONE_ENTRIES: u32 = 2;

/// What proposing an entry came to: openraft's answer, or the write timeout.
type Written = Result<
    Result<
        ClientWriteResponse<replication::TypeConfig<Vec<Reply>>>,
        RaftError<NodeId, ClientWriteError<NodeId, Member>>,
    >,
    tokio::time::error::Elapsed,
>;

/// What a proposal of `writes` writes came to: their replies, or why their fate is unknown.
fn replies(
    written: Written,
    writes: usize,
    write_timeout: Duration,
) -> Result<Vec<Reply>, Uncertain> {
    match written {
        Ok(Ok(response)) if response.data.len() == writes => Ok(response.data),
        Ok(Ok(response)) => Err(Uncertain::Unanswered {
            writes,
            answered: response.data.len(),
        }),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
            Err(Uncertain::LeaderChanged)
        }
        Ok(Err(e)) => Err(Uncertain::Raft(Box::new(e))),
        Err(_) => Err(Uncertain::TimedOut(write_timeout.as_millis())),
    }
}

/// A lone writer's proposal of its one write, holding `token` until it is answered.
async fn propose_alone(
    raft: Raft,
    token: tokio::sync::OwnedMutexGuard<()>,
    encoded: Vec<u8>,
    write_timeout: Duration,
) -> Reply {
    let payload = Payload(Bytes::from(entry_payload([encoded.as_slice()].into_iter())));
    let written = tokio::time::timeout(write_timeout, raft.client_write(payload)).await;
    drop(token);
    let failure = match replies(written, 1, write_timeout) {
        Ok(replies) => match replies.into_iter().next() {
            Some(reply) => return reply,
            None => Uncertain::Unanswered {
                writes: 1,
                answered: 0,
            },
        },
        Err(failure) => failure,
    };
    Reply::error(NodeError::Uncertain(failure))
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
fn entry_payload<'a>(encoded: impl ExactSizeIterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let mut payload = replication::encode(&(encoded.len() as u64));
    payload.reserve(encoded.clone().map(<[u8]>::len).sum());
    for command in encoded {
        payload.extend_from_slice(command);
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
        self.proposals.ticket(encoded)
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
        let payload = entry_payload(batch.iter().map(|p| p.encoded.as_slice()));
        assert_eq!(payload, replication::encode(&commands));
    }
}
