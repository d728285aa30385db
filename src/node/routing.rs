//! Where a command may run, and the read path.
//!
//! A write runs only on the leader ([`Node::must_lead`]: `MOVED` to the leader elsewhere,
//! `CLUSTERDOWN` without one). A read runs against this node's state once
//! [`Node::read_barrier`] allows it: on the leader after a read-index round (linearizable, the
//! round shared with every read waiting: `read_index.rs`), or anywhere for sessions that asked
//! for stale reads (`READONLY`, `*_RO` calls).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::{RaftMetrics, ServerState};

use super::read_index::{ReadEpoch, ReadIndex};
use super::{KeyspaceStats, Node, NodeError, Raft};
use crate::keyspace::{Ctx, Op, ParseCtx, WatchToken};
use crate::peers::{Member, NodeId};
use crate::reply::Reply;
use crate::slot::key_slot;

/// How a read may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// On the leader, after a leadership confirmation that started after the request arrived
    /// (at the epoch given: [`Node::read_epoch`]); elsewhere `MOVED`.
    Linearizable(ReadEpoch),
    /// Against local state, possibly stale (`READONLY` clients, `*_RO` calls).
    Local,
}

/// Whether node `me` leads as the only voter and has applied an entry of its current term:
/// then no other node can lead, everything committed before its leadership is applied
/// (entries apply in order, and its term's first entry came after them), and every write it
/// acknowledged was applied first. A read needs no quorum round.
fn sole_voter_caught_up(m: &RaftMetrics<NodeId, Member>, me: NodeId) -> bool {
    // The configuration's sets as they are (`voter_ids` would collect them into a new set on
    // every read).
    let joint = m.membership_config.membership().get_joint_config();
    matches!(joint.as_slice(), [voters] if voters.len() == 1 && voters.contains(&me))
        && applied_own_term(m)
}

/// Whether this node applied an entry of the current term: as leader, then, every entry an
/// earlier leader committed is applied here.
pub(super) fn applied_own_term(m: &RaftMetrics<NodeId, Member>) -> bool {
    m.last_applied
        .is_some_and(|l| l.leader_id.term == m.current_term)
}

/// The read-index queue of a node: a round asks openraft to confirm leadership with a
/// heartbeat quorum and answers the commit index of that moment.
pub(super) fn read_index(raft: Raft, timeout: Duration) -> Arc<ReadIndex> {
    ReadIndex::new(Box::new(move || {
        let raft = raft.clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, raft.get_read_log_id()).await {
                Ok(Ok((read, _))) => Ok(read.map_or(0, |l| l.index)),
                Ok(Err(e)) => Err(NodeError::ReadNotConfirmed(Box::new(e))),
                Err(_) => Err(NodeError::ReadTimedOut),
            }
        })
    }))
}

impl Node {
    /// The epoch of a request received now: a linearizable read made with it waits for a
    /// leadership confirmation that starts later.
    pub fn read_epoch(&self) -> ReadEpoch {
        self.reads.epoch()
    }

    /// Linearizable reads for a request received now.
    pub fn linearizable(&self) -> ReadMode {
        ReadMode::Linearizable(self.read_epoch())
    }

    /// Runs `op`, created at `ctx.now_ms`: writes through the log, reads as `mode` allows.
    pub async fn execute(&self, op: Op, ctx: &ParseCtx, mode: ReadMode) -> Reply {
        if op.is_write() {
            return match self.submit(op, ctx) {
                Ok(ticket) => ticket.wait().await,
                Err(e) => Reply::error(e),
            };
        }
        // The slot is hashed only if the read is refused (MOVED names it).
        let slot = || op.keys().first().map(|k| key_slot(k));
        match self.read_barrier(mode, slot).await {
            Ok(()) => {
                let now_ms = self.read_time(ctx.now_ms);
                op.read(&self.state.keyspace(), Ctx { now_ms })
            }
            Err(e) => Reply::error(e),
        }
    }

    /// The time a read that passed its barrier judges expiry at: its own stamp `stamped_ms`
    /// (taken before the barrier), but never earlier than a write this node has applied (that
    /// write may have found keys expired, and a read after it must not show them again), and
    /// every later stamp of this node is at least as late.
    ///
    /// Across leaders, the bus keeps clocks within `cluster.max_clock_offset_ms` and a new
    /// leader is elected only after the old one's lease (longer than twice that bound) ran
    /// out, so a new leader's reads come after every time an old leader read at.
    pub(super) fn read_time(&self, stamped_ms: u64) -> u64 {
        let applied = self.state.applied_ms();
        self.clock.advance_to(applied);
        stamped_ms.max(applied)
    }

    /// Records the version of `key` for WATCH.
    pub fn watch(&self, key: &Bytes) -> WatchToken {
        self.state.keyspace().watch(key, self.clock.now_ms())
    }

