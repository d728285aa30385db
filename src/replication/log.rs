//! The Raft log store: the log in memory for reads, made durable by one writer task that
//! commits whatever has queued up in a single disk write (group commit).
//!
//! Entries are readable as soon as `append` returns (the in-memory mirror), and the append's
//! callback fires at once too, before the disk write: openraft 0.9 would otherwise hold a
//! leader's entries back from its followers until its own fsync ended. The writer publishes
//! how far the log is on disk, and `durable.rs` holds back what must not be seen before then
//! (a follower's answer, an apply, the commit position sent). While one write is in flight,
//! later appends queue up and go together in the next one, so with many concurrent clients
//! the cost of an fsync is shared.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use tokio::sync::{mpsc, oneshot, watch};

use super::disk::{Disk, DiskOp, Recovered};
use super::durable::{Durable, Mark, MarkSender, Queued};
use super::{CodecError, Response, TypeConfig, decode, encode};
use crate::peers::NodeId;

/// Most jobs merged into one disk write.
const MAX_BATCH: usize = 4096;

/// Group-commit figures, for INFO.
#[derive(Debug, Default)]
pub struct DiskStats {
    /// Disk writes (each one an fsync).
    pub writes: AtomicU64,
    /// Log entries made durable.
    pub entries: AtomicU64,
}

/// How a job moves the end of the log on disk.
#[derive(Debug, Clone, Copy)]
enum End {
    /// It does not (a vote, a purge, ...).
    Same,
    /// The log now ends at this entry (an append).
    At(LogId<NodeId>),
    /// Every entry from `from` on is gone, so the log ends at `kept` if it reached `from` (a
    /// truncation; `kept` is the last entry before `from`, queued earlier).
    Cut {
        from: u64,
        kept: Option<LogId<NodeId>>,
    },
}

impl End {
    /// Where the log ends after this job, if it ended at `end` before.
    fn after(self, end: Option<LogId<NodeId>>) -> Option<LogId<NodeId>> {
        match self {
            End::Same => end,
            End::At(id) => Some(id),
            End::Cut { from, kept } if end.is_some_and(|e| e.index >= from) => kept,
            End::Cut { .. } => end,
        }
    }
}

struct Job {
    op: DiskOp,
    end: End,
    /// Told once the job is durable (or failed).
    done: Option<oneshot::Sender<io::Result<()>>>,
}

/// The committed position waiting to be written with the next batch: its index, encoded.
type Committed = Option<(u64, Vec<u8>)>;

/// The queue to the writer task, shared by the handles of the log store, so everything reaches
/// the disk in the order it was queued. (Snapshots are saved apart: [`Disk::save_snapshot`].)
///
/// Unbounded, yet short: openraft's core waits for each append's flush callback before its
/// next storage call (`append_to_log`, openraft 0.9.25), so at most one append (one entry
/// batch of a leader, or one AppendEntries of a follower, both capped in bytes) waits here
/// beside the committed position.
pub struct Writer<R: Response> {
    jobs: mpsc::UnboundedSender<Job>,
    /// What was queued so far; held while sending, so the count follows the queue's order.
    queued: Arc<Mutex<Queued>>,
    /// The latest committed position, written with the next batch rather than on its own:
    /// openraft treats a lost committed position as merely behind, so it need not cost an
    /// fsync of its own.
    committed: Arc<Mutex<Committed>>,
    mark: MarkSender,
    response: std::marker::PhantomData<fn() -> R>,
}

impl<R: Response> Clone for Writer<R> {
    fn clone(&self) -> Self {
        Writer {
            jobs: self.jobs.clone(),
            queued: self.queued.clone(),
            committed: self.committed.clone(),
            mark: self.mark.clone(),
            response: std::marker::PhantomData,
        }
    }
}

impl<R: Response> Debug for Writer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

impl<R: Response> Writer<R> {
    /// Spawns the writer task over `disk`. The task ends, letting go of the disk, once every
    /// handle to the writer is dropped; the returned handle resolves then.
    pub fn start<D: Disk>(
        disk: Arc<D>,
    ) -> (Writer<R>, Arc<DiskStats>, tokio::task::JoinHandle<()>) {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let stats = Arc::new(DiskStats::default());
        let counters = stats.clone();
        let committed = Arc::new(Mutex::new(None));
        let latest_committed = committed.clone();
        let mark = Arc::new(watch::Sender::new(Mark::default()));
        let marker = mark.clone();
        let task = tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let appended = jobs
                    .iter()
                    .filter(|j| matches!(j.op, DiskOp::Append { .. }))
                    .count();
                let count = jobs.len() as u64;
                // Where the log ends once this batch is written (the one before it is): a
                // committed position is written only with or after the entry it names.
                let start = marker.borrow().last;
                let end = jobs.iter().fold(start, |e, j| j.end.after(e));
                let mut ops = Vec::with_capacity(jobs.len() + 1);
                let mut dones = Vec::new();
                for job in jobs {
                    ops.push(job.op);
                    dones.extend(job.done);
                }
                {
                    let mut latest = latest_committed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if latest
                        .as_ref()
                        .is_some_and(|(index, _)| end.is_some_and(|e| *index <= e.index))
                        && let Some((_, c)) = latest.take()
                    {
                        ops.push(DiskOp::Committed(c));
                    }
                }
                let result = disk.write(ops).await;
                counters.writes.fetch_add(1, Ordering::Relaxed);
                counters
                    .entries
                    .fetch_add(appended as u64, Ordering::Relaxed);
                if let Err(e) = &result {
                    tracing::error!(cause = %e, "raft storage write failed");
                }
                let mut mark = *marker.borrow();
                mark.jobs += count;
                mark.failed |= result.is_err();
                if result.is_ok() {
                    mark.last = end;
                }
                for done in dones {
                    let _ = done.send(result.as_ref().map(|_| ()).map_err(copy_error));
                }
                marker.send_replace(mark);
            }
        });
        let writer = Writer {
            jobs,
            queued: Arc::default(),
            committed,
            mark,
            response: std::marker::PhantomData,
        };
        (writer, stats, task)
    }

    fn queue(&self, job: Job) -> io::Result<()> {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        let end = job.end.after(queued.last);
        self.jobs
            .send(job)
            .map_err(|_| io::Error::other("the raft storage writer has stopped"))?;
        queued.jobs += 1;
        queued.last = end;
        Ok(())
    }

    /// How far the log is on disk.
    pub fn durable(&self) -> Durable {
        Durable::new(self.mark.subscribe(), self.queued.clone())
    }

    /// The log read back at start-up ends at `last`, on disk.
    fn recovered(&self, last: Option<LogId<NodeId>>) {
        self.mark.send_modify(|m| m.last = last);
    }

    /// Queues `op` and waits until it is durable.
    pub async fn write(&self, op: DiskOp) -> io::Result<()> {
        self.write_moving(op, End::Same).await
    }

    /// Queues `op`, which moves the end of the log as `end` says, and waits until it is durable.
    async fn write_moving(&self, op: DiskOp, end: End) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue(Job {
            op,
            end,
            done: Some(tx),
        })?;
        rx.await
            .map_err(|_| io::Error::other("the raft storage writer has stopped"))?
    }
}

