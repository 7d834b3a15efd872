//! Google Cloud: the OAuth token endpoint of one service account
//! (`POST /token`, the JWT bearer grant: its RS256 signature verified with
//! the account's public key, its claims checked), and Vertex AI's
//! `.../publishers/google/models/{model}:generateContent` paths, which
//! take only the tokens it issued and answer as the Gemini API does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use crate::call::bearer;
use crate::config::MockGoogle;
use crate::gemini;
use crate::server::Mock;

/// Why an assertion is refused: Google's `error_description`.
fn check_assertion(google: &MockGoogle, assertion: &str) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("Invalid JWT: not three parts.".into());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = b64.decode(part).map_err(|_| "Invalid JWT: bad base64.")?;
        serde_json::from_slice(&bytes).map_err(|_| "Invalid JWT: not JSON.".into())
    };
    let (header, claims) = (decode(header)?, decode(claims)?);
    if header["alg"] != "RS256" {
        return Err(format!("Invalid JWT: alg {} is not RS256.", header["alg"]));
    }
    let signature = b64
        .decode(signature)
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    let signed = &assertion[..assertion.rfind('.').unwrap_or(0)];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &google.public_key_der)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let number = |name: &str| claims[name].as_u64().unwrap_or(0);
    if claims["iss"] != google.client_email.as_str() {
        return Err(format!(
            "Invalid JWT: iss {} is not the account.",
            claims["iss"]
        ));
    }
    if !claims["aud"]
        .as_str()
        .is_some_and(|a| a.ends_with("/token"))
    {
        return Err("Invalid JWT: aud is not the token endpoint.".into());
    }
    if !claims["scope"].as_str().is_some_and(|s| {
        s.split(' ')
            .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
    }) {
        return Err("Invalid OAuth scope or ID token audience provided.".into());
    }
    let (iat, exp) = (number("iat"), number("exp"));
    if iat > now + 60 || exp <= now || exp.saturating_sub(iat) > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".into());
    }
    Ok(())
}

/// `POST /token`.
pub(crate) async fn token(
    State(mock): State<Arc<Mock>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let refuse = |error: &str, description: String| {
        mock.counters.bump(&mock.counters.token_refusals);
        let body = json!({"error": error, "error_description": description});
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    let Some(google) = &mock.config.google else {
        return refuse(
            "invalid_client",
            "this mock knows no service account".into(),
        );
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse("unsupported_grant_type", "Invalid grant_type.".into());
    }
    let assertion = form.get("assertion").map(String::as_str).unwrap_or("");
    if let Err(description) = check_assertion(google, assertion) {
        return refuse("invalid_grant", description);
    }
    let token = mock
        .issued
        .issue("mock-google", Duration::from_secs(google.token_ttl_s));
    mock.counters.bump(&mock.counters.tokens_issued);
    Json(json!({"access_token": token, "expires_in": google.token_ttl_s, "token_type": "Bearer"}))
        .into_response()
}

/// `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{target}`.
pub(crate) async fn vertex(
    State(mock): State<Arc<Mock>>,
    Path((_project, _location, target)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !bearer(&headers).is_some_and(|t| mock.issued.accepts(t)) {
        mock.counters.bump(&mock.counters.unauthorized);
        let body = json!({"error": {
            "code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            "status": "UNAUTHENTICATED",
        }});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    headers.remove("authorization");
    mock.counters.bump(&mock.counters.vertex_requests);
    gemini::serve(&mock, &target, &query, headers, &body).await
}
