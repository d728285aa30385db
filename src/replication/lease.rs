//! The leader's lease: a span in which no other node can have become leader, so a leader may
//! answer a linearizable read from its own state without a round of heartbeats.
//!
//! openraft's followers refuse every vote request for `election_timeout_max` after the last
//! AppendEntries (heartbeat or entries) they accepted from the leader (openraft's own
//! `leader_lease`). So once a majority of the voters, the leader counted, accepted a message
//! the leader sent at `t`, no candidate can gather a majority before `t + election_timeout_max`
//! by their clocks. The leader records when it sent each request a follower accepted
//! ([`Lease::acked`]) and holds the lease until the majority's send time plus
//! the lease's length, shorter than the followers' span by the drift allowed
//! (`cluster.max_clock_drift_percent`, 10% by default) so that clocks running at rates up to
//! that far apart (NTP keeps them within a thousandth) cannot open a gap. Only rates matter:
//! both ends measure a span on their own monotonic clock (`local_time.rs`, which the fault
//! simulation runs at a rate of its own on each host); offsets never enter.
//!
//! The leader's own vote must be held too (in a cluster of three it is one of the two votes a
//! candidate needs), and openraft lets a leader grant a vote once its own span has passed. The
//! cluster bus therefore refuses vote requests while this node leads under a lease
//! ([`Lease::holds`]).
//!
//! A read under the lease needs no wait either: on a leader, every acknowledged write was
//! applied before its reply (a leader answers writes from its apply), and every write of an
//! earlier leader lies before the first entry of this term, which the read path requires to be
//! applied. [`crate::node`] reads through it; a new leader, a changing membership or a lease
//! run out falls back to a read-index round.
//!
//! A restarted node forgets when it last heard from a leader; the bus grants no vote for one
//! span after start (`clocks.rs`), which keeps the followers' side of the lease across
//! restarts.

use std::collections::HashMap;
use std::time::Duration;

use openraft::{LeaderId, RaftMetrics, ServerState};
use parking_lot::Mutex;

use super::local_time::LocalInstant;
use crate::peers::{Member, NodeId};

/// When each follower last accepted a request, by the time the leader sent it.
#[derive(Debug, Default)]
struct Acks {
    /// The leadership the acks are for; others are forgotten when it changes.
    leader: Option<LeaderId<NodeId>>,
    sent: HashMap<NodeId, LocalInstant>,
}

/// A leader's lease over its followers' votes.
#[derive(Debug)]
pub struct Lease {
    me: NodeId,
    acks: Mutex<Acks>,
    /// How long after a majority accepted a request the lease holds.
    length: Duration,
    /// Whether reads may be served under the lease (`cluster.lease_reads`). Off, no lease is
    /// ever held and the bus refuses no vote for one.
    reads: bool,
}

impl Lease {
    /// The lease of node `me` over followers that refuse votes for `follower_span` after a
    /// heartbeat (openraft's `election_timeout_max`), allowing for followers' clocks running
    /// up to `drift` faster than this node's (0.1: 10%), used for reads when `reads` is set.
    pub fn new(me: NodeId, follower_span: Duration, drift: f64, reads: bool) -> Lease {
        Lease {
            me,
            acks: Mutex::default(),
            length: follower_span.mul_f64(1.0 - drift.clamp(0.0, 0.99)),
            reads,
        }
    }

    /// `peer` accepted a request that `leader` sent at `sent`.
    pub fn acked(&self, leader: LeaderId<NodeId>, peer: NodeId, sent: LocalInstant) {
        if !self.reads {
            return;
        }
        let mut acks = self.acks.lock();
        if acks.leader != Some(leader) {
            acks.leader = Some(leader);
            acks.sent.clear();
        }
        let last = acks.sent.entry(peer).or_insert(sent);
        *last = (*last).max(sent);
    }

    /// Whether this node, as its metrics `m` show it, leads under a lease now: it leads a
    /// configuration that is not changing, and enough of its other voters accepted a request
    /// it sent less than the lease's length ago to make a majority with it. A sole voter
    /// always does.
    pub fn holds(&self, m: &RaftMetrics<NodeId, Member>) -> bool {
        self.held(m, self.length)
    }

