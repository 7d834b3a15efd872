//! `/admin/v1/cluster`: membership and leadership.
//!
//! Adding a node is two steps, as in etcd: add it as a learner (it receives
//! the log but does not vote), then promote it to voter once it has caught up.

use crate::context::AdminContext;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminJson, AdminPath};
use crate::idempotency::Idempotency;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_core::audit::{ClusterAction, ClusterChange};
use sluice_raft::{ClusterStatus, Member, MemberRole, MemberStatus};
use utoipa::ToSchema;

/// How a member is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberAddresses {
    /// `host:port` of the node's QUIC (Raft) endpoint.
    pub raft_addr: String,
    /// Base URL of the node's admin API.
    pub admin_url: String,
    /// Base URL of the node's proxy.
    pub proxy_url: String,
}

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRoleView {
    Voter,
    Learner,
}

/// One member as seen by the node answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    pub id: u64,
    pub role: MemberRoleView,
    pub addresses: MemberAddresses,
    /// Highest log index known replicated to it (known only on the leader).
    pub matched_index: Option<u64>,
}

/// A node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatusView {
    pub cluster_id: String,
    /// The node that answered.
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub members: Vec<MemberView>,
}

impl From<MemberStatus> for MemberView {
    fn from(m: MemberStatus) -> Self {
        MemberView {
            id: m.id,
            role: match m.role {
                MemberRole::Voter => MemberRoleView::Voter,
                MemberRole::Learner => MemberRoleView::Learner,
            },
            addresses: MemberAddresses {
                raft_addr: m.addresses.raft_addr,
                admin_url: m.addresses.admin_url,
                proxy_url: m.addresses.proxy_url,
            },
            matched_index: m.matched_index,
        }
    }
}

impl From<ClusterStatus> for ClusterStatusView {
    fn from(s: ClusterStatus) -> Self {
        ClusterStatusView {
            cluster_id: s.cluster_id,
            node_id: s.node_id,
            leader_id: s.leader_id,
            term: s.term,
            state: s.state,
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            members: s.members.into_iter().map(MemberView::from).collect(),
        }
    }
}

/// Body of `POST /admin/v1/cluster/learners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLearner {
    /// The new node's id (its `node_id`), unique in the cluster.
    #[schema(example = 4)]
    pub id: u64,
    #[schema(example = "10.0.0.4:7000")]
    pub raft_addr: String,
    #[schema(example = "http://10.0.0.4:7001")]
    pub admin_url: String,
    #[schema(example = "http://10.0.0.4:7002")]
    pub proxy_url: String,
}

impl AddLearner {
    fn validate(&self) -> Result<(), ApiError> {
        let addr_ok = self.raft_addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
        if !addr_ok
            || self
                .raft_addr
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ApiError::validation("raft_addr", "must be host:port"));
        }
        for (field, url) in [
            ("admin_url", &self.admin_url),
            ("proxy_url", &self.proxy_url),
        ] {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(str::is_empty)
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ApiError::validation(
                    field,
                    "must be an absolute http(s) URL",
                ));
            }
        }
        Ok(())
    }
}

/// Body of `POST /admin/v1/cluster/leader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLeader {
    /// The voter that should become leader.
    #[schema(example = 2)]
    pub to: u64,
}

/// This node's view of the cluster.
#[utoipa::path(get, path = "/admin/v1/cluster", tag = "cluster",
    responses((status = 200, body = ClusterStatusView), (status = 401, body = ErrorBody)))]
pub async fn cluster_status(State(ctx): State<AdminContext>) -> Json<ClusterStatusView> {
    Json(ctx.node().status().await.into())
}

