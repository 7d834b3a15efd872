//! `/admin/v1/keys`: virtual API keys for applications.
//!
//! The secret is drawn from the OS RNG here, shown once in the creation
//! response, and only its hash is proposed. Lists and gets never carry it.

use crate::context::{now_ms, unexpected, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminJson, AdminPath, ReadParams};
use crate::idempotency::Idempotency;
use crate::quotas::{self, LimitSpec, NoQuorumName, PeriodName, QuotaSpec, QuotaView, ReserveName};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sluice_core::key::{format_secret, KeyRefusal, SECRET_RANDOM_LEN};
use sluice_core::quota::Scope;
use sluice_core::{Applied, Command, State as ClusterState, VirtualKey};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Body of `POST /admin/v1/keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Label (1-64 of letters, digits, `-_.`).
    #[schema(example = "ci")]
    pub name: String,
    /// Routes the key may use; empty or left out means every route.
    #[serde(default)]
    pub allowed_routes: Vec<String>,
    /// Expiry as milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Expiry relative to now, in seconds (instead of `expires_at_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
    /// Free-form labels (at most 64).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Requests per minute across the cluster (see `PATCH /admin/v1/keys/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// LLM tokens (prompt + completion) per minute across the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Spend allowed per `budget_period`, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// `day` or `month` (default), UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<PeriodName>,
    /// `deny` (default) or `local_share`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_quorum: Option<NoQuorumName>,
    /// `max_tokens` (default) or `estimate`: what a request reserves of
    /// tokens and spend before its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<ReserveName>,
    /// The general form of the quota: limits per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<LimitSpec>>,
}

impl CreateKey {
    /// The quota fields of the body.
    fn quota(&self) -> QuotaSpec {
        QuotaSpec {
            rpm: self.rpm.map(Some),
            tpm: self.tpm.map(Some),
            budget_usd: self.budget_usd.map(Some),
            budget_period: self.budget_period,
            on_no_quorum: self.on_no_quorum,
            reserve: self.reserve,
            limits: self.limits.clone(),
        }
    }
}

/// Whether a key authorises requests right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Disabled,
    Expired,
    Revoked,
}

/// A virtual key as the API shows it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// `key_` + 16 hex digits.
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to recognise it (`sk-sluice-3fa2b1`).
    pub prefix: String,
    /// Computed from `enabled`, `revoked_at_ms` and `expires_at_ms` at the time of the response.
    pub status: KeyStatus,
    pub enabled: bool,
    pub allowed_routes: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub revoked_at_ms: Option<u64>,
    pub metadata: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The key's own quota limits, in words (`"600 requests a minute"`,
    /// `"$25.00 a month (UTC)"`); empty without a quota. Limits on single
    /// routes are in `GET /admin/v1/keys/{id}/quota`.
    #[serde(default)]
    pub limits: Vec<String>,
    /// What its requests reserve of tokens and spend, with a quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<ReserveName>,
    /// Set on a JWT subject's key (made by the gateway on the subject's
    /// first request; it has no secret and an empty `prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectView>,
}

/// Whom a subject key stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubjectView {
    /// The `[[proxy.jwt_issuers]]` name of its tokens' issuer.
    pub issuer: String,
    /// Its tokens' subject claim.
    pub subject: String,
    /// The key whose routes and quotas it has.
    pub template: String,
}

impl KeyView {
    /// The key as `state` has it, with its quota.
    pub fn of(key: &VirtualKey, state: &ClusterState, now_ms: u64) -> Self {
        let policy = state.ledger().policy(&Scope::Key {
            key_id: key.id.clone(),
        });
        KeyView {
            limits: policy
                .map(|p| p.limits.iter().map(quotas::describe_limit).collect())
                .unwrap_or_default(),
            reserve: policy.map(|p| p.reserve.into()),
            ..KeyView::new(key, now_ms)
        }
    }

