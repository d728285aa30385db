//! State checks: replicas compare digests of their state at the same log positions.
//!
//! Every `interval` the leader proposes a `Check` entry carrying its own record from the
//! previous check (log index and state digest). Each member records a digest of its state
//! where a check applies, and compares the leader's record with its own at that index. A
//! member that differs stops serving clients and stops taking part in Raft (it neither votes
//! nor acknowledges, so it can never lead with that state), and says so in its log and in
//! `INFO cluster`. When the leader is the one that differs, every follower stops and the
//! cluster stays down until an operator acts: loud, never silently wrong.

use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::watch;
use tracing::{debug, error};

use super::{Node, Raft};
use crate::state_machine::{Divergence, LogCommand};

impl Node {
    /// Proposes one state check, when this node leads a cluster of more than one member.
    pub async fn propose_state_check(&self) {
        if !self.is_leader() || self.topology().members.len() < 2 {
            return;
        }
        let previous = self.state.checkpoint();
        if let Err(e) = self.propose(LogCommand::Check { previous }, 0).await {
            debug!(cause = %e, "state check not proposed");
        }
    }

    /// Proposes a state check every `interval` until `shutdown` fires.
    pub async fn run_state_checks(&self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => self.propose_state_check().await,
                _ = shutdown.wait_for(|stop| *stop).map(drop) => return,
            }
        }
    }
}

/// Stops Raft on this node once its state is found to differ, or an entry it cannot read
/// (clients are refused from that moment by the routing checks).
pub(super) async fn stop_on_divergence(raft: Raft, mut found: watch::Receiver<Option<Divergence>>) {
    if found.wait_for(Option::is_some).await.is_err() {
        return;
    }
    error!("stopping raft on this replica");
    if let Err(e) = raft.shutdown().await {
        debug!(cause = %e, "raft shutdown after this replica stopped serving");
    }
}