    /// Whether a read may be answered under the lease now: [`Lease::holds`] (whose end the
    /// fault simulation can take away for reads alone, to show its checker notices).
    pub fn serves_reads(&self, m: &RaftMetrics<NodeId, Member>) -> bool {
        #[cfg(feature = "fault-injection")]
        if crate::sabotage::on(crate::sabotage::Sabotage::LeaseOutlivesVotes) {
            return self.held(m, Duration::from_secs(24 * 3600));
        }
        self.holds(m)
    }

    fn held(&self, m: &RaftMetrics<NodeId, Member>, length: Duration) -> bool {
        let me = self.me;
        if !self.reads || m.state != ServerState::Leader || m.current_leader != Some(me) {
            return false;
        }
        let joint = m.membership_config.membership().get_joint_config();
        let [voters] = joint.as_slice() else {
            return false;
        };
        if !voters.contains(&me) {
            return false;
        }
        let needed = voters.len() / 2;
        if needed == 0 {
            return true;
        }
        let acks = self.acks.lock();
        if acks.leader != Some(m.vote.leader_id) {
            return false;
        }
        let now = LocalInstant::now();
        let fresh = voters
            .iter()
            .filter(|v| **v != me)
            .filter_map(|v| acks.sent.get(v))
            .filter(|sent| now < **sent + length)
            .count();
        fresh >= needed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use openraft::{Membership, StoredMembership, Vote};

    use super::*;

    fn leading(me: NodeId, term: u64, voters: &[NodeId]) -> RaftMetrics<NodeId, Member> {
        let mut m = RaftMetrics::new_initial(me);
        m.state = ServerState::Leader;
        m.current_leader = Some(me);
        m.current_term = term;
        m.vote = Vote::new_committed(term, me);
        let voters: BTreeSet<NodeId> = voters.iter().copied().collect();
        let nodes: BTreeMap<NodeId, Member> =
            voters.iter().map(|v| (*v, Member::default())).collect();
        m.membership_config = Arc::new(StoredMembership::new(
            None,
            Membership::new(vec![voters], nodes),
        ));
        m
    }

    fn leader(term: u64, node: NodeId) -> LeaderId<NodeId> {
        LeaderId::new(term, node)
    }

    #[tokio::test(start_paused = true)]
    async fn a_majority_of_fresh_acks_holds_the_lease_until_it_runs_out() {
        let lease = Lease::new(1, Duration::from_millis(1000), 0.1, true);
        let m = leading(1, 2, &[1, 2, 3]);
        assert!(!lease.holds(&m), "no follower has answered yet");
        let sent = LocalInstant::now();
        lease.acked(leader(2, 1), 2, sent);
        assert!(
            lease.holds(&m),
            "the leader and one follower are a majority"
        );
        tokio::time::advance(Duration::from_millis(899)).await;
        assert!(lease.holds(&m));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!lease.holds(&m), "a tenth short of the followers' span");
        // An answer to an older request does not move the lease back.
        lease.acked(leader(2, 1), 2, LocalInstant::now());
        lease.acked(leader(2, 1), 2, sent);
        assert!(lease.holds(&m));
    }

    #[tokio::test(start_paused = true)]
    async fn acks_count_only_for_the_leadership_they_were_sent_under() {
        let lease = Lease::new(1, Duration::from_millis(1000), 0.1, true);
        lease.acked(leader(2, 1), 2, LocalInstant::now());
        assert!(!lease.holds(&leading(1, 3, &[1, 2, 3])), "a later term");
        let five = leading(1, 2, &[1, 2, 3, 4, 5]);
        assert!(!lease.holds(&five), "one follower of four is no majority");
        lease.acked(leader(2, 1), 4, LocalInstant::now());
        assert!(lease.holds(&five));
        let mut follower = leading(1, 2, &[1, 2, 3]);
        follower.state = ServerState::Follower;
        assert!(!lease.holds(&follower), "only a leader holds a lease");
        assert!(!lease.holds(&leading(1, 2, &[2, 3, 4])), "not a voter");
        assert!(lease.holds(&leading(1, 7, &[1])), "a sole voter");
        let off = Lease::new(1, Duration::from_millis(1000), 0.1, false);
        off.acked(leader(2, 1), 2, LocalInstant::now());
        assert!(!off.holds(&leading(1, 2, &[1, 2, 3])), "lease reads off");
    }
}
