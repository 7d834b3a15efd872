//! `/admin/v1/providers`: the upstream model APIs.
//!
//! The credential (`api_key`) is write-only: it is sealed under the data key
//! with a fresh random nonce before the command is proposed, and responses
//! only say whether one is set.

use crate::context::{unexpected, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminJson, AdminPath, ReadParams};
use crate::idempotency::Idempotency;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};
use sluice_core::secret::NONCE_LEN;
use sluice_core::{Applied, Command, Provider, ProviderKind, SealedSecret, Timeouts};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Longest provider credential accepted.
const MAX_API_KEY_LEN: usize = 8 * 1024;

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKindBody {
    /// OpenAI and every API compatible with it (vLLM, Ollama, Groq, ...).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

impl From<ProviderKindBody> for ProviderKind {
    fn from(kind: ProviderKindBody) -> Self {
        match kind {
            ProviderKindBody::Openai => ProviderKind::OpenAi,
            ProviderKindBody::Anthropic => ProviderKind::Anthropic,
        }
    }
}

impl From<ProviderKind> for ProviderKindBody {
    fn from(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::OpenAi => ProviderKindBody::Openai,
            ProviderKind::Anthropic => ProviderKindBody::Anthropic,
        }
    }
}

/// Upstream timeouts in milliseconds; a missing field takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsBody {
    /// Connecting to the upstream (default 5000).
    pub connect_ms: u64,
    /// Until the first response byte (default 60000).
    pub first_byte_ms: u64,
    /// The whole request, streaming included (default 600000).
    pub total_ms: u64,
}

impl Default for TimeoutsBody {
    fn default() -> Self {
        Timeouts::default().into()
    }
}

impl From<Timeouts> for TimeoutsBody {
    fn from(t: Timeouts) -> Self {
        TimeoutsBody {
            connect_ms: t.connect_ms,
            first_byte_ms: t.first_byte_ms,
            total_ms: t.total_ms,
        }
    }
}

impl From<TimeoutsBody> for Timeouts {
    fn from(t: TimeoutsBody) -> Self {
        Timeouts {
            connect_ms: t.connect_ms,
            first_byte_ms: t.first_byte_ms,
            total_ms: t.total_ms,
        }
    }
}

/// Body of `POST /admin/v1/providers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Unique name (1-64 of letters, digits, `-_.`), referenced by route deployments.
    #[schema(example = "openai")]
    pub name: String,
    pub kind: ProviderKindBody,
    /// Base URL of the upstream API, e.g. `https://api.openai.com/v1`.
    #[schema(example = "https://api.openai.com/v1")]
    pub base_url: String,
    /// The upstream credential. Write-only: never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Extra headers sent upstream with every request (stored in clear: not for secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: TimeoutsBody,
}

/// Body of `PUT /admin/v1/providers/{name}`: the provider's new configuration.
/// `api_key` left out keeps the current credential; `null` removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    pub kind: ProviderKindBody,
    pub base_url: String,
    /// New credential; omit to keep the current one, `null` to remove it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: TimeoutsBody,
}

/// Tells "field given as null" (`Some(None)`) from "field left out" (`None`).
fn present<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(de).map(Some)
}

/// A provider as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    pub name: String,
    pub kind: ProviderKindBody,
    pub base_url: String,
    /// Whether a credential is stored (the credential itself is never shown).
    pub api_key_set: bool,
    pub headers: BTreeMap<String, String>,
    pub timeouts: TimeoutsBody,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

impl From<&Provider> for ProviderView {
    fn from(p: &Provider) -> Self {
        ProviderView {
            name: p.name.clone(),
            kind: p.kind.into(),
            base_url: p.base_url.clone(),
            api_key_set: p.api_key.is_some(),
            headers: p.headers.clone(),
            timeouts: p.timeouts.into(),
            created_at_ms: p.created_at_ms,
            updated_at_ms: p.updated_at_ms,
        }
    }
}

/// Response of `GET /admin/v1/providers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

/// A provider without credentials from the API's fields, checked with the
/// core rules before anything is proposed.
fn checked_provider(
    name: String,
    kind: ProviderKindBody,
    base_url: String,
    headers: BTreeMap<String, String>,
    timeouts: TimeoutsBody,
) -> Result<Provider, ApiError> {
    let provider = Provider {
        name,
        kind: kind.into(),
        base_url,
        api_key: None,
        headers,
        timeouts: timeouts.into(),
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    provider.validate()?;
    Ok(provider)
}

fn seal(ctx: &AdminContext, name: &str, api_key: &str) -> Result<SealedSecret, ApiError> {
    if api_key.is_empty() || api_key.len() > MAX_API_KEY_LEN {
        return Err(ApiError::validation(
            "api_key",
            format!("must be 1-{MAX_API_KEY_LEN} bytes"),
        ));
    }
    if api_key.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "api_key",
            "must not contain control characters",
        ));
    }
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    Ok(ctx.data_key().seal(name, api_key, nonce))
}

fn applied_provider(applied: Applied) -> Result<Json<ProviderView>, ApiError> {
    match applied {
        Applied::Provider(p) => Ok(Json(ProviderView::from(&p))),
        other => Err(unexpected(&other)),
    }
}

