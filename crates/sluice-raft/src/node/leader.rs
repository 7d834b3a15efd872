//! Leader-side operations: what runs on the leader when a write, a read
//! index or a membership change is asked of it (locally or forwarded), and the
//! leadership transfer protocol.

use super::{internal, Inner};
use crate::api::{ClusterError, Member};
use crate::rpc::{LeaderError, LeaderRequest, LeaderResponse, Request};
use crate::tls::node_server_name;
use crate::types::{NodeId, Response as RaftResponse};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use sluice_core::Proposal;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Inner {
    /// Serves a leader-only operation, or says who the leader is.
    pub(crate) async fn handle_leader_request(
        self: &Arc<Self>,
        request: LeaderRequest,
    ) -> Result<LeaderResponse, LeaderError> {
        match request {
            LeaderRequest::Write(command) => {
                let kind = command.kind();
                let proposal = Proposal {
                    at_ms: self.published.stamp(),
                    command,
                };
                let response = self
                    .raft
                    .client_write(proposal)
                    .await
                    .map_err(write_error)?;
                let outcome = match response.data {
                    RaftResponse::Command(outcome) => *outcome,
                    RaftResponse::Internal => {
                        return Err(LeaderError::Failed(internal(
                            "a command entry produced no result",
                        )))
                    }
                };
                tracing::debug!(
                    command = kind,
                    index = response.log_id.index,
                    ok = outcome.is_ok(),
                    "applied"
                );
                Ok(LeaderResponse::Written {
                    log_index: response.log_id.index,
                    outcome,
                })
            }
            LeaderRequest::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _)) => Ok(LeaderResponse::ReadIndex {
                    log_index: read.map(|l| l.index),
                }),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(not_leader(f))
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                    Err(LeaderError::Failed(ClusterError::Unavailable(format!(
                        "leader cannot reach a quorum: {e}"
                    ))))
                }
                Err(e) => Err(LeaderError::Failed(internal(e))),
            },
            LeaderRequest::AddLearner { id, member } => {
                let m = self.metrics();
                let membership = m.membership_config.membership();
                if membership.voter_ids().any(|v| v == id) {
                    return Err(invalid(format!("node {id} is already a voter")));
                }
                if membership
                    .get_node(&id)
                    .is_some_and(|existing| existing == &member)
                {
                    return Ok(LeaderResponse::Membership { log_index: None });
                }
                let response = self
                    .raft
                    .add_learner(id, member, false)
                    .await
                    .map_err(write_error)?;
                tracing::info!(node = id, "added learner");
                Ok(LeaderResponse::Membership {
                    log_index: Some(response.log_id.index),
                })
            }
            LeaderRequest::Promote { id } => {
                let m = self.metrics();
                let membership = m.membership_config.membership();
                if membership.voter_ids().any(|v| v == id) {
                    return Ok(LeaderResponse::Membership { log_index: None });
                }
                if membership.get_node(&id).is_none() {
                    return Err(invalid(format!(
                        "node {id} is not a member; add it as a learner first"
                    )));
                }
                self.wait_caught_up(id).await?;
                let response = self
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(write_error)?;
                tracing::info!(node = id, "promoted to voter");
                Ok(LeaderResponse::Membership {
                    log_index: Some(response.log_id.index),
                })
            }
            LeaderRequest::Remove { id } => {
                let m = self.metrics();
                let membership = m.membership_config.membership();
                if membership.get_node(&id).is_none() {
                    return Err(invalid(format!("node {id} is not a member")));
                }
                let is_voter = membership.voter_ids().any(|v| v == id);
                if is_voter && membership.voter_ids().count() == 1 {
                    return Err(invalid(format!(
                        "node {id} is the last voter and cannot be removed"
                    )));
                }
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                let response = self
                    .raft
                    .change_membership(change, false)
                    .await
                    .map_err(write_error)?;
                tracing::info!(node = id, "removed from the cluster");
                Ok(LeaderResponse::Membership {
                    log_index: Some(response.log_id.index),
                })
            }
            LeaderRequest::TransferLeader { to } => self.transfer_leader(to).await,
        }
    }

    /// Waits (briefly) until `id` has replicated everything the leader has.
    pub(super) async fn wait_caught_up(&self, id: NodeId) -> Result<(), LeaderError> {
        let deadline = self.op_timeout() / 2;
        let caught_up = |m: &openraft::RaftMetrics<NodeId, Member>| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index);
            matched.is_some() && matched >= m.last_log_index
        };
        self.raft
            .wait(Some(deadline))
            .metrics(caught_up, "learner caught up")
            .await
            .map(|_| ())
            .map_err(|_| {
                let m = self.metrics();
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index);
                invalid(format!(
                    "node {id} has not caught up with the leader (replicated {matched:?} of {:?}); \
                     is it running? try again",
                    m.last_log_index
                ))
            })
    }

    /// Hands leadership to `to`: stop heartbeats here, keep the other voters
    /// from campaigning, let `to` campaign once their leader leases expire.
    pub(super) async fn transfer_leader(
        self: &Arc<Self>,
        to: NodeId,
    ) -> Result<LeaderResponse, LeaderError> {
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(LeaderError::NotLeader {
                leader: self.known_leader(),
            });
        }
        if to == self.id {
            return Ok(LeaderResponse::Membership { log_index: None });
        }
        let membership = m.membership_config.membership().clone();
        if !membership.voter_ids().any(|v| v == to) {
            return Err(invalid(format!("node {to} is not a voter")));
        }
        self.wait_caught_up(to).await?;
        let hold_ms = self.timing.election_timeout_max_ms * 4;
        let rpc_timeout = Duration::from_millis(self.timing.rpc_timeout_ms);
        for voter in membership.voter_ids().filter(|v| *v != self.id && *v != to) {
            if let Some(node) = membership.get_node(&voter) {
                let call = Request::HoldElections { for_ms: hold_ms };
                if let Err(e) = self
                    .peers
                    .call(
                        &node.raft_addr,
                        &node_server_name(voter),
                        &call,
                        rpc_timeout,
                    )
                    .await
                {
                    tracing::warn!(node = voter, error = %e, "could not pause elections for the transfer");
                }
            }
        }
        // Silence here: no heartbeats to refresh the voters' lease, and no
        // campaign of this node's own once it hears of a higher term.
        self.elections.pause_heartbeats(true);
        self.elections
            .hold(Instant::now() + Duration::from_millis(hold_ms));
        let target = membership.get_node(&to).cloned().unwrap_or_default();
        let campaign = self
            .peers
            .call(
                &target.raft_addr,
                &node_server_name(to),
                &Request::Campaign,
                rpc_timeout,
            )
            .await;
        let outcome = match campaign {
            Err(e) => Err(LeaderError::Failed(ClusterError::Unavailable(format!(
                "node {to} did not take the campaign request: {e}"
            )))),
            Ok(_) => self
                .raft
                .wait(Some(Duration::from_millis(hold_ms)))
                .metrics(|m| m.current_leader == Some(to), "new leader")
                .await
                .map(|m| LeaderResponse::Membership {
                    log_index: m.last_log_index,
                })
                .map_err(|_| {
                    LeaderError::Failed(ClusterError::Timeout(format!(
                        "node {to} did not become leader within {hold_ms} ms"
                    )))
                }),
        };
        self.elections.pause_heartbeats(false);
        self.elections.release();
        if outcome.is_ok() {
            tracing::info!(to, "leadership transferred");
        }
        outcome
    }

    /// Keeps this node from starting elections for `for_ms`.
    pub(crate) fn hold_elections(&self, for_ms: u64) {
        self.elections
            .hold(Instant::now() + Duration::from_millis(for_ms));
    }

    /// Campaigns until this node leads or the transfer window closes.
    pub(crate) fn campaign(self: &Arc<Self>) {
        let inner = self.clone();
        let window = Duration::from_millis(self.timing.election_timeout_max_ms * 4);
        let retry = Duration::from_millis((self.timing.election_timeout_min_ms / 2).max(50));
        self.tasks.spawn(async move {
            let deadline = Instant::now() + window;
            while Instant::now() < deadline && inner.raft.current_leader().await != Some(inner.id) {
                if let Err(e) = inner.raft.trigger().elect().await {
                    tracing::warn!(error = %e, "cannot campaign");
                    return;
                }
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        });
    }
}

fn invalid(message: String) -> LeaderError {
    LeaderError::Failed(ClusterError::InvalidMembership(message))
}

fn not_leader(f: openraft::error::ForwardToLeader<NodeId, Member>) -> LeaderError {
    LeaderError::NotLeader {
        leader: f.leader_id.zip(f.leader_node),
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> LeaderError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => invalid(e.to_string()),
        RaftError::Fatal(e) => LeaderError::Failed(internal(format!("raft stopped: {e}"))),
    }
}
