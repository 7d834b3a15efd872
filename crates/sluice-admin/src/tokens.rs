//! `/admin/v1/tokens`: replicated admin tokens.
//!
//! Like virtual keys, a token is drawn from the OS RNG here, shown once, and
//! only its hash is proposed. The bootstrap tokens from node configuration are
//! not listed: they are not in the replicated state.

use crate::context::{now_ms, unexpected, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminJson, AdminPath, ReadParams};
use crate::idempotency::Idempotency;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sluice_core::admin_token::{format_token, TOKEN_RANDOM_LEN};
use sluice_core::{AdminToken, Applied, Command, Role};
use utoipa::ToSchema;

/// Body of `POST /admin/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Label (1-64 of letters, digits, `-_.`).
    #[schema(example = "ops-alice")]
    pub name: String,
    /// What the token may do; `admin` when left out.
    #[serde(default = "admin_role")]
    pub role: RoleBody,
}

fn admin_role() -> RoleBody {
    RoleBody::Admin
}

/// What an admin token may do (see the admin API guide's "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleBody {
    /// Everything.
    Admin,
    /// The cluster and its membership, snapshots, and reading everything.
    Operator,
    /// Virtual keys and their quotas, and reading keys, routes and usage.
    Keys,
    /// Reading, never a snapshot.
    Viewer,
}

impl From<RoleBody> for Role {
    fn from(role: RoleBody) -> Self {
        match role {
            RoleBody::Admin => Role::Admin,
            RoleBody::Operator => Role::Operator,
            RoleBody::Keys => Role::Keys,
            RoleBody::Viewer => Role::Viewer,
        }
    }
}

impl From<Role> for RoleBody {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => RoleBody::Admin,
            Role::Operator => RoleBody::Operator,
            Role::Keys => RoleBody::Keys,
            Role::Viewer => RoleBody::Viewer,
        }
    }
}

/// An admin token as the API shows it (never the token or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// `tok_` + 16 hex digits.
    pub id: String,
    pub name: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub role: RoleBody,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

impl From<&AdminToken> for TokenView {
    fn from(t: &AdminToken) -> Self {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            prefix: t.prefix.clone(),
            role: t.role.into(),
            created_at_ms: t.created_at_ms,
        }
    }
}

/// Response of `POST /admin/v1/tokens`: the token's record and, this once, the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token (`sluice-admin-…`). Shown only in this response.
    pub token: String,
}

/// Response of `GET /admin/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// List replicated admin tokens.
#[utoipa::path(get, path = "/admin/v1/tokens", tag = "tokens", params(ReadParams),
    responses(
        (status = 200, body = TokenList),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list_tokens(
    State(ctx): State<AdminContext>,
    params: ReadParams,
) -> Result<Json<TokenList>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    Ok(Json(TokenList {
        tokens: state.admin_tokens().map(TokenView::from).collect(),
    }))
}

/// Create an admin token; the response carries it, once.
#[utoipa::path(post, path = "/admin/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn create_token(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    AdminJson(body): AdminJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let mut random = [0u8; TOKEN_RANDOM_LEN];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let token = format_token(&random);
    let record = AdminToken::new(body.name, &token, body.role.into(), now_ms());
    record.validate()?;
    // With an Idempotency-Key, a retry answers the token made the first
    // time, and its secret.
    match ctx
        .write_revealing(&idempotency, Command::CreateAdminToken(record), token)
        .await?
    {
        (Applied::AdminToken(t), token) => Ok((
            StatusCode::CREATED,
            Json(CreatedToken {
                view: TokenView::from(&t),
                token,
            }),
        )),
        (other, _) => Err(unexpected(&other)),
    }
}

/// Delete an admin token; it stops working on each node as soon as that node
/// applies the delete.
#[utoipa::path(delete, path = "/admin/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn delete_token(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    idempotency: Idempotency,
) -> Result<StatusCode, ApiError> {
    ctx.write(&idempotency, Command::DeleteAdminToken { id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
