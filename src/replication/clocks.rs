//! Clocks on the cluster bus: every request and every response carries the sender's clock
//! (the one it stamps operations with), and a node refuses peers whose clocks provably differ
//! from its own by more than the cluster's bound (`cluster.max_clock_offset_ms`).
//!
//! Why: a leader stamps every write with its clock, and reads judge expiry by it. Refusing
//! what a skewed peer sends keeps every committed time within the bound of a majority's
//! clocks (a leader an hour ahead cannot commit writes that expire every shorter TTL), and
//! keeps two successive leaders within twice the bound of each other, which is less than the
//! leader lease (openraft's `election_timeout_max`): a new leader is elected only after the
//! old one's lease ran out, so its clock has passed every time the old leader read at.
//!
//! The checks see only what a message proves, so a slow network never looks like a skewed
//! clock:
//! - a receiver refuses a request sent at a time more than the bound ahead of its own now
//!   (delay only makes a request look older);
//! - the sender of a request measures the peer from the round trip: the peer's offset lies in
//!   `[t2 - t3, t2 - t1]` (sent at `t1`, answered at the peer's `t2`, received at `t3`), and a
//!   peer whose whole interval lies beyond the bound is refused. A node behind its peers thus
//!   stops sending to them (its heartbeats no longer hold off an election it cannot win).
//!
//! A refused peer is not sent Raft messages again until a ping shows its clock back within
//! the bound; pings go at most every [`PROBE_EVERY`].
//!
//! A node that has just started also grants no vote for one lease: openraft keeps the time it
//! last heard from a leader in memory only, so a restarted node would otherwise help elect a
//! new leader while the old leader's lease still runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::warn;

use super::local_time::LocalInstant;
use crate::clock::Clock;
use crate::peers::NodeId;

/// How often a refused peer's clock is measured again.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How often the same peer's skew is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A peer's clock differs from ours by more than the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "node {peer}'s clock is at least {} ms {} ours, more than the {bound} ms the cluster allows (cluster.max_clock_offset_ms): refusing its messages",
    offset.unsigned_abs(),
    if *offset > 0 { "ahead of" } else { "behind" }
)]
pub struct Skew {
    /// The peer.
    pub peer: NodeId,
    /// The peer's clock minus ours, at least (ahead) or at most (behind) this.
    pub offset: i64,
    /// The allowed offset.
    pub bound: u64,
}

/// What to do before sending a peer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// Its clock is not known to be off: send.
    Send,
    /// It was refused and is due for a new measurement: ping it first.
    Probe,
    /// It was refused recently: do not send.
    Refuse(Skew),
}

/// This node's clock and what it knows of its peers' clocks.
pub struct PeerClocks {
    clock: Arc<Clock>,
    bound: u64,
    /// On this node's own clock, like openraft's side of the lease.
    started: LocalInstant,
    vote_hold: Duration,
    /// Peers refused, with when they were last measured and how far off they were.
    refused: Mutex<HashMap<NodeId, (Instant, Skew)>>,
    /// Whether `refused` holds anyone (written under its lock): the common case, no peer
    /// refused, costs each RPC one atomic load rather than two lock round trips.
    any_refused: AtomicBool,
    warned: Mutex<HashMap<NodeId, Instant>>,
    refusals: AtomicU64,
}

impl std::fmt::Debug for PeerClocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClocks")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl PeerClocks {
    /// Peers' clocks compared with `clock`, allowing `bound_ms` of difference; no vote granted
    /// for `vote_hold` after now.
    pub fn new(clock: Arc<Clock>, bound_ms: u64, vote_hold: Duration) -> PeerClocks {
        PeerClocks {
            clock,
            bound: bound_ms,
            started: LocalInstant::now(),
            vote_hold,
            refused: Mutex::default(),
            any_refused: AtomicBool::new(false),
            warned: Mutex::default(),
            refusals: AtomicU64::new(0),
        }
    }

    /// This node's time, as it stamps operations.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The allowed offset in ms.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// Messages refused (both ways) because of a peer's clock since start.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Whether this node grants votes yet (one lease after it started).
    pub fn grants_votes(&self) -> bool {
        LocalInstant::now() - self.started >= self.vote_hold
    }

    /// Checks a request from `peer` sent at its time `sent_ms`, received now.
    pub fn check_request(&self, peer: NodeId, sent_ms: u64) -> Result<(), Skew> {
        let now = self.now_ms();
        if sent_ms > now.saturating_add(self.bound) {
            let skew = Skew {
                peer,
                offset: offset(sent_ms, now),
                bound: self.bound,
            };
            self.refuse(skew);
            return Err(skew);
        }
        Ok(())
    }

    /// Before sending `peer` a request.
    pub fn before_send(&self, peer: NodeId) -> Before {
        if !self.any_refused.load(Ordering::Acquire) {
            return Before::Send;
        }
        match self.refused.lock().get(&peer) {
            None => Before::Send,
            Some((at, _)) if at.elapsed() >= PROBE_EVERY => Before::Probe,
            Some((_, skew)) => Before::Refuse(*skew),
        }
    }

    /// Checks a round trip with `peer`: sent at our `t1`, answered at its `t2`, received at
    /// our `t3`. A peer found off is refused until a later round trip finds it within bounds.
    pub fn check_round_trip(&self, peer: NodeId, t1: u64, t2: u64, t3: u64) -> Result<(), Skew> {
        self.check_late_answer(peer, t1, t2, t3)?;
        if !self.any_refused.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut refused = self.refused.lock();
        if refused.remove(&peer).is_some() {
            tracing::info!(peer, "peer's clock is back within bounds");
        }
        self.any_refused
            .store(!refused.is_empty(), Ordering::Release);
        Ok(())
    }

    /// As [`PeerClocks::check_round_trip`], for an answer read at `t3` some time after it
    /// arrived (a commit position's, read before the next request's answer): a skew it proves
    /// refuses the peer, but one that looks within bounds readmits no refused peer, since the
    /// late reading widens the interval the peer's clock is judged on.
    pub fn check_late_answer(&self, peer: NodeId, t1: u64, t2: u64, t3: u64) -> Result<(), Skew> {
        let bound = self.bound as i64;
        let (least, most) = (offset(t2, t3), offset(t2, t1));
        let off = if least > bound {
            Some(least)
        } else if most < -bound {
            Some(most)
        } else {
            None
        };
        match off {
            Some(offset) => {
                let skew = Skew {
                    peer,
                    offset,
                    bound: self.bound,
                };
                self.refuse(skew);
                Err(skew)
            }
            None => Ok(()),
        }
    }

    /// Notes that `peer` refused our request because our clock is ahead of its own.
    pub fn refused_by(&self, peer: NodeId, their_now: u64, our_sent: u64) {
        self.refuse(Skew {
            peer,
            offset: offset(their_now, our_sent),
            bound: self.bound,
        });
    }

    fn refuse(&self, skew: Skew) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        let mut refused = self.refused.lock();
        refused.insert(skew.peer, (Instant::now(), skew));
        self.any_refused.store(true, Ordering::Release);
        drop(refused);
        let mut warned = self.warned.lock();
        let due = warned
            .get(&skew.peer)
            .is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            warned.insert(skew.peer, Instant::now());
            warn!("cluster bus: {skew}");
        }
    }
}

