//! Every error answer the proxy sends is built here: the status, the body
//! in the client's API, the retry headers and the connection policy.
//!
//! OpenAI: `{"error": {"message", "type", "param", "code"}}`.
//! Anthropic (on `/v1/messages`): `{"type": "error", "error": {"type",
//! "message"}}` with its types (`invalid_request_error`,
//! `authentication_error`, `permission_error`, `not_found_error`,
//! `request_too_large`, `rate_limit_error`, `api_error`,
//! `overloaded_error`).
//!
//! Wherever a client should retry, both `Retry-After` (seconds) and
//! `retry-after-ms` are sent: the official SDKs read the latter first.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use sluice_providers::Dialect;

use super::upstream::retry_after;
use super::{Connection, ProxyError, Retry};
use crate::body::ProxyBody;

/// `error`'s answer to a `dialect` client whose request came over
/// `version`.
pub(crate) fn respond(
    error: ProxyError,
    dialect: Dialect,
    version: Version,
) -> Response<ProxyBody> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = match error.upstream.as_deref() {
        Some(answer) => {
            for (name, value) in &answer.headers {
                headers.insert(name, value.clone());
            }
            if answer.passes_through(dialect) {
                answer.body.clone()
            } else {
                body(&error, dialect)
            }
        }
        None => body(&error, dialect),
    };
    match error.retry {
        Retry::Futile => {}
        Retry::After(after) => {
            // An upstream's own word on when to retry stands.
            if retry_after(&headers).is_none() {
                set_retry_after(&mut headers, after);
            }
        }
        Retry::Never { renews_in } => {
            if let Some(after) = renews_in {
                set_retry_after(&mut headers, after);
            }
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
    }
    if error.connection == Connection::BodyUnread && version < Version::HTTP_2 {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = error.status;
    *response.headers_mut() = headers;
    response
}

/// The JSON body of `error` in `dialect`'s format.
fn body(error: &ProxyError, dialect: Dialect) -> Bytes {
    let kind = match (dialect, error.openai_type) {
        (Dialect::OpenAi, Some(kind)) => kind,
        _ => kind_for(error.status, dialect),
    };
    let value = match dialect {
        Dialect::OpenAi => serde_json::json!({
            "error": {
                "message": error.message,
                "type": kind,
                "param": error.param,
                "code": error.kind.code(),
            }
        }),
        Dialect::Anthropic => serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": error.message},
        }),
    };
    Bytes::from(value.to_string())
}

/// Sets `Retry-After` (whole seconds, rounded up) and `retry-after-ms`.
fn set_retry_after(headers: &mut HeaderMap, after: Duration) {
    let millis = after.as_millis().max(1);
    let seconds = millis.div_ceil(1000);
    headers.insert(RETRY_AFTER, HeaderValue::from(seconds as u64));
    headers.insert("retry-after-ms", HeaderValue::from(millis as u64));
}

/// The error `type` each API uses for a status.
pub fn kind_for(status: StatusCode, dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => match status.as_u16() {
            429 => "rate_limit_exceeded",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        },
        Dialect::Anthropic => match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        },
    }
}

#[cfg(test)]
mod tests;
