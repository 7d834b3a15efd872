//! `/admin/v1/providers`: the upstream model APIs.
//!
//! The credential (`api_key`) and the secret headers (`secret_headers`) are
//! write-only: each is sealed under the data key with a fresh random nonce
//! before the command is proposed, and responses only say whether a
//! credential is set and which secret headers there are.

use crate::context::{unexpected, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminJson, AdminPath, ReadParams};
use crate::idempotency::Idempotency;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};
use sluice_core::provider::{secret_header_context, BedrockSettings};
use sluice_core::provider::{AzureSettings, EntraSettings};
use sluice_core::secret::NONCE_LEN;
use sluice_core::{Applied, Command, Provider, ProviderKind, SealedSecret, Timeouts};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Longest provider credential accepted.
const MAX_API_KEY_LEN: usize = 8 * 1024;

/// Longest secret header value accepted (as for clear headers).
const MAX_SECRET_HEADER_LEN: usize = 4096;

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKindBody {
    /// OpenAI and every API compatible with it (vLLM, Ollama, Groq, ...).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Azure OpenAI: OpenAI's API at an Azure resource (see `azure`).
    #[serde(rename = "azure_openai")]
    AzureOpenai,
    /// Google's Gemini API (`generateContent`); `api_key` is the Gemini
    /// API key.
    Gemini,
    /// Gemini on Vertex AI; `api_key` is a service account key file (JSON).
    Vertex,
    /// AWS Bedrock's Converse API, SigV4-signed (see `bedrock`); `api_key`
    /// is the IAM keys as JSON: `{"access_key_id", "secret_access_key"[,
    /// "session_token"]}`.
    Bedrock,
}

impl From<ProviderKindBody> for ProviderKind {
    fn from(kind: ProviderKindBody) -> Self {
        match kind {
            ProviderKindBody::Openai => ProviderKind::OpenAi,
            ProviderKindBody::Anthropic => ProviderKind::Anthropic,
            ProviderKindBody::AzureOpenai => ProviderKind::AzureOpenAi,
            ProviderKindBody::Gemini => ProviderKind::Gemini,
            ProviderKindBody::Vertex => ProviderKind::Vertex,
            ProviderKindBody::Bedrock => ProviderKind::Bedrock,
        }
    }
}

impl From<ProviderKind> for ProviderKindBody {
    fn from(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::OpenAi => ProviderKindBody::Openai,
            ProviderKind::Anthropic => ProviderKindBody::Anthropic,
            ProviderKind::AzureOpenAi => ProviderKindBody::AzureOpenai,
            ProviderKind::Gemini => ProviderKindBody::Gemini,
            ProviderKind::Vertex => ProviderKindBody::Vertex,
            ProviderKind::Bedrock => ProviderKindBody::Bedrock,
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

/// An Azure OpenAI provider's settings (`kind = "azure_openai"` only; all
/// defaults when left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureBody {
    /// `v1` (the v1 API: `/openai/v1/...`, the deployment named by the
    /// route's model) or a dated version (`/openai/deployments/{deployment}/...
    /// ?api-version=...`). Default `2024-10-21`; the Responses API needs
    /// `v1` or `2025-03-01-preview` and later.
    #[serde(default = "default_api_version")]
    #[schema(example = "2024-10-21")]
    pub api_version: String,
    /// Authenticate with Microsoft Entra ID instead of the resource key:
    /// `api_key` is then the app registration's client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra: Option<EntraBody>,
}

impl Default for AzureBody {
    fn default() -> Self {
        AzureBody {
            api_version: default_api_version(),
            entra: None,
        }
    }
}

fn default_api_version() -> String {
    sluice_core::provider::AZURE_DEFAULT_API_VERSION.to_owned()
}

/// A Microsoft Entra ID app registration (client credentials grant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntraBody {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// Where tokens come from (default `https://login.microsoftonline.com`).
    #[serde(default = "default_authority")]
    pub authority_url: String,
    /// The scope asked for (default
    /// `https://cognitiveservices.azure.com/.default`).
    #[serde(default = "default_scope")]
    pub scope: String,
}

