//! Commit positions sent without waiting for their answers.
//!
//! openraft drives each follower's replication stream one request at a time: once a write is
//! committed it tells the followers the new commit position in an AppendEntries of its own,
//! and the next write's entries wait until that is answered. With one client writing, that
//! answer (a wake-up and a round trip on the follower) stood between every write and the
//! next. Such a request is sent here and reported answered at once; the follower's real
//! answer is read, and checked, on the same connection before the next request's answer.
//!
//! Only a heartbeat whose entries the follower already answered for goes so: openraft learns
//! nothing from a success there (the follower's match stays where it was), so the answer made
//! up for it tells openraft nothing the follower has not said. Any other answer fails the next
//! call and drops the connection; openraft then retries, and the retry's own answer says what
//! the follower said (a higher vote, say). Lease acknowledgements come only from the real
//! answer, with the time its request was sent; its clock reading can refuse the peer but never
//! readmit one, since it was read later than it arrived.

use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};

use super::super::clocks::Before;
use super::super::conn::send;
use super::super::local_time::LocalInstant;
use super::super::{Response as MachineResponse, TypeConfig, decode, encode};
use super::{Answer, CallError, Peer, Request, Response, Rpc, refused};
use crate::net::Dialer;
use crate::peers::NodeId;

/// An AppendEntries that only moved the commit position, sent without waiting for its answer
/// ([`Peer::append_entries`]).
pub(super) struct Owed {
    /// When it was sent, by the bus clock and by this node's.
    sent_ms: u64,
    sent: LocalInstant,
    /// The leadership it was sent under.
    leader: openraft::LeaderId<NodeId>,
}

impl<D: Dialer, R: MachineResponse> Peer<D, R> {
    /// Sends `rpc`, an AppendEntries that only moves the follower's commit position, on this
    /// stream's connection without waiting for the answer: openraft sends the next entries on
    /// the stream only once the previous request is answered, and a follower's answer to a
    /// commit position would otherwise hold back the next write's entries by a round trip.
    /// openraft learns nothing from such an answer (the follower matched those entries when it
    /// answered for them); it is read, and checked, before the next request's answer
    /// ([`Peer::settle`]). `Ok(false)` when it cannot be sent so (no connection of its own, an
    /// answer already owed, or a peer whose clock is being checked): send it as any other.
    pub(super) async fn send_commit(
        &mut self,
        rpc: &AppendEntriesRequest<TypeConfig<R>>,
        timeout: Duration,
    ) -> Result<bool, CallError> {
        if self.owed.is_some() || !matches!(self.bus.clocks.before_send(self.target), Before::Send)
        {
            return Ok(false);
        }
        let Some((mut conn, permit)) = self.conn.take() else {
            return Ok(false);
        };
        let (sent_ms, sent) = (self.bus.clocks.now_ms(), LocalInstant::now());
        let request = encode(&Request::<R> {
            group: self.group,
            cluster: self.bus.cluster.load(Ordering::Relaxed),
            sent_ms,
            rpc: Rpc::Append(rpc.clone()),
        });
        match tokio::time::timeout(timeout, send(&mut conn, request)).await {
            Ok(Ok(())) => {
                self.conn = Some((conn, permit));
                self.owed = Some(Owed {
                    sent_ms,
                    sent,
                    leader: rpc.vote.leader_id,
                });
                Ok(true)
            }
            Ok(Err(e)) => Err(CallError::Network(e)),
            Err(_) => Err(CallError::Network(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("rpc to node {} timed out after {timeout:?}", self.target),
            ))),
        }
    }

    /// Checks the answer to a commit position sent without waiting (`send_commit`): it must
    /// be a success, given under a clock within bounds (judged as an answer read late: it
    /// can refuse the peer, never readmit one); it extends the lease like any other.
    /// Anything else fails the call at hand, which drops the connection: openraft retries,
    /// and the retry's own answer tells it what this one said (a higher vote, say).
    pub(super) fn settle(&self, owed: Owed, frame: &[u8]) -> Result<(), CallError> {
        let answer =
            decode::<Answer>(frame).map_err(|e| CallError::Network(std::io::Error::other(e)))?;
        let clocks = &self.bus.clocks;
        let received_ms = clocks.now_ms();
        if let Response::ClockAhead = answer.response {
            clocks.refused_by(self.target, answer.sent_ms, owed.sent_ms);
            return Err(refused(format!(
                "node {} refused our commit position: our clock is ahead of its own by more than {} ms",
                self.target,
                clocks.bound()
            )));
        }
        clocks
            .check_late_answer(self.target, owed.sent_ms, answer.sent_ms, received_ms)
            .map_err(refused)?;
        match answer.response {
            Response::Append(Ok(AppendEntriesResponse::Success)) => {
                self.lease.acked(owed.leader, self.target, owed.sent);
                Ok(())
            }
            other => Err(CallError::Network(std::io::Error::other(format!(
                "node {} answered a commit position with {other:?}",
                self.target
            )))),
        }
    }
}
