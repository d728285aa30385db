//! One leadership confirmation for every read waiting: the read-index queue.
//!
//! A linearizable read on the leader must see every write acknowledged before the read
//! arrived. openraft's check (`get_read_log_id`) confirms leadership with a heartbeat round to
//! a quorum and gives the commit index of that moment (the read index); once this node has
//! applied up to it, its state is recent enough. A round costs a network round trip and a
//! message to every voter, so reads share rounds, as etcd's read-index loop does: rounds are
//! numbered as they start, a request notes how many had started when it arrived
//! ([`ReadEpoch`]), and any round numbered higher (one that started after the arrival) serves
//! it. A read that comes while a round is out waits for the next one, which starts as soon as
//! the current one ends and serves every read that came meanwhile. One round is out at a time.
//!
//! Sharing a round that started *before* a read arrived would be unsafe: that round may have
//! confirmed a leadership already lost when the read came, after a new leader acknowledged a
//! write. The epoch rule forbids it; [`tests`] checks the rule with rounds held open.
//!
//! Requests from one connection read together take their epoch when their bytes arrived, so a
//! pipeline of reads shares one round (each was sent before the epoch was taken).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::NodeError;

/// How many rounds had started when a request arrived: a round numbered above it serves the
/// request. Take it after the request was received, never before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadEpoch(u64);

/// Runs one confirmation round: the read index, or why leadership was not confirmed.
pub(super) type Confirm = Box<dyn Fn() -> BoxFuture<'static, Result<u64, NodeError>> + Send + Sync>;

/// A round's outcome, published to every waiter.
#[derive(Debug, Clone)]
struct Finished {
    round: u64,
    outcome: Result<u64, NodeError>,
}

/// Rounds started and whether one is wanted after the current one.
#[derive(Debug, Default)]
struct Rounds {
    running: bool,
    again: bool,
}

/// The queue of reads waiting for a confirmation round.
pub(super) struct ReadIndex {
    /// Rounds started so far (the number of the latest one). Written under `rounds`.
    started: AtomicU64,
    rounds: Mutex<Rounds>,
    finished: watch::Sender<Finished>,
    confirm: Confirm,
}

impl ReadIndex {
    /// A queue that confirms leadership with `confirm`.
    pub(super) fn new(confirm: Confirm) -> Arc<ReadIndex> {
        Arc::new(ReadIndex {
            started: AtomicU64::new(0),
            rounds: Mutex::new(Rounds::default()),
            finished: watch::Sender::new(Finished {
                round: 0,
                outcome: Ok(0),
            }),
            confirm,
        })
    }

    /// The epoch of a request received now.
    pub(super) fn epoch(&self) -> ReadEpoch {
        ReadEpoch(self.started.load(Ordering::Acquire))
    }

    /// Confirmation rounds run since start.
    pub(super) fn rounds(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// The read index of a round that started after `since`, starting one if none has.
    pub(super) async fn confirm(self: &Arc<Self>, since: ReadEpoch) -> Result<u64, NodeError> {
        let mut finished = self.finished.subscribe();
        self.request(since);
        let done = finished
            .wait_for(|f| f.round > since.0)
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        done.outcome.clone()
    }

    /// Makes sure a round numbered above `since` runs.
    fn request(self: &Arc<Self>, since: ReadEpoch) {
        let mut rounds = self.rounds.lock();
        if self.started.load(Ordering::Acquire) > since.0 {
            // A round that started after the request is out or over.
            return;
        }
        if rounds.running {
            // The round out started before the request: one more after it.
            rounds.again = true;
            return;
        }
        rounds.running = true;
        let round = self.start_round();
        drop(rounds);
        let me = self.clone();
        tokio::spawn(async move { me.run(round).await });
    }

    /// Numbers a new round (called with `rounds` locked).
    fn start_round(&self) -> u64 {
        self.started.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Runs round `round`, then the next while requests came during the last.
    async fn run(self: Arc<Self>, mut round: u64) {
        loop {
            let outcome = (self.confirm)().await;
            self.finished.send_replace(Finished { round, outcome });
            let mut rounds = self.rounds.lock();
            if !rounds.again {
                rounds.running = false;
                return;
            }
            rounds.again = false;
            round = self.start_round();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Semaphore;

    use super::*;

    /// A queue whose rounds each wait for one permit of `gate`, and answer their own number
    /// as the read index; `calls` counts rounds begun.
    fn gated() -> (Arc<ReadIndex>, Arc<Semaphore>, Arc<AtomicUsize>) {
        let gate = Arc::new(Semaphore::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let (g, c) = (gate.clone(), calls.clone());
        let queue = ReadIndex::new(Box::new(move || {
            let (g, c) = (g.clone(), c.clone());
            Box::pin(async move {
                let n = c.fetch_add(1, Ordering::SeqCst) as u64 + 1;
                g.acquire().await.expect("gate open").forget();
                Ok(n)
            })
        }));
        (queue, gate, calls)
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn reads_waiting_together_share_one_round() {
        let (queue, gate, calls) = gated();
        let since = queue.epoch();
        let reads: Vec<_> = (0..50)
            .map(|_| {
                let q = queue.clone();
                tokio::spawn(async move { q.confirm(since).await })
            })
            .collect();
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one round for 50 reads");
        gate.add_permits(1);
        for read in reads {
            assert_eq!(read.await.unwrap().unwrap(), 1);
        }
        assert_eq!(queue.rounds(), 1);
    }

    #[tokio::test]
    async fn a_read_arriving_during_a_round_waits_for_the_next() {
        let (queue, gate, calls) = gated();
        let early = queue.epoch();
        let q = queue.clone();
        let first = tokio::spawn(async move { q.confirm(early).await });
        settle().await;
        // Round 1 is out; a read arriving now must not be served by it.
        let late = queue.epoch();
        let q = queue.clone();
        let second = tokio::spawn(async move { q.confirm(late).await });
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one round out at a time");
        gate.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap(), 1);
        settle().await;
        assert!(!second.is_finished(), "the late read waits for round 2");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "round 2 started at once");
        gate.add_permits(1);
        assert_eq!(second.await.unwrap().unwrap(), 2);
        // Nothing waits any more: no third round.
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_after_a_round_ended_starts_a_new_one() {
        let (queue, gate, calls) = gated();
        gate.add_permits(2);
        assert_eq!(queue.confirm(queue.epoch()).await.unwrap(), 1);
        assert_eq!(queue.confirm(queue.epoch()).await.unwrap(), 2);
        // An epoch from before round 2 started is served by round 2's result without a round.
        assert_eq!(queue.confirm(ReadEpoch(1)).await.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_round_fails_its_reads_and_the_next_read_tries_again() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let queue = ReadIndex::new(Box::new(move || {
            let f = f.clone();
            Box::pin(async move {
                if f.load(Ordering::SeqCst) {
                    Err(NodeError::ReadTimedOut)
                } else {
                    Ok(7)
                }
            })
        }));
        assert!(matches!(
            queue.confirm(queue.epoch()).await,
            Err(NodeError::ReadTimedOut)
        ));
        fail.store(false, Ordering::SeqCst);
        assert_eq!(queue.confirm(queue.epoch()).await.unwrap(), 7);
    }
}