fn default_authority() -> String {
    sluice_core::provider::ENTRA_DEFAULT_AUTHORITY.to_owned()
}

fn default_scope() -> String {
    sluice_core::provider::ENTRA_DEFAULT_SCOPE.to_owned()
}

impl From<AzureBody> for AzureSettings {
    fn from(body: AzureBody) -> Self {
        AzureSettings {
            api_version: body.api_version,
            entra: body.entra.map(|e| EntraSettings {
                tenant_id: e.tenant_id,
                client_id: e.client_id,
                authority_url: e.authority_url,
                scope: e.scope,
            }),
        }
    }
}

impl From<&AzureSettings> for AzureBody {
    fn from(settings: &AzureSettings) -> Self {
        AzureBody {
            api_version: settings.api_version.clone(),
            entra: settings.entra.as_ref().map(|e| EntraBody {
                tenant_id: e.tenant_id.clone(),
                client_id: e.client_id.clone(),
                authority_url: e.authority_url.clone(),
                scope: e.scope.clone(),
            }),
        }
    }
}

/// AWS Bedrock's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BedrockBody {
    /// The AWS region requests are signed for, e.g. `us-east-1`: the
    /// region of the endpoint at `base_url`.
    #[schema(example = "us-east-1")]
    pub region: String,
}

impl From<BedrockBody> for BedrockSettings {
    fn from(body: BedrockBody) -> Self {
        BedrockSettings {
            region: body.region,
        }
    }
}

impl From<&BedrockSettings> for BedrockBody {
    fn from(settings: &BedrockSettings) -> Self {
        BedrockBody {
            region: settings.region.clone(),
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
    /// Extra headers whose values are secrets (a second credential, an
    /// `Authorization` of another scheme). Sealed; write-only: only their
    /// names are ever returned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: TimeoutsBody,
    /// Azure OpenAI's settings (`azure_openai` providers only; defaults
    /// when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureBody>,
    /// AWS Bedrock's settings (`bedrock` providers only, and required
    /// there: its region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock: Option<BedrockBody>,
}

/// Body of `PUT /admin/v1/providers/{name}`: the provider's new configuration.
/// `api_key` left out keeps the current credential; `null` removes it.
/// `secret_headers` left out keeps the current ones; an object replaces
/// them all (`{}` removes them).
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
    /// New secret headers, replacing all the current ones; omit to keep
    /// them. Write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub timeouts: TimeoutsBody,
    /// Azure OpenAI's settings (`azure_openai` providers only; defaults
    /// when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureBody>,
    /// AWS Bedrock's settings (`bedrock` providers only, and required
    /// there: its region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock: Option<BedrockBody>,
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
    /// The names of the secret headers stored (their values are never shown).
    #[serde(default)]
    pub secret_header_names: Vec<String>,
    pub timeouts: TimeoutsBody,
    /// Azure OpenAI's settings, for `azure_openai` providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureBody>,
    /// AWS Bedrock's settings, for `bedrock` providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock: Option<BedrockBody>,
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
            secret_header_names: p.secret_headers.keys().cloned().collect(),
            timeouts: p.timeouts.into(),
            azure: p.azure.as_deref().map(AzureBody::from),
            bedrock: p.bedrock.as_deref().map(BedrockBody::from),
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

/// A provider from the API's fields, its secret headers sealed and without
/// its credential, checked with the core rules before anything is proposed.
struct Fields {
    name: String,
    kind: ProviderKindBody,
    base_url: String,
    headers: BTreeMap<String, String>,
    secret_headers: BTreeMap<String, String>,
    timeouts: TimeoutsBody,
    azure: Option<AzureBody>,
    bedrock: Option<BedrockBody>,
}

fn checked_provider(ctx: &AdminContext, fields: Fields) -> Result<Provider, ApiError> {
    let mut secret_headers = BTreeMap::new();
    for (header, value) in &fields.secret_headers {
        let context = secret_header_context(&fields.name, header);
        let field = format!("secret_headers.{header}");
        let sealed = seal(ctx, &field, &context, value, MAX_SECRET_HEADER_LEN)?;
        secret_headers.insert(header.clone(), sealed);
    }
    // An Azure provider's settings default; another kind's are refused by
    // the core rules.
    let azure = match (fields.kind, fields.azure) {
        (ProviderKindBody::AzureOpenai, azure) => Some(Box::new(azure.unwrap_or_default().into())),
        (_, azure) => azure.map(|a| Box::new(AzureSettings::from(a))),
    };
    let provider = Provider {
        name: fields.name,
        kind: fields.kind.into(),
        base_url: fields.base_url,
        api_key: None,
        headers: fields.headers,
        secret_headers,
        timeouts: fields.timeouts.into(),
        azure,
        bedrock: fields.bedrock.map(|b| Box::new(b.into())),
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    provider.validate()?;
    Ok(provider)
}

/// Seals `provider`'s credential `api_key`. A Vertex AI service account
/// key or a Bedrock provider's IAM keys are checked first (a 422 says what
/// is wrong with them, never their content) and sealed compact, on one
/// line.
fn seal_credential(
    ctx: &AdminContext,
    provider: &Provider,
    api_key: &str,
) -> Result<SealedSecret, ApiError> {
    let checked = match provider.kind {
        ProviderKind::Vertex => sluice_providers::google::ServiceAccount::parse(api_key).map(drop),
        ProviderKind::Bedrock => sluice_providers::aws::AwsCredentials::parse(api_key).map(drop),
        _ => return seal(ctx, "api_key", &provider.name, api_key, MAX_API_KEY_LEN),
    };
    checked.map_err(|reason| ApiError::validation("api_key", reason))?;
    let compact = serde_json::from_str::<serde_json::Value>(api_key)
        .map_err(|e| ApiError::validation("api_key", e.to_string()))?
        .to_string();
    seal(ctx, "api_key", &provider.name, &compact, MAX_API_KEY_LEN)
}

/// Seals `secret` (the value of `field`, at most `max` bytes) in `context`.
fn seal(
    ctx: &AdminContext,
    field: &str,
    context: &str,
    secret: &str,
    max: usize,
) -> Result<SealedSecret, ApiError> {
    if secret.is_empty() || secret.len() > max {
        return Err(ApiError::validation(
            field,
            format!("must be 1-{max} bytes"),
        ));
    }
    if secret.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            "must not contain control characters",
        ));
    }
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    Ok(ctx.data_key().seal(context, secret, nonce))
}

