//! `/healthz` and `/readyz`: no authentication, for load balancers and
//! orchestrators.
//!
//! Liveness says only that the process answers. Readiness follows the Raft
//! node: ready once it knows a leader and has applied what that leader had
//! committed, so a fresh or lagging node is kept out of rotation until its
//! snapshot of the state is current.

use crate::context::AdminContext;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_raft::Readiness;
use utoipa::ToSchema;

/// Body of `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Body of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadinessView {
    pub ready: bool,
    pub leader_id: Option<u64>,
    pub applied_index: Option<u64>,
    /// The leader's commit index as last heard from it.
    pub leader_commit_index: Option<u64>,
    /// Why the node is not ready, when it is not.
    pub reason: Option<String>,
}

impl From<Readiness> for ReadinessView {
    fn from(r: Readiness) -> Self {
        ReadinessView {
            ready: r.ready,
            leader_id: r.leader_id,
            applied_index: r.applied_index,
            leader_commit_index: r.leader_commit_index,
            reason: r.reason,
        }
    }
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// Readiness: 200 when this node follows a leader and is caught up, else 503.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "ready", body = ReadinessView),
        (status = 503, description = "not ready", body = ReadinessView),
    ))]
pub async fn readyz(State(ctx): State<AdminContext>) -> (StatusCode, Json<ReadinessView>) {
    let readiness = ctx.node().readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.into()))
}
