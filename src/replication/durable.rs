//! How far the log is on disk, and the three waits that let a leader's own fsync run while its
//! entries travel to the followers.
//!
//! openraft 0.9 waits for each of a leader's appends to be flushed before it sends the entries
//! to the followers, so a write paid the leader's fsync, then the follower's, one after the
//! other. The log store therefore tells openraft an append is done as soon as it is queued
//! for the disk (readable at once, durable soon), and durability is enforced where it becomes
//! visible instead:
//!
//! 1. **A follower's answer.** The bus answers an AppendEntries only once every write this node
//!    queued before the answer is on disk ([`Durable::queued`]): a leader counts a follower
//!    only for entries the follower would keep through a crash.
//! 2. **Applying.** An entry is applied only once it is on this node's disk
//!    ([`Durable::entry`]). The leader counts itself in the quorum from the moment it queued an
//!    entry; by the time it applies (the only way a client sees a write: its reply, or a read
//!    after it) the entry is on its own disk and on a quorum of followers' counted ones, so on
//!    a majority of disks.
//! 3. **The commit position a leader sends.** It is lowered to the leader's last entry on disk
//!    ([`Durable::clamp`]), so no follower applies an entry that only the followers hold: if
//!    the leader crashed before its fsync, a new leader may be elected without that entry, and
//!    an applied entry must never be taken back.
//!
//! The fault simulation switches the waits off to show its checker notices: all three at once
//! (`AckBeforeFsync`) and the follower's alone (`AnswerBeforeFsync`) are caught within the CI
//! seeds; the other two alone (`ApplyBeforeFsync`, `CommitBeyondDisk`) need rarer crashes and
//! are only reported.

use std::io;
use std::sync::Arc;

use openraft::LogId;
use tokio::sync::watch;

use crate::peers::NodeId;

/// What the writer has made durable.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mark {
    /// Jobs written, counted in the order they were queued.
    pub(super) jobs: u64,
    /// The last log entry on disk.
    pub(super) last: Option<LogId<NodeId>>,
    /// A write failed: nothing will become durable any more.
    pub(super) failed: bool,
}

/// The writer's side: publishes each step of the mark.
pub(super) type MarkSender = Arc<watch::Sender<Mark>>;

/// What has been queued for the writer so far.
#[derive(Debug, Default)]
pub(super) struct Queued {
    /// Jobs queued (the writer counts them in the same order).
    pub(super) jobs: u64,
    /// The last log entry queued for the disk (lowered by a truncation).
    pub(super) last: Option<LogId<NodeId>>,
}

/// A reader of how far the log is on disk.
#[derive(Clone, Debug)]
pub struct Durable {
    mark: watch::Receiver<Mark>,
    /// What was queued so far, read when a wait begins.
    queued: Arc<std::sync::Mutex<Queued>>,
}

fn failed() -> io::Error {
    io::Error::other("a raft log write failed; nothing more becomes durable")
}

fn stopped() -> io::Error {
    io::Error::other("the raft storage writer has stopped")
}

impl Durable {
    pub(super) fn new(mark: watch::Receiver<Mark>, queued: Arc<std::sync::Mutex<Queued>>) -> Self {
        Durable { mark, queued }
    }

    async fn until(&self, done: impl Fn(&Mark) -> bool) -> io::Result<()> {
        let mut mark = self.mark.clone();
        let reached = mark
            .wait_for(|m| m.failed || done(m))
            .await
            .map_err(|_| stopped())?;
        if done(&reached) {
            Ok(())
        } else {
            Err(failed())
        }
    }

    fn queued_now(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the log entry at `index`, and every one before it, is on disk. Entries
    /// this node never queued for its disk (read back at start-up, or not from this log at
    /// all) need no wait.
    pub async fn entry(&self, index: u64) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if skipped(crate::sabotage::Sabotage::ApplyBeforeFsync) {
            return Ok(());
        }
        let Some(target) = self.queued_now().last.map(|l| l.index.min(index)) else {
            return Ok(());
        };
        self.until(|m| m.last.is_some_and(|l| l.index >= target))
            .await
    }

    /// Waits until every write queued before this call is on disk.
    pub async fn queued(&self) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if skipped(crate::sabotage::Sabotage::AnswerBeforeFsync) {
            return Ok(());
        }
        let target = self.queued_now().jobs;
        self.until(|m| m.jobs >= target).await
    }

    /// `commit` lowered to the last entry on disk: the commit position a leader may tell its
    /// followers. (Every entry of a leader's log before its committed one is committed too.)
    pub fn clamp(&self, commit: Option<LogId<NodeId>>) -> Option<LogId<NodeId>> {
        #[cfg(feature = "fault-injection")]
        if skipped(crate::sabotage::Sabotage::CommitBeyondDisk) {
            return commit;
        }
        let last = self.mark.borrow().last;
        match (commit, last) {
            (Some(c), Some(l)) if l.index < c.index => Some(l),
            (Some(_), None) => None,
            (c, _) => c,
        }
    }
}

/// Whether the fault simulation switched this wait off (alone, or with the others).
#[cfg(feature = "fault-injection")]
fn skipped(which: crate::sabotage::Sabotage) -> bool {
    crate::sabotage::on(which) || crate::sabotage::on(crate::sabotage::Sabotage::AckBeforeFsync)
}