/// `a - b` as a signed number of ms.
fn offset(a: u64, b: u64) -> i64 {
    if a >= b {
        (a - b).min(i64::MAX as u64) as i64
    } else {
        -((b - a).min(i64::MAX as u64) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn clocks_at(now: Arc<AtomicU64>) -> PeerClocks {
        let source = now.clone();
        let clock = Arc::new(Clock::new(Arc::new(move || source.load(Ordering::Relaxed))));
        PeerClocks::new(clock, 250, Duration::from_secs(1))
    }

    #[test]
    fn a_request_from_a_clock_too_far_ahead_is_refused_a_late_one_is_not() {
        let clocks = clocks_at(Arc::new(AtomicU64::new(100_000)));
        assert!(clocks.check_request(2, 100_250).is_ok());
        let skew = clocks.check_request(2, 100_251).unwrap_err();
        assert_eq!(skew.offset, 251);
        assert!(skew.to_string().contains("ahead of ours"), "{skew}");
        // A request that spent a minute in transit is old, not skewed.
        assert!(clocks.check_request(3, 100_000 - 60_000).is_ok());
        assert_eq!(clocks.refusals(), 1);
    }

    #[test]
    fn a_round_trip_refuses_only_what_it_proves() {
        let clocks = clocks_at(Arc::new(AtomicU64::new(0)));
        // A slow answer (5 s round trip) from a peer whose clock agrees: fine.
        assert!(clocks.check_round_trip(2, 1_000, 3_500, 6_000).is_ok());
        // The peer answered at a time after we received its answer, by more than the bound.
        let ahead = clocks.check_round_trip(2, 1_000, 1_300, 1_020).unwrap_err();
        assert_eq!(ahead.offset, 280);
        // The peer answered before we sent, by more than the bound: it is behind.
        let behind = clocks.check_round_trip(3, 1_000, 700, 1_010).unwrap_err();
        assert_eq!(behind.offset, -300);
        assert!(behind.to_string().contains("behind ours"), "{behind}");
        assert!(matches!(clocks.before_send(3), Before::Refuse(_)));
        assert_eq!(clocks.before_send(4), Before::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_peer_is_probed_again_and_readmitted() {
        let clocks = clocks_at(Arc::new(AtomicU64::new(0)));
        assert!(clocks.check_round_trip(2, 1_000, 2_000, 1_001).is_err());
        assert!(clocks.check_round_trip(3, 1_000, 2_000, 1_001).is_err());
        assert!(matches!(clocks.before_send(2), Before::Refuse(_)));
        tokio::time::advance(PROBE_EVERY).await;
        assert_eq!(clocks.before_send(2), Before::Probe);
        assert!(clocks.check_round_trip(2, 5_000, 5_001, 5_002).is_ok());
        assert_eq!(clocks.before_send(2), Before::Send);
        // The other refused peer stays refused until its own round trip readmits it.
        assert_eq!(clocks.before_send(3), Before::Probe);
        assert!(clocks.check_round_trip(3, 5_000, 5_001, 5_002).is_ok());
        assert_eq!(clocks.before_send(3), Before::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_read_late_refuses_but_never_readmits() {
        let clocks = clocks_at(Arc::new(AtomicU64::new(0)));
        assert!(clocks.check_late_answer(2, 1_000, 2_000, 1_001).is_err());
        assert!(matches!(clocks.before_send(2), Before::Refuse(_)));
        tokio::time::advance(PROBE_EVERY).await;
        assert!(clocks.check_late_answer(2, 5_000, 5_001, 5_002).is_ok());
        assert_eq!(clocks.before_send(2), Before::Probe, "still refused");
        assert!(clocks.check_late_answer(3, 1_000, 700, 1_010).is_err());
        assert!(matches!(clocks.before_send(3), Before::Refuse(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_vote_is_granted_for_one_lease_after_start() {
        let clocks = clocks_at(Arc::new(AtomicU64::new(0)));
        assert!(!clocks.grants_votes());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!clocks.grants_votes());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(clocks.grants_votes());
    }
}