/// The log, vote and committed position as openraft sees them.
struct Inner<R: Response> {
    log: BTreeMap<u64, Entry<TypeConfig<R>>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    purged: Option<LogId<NodeId>>,
}

/// openraft's log store (v2 storage API). Cloning gives another handle to the same log.
pub struct LogStore<R: Response> {
    inner: Arc<Mutex<Inner<R>>>,
    writer: Writer<R>,
}

impl<R: Response> Debug for LogStore<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

impl<R: Response> Clone for LogStore<R> {
    fn clone(&self) -> Self {
        LogStore {
            inner: self.inner.clone(),
            writer: self.writer.clone(),
        }
    }
}

fn write_error(e: &io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(e).into()
}

impl<R: Response> LogStore<R> {
    /// The log as recovered from disk, writing through `writer`.
    pub fn recover(recovered: &Recovered, writer: Writer<R>) -> Result<LogStore<R>, CodecError> {
        let mut inner = Inner {
            log: BTreeMap::new(),
            vote: recovered.vote.as_deref().map(decode).transpose()?,
            committed: recovered.committed.as_deref().map(decode).transpose()?,
            purged: recovered.purged.as_deref().map(decode).transpose()?,
        };
        for bytes in &recovered.entries {
            let entry: Entry<TypeConfig<R>> = decode(bytes)?;
            inner.log.insert(entry.log_id.index, entry);
        }
        writer.recovered(
            inner
                .log
                .values()
                .next_back()
                .map(|e| e.log_id)
                .or(inner.purged),
        );
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
            writer,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<R>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: Response> RaftLogReader<TypeConfig<R>> for LogStore<R> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig<R>>>, StorageError<NodeId>> {
        Ok(self
            .lock()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl<R: Response> RaftLogStorage<TypeConfig<R>> for LogStore<R> {
    type LogReader = LogStore<R>;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig<R>>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner.log.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last.or(inner.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Durable before returning: a node must never vote twice in a term, even across a crash.
        //
        // Stored as not committed: openraft resumes leadership at start-up from a committed
        // vote for itself, in the same term and with the committed position it last saved,
        // which may lag what it acknowledged before the crash, so its first read-index reads
        // could miss acknowledged writes. A restarted node that must win a new election
        // commits a new entry of its own term before it serves, as Raft intends.
        let on_disk = Vote {
            committed: false,
            ..*vote
        };
        self.writer
            .write(DiskOp::Vote(encode(&on_disk)))
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not waited for, and written with the next batch: openraft treats a lost committed
        // position as merely behind.
        if let Some(c) = &committed {
            *self
                .writer
                .committed
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((c.index, encode(c)));
        }
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig<R>>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig<R>>> + Send,
        I::IntoIter: Send,
    {
        // Done once queued: durability is waited for where it shows (`durable.rs`).
        let mut inner = self.lock();
        for entry in entries {
            self.writer
                .queue(Job {
                    op: DiskOp::Append {
                        index: entry.log_id.index,
                        entry: encode(&entry),
                    },
                    end: End::At(entry.log_id),
                    done: None,
                })
                .map_err(|e| write_error(&e))?;
            inner.log.insert(entry.log_id.index, entry);
        }
        drop(inner);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let kept = {
            let mut inner = self.lock();
            inner.log.split_off(&log_id.index);
            inner
                .log
                .values()
                .next_back()
                .map(|e| e.log_id)
                .or(inner.purged)
        };
        self.writer
            .write_moving(
                DiskOp::TruncateFrom(log_id.index),
                End::Cut {
                    from: log_id.index,
                    kept,
                },
            )
            .await
            .map_err(|e| write_error(&e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        {
            let mut inner = self.lock();
            if inner.purged.is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            inner.purged = Some(log_id);
            let kept = inner.log.split_off(&(log_id.index + 1));
            inner.log = kept;
        }
        self.writer
            .write(DiskOp::PurgeUpTo {
                index: log_id.index,
                log_id: encode(&log_id),
            })
            .await
            .map_err(|e| write_error(&e))
    }
}
