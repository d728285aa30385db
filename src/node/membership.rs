//! Who is in the cluster and who leads: initializing the group, waiting for a leader, adding
//! and removing members through joint consensus, and one log line per change of role.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use tracing::{info, warn};

use super::{MembershipError, Node, NodeError, StartError};
use crate::peers::{Member, NodeId};

impl Node {
    /// Initializes the group with `members` if this node has never been part of one. A node
    /// that already has state ignores this.
    pub async fn bootstrap(&self, members: BTreeMap<NodeId, Member>) -> Result<(), StartError> {
        match self.raft.initialize(members).await {
            Ok(()) => {
                info!("raft group initialized");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(StartError::Bootstrap(Box::new(e))),
        }
    }

    /// Waits up to `within` for a leader to be known; true if one is.
    pub async fn wait_for_leader(&self, within: Duration) -> bool {
        let mut metrics = self.metrics.clone();
        tokio::time::timeout(within, async {
            loop {
                if metrics.borrow_and_update().current_leader.is_some() {
                    return;
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// When this node leads and the membership records other addresses for it than it has
    /// now (restarted on another port), records the new ones.
    pub async fn refresh_own_address(&self) {
        let recorded = {
            let m = self.metrics.borrow();
            if m.current_leader != Some(self.id) {
                return;
            }
            m.membership_config.membership().get_node(&self.id).cloned()
        };
        if recorded.as_ref() == Some(&self.me) || recorded.is_none() {
            return;
        }
        let change = ChangeMembers::SetNodes(BTreeMap::from([(self.id, self.me.clone())]));
        match self.raft.change_membership(change, true).await {
            Ok(_) => info!(address = %self.me, "own address updated in the membership"),
            Err(e) => warn!(cause = %e, "could not update own address"),
        }
    }

    /// Adds node `id` at `member`: first as a learner (it catches up from the log or a
    /// snapshot), then as a voter, through joint consensus.
    pub async fn add_node(&self, id: NodeId, member: Member) -> Result<(), NodeError> {
        self.must_lead(0)?;
        let refused = |e| NodeError::from(MembershipError::Raft(Box::new(e)));
        self.raft
            .add_learner(id, member, true)
            .await
            .map_err(refused)?;
        let mut voters: BTreeSet<NodeId> = self
            .metrics
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        voters.insert(id);
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(refused)?;
        Ok(())
    }

    /// Removes node `id` from the cluster through joint consensus.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), NodeError> {
        self.must_lead(0)?;
        let membership = self.metrics.borrow().membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Err(MembershipError::NotAMember(id).into());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != id).collect();
        if voters.is_empty() {
            return Err(MembershipError::LastVoter.into());
        }
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::ReplaceAllVoters(voters)
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| MembershipError::Raft(Box::new(e)))?;
        Ok(())
    }
}

/// Logs one line whenever this node's role, the term or the leader it knows changes, until
/// the Raft node stops.
pub(super) async fn log_role_changes(
    me: NodeId,
    mut metrics: tokio::sync::watch::Receiver<RaftMetrics<NodeId, Member>>,
) {
    let mut last: Option<(ServerState, Option<NodeId>)> = None;
    loop {
        let seen = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_leader, m.current_term)
        };
        let (state, leader, term) = seen;
        if last != Some((state, leader)) {
            let role = match state {
                ServerState::Leader => "leader",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Follower => "follower",
                ServerState::Shutdown => "stopped",
            };
            match leader {
                Some(leader) => info!(node_id = me, role, term, leader, "raft role"),
                None => info!(node_id = me, role, term, "raft role, no leader known"),
            }
            last = Some((state, leader));
        }
        if state == ServerState::Shutdown || metrics.changed().await.is_err() {
            return;
        }
    }
}