    /// Figures for INFO's keyspace section.
    pub fn keyspace_stats(&self) -> KeyspaceStats {
        let ks = self.state.keyspace();
        KeyspaceStats {
            keys: ks.len(),
            expires: ks.volatile_count(),
            expired: ks.expired_total(),
        }
    }

    /// Keys in `slot` (CLUSTER GETKEYSINSLOT), at most `count`, and how many there are.
    pub fn keys_in_slot(&self, slot: u16, count: usize) -> (Vec<Bytes>, usize) {
        self.state.keyspace().keys_in_slot(slot, count)
    }

    /// Refuses everything once this replica stopped serving (a state check found its state
    /// different, or it met an entry it cannot read).
    pub(super) fn must_serve(&self) -> Result<(), NodeError> {
        match self.state.divergence() {
            Some(found) => Err(NodeError::Diverged(found.to_string())),
            None => Ok(()),
        }
    }

    /// Refuses unless this node leads: `MOVED` to the leader, or `CLUSTERDOWN` without one
    /// (or with a state found different). `slot` is asked only for a `MOVED` (which names it),
    /// so the leader's common path hashes no key.
    pub(super) fn must_lead(&self, slot: impl FnOnce() -> u16) -> Result<(), NodeError> {
        self.must_serve()?;
        let m = self.metrics.borrow();
        raft_running(&m)?;
        let membership = m.membership_config.membership();
        if membership.get_node(&self.id).is_none() && m.membership_config.log_id().is_some() {
            return Err(NodeError::NotMember);
        }
        match m.current_leader {
            Some(leader) if leader == self.id && m.state == ServerState::Leader => Ok(()),
            Some(leader) => match membership.get_node(&leader) {
                Some(member) => Err(NodeError::Moved {
                    slot: slot(),
                    addr: member.client_addr(),
                }),
                None => Err(NodeError::LeaderUnknown),
            },
            None => Err(NodeError::NoLeader),
        }
    }

    /// Makes a read on this node safe under `mode`.
    pub(super) async fn read_barrier(
        &self,
        mode: ReadMode,
        slot: impl FnOnce() -> Option<u16>,
    ) -> Result<(), NodeError> {
        self.must_serve()?;
        let since = match mode {
            ReadMode::Local => return Ok(()),
            ReadMode::Linearizable(since) => since,
        };
        {
            // One look at the metrics on the common path (the leader serving a read).
            let m = self.metrics.borrow();
            let leads = m.state == ServerState::Leader && m.current_leader == Some(self.id);
            if !leads {
                raft_running(&m)?;
                drop(m);
                return match slot() {
                    // Keyless reads (DBSIZE, SCAN) answer on any member, as on a replica.
                    None => Ok(()),
                    Some(slot) => self.must_lead(|| slot),
                };
            }
            // A sole voter, or a leader under its lease once it applied an entry of its own
            // term: every acknowledged write is in its state (`replication::Lease`).
            if sole_voter_caught_up(&m, self.id)
                || (applied_own_term(&m) && self.lease.serves_reads(&m))
            {
                return Ok(());
            }
        }
        #[cfg(feature = "fault-injection")]
        if crate::sabotage::on(crate::sabotage::Sabotage::SkipReadBarrier) {
            return Ok(());
        }
        self.read_index_applied(since).await
    }

    /// Waits for a confirmation round that started after `since`, then until this node has
    /// applied up to that round's read index.
    ///
    /// Each round is bounded by the write timeout (`read_index`), so a read waits at most for
    /// the round out when it arrived and the one after it; the wait for the apply has a
    /// timeout of its own. No timer is set per read on the common path.
    async fn read_index_applied(&self, since: ReadEpoch) -> Result<(), NodeError> {
        let index = self.reads.confirm(since).await?;
        let applied = |m: &RaftMetrics<NodeId, Member>| m.last_applied.map_or(0, |l| l.index);
        if applied(&self.metrics.borrow()) >= index {
            return Ok(());
        }
        let mut metrics = self.metrics.clone();
        match tokio::time::timeout(
            self.write_timeout,
            metrics.wait_for(|m| applied(m) >= index),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(NodeError::ShuttingDown),
            Err(_) => Err(NodeError::ReadTimedOut),
        }
    }
}

/// Refuses once this node's Raft core has stopped on an error: it then neither leads nor
/// follows, and the leader its metrics last named (often itself) would be a wrong redirect.
fn raft_running(m: &RaftMetrics<NodeId, Member>) -> Result<(), NodeError> {
    match &m.running_state {
        Ok(()) => Ok(()),
        Err(fatal) => Err(NodeError::RaftStopped(fatal.to_string())),
    }
}
