//! [`AdminContext`]: what every admin handler is handed, and the two ways
//! handlers talk to the cluster (read a state, write a command).

use crate::error::ApiError;
use crate::node::CertificateExpiry;
use sluice_core::{Applied, Command, DataKey, State};
use sluice_raft::{ClusterNode, Consistency};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared by every admin request. Cheap to clone.
#[derive(Clone)]
pub struct AdminContext {
    inner: Arc<Inner>,
}

struct Inner {
    node: Arc<ClusterNode>,
    /// SHA-256 of the bootstrap admin tokens from this node's configuration.
    /// They work even before any token is replicated (and when the state
    /// cannot be read), which is what makes a fresh cluster administrable.
    bootstrap_token_hashes: Vec<[u8; 32]>,
    /// Seals provider credentials before they are proposed, so the log never
    /// holds them in clear.
    data_key: DataKey,
    /// The certificates the node serves with, reported by `/admin/v1/node`.
    certificates: Vec<CertificateExpiry>,
}

impl AdminContext {
    pub fn new(
        node: Arc<ClusterNode>,
        bootstrap_token_hashes: Vec<[u8; 32]>,
        data_key: DataKey,
    ) -> Self {
        AdminContext {
            inner: Arc::new(Inner {
                node,
                bootstrap_token_hashes,
                data_key,
                certificates: Vec::new(),
            }),
        }
    }

    /// The same context reporting `certificates` (read by the binary from
    /// the node's TLS files) on `/admin/v1/node`.
    pub fn with_certificates(self, certificates: Vec<CertificateExpiry>) -> Self {
        AdminContext {
            inner: Arc::new(Inner {
                node: self.inner.node.clone(),
                bootstrap_token_hashes: self.inner.bootstrap_token_hashes.clone(),
                data_key: self.inner.data_key.clone(),
                certificates,
            }),
        }
    }

    pub fn certificates(&self) -> &[CertificateExpiry] {
        &self.inner.certificates
    }

    pub fn node(&self) -> &ClusterNode {
        &self.inner.node
    }

    pub fn bootstrap_token_hashes(&self) -> &[[u8; 32]] {
        &self.inner.bootstrap_token_hashes
    }

    pub fn data_key(&self) -> &DataKey {
        &self.inner.data_key
    }

    /// The replicated state, as fresh as `consistency` asks.
    pub async fn read(&self, consistency: Consistency) -> Result<Arc<State>, ApiError> {
        Ok(self.inner.node.read(consistency).await?)
    }

    /// Proposes `command` and waits until it is applied on this node.
    pub async fn write(&self, command: Command) -> Result<Applied, ApiError> {
        let kind = command.kind();
        let applied = self.inner.node.write(command).await?;
        tracing::info!(command = kind, "admin write applied");
        Ok(applied)
    }
}

/// Wall-clock milliseconds since the Unix epoch, for checks made before a
/// command is proposed (the leader stamps the time `apply` uses).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The error for an `Applied` of the wrong variant: the state machine
/// answered a command with something it never answers it with.
pub(crate) fn unexpected(applied: &Applied) -> ApiError {
    ApiError::internal(format!(
        "the state machine answered with an unexpected result ({})",
        match applied {
            Applied::Provider(_) => "provider",
            Applied::Route(_) => "route",
            Applied::Key(_) => "key",
            Applied::AdminToken(_) => "admin token",
            Applied::Deleted => "deleted",
            Applied::Quota(_) => "quota",
            Applied::Leases(_) => "leases",
            Applied::UsageRecorded { .. } => "usage recorded",
            Applied::UsageCompacted { .. } => "usage compacted",
            Applied::Restored(_) => "restored",
        }
    ))
}