fn applied_provider(applied: Applied) -> Result<Json<ProviderView>, ApiError> {
    match applied {
        Applied::Provider(p) => Ok(Json(ProviderView::from(&*p))),
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
        &ctx,
        Fields {
            name: body.name,
            kind: body.kind,
            base_url: body.base_url,
            headers: body.headers,
            secret_headers: body.secret_headers,
            timeouts: body.timeouts,
            azure: body.azure,
            bedrock: body.bedrock,
        },
    )?;
    if let Some(api_key) = &body.api_key {
        provider.api_key = Some(seal_credential(&ctx, &provider, api_key)?);
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
    let keep_secret_headers = body.secret_headers.is_none();
    let mut provider = checked_provider(
        &ctx,
        Fields {
            name,
            kind: body.kind,
            base_url: body.base_url,
            headers: body.headers,
            secret_headers: body.secret_headers.unwrap_or_default(),
            timeouts: body.timeouts,
            azure: body.azure,
            bedrock: body.bedrock,
        },
    )?;
    let keep_api_key = body.api_key.is_none();
    provider.api_key = match body.api_key {
        Some(Some(api_key)) => Some(seal_credential(&ctx, &provider, &api_key)?),
        Some(None) | None => None,
    };
    applied_provider(
        ctx.write(
            &idempotency,
            Command::UpdateProvider {
                provider,
                keep_api_key,
                keep_secret_headers,
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
            secret_headers: Default::default(),
            timeouts: Timeouts::default(),
            azure: None,
            bedrock: None,
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
            parse_json::<CreateProvider>(br#"{"name":"p","kind":"cohere","base_url":"http://x"}"#)
                .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("kind"));
    }
}