    pub fn new(key: &VirtualKey, now_ms: u64) -> Self {
        KeyView {
            id: key.id.clone(),
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            status: match key.check_usable(now_ms) {
                Ok(()) => KeyStatus::Active,
                Err(KeyRefusal::Disabled) => KeyStatus::Disabled,
                Err(KeyRefusal::Expired) => KeyStatus::Expired,
                Err(KeyRefusal::Revoked) => KeyStatus::Revoked,
            },
            enabled: key.enabled,
            allowed_routes: key.allowed_routes.clone(),
            expires_at_ms: key.expires_at_ms,
            revoked_at_ms: key.revoked_at_ms,
            metadata: key.metadata.clone(),
            created_at_ms: key.created_at_ms,
            limits: Vec::new(),
            reserve: None,
            subject: key.subject.as_ref().map(|s| SubjectView {
                issuer: s.issuer.clone(),
                subject: s.subject.clone(),
                template: s.template.clone(),
            }),
        }
    }
}

/// Response of `POST /admin/v1/keys`: the key and, this once, its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    /// The secret (`sk-sluice-…`). Shown only in this response: store it now.
    pub key: String,
}

/// Response of `GET /admin/v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

fn expiry(body: &CreateKey, now: u64) -> Result<Option<u64>, ApiError> {
    match (body.expires_at_ms, body.expires_in_s) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "expires_in_s",
            "give either expires_at_ms or expires_in_s, not both",
        )),
        (Some(at), None) => Ok(Some(at)),
        (None, Some(0)) => Err(ApiError::validation("expires_in_s", "must be positive")),
        (None, Some(secs)) => secs
            .checked_mul(1000)
            .and_then(|ms| now.checked_add(ms))
            .map(Some)
            .ok_or_else(|| ApiError::validation("expires_in_s", "is too large")),
        (None, None) => Ok(None),
    }
}

/// The key a write returned, with its quota as this node has applied it
/// (the write was applied here before it answered).
fn applied_key(ctx: &AdminContext, applied: Applied) -> Result<Json<KeyView>, ApiError> {
    match applied {
        Applied::Key(k) => Ok(Json(KeyView::of(&k, &ctx.node().local_state(), now_ms()))),
        other => Err(unexpected(&other)),
    }
}

/// Map the stored field name to the one in the request.
fn api_field(err: impl Into<ApiError>) -> ApiError {
    err.into().rename_field("expires_at", "expires_at_ms")
}

/// List keys.
#[utoipa::path(get, path = "/admin/v1/keys", tag = "keys", params(ReadParams),
    responses(
        (status = 200, body = KeyList),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list_keys(
    State(ctx): State<AdminContext>,
    params: ReadParams,
) -> Result<Json<KeyList>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    let now = now_ms();
    Ok(Json(KeyList {
        keys: state.keys().map(|k| KeyView::of(k, &state, now)).collect(),
    }))
}

