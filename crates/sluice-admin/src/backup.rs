//! `/admin/v1/cluster/snapshot`: backups of the configuration.
//!
//! `GET` answers a backup file ([`sluice_core::backup`]: providers, routes,
//! keys, admin tokens and quota policies, checksummed) read linearizably.
//! `POST` restores one through the Raft log, so every node applies it; it is
//! refused (409) when the cluster already holds configuration, unless
//! `?force=true`. Before anything is proposed the file is checked whole:
//! framing, version, checksum, and that every provider credential opens
//! under this cluster's data key, since a credential sealed under another
//! key would restore a provider that cannot call its upstream.

use crate::context::{now_ms, unexpected, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::read_body;
use crate::idempotency::Idempotency;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_core::backup::{Backup, ConfigCounts};
use sluice_core::{Applied, Command};
use sluice_raft::Consistency;
use utoipa::ToSchema;

/// Largest backup file `POST` accepts.
pub const BACKUP_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// How many entities of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CountsView {
    pub providers: u64,
    pub routes: u64,
    pub keys: u64,
    pub admin_tokens: u64,
    pub quotas: u64,
}

impl From<ConfigCounts> for CountsView {
    fn from(c: ConfigCounts) -> Self {
        CountsView {
            providers: c.providers,
            routes: c.routes,
            keys: c.keys,
            admin_tokens: c.admin_tokens,
            quotas: c.quotas,
        }
    }
}

/// What a restore put in place, and where the backup came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RestoreReport {
    pub restored: CountsView,
    /// The cluster the backup was taken from.
    pub source_cluster_id: String,
    pub source_node_id: u64,
    /// When it was taken (ms since the Unix epoch).
    pub exported_at_ms: u64,
}

/// Query of `POST /admin/v1/cluster/snapshot`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreParams {
    /// Replace a cluster that already holds configuration.
    pub force: bool,
}

impl RestoreParams {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut params = RestoreParams::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("force", "true") => params.force = true,
                ("force", "false") => params.force = false,
                ("force", _) => {
                    return Err(ApiError::validation("force", "must be `true` or `false`"))
                }
                (name, _) => {
                    return Err(ApiError::validation(
                        name,
                        "unknown query parameter (expected `force`)",
                    ))
                }
            }
        }
        Ok(params)
    }
}

/// The backup file as sent, with its query.
pub struct RestoreRequest {
    params: RestoreParams,
    file: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RestoreRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let params = RestoreParams::parse(req.uri().query())?;
        let file = read_body(req, state, BACKUP_LIMIT_BYTES).await?;
        Ok(RestoreRequest { params, file })
    }
}

/// A bad backup file: a 422 on the field `backup`.
fn bad_file(message: impl Into<String>) -> ApiError {
    ApiError::validation("backup", message)
}

/// The configuration as a backup file (`application/octet-stream`).
#[utoipa::path(get, path = "/admin/v1/cluster/snapshot", tag = "cluster",
    responses(
        (status = 200, description = "the backup file", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
pub async fn export_snapshot(State(ctx): State<AdminContext>) -> Result<Response, ApiError> {
    let state = ctx.read(Consistency::Linearizable).await?;
    let status = ctx.node().status().await;
    let backup = Backup {
        cluster_id: status.cluster_id,
        node_id: status.node_id,
        exported_at_ms: now_ms(),
        applied_index: status.applied_index,
        data_key_id: ctx.data_key().id(),
        config: state.config_snapshot(),
    };
    let bytes = backup
        .to_bytes()
        .map_err(|e| ApiError::internal(format!("cannot encode the backup: {e}")))?;
    tracing::info!(counts = %backup.config.counts(), "backup exported");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sluice-backup.bin\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Restore a backup file through the Raft log.
#[utoipa::path(post, path = "/admin/v1/cluster/snapshot", tag = "cluster",
    params(("force" = Option<bool>, Query, description = "replace a cluster that already holds configuration")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a file from GET /admin/v1/cluster/snapshot"),
    responses(
        (status = 200, description = "restored", body = RestoreReport),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
pub async fn restore_snapshot(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    request: RestoreRequest,
) -> Result<Json<RestoreReport>, ApiError> {
    let backup = Backup::from_bytes(&request.file).map_err(|e| bad_file(e.to_string()))?;
    let key = ctx.data_key();
    for (i, provider) in backup.config.providers.iter().enumerate() {
        for secret in provider.sealed() {
            if let Err(e) = key.open(&secret.context, secret.sealed) {
                return Err(ApiError::validation(
                    format!("providers[{i}].{}", secret.field),
                    format!(
                        "provider {:?}'s {} cannot be opened with this cluster's data key ({e}); \
                     start the cluster with the source cluster's data key (`sluice init --data-key-from`) \
                         or re-seal the file (`sluice cluster snapshot reseal`)",
                        provider.name, secret.field
                    ),
                ));
            }
        }
    }
    let command = Command::RestoreConfig {
        config: Box::new(backup.config),
        force: request.params.force,
    };
    let counts = match ctx.write(&idempotency, command).await? {
        Applied::Restored(counts) => counts,
        other => return Err(unexpected(&other)),
    };
    tracing::info!(%counts, source = %backup.cluster_id, "backup restored");
    Ok(Json(RestoreReport {
        restored: counts.into(),
        source_cluster_id: backup.cluster_id,
        source_node_id: backup.node_id,
        exported_at_ms: backup.exported_at_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_params() {
        assert!(!RestoreParams::parse(None).unwrap().force);
        assert!(RestoreParams::parse(Some("force=true")).unwrap().force);
        let err = RestoreParams::parse(Some("force=yes")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("force"));
        let err = RestoreParams::parse(Some("overwrite=1")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("overwrite"));
    }
}
