//! The Raft log store: the log in memory for reads, made durable by one writer task that
//! commits whatever has queued up in a single disk write (group commit).
//!
//! openraft's contract for `append` is that entries are readable as soon as it returns and
//! durable once the callback fires. The in-memory mirror gives the first at once; the writer
//! fires each callback only after the disk write holding its entries has completed. While one
//! write is in flight, later appends queue up and go together in the next one, so with many
//! concurrent clients the cost of an fsync is shared.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use tokio::sync::{mpsc, oneshot};

use super::disk::{Disk, DiskOp, Recovered};
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

/// What to do once a job's write is durable.
enum Done<R: Response> {
    Nothing,
    Flushed(LogFlushed<TypeConfig<R>>),
    Notify(oneshot::Sender<io::Result<()>>),
}

struct Job<R: Response> {
    op: DiskOp,
    done: Done<R>,
}

/// The queue to the writer task, shared by the handles of the log store, so everything reaches
/// the disk in the order it was queued. (Snapshots are saved apart: [`Disk::save_snapshot`].)
///
/// Unbounded, yet short: openraft's core waits for each append's flush callback before its
/// next storage call (`append_to_log`, openraft 0.9.25), so at most one append (one entry
/// batch of a leader, or one AppendEntries of a follower, both capped in bytes) waits here
/// beside the committed position.
pub struct Writer<R: Response> {
    jobs: mpsc::UnboundedSender<Job<R>>,
    /// The latest committed position, written with the next batch rather than on its own:
    /// openraft treats a lost committed position as merely behind, so it need not cost an
    /// fsync of its own.
    committed: Arc<Mutex<Option<Vec<u8>>>>,
}

impl<R: Response> Clone for Writer<R> {
    fn clone(&self) -> Self {
        Writer {
            jobs: self.jobs.clone(),
            committed: self.committed.clone(),
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
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job<R>>();
        let stats = Arc::new(DiskStats::default());
        let counters = stats.clone();
        let committed = Arc::new(Mutex::new(None));
        let latest_committed = committed.clone();
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
                let (mut ops, dones): (Vec<_>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.op, j.done)).unzip();
                let latest = latest_committed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(c) = latest {
                    ops.push(DiskOp::Committed(c));
                }
                let result = disk.write(ops).await;
                counters.writes.fetch_add(1, Ordering::Relaxed);
                counters
                    .entries
                    .fetch_add(appended as u64, Ordering::Relaxed);
                if let Err(e) = &result {
                    tracing::error!(cause = %e, "raft storage write failed");
                }
                for done in dones {
                    let result = result.as_ref().map(|_| ()).map_err(copy_error);
                    match done {
                        Done::Nothing => {}
                        Done::Flushed(callback) => callback.log_io_completed(result),
                        Done::Notify(tx) => {
                            let _ = tx.send(result);
                        }
                    }
                }
            }
        });
        (Writer { jobs, committed }, stats, task)
    }

    fn queue(&self, op: DiskOp, done: Done<R>) -> io::Result<()> {
        self.jobs
            .send(Job { op, done })
            .map_err(|_| io::Error::other("the raft storage writer has stopped"))
    }

    /// Queues `op` and waits until it is durable.
    pub async fn write(&self, op: DiskOp) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue(op, Done::Notify(tx))?;
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
                .unwrap_or_else(PoisonError::into_inner) = Some(encode(c));
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
        let mut ops = Vec::new();
        {
            let mut inner = self.lock();
            for entry in entries {
                ops.push(DiskOp::Append {
                    index: entry.log_id.index,
                    entry: encode(&entry),
                });
                inner.log.insert(entry.log_id.index, entry);
            }
        }
        // The callback rides with the last operation: it fires once all of them are durable.
        let Some(last) = ops.pop() else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        for op in ops {
            self.writer
                .queue(op, Done::Nothing)
                .map_err(|e| write_error(&e))?;
        }
        #[cfg(feature = "fault-injection")]
        if crate::sabotage::on(crate::sabotage::Sabotage::AckBeforeFsync) {
            callback.log_io_completed(Ok(()));
            return self
                .writer
                .queue(last, Done::Nothing)
                .map_err(|e| write_error(&e));
        }
        self.writer
            .queue(last, Done::Flushed(callback))
            .map_err(|e| write_error(&e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.lock().log.split_off(&log_id.index);
        self.writer
            .write(DiskOp::TruncateFrom(log_id.index))
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
