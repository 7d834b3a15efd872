//! `/admin/v1/node`: what one node says about itself, for `sluice cluster
//! doctor`: its wall clock (to measure skew between nodes, the caller
//! accounting for the round trip) and the expiry of the certificates it
//! serves with. Nothing here goes through Raft: it answers even without a
//! leader.

use crate::context::{now_ms, AdminContext};
use crate::error::ErrorBody;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One certificate a node uses, and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateExpiry {
    /// `node` (the node's own certificate) or `ca` (the cluster CA).
    #[schema(example = "node")]
    pub role: String,
    /// The certificate's subject, e.g. `CN=node-1.sluice`.
    pub subject: String,
    /// End of validity, milliseconds since the Unix epoch.
    pub not_after_ms: u64,
    /// SHA-256 of the certificate (DER), lowercase hex: which certificate
    /// the node actually loaded, e.g. to check a rotation took. Empty from a
    /// node that predates the field.
    #[serde(default)]
    pub sha256: String,
}

/// Body of `GET /admin/v1/node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeReport {
    pub node_id: u64,
    pub cluster_id: String,
    /// The Sluice version the node runs.
    pub version: String,
    /// The node's wall clock when it answered, ms since the Unix epoch.
    pub clock_ms: u64,
    /// The certificates it loaded at start-up (the ones it serves with).
    pub certificates: Vec<CertificateExpiry>,
}

/// This node: version, wall clock and certificate expiry.
#[utoipa::path(get, path = "/admin/v1/node", tag = "cluster",
    responses((status = 200, body = NodeReport), (status = 401, body = ErrorBody)))]
pub async fn node_report(State(ctx): State<AdminContext>) -> Json<NodeReport> {
    let status = ctx.node().status().await;
    Json(NodeReport {
        node_id: status.node_id,
        cluster_id: status.cluster_id,
        version: env!("CARGO_PKG_VERSION").to_string(),
        clock_ms: now_ms(),
        certificates: ctx.certificates().to_vec(),
    })
}