/// List providers.
#[utoipa::path(get, path = "/admin/v1/providers", tag = "providers", params(ReadParams),
    responses(
        (status = 200, body = ProviderList),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list_providers(
    State(ctx): State<AdminContext>,
    params: ReadParams,
) -> Result<Json<ProviderList>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    Ok(Json(ProviderList {
        providers: state.providers().map(ProviderView::from).collect(),
    }))
}

/// Create a provider.
#[utoipa::path(post, path = "/admin/v1/providers", tag = "providers", request_body = CreateProvider,
    responses(
        (status = 201, body = ProviderView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "a provider with this name exists", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn create_provider(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    AdminJson(body): AdminJson<CreateProvider>,
) -> Result<(StatusCode, Json<ProviderView>), ApiError> {
    let mut provider = checked_provider(
        body.name,
        body.kind,
        body.base_url,
        body.headers,
        body.timeouts,
    )?;
    if let Some(api_key) = &body.api_key {
        provider.api_key = Some(seal(&ctx, &provider.name, api_key)?);
    }
    let view = applied_provider(
        ctx.write(&idempotency, Command::CreateProvider(provider))
            .await?,
    )?;
    Ok((StatusCode::CREATED, view))
}

/// Get one provider.
#[utoipa::path(get, path = "/admin/v1/providers/{name}", tag = "providers",
    params(("name" = String, Path, description = "provider name"), ReadParams),
    responses(
        (status = 200, body = ProviderView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_provider(
    State(ctx): State<AdminContext>,
    AdminPath(name): AdminPath<String>,
    params: ReadParams,
) -> Result<Json<ProviderView>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    state
        .provider(&name)
        .map(|p| Json(ProviderView::from(p)))
        .ok_or_else(|| ApiError::not_found(format!("provider {name:?} not found")))
}

/// Replace a provider's configuration.
#[utoipa::path(put, path = "/admin/v1/providers/{name}", tag = "providers", request_body = UpdateProvider,
    params(("name" = String, Path, description = "provider name")),
    responses(
        (status = 200, body = ProviderView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn update_provider(
    State(ctx): State<AdminContext>,
    AdminPath(name): AdminPath<String>,
    idempotency: Idempotency,
    AdminJson(body): AdminJson<UpdateProvider>,
) -> Result<Json<ProviderView>, ApiError> {
    let mut provider =
        checked_provider(name, body.kind, body.base_url, body.headers, body.timeouts)?;
    let keep_api_key = body.api_key.is_none();
    provider.api_key = match body.api_key {
        Some(Some(api_key)) => Some(seal(&ctx, &provider.name, &api_key)?),
        Some(None) | None => None,
    };
    applied_provider(
        ctx.write(
            &idempotency,
            Command::UpdateProvider {
                provider,
                keep_api_key,
            },
        )
        .await?,
    )
}

/// Delete a provider (refused while a route uses it).
#[utoipa::path(delete, path = "/admin/v1/providers/{name}", tag = "providers",
    params(("name" = String, Path, description = "provider name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "a route uses the provider", body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn delete_provider(
    State(ctx): State<AdminContext>,
    AdminPath(name): AdminPath<String>,
    idempotency: Idempotency,
) -> Result<StatusCode, ApiError> {
    ctx.write(&idempotency, Command::DeleteProvider { name })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_json;

    #[test]
    fn update_tells_null_from_absent() {
        let keep: UpdateProvider =
            parse_json(br#"{"kind":"openai","base_url":"http://x"}"#).unwrap();
        assert_eq!(keep.api_key, None);
        let clear: UpdateProvider =
            parse_json(br#"{"kind":"openai","base_url":"http://x","api_key":null}"#).unwrap();
        assert_eq!(clear.api_key, Some(None));
        let set: UpdateProvider =
            parse_json(br#"{"kind":"openai","base_url":"http://x","api_key":"k"}"#).unwrap();
        assert_eq!(set.api_key, Some(Some("k".into())));
    }

    #[test]
    fn view_never_carries_the_credential() {
        let key = sluice_core::DataKey::from_bytes([1; 32]);
        let provider = Provider {
            name: "p".into(),
            kind: ProviderKind::Anthropic,
            base_url: "https://api.anthropic.com".into(),
            api_key: Some(key.seal("p", "sk-ant-secret", [0; NONCE_LEN])),
            headers: BTreeMap::new(),
            timeouts: Timeouts::default(),
            created_at_ms: 1,
            updated_at_ms: 2,
        };
        let json = serde_json::to_string(&ProviderView::from(&provider)).unwrap();
        assert!(json.contains(r#""api_key_set":true"#), "{json}");
        assert!(json.contains(r#""kind":"anthropic""#), "{json}");
        assert!(
            !json.contains("sk-ant") && !json.contains("ciphertext"),
            "{json}"
        );
    }

    #[test]
    fn unknown_kind_is_a_validation_error_on_kind() {
        let err =
            parse_json::<CreateProvider>(br#"{"name":"p","kind":"azure","base_url":"http://x"}"#)
                .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("kind"));
    }
}
