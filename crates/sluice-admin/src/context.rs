//! [`AdminContext`]: what every admin handler is handed, and the two ways
//! handlers talk to the cluster (read a state, write a command).

use crate::error::ApiError;
use crate::idempotency::Idempotency;
use crate::node::CertificateExpiry;
use rand::RngCore;
use sluice_core::audit::{Audited, ClusterChange};
use sluice_core::idempotency::Idempotent;
use sluice_core::secret::NONCE_LEN;
use sluice_core::{Applied, ApplyError, Command, DataKey, State};
use sluice_raft::{ClusterError, ClusterNode, Consistency};
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

    /// Proposes `command` and waits until it is applied on this node. With
    /// an `Idempotency-Key` it is proposed as the request's next keyed
    /// write, and answered from its record if it applied before.
    pub async fn write(
        &self,
        request: &Idempotency,
        command: Command,
    ) -> Result<Applied, ApiError> {
        Ok(self.propose(request, command, None).await?.0)
    }

    /// Records a membership or leadership change the request made (already
    /// done by openraft) in the audit log. Best effort: the change stands
    /// whatever happens here, so a note that cannot be written is logged,
    /// not answered as a failure.
    pub async fn note_cluster_change(&self, request: &Idempotency, change: ClusterChange) {
        if request.actor().is_none() {
            return;
        }
        let action = change.action.as_str();
        if let Err(e) = self
            .write(request, Command::NoteClusterChange(change))
            .await
        {
            tracing::warn!(action, error = %e.message, "cluster change done, but not written to the audit log");
        }
    }

    /// [`AdminContext::write`] for a write whose response shows a secret
    /// once (a new key's or admin token's). With an `Idempotency-Key` the
    /// secret is sealed under the data key into the write's record, so a
    /// retry shows the secret of the one key that was made; the state never
    /// holds it in clear and forgets it with the record. Answers the secret
    /// to show.
    pub async fn write_revealing(
        &self,
        request: &Idempotency,
        command: Command,
        secret: String,
    ) -> Result<(Applied, String), ApiError> {
        match self.propose(request, command, Some(&secret)).await? {
            (applied, Some(first)) => Ok((applied, first)),
            (applied, None) => Ok((applied, secret)),
        }
    }

    /// Proposes `command` (keyed if the request is); on a replay, the first
    /// application's result and the secret it sealed.
    async fn propose(
        &self,
        request: &Idempotency,
        command: Command,
        secret: Option<&str>,
    ) -> Result<(Applied, Option<String>), ApiError> {
        let kind = command.kind();
        let audited = |command: Command| match request.actor() {
            Some(actor) => Command::Audited(Box::new(Audited {
                actor: actor.clone(),
                command,
            })),
            None => command,
        };
        let Some(key) = request.key() else {
            let applied = self
                .inner
                .node
                .write(audited(command))
                .await
                .map_err(|e| written(e, false))?;
            tracing::info!(command = kind, "admin write applied");
            return Ok((applied, None));
        };
        let step = key.next_step();
        let context = format!("reply to idempotency key {:?} step {step}", key.key());
        let sealed_reply = secret.map(|secret| {
            let mut nonce = [0u8; NONCE_LEN];
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            self.inner.data_key.seal(&context, secret, nonce)
        });
        let keyed = Command::Idempotent(Box::new(Idempotent {
            key: key.key().to_string(),
            step,
            fingerprint: key.fingerprint(),
            sealed_reply,
            command,
        }));
        match self
            .inner
            .node
            .write(audited(keyed))
            .await
            .map_err(|e| written(e, true))?
        {
            Applied::Replayed(replay) => {
                key.mark_replayed();
                tracing::info!(command = kind, step, "admin write answered from its record");
                let first = match (&replay.sealed_reply, secret) {
                    (Some(sealed), Some(_)) => Some(
                        self.inner
                            .data_key
                            .open(&context, sealed)
                            .map_err(|e| {
                                ApiError::internal(format!(
                                    "the secret of the first application cannot be opened ({e})"
                                ))
                            })?
                            .expose()
                            .clone(),
                    ),
                    // The first sending was a request of the same hash, so
                    // it sealed a secret too; showing the new one instead
                    // would show a secret no stored key has.
                    (None, Some(_)) => {
                        return Err(ApiError::internal(
                            "the record of the first application holds no secret to show",
                        ))
                    }
                    (_, None) => None,
                };
                Ok((replay.applied, first))
            }
            applied => {
                tracing::info!(command = kind, step, "admin write applied");
                Ok((applied, None))
            }
        }
    }
}

/// The API error of a write the cluster did not apply (or did not confirm).
fn written(err: ClusterError, keyed: bool) -> ApiError {
    match err {
        ClusterError::Timeout(cause) => crate::idempotency::unconfirmed(keyed, &cause),
        ClusterError::Rejected(ApplyError::Invalid { field, message })
            if field == "idempotency_key" =>
        {
            ApiError::validation(crate::idempotency::HEADER, message)
        }
        other => other.into(),
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
            Applied::AuditCompacted { .. } => "audit compacted",
            Applied::Noted => "noted",
            Applied::Restored(_) => "restored",
            Applied::Replayed(_) => "replayed",
        }
    ))
}