/// Add a node as a learner (receives the log, does not vote).
#[utoipa::path(post, path = "/admin/v1/cluster/learners", tag = "cluster", request_body = AddLearner,
    responses(
        (status = 200, description = "the cluster after the change", body = ClusterStatusView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
pub async fn add_learner(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    AdminJson(body): AdminJson<AddLearner>,
) -> Result<Json<ClusterStatusView>, ApiError> {
    body.validate()?;
    let addresses = [
        body.raft_addr.clone(),
        body.admin_url.clone(),
        body.proxy_url.clone(),
    ];
    let member = Member {
        raft_addr: body.raft_addr,
        admin_url: body.admin_url,
        proxy_url: body.proxy_url,
    };
    let status = ctx.node().add_learner(body.id, member).await?;
    tracing::info!(node = body.id, "learner added");
    let change = ClusterChange {
        action: ClusterAction::AddLearner,
        node: body.id,
        addresses: Some(addresses),
    };
    ctx.note_cluster_change(&idempotency, change).await;
    Ok(Json(status.into()))
}

/// The audit log's note of `action` on `node`.
fn change(action: ClusterAction, node: u64) -> ClusterChange {
    ClusterChange {
        action,
        node,
        addresses: None,
    }
}

/// Promote a learner to voter.
#[utoipa::path(post, path = "/admin/v1/cluster/voters/{id}", tag = "cluster",
    params(("id" = u64, Path, description = "node id")),
    responses(
        (status = 200, description = "the cluster after the change", body = ClusterStatusView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
pub async fn promote(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    AdminPath(id): AdminPath<u64>,
) -> Result<Json<ClusterStatusView>, ApiError> {
    let status = ctx.node().promote(id).await?;
    tracing::info!(node = id, "member promoted to voter");
    ctx.note_cluster_change(&idempotency, change(ClusterAction::PromoteVoter, id))
        .await;
    Ok(Json(status.into()))
}

/// Remove a member (voter or learner).
#[utoipa::path(delete, path = "/admin/v1/cluster/members/{id}", tag = "cluster",
    params(("id" = u64, Path, description = "node id")),
    responses(
        (status = 200, description = "the cluster after the change", body = ClusterStatusView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
pub async fn remove_member(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    AdminPath(id): AdminPath<u64>,
) -> Result<Json<ClusterStatusView>, ApiError> {
    let status = ctx.node().remove(id).await?;
    tracing::info!(node = id, "member removed");
    ctx.note_cluster_change(&idempotency, change(ClusterAction::RemoveMember, id))
        .await;
    Ok(Json(status.into()))
}

/// Hand leadership to another voter.
#[utoipa::path(post, path = "/admin/v1/cluster/leader", tag = "cluster", request_body = TransferLeader,
    responses(
        (status = 200, description = "the cluster after the change", body = ClusterStatusView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
pub async fn transfer_leader(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    AdminJson(body): AdminJson<TransferLeader>,
) -> Result<Json<ClusterStatusView>, ApiError> {
    let status = ctx.node().transfer_leader(body.to).await?;
    tracing::info!(to = body.to, "leadership transfer requested");
    let note = change(ClusterAction::TransferLeader, body.to);
    ctx.note_cluster_change(&idempotency, note).await;
    Ok(Json(status.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learner(raft_addr: &str, admin_url: &str) -> AddLearner {
        AddLearner {
            id: 4,
            raft_addr: raft_addr.into(),
            admin_url: admin_url.into(),
            proxy_url: "http://10.0.0.4:8080".into(),
        }
    }

    #[test]
    fn learner_validation_names_the_field() {
        assert!(learner("10.0.0.4:7000", "http://10.0.0.4:9090")
            .validate()
            .is_ok());
        assert!(learner("node-4.sluice:7000", "https://n4")
            .validate()
            .is_ok());
        let field = |l: AddLearner| l.validate().unwrap_err().field;
        assert_eq!(
            field(learner("10.0.0.4", "http://x")).as_deref(),
            Some("raft_addr")
        );
        assert_eq!(
            field(learner(":7000", "http://x")).as_deref(),
            Some("raft_addr")
        );
        assert_eq!(
            field(learner("h:7000", "ftp://x")).as_deref(),
            Some("admin_url")
        );
        assert_eq!(
            field(learner("h:7000", "http://")).as_deref(),
            Some("admin_url")
        );
    }
}
