//! `/admin/v1/node`: what one node says about itself, for `sluice cluster
//! doctor`: its wall clock (to measure skew between nodes, the caller
//! accounting for the round trip) and the expiry of the certificates it
//! serves with. `/admin/v1/node/state`: the digest of the state it has
//! applied and the index it belongs to, to check that nodes agree. Nothing
//! here goes through Raft: it answers even without a leader.

use crate::context::{now_ms, AdminContext};
use crate::error::{ApiError, ErrorBody};
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

/// Body of `GET /admin/v1/node/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateDigest {
    pub node_id: u64,
    /// Index of the last log entry applied to the state digested; `null`
    /// before the first.
    pub applied_index: Option<u64>,
    /// SHA-256 of the state's encoding, lowercase hex. Two nodes at the same
    /// applied index hold the same state exactly when their digests match.
    pub digest: String,
}

/// Tries to read the applied index and the state as one pair: the node
/// publishes a new state, then its index, so a read between the two could
/// pair a state with the index before it.
const PAIR_READS: usize = 8;

/// The digest of the state this node has applied, with its applied index
/// (a local read: no leader needed).
#[utoipa::path(get, path = "/admin/v1/node/state", tag = "cluster",
    responses((status = 200, body = StateDigest), (status = 401, body = ErrorBody),
        (status = 500, body = ErrorBody)))]
pub async fn state_digest(State(ctx): State<AdminContext>) -> Result<Json<StateDigest>, ApiError> {
    let node = ctx.node();
    // The index read before and after the state agree: the state is the
    // one published for that index, unless the read fell between the two
    // stores of one publication (a window of two atomic stores).
    let mut pair = None;
    for _ in 0..PAIR_READS {
        let before = node.readiness().applied_index;
        let state = node.local_state();
        if node.readiness().applied_index == before {
            pair = Some((before, state));
            break;
        }
    }
    let (applied_index, state) = pair.ok_or_else(|| {
        ApiError::internal("the applied index kept moving while the state was read; try again")
    })?;
    let digest = state
        .digest()
        .map_err(|e| ApiError::internal(format!("encoding the state to digest it: {e}")))?;
    Ok(Json(StateDigest {
        node_id: node.node_id(),
        applied_index,
        digest,
    }))
}
