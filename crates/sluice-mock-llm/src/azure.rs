//! Azure OpenAI: OpenAI's API under `/openai`, and Microsoft Entra ID's
//! token endpoint.
//!
//! * `/openai/deployments/{deployment}/{chat/completions, completions,
//!   embeddings}?api-version=...`: the deployment in the path is the model
//!   (whatever the body says, as at Azure); `api-version` is required.
//! * `/openai/responses[/{id}]?api-version=...` and the v1 API,
//!   `/openai/v1/...`: the OpenAI endpoints as they are.
//! * `POST /{tenant}/oauth2/v2.0/token`: the client credentials grant for
//!   the one app registration of [`MockEntra`](crate::config::MockEntra);
//!   the tokens it issues are accepted as `Authorization: Bearer` until
//!   they expire.
//!
//! The OpenAI handlers answer; this module checks what Azure adds and
//! counts the request in [`Stats::azure_requests`](crate::Stats).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde_json::{json, Value};

use crate::call::bearer;
use crate::fault::Fault;
use crate::openai::{self, error};
use crate::server::Mock;

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(mock): State<Arc<Mock>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let refuse = |status: StatusCode, error: &str, description: String| {
        mock.counters.bump(&mock.counters.token_refusals);
        let body = json!({
            "error": error,
            "error_description": format!("{description}\r\nTrace ID: mock\r\nCorrelation ID: mock"),
            "error_codes": [],
        });
        (status, Json(body)).into_response()
    };
    let Some(entra) = &mock.config.entra else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS90002: this mock has no Entra ID configured.".into(),
        );
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    // Entra ID's checks in its order, each with its refusal.
    let checks = [
        (
            tenant == entra.tenant_id,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("AADSTS90002: Tenant '{tenant}' not found."),
        ),
        (
            field("grant_type") == "client_credentials",
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.".into(),
        ),
        (
            field("scope") == "https://cognitiveservices.azure.com/.default",
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!(
                "AADSTS70011: The provided scope '{}' is not valid.",
                field("scope")
            ),
        ),
        (
            field("client_id") == entra.client_id,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!(
                "AADSTS700016: Application '{}' was not found.",
                field("client_id")
            ),
        ),
        (
            field("client_secret") == entra.client_secret,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.".into(),
        ),
    ];
    if let Some((_, status, error, description)) = checks.into_iter().find(|check| !check.0) {
        return refuse(status, error, description);
    }
    let token = mock
        .issued
        .issue("mock-entra", Duration::from_secs(entra.token_ttl_s));
    mock.counters.bump(&mock.counters.tokens_issued);
    Json(json!({
        "token_type": "Bearer",
        "expires_in": entra.token_ttl_s,
        "ext_expires_in": entra.token_ttl_s,
        "access_token": token,
    }))
    .into_response()
}

/// An OpenAI operation Azure serves.
#[derive(Clone, Copy)]
pub(crate) enum Op {
    Chat,
    Completions,
    Embeddings,
    Responses,
}

/// Azure's credentials, and only those: the resource key in `api-key`, or
/// an Entra ID token as `Authorization: Bearer` (never the key as a
/// bearer, nor `x-api-key`). Nothing required when the mock requires none.
fn check_azure_credential(mock: &Mock, headers: &HeaderMap) -> Result<(), Fault> {
    if mock.config.require_api_key.is_none() && mock.config.entra.is_none() {
        return Ok(());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(key) = header("api-key") {
        return match mock.config.require_api_key.as_deref() {
            Some(expected) if expected == key => Ok(()),
            _ => Err(Fault::WrongKey),
        };
    }
    match bearer(headers) {
        Some(token) if mock.issued.accepts(token) => Ok(()),
        Some(_) => Err(Fault::WrongKey),
        None => Err(Fault::MissingKey),
    }
}

async fn answer(mock: Arc<Mock>, op: Op, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(fault) = check_azure_credential(&mock, &headers) {
        mock.counters.bump(&mock.counters.unauthorized);
        return error::render(&fault);
    }
    mock.counters.bump(&mock.counters.azure_requests);
    let state = State(mock);
    match op {
        Op::Chat => openai::chat::handle(state, headers, body).await,
        Op::Completions => openai::completions::handle(state, headers, body).await,
        Op::Embeddings => openai::embeddings::handle(state, headers, body).await,
        Op::Responses => openai::responses::create(state, headers, body).await,
    }
}

/// 400 unless a dated `api-version` is given.
fn check_version(query: &HashMap<String, String>) -> Result<(), Fault> {
    match query.get("api-version") {
        Some(v) if !v.is_empty() => Ok(()),
        _ => Err(Fault::BadRequest {
            message: "Missing required query parameter: api-version".into(),
            param: Some("api-version".into()),
        }),
    }
}

/// `POST /openai/deployments/{deployment}/...`: the deployment is the model.
pub(crate) async fn deployment(
    op: Op,
    State(mock): State<Arc<Mock>>,
    Path(deployment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(fault) = check_version(&query) {
        return error::render(&fault);
    }
    // The body's `model` is the deployment's; a body that is not an object
    // goes on as it is, for the handler to refuse.
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut object)) => {
            object.insert("model".into(), Value::String(deployment));
            Bytes::from(Value::Object(object).to_string())
        }
        _ => body,
    };
    answer(mock, op, headers, body).await
}

/// `POST /openai/responses?api-version=...`.
pub(crate) async fn dated_responses(
    State(mock): State<Arc<Mock>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(fault) = check_version(&query) {
        return error::render(&fault);
    }
    answer(mock, Op::Responses, headers, body).await
}

/// `POST /openai/v1/...`.
pub(crate) async fn v1(
    op: Op,
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(mock, op, headers, body).await
}

/// `GET` / `DELETE` of a stored response under `/openai` (dated or v1),
/// with the credential checked as Azure does.
pub(crate) async fn stored(
    State(mock): State<Arc<Mock>>,
    method: axum::http::Method,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(fault) = check_azure_credential(&mock, &headers) {
        mock.counters.bump(&mock.counters.unauthorized);
        return error::render(&fault);
    }
    mock.counters.bump(&mock.counters.azure_requests);
    if method == axum::http::Method::DELETE {
        openai::responses::delete(State(mock), Path(id)).await
    } else {
        openai::responses::get(State(mock), Path(id)).await
    }
}