/// Create a key; the response carries its secret, once.
#[utoipa::path(post, path = "/admin/v1/keys", tag = "keys", request_body = CreateKey,
    responses(
        (status = 201, body = CreatedKey),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "invalid field, or an allowed route that does not exist", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create_key(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    AdminJson(body): AdminJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let now = now_ms();
    let expires_at_ms = expiry(&body, now)?;
    // Checked before the key exists, so a bad quota creates nothing.
    let quota = body.quota();
    let policy = quotas::merge(None, &quota)?;
    let mut random = [0u8; SECRET_RANDOM_LEN];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let secret = format_secret(&random);
    let mut key = VirtualKey::new(body.name, &secret, now);
    key.allowed_routes = body.allowed_routes;
    key.expires_at_ms = expires_at_ms;
    key.metadata = body.metadata;
    key.validate(now).map_err(api_field)?;
    // With an Idempotency-Key, a retry answers the key made the first time,
    // and its secret.
    // The key and its limits in one command: no node serves it unlimited.
    let command = match &policy {
        Some(policy) => Command::CreateKeyWithQuota {
            key,
            policy: policy.clone(),
        },
        None => Command::CreateKey(key),
    };
    let (applied, secret) = ctx
        .write_revealing(&idempotency, command, secret)
        .await
        .map_err(api_field)?;
    let Json(mut view) = applied_key(&ctx, applied)?;
    if let Some(policy) = policy {
        view.limits = policy.limits.iter().map(quotas::describe_limit).collect();
        view.reserve = Some(policy.reserve.into());
    }
    Ok((StatusCode::CREATED, Json(CreatedKey { view, key: secret })))
}

/// Get one key (never its secret).
#[utoipa::path(get, path = "/admin/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id"), ReadParams),
    responses(
        (status = 200, body = KeyView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_key(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    params: ReadParams,
) -> Result<Json<KeyView>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    state
        .key(&id)
        .map(|k| Json(KeyView::of(k, &state, now_ms())))
        .ok_or_else(|| ApiError::not_found(format!("key {id:?} not found")))
}

/// Delete a key.
#[utoipa::path(delete, path = "/admin/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn delete_key(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    idempotency: Idempotency,
) -> Result<StatusCode, ApiError> {
    ctx.write(&idempotency, Command::DeleteKey { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a key's quota: the fields given are set (`null` removes a
/// limit); the others are kept.
#[utoipa::path(patch, path = "/admin/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    request_body = QuotaSpec,
    responses(
        (status = 200, body = QuotaView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn patch_key(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    idempotency: Idempotency,
    AdminJson(spec): AdminJson<QuotaSpec>,
) -> Result<Json<QuotaView>, ApiError> {
    let scope = Scope::Key { key_id: id.clone() };
    quotas::apply(&ctx, &idempotency, scope, &spec).await?;
    quotas::get_quota(State(ctx), AdminPath(id), ReadParams::default()).await
}

/// Revoke a key for good (idempotent).
#[utoipa::path(post, path = "/admin/v1/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses(
        (status = 200, body = KeyView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn revoke_key(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    idempotency: Idempotency,
) -> Result<Json<KeyView>, ApiError> {
    let applied = ctx.write(&idempotency, Command::RevokeKey { id }).await?;
    applied_key(&ctx, applied)
}

/// Enable a key.
#[utoipa::path(post, path = "/admin/v1/keys/{id}/enable", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses(
        (status = 200, body = KeyView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn enable_key(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    idempotency: Idempotency,
) -> Result<Json<KeyView>, ApiError> {
    let applied = ctx
        .write(&idempotency, Command::SetKeyEnabled { id, enabled: true })
        .await?;
    applied_key(&ctx, applied)
}

/// Disable a key (reversible, unlike revoke).
#[utoipa::path(post, path = "/admin/v1/keys/{id}/disable", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses(
        (status = 200, body = KeyView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn disable_key(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    idempotency: Idempotency,
) -> Result<Json<KeyView>, ApiError> {
    let applied = ctx
        .write(&idempotency, Command::SetKeyEnabled { id, enabled: false })
        .await?;
    applied_key(&ctx, applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        let body = |at, inn| CreateKey {
            expires_at_ms: at,
            expires_in_s: inn,
            ..CreateKey::default()
        };
        assert_eq!(expiry(&body(None, None), 5), Ok(None));
        assert_eq!(expiry(&body(Some(9), None), 5), Ok(Some(9)));
        assert_eq!(expiry(&body(None, Some(2)), 5), Ok(Some(2005)));
        assert_eq!(
            expiry(&body(Some(1), Some(1)), 5)
                .unwrap_err()
                .field
                .as_deref(),
            Some("expires_in_s")
        );
        assert!(expiry(&body(None, Some(0)), 5).is_err());
        assert!(expiry(&body(None, Some(u64::MAX)), 5).is_err());
    }

    #[test]
    fn past_expiry_names_the_api_field() {
        let mut key = VirtualKey::new("k".into(), &format_secret(&[1; SECRET_RANDOM_LEN]), 0);
        key.expires_at_ms = Some(1);
        let err = api_field(key.validate(10).unwrap_err());
        assert_eq!(err.field.as_deref(), Some("expires_at_ms"));
    }

    #[test]
    fn views_never_carry_the_hash() {
        let key = VirtualKey::new("k".into(), &format_secret(&[7; SECRET_RANDOM_LEN]), 0);
        let json = serde_json::to_string(&KeyView::new(&key, 0)).unwrap();
        assert!(
            !json.contains("hash") && !json.contains(&hex::encode(key.hash)),
            "{json}"
        );
        assert!(json.contains(r#""status":"active""#), "{json}");
    }
}
