//! Who is in the cluster and who leads: initializing the group, waiting for a leader, adding
//! and removing members through joint consensus, and one log line per change of role.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::metrics::RaftServerMetrics;
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use tracing::{info, warn};

use super::{MembershipError, Node, NodeError, StartError, clock};
use crate::peers::{Member, NodeId};
use crate::state_machine::LogCommand;

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

    /// Names the cluster: whenever this node leads a state that has no cluster id yet, it
    /// proposes a random one; returns once an id is applied. Members that hold the id grant no
    /// vote to a node whose disk holds none (it may have voted before losing its disk), and
    /// refuse the messages of a cluster with another id (one re-initialized on wiped disks).
    /// Returns early when the node stops.
    pub async fn name_the_cluster(&self) {
        while self.state.cluster_id() == 0 {
            if self.is_leader() {
                let id = clock::next_seed() | 1;
                match self.propose(LogCommand::ClusterId(id), 0).await {
                    Ok(_) if self.state.cluster_id() != 0 => {
                        info!(cluster_id = %format!("{:016x}", self.state.cluster_id()), "cluster named");
                    }
                    Err(NodeError::ShuttingDown) => return,
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// This cluster's id (0: none applied yet).
    pub fn cluster_id(&self) -> u64 {
        self.state.cluster_id()
    }

    /// Waits up to `within` for a leader to be known and, when this node is that leader, for
    /// it to have applied an entry of its own term (so the log it started with, membership
    /// included, is applied before a first command); true if that happened.
    pub async fn wait_for_leader(&self, within: Duration) -> bool {
        let mut metrics = self.metrics.clone();
        tokio::time::timeout(within, async {
            loop {
                let ready = {
                    let m = metrics.borrow_and_update();
                    match m.current_leader {
                        Some(leader) if leader == self.id => super::routing::applied_own_term(&m),
                        Some(_) => true,
                        None => false,
                    }
                };
                if ready {
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
    /// snapshot), then as a voter, through joint consensus. A learner that makes no progress
    /// for the write timeout (unreachable, or holding another cluster secret) is taken out
    /// again and the command fails.
    pub async fn add_node(&self, id: NodeId, member: Member) -> Result<(), NodeError> {
        self.must_lead(|| 0)?;
        if self.me.cport == 0 {
            return Err(MembershipError::NoClusterBus.into());
        }
        let refused = |e| NodeError::from(MembershipError::Raft(Box::new(e)));
        self.raft
            .add_learner(id, member, false)
            .await
            .map_err(refused)?;
        if let Err(e) = self.catch_up(id).await {
            let back_out = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            if let Err(cause) = self.raft.change_membership(back_out, false).await {
                warn!(node = id, %cause, "could not take back a learner that never caught up");
            }
            return Err(e);
        }
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

    /// Waits until learner `id` holds the log as far as it reached when it was added, as long
    /// as its replication keeps moving: the write timeout without progress fails.
    async fn catch_up(&self, id: NodeId) -> Result<(), NodeError> {
        let mut metrics = self.metrics.clone();
        let target = metrics.borrow().last_log_index.unwrap_or(0);
        let matched = |m: &RaftMetrics<NodeId, Member>| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map(|log_id| log_id.index)
        };
        let mut progress = None;
        let mut deadline = tokio::time::Instant::now() + self.write_timeout;
        loop {
            let now = matched(&metrics.borrow_and_update());
            if now.is_some_and(|index| index >= target) {
                return Ok(());
            }
            if now != progress {
                progress = now;
                deadline = tokio::time::Instant::now() + self.write_timeout;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(NodeError::ShuttingDown),
                Err(_) => {
                    return Err(MembershipError::NoProgress {
                        id,
                        within_ms: self.write_timeout.as_millis(),
                    }
                    .into());
                }
            }
        }
    }

    /// Removes node `id` from the cluster through joint consensus.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), NodeError> {
        self.must_lead(|| 0)?;
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
/// the Raft node stops. It watches openraft's server metrics, which change with the role,
/// vote or membership only: the full metrics change with every entry, and a task woken by
/// each would cost every write a wake-up.
pub(super) async fn log_role_changes(
    me: NodeId,
    mut metrics: tokio::sync::watch::Receiver<RaftServerMetrics<NodeId, Member>>,
) {
    let mut last: Option<(ServerState, Option<NodeId>)> = None;
    loop {
        let seen = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_leader, m.vote.leader_id().get_term())
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
