//! Errors in the client's own API format, with the status the real API
//! would send.
//!
//! OpenAI: `{"error": {"message", "type", "param", "code"}}`.
//! Anthropic (on `/v1/messages`): `{"type": "error", "error": {"type",
//! "message"}}` with its types (`invalid_request_error`,
//! `authentication_error`, `permission_error`, `not_found_error`,
//! `request_too_large`, `rate_limit_error`, `api_error`, `overloaded_error`).
//!
//! Wherever a client should retry, both `Retry-After` (seconds) and
//! `retry-after-ms` are sent: the official SDKs read the latter first.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use sluice_providers::Dialect;

use crate::body::ProxyBody;

/// One error answer, rendered per dialect by [`ApiError::into_response`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault (OpenAI's `param`).
    pub param: Option<String>,
    /// OpenAI's `code` (`invalid_api_key`, `model_not_found` …).
    pub code: Option<&'static str>,
    /// When the client may retry; sent as `Retry-After` and `retry-after-ms`.
    pub retry_after: Option<Duration>,
    /// OpenAI's `type` when it is not the status's usual one (a rate limit
    /// is `requests` or `tokens`, a spent budget `insufficient_quota`).
    pub openai_type: Option<&'static str>,
    /// `x-should-retry: false`: the official SDKs would otherwise retry a
    /// 429 that waiting cannot fix.
    pub no_retry: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            openai_type: None,
            no_retry: false,
        }
    }

    pub fn openai_type(mut self, kind: &'static str) -> Self {
        self.openai_type = Some(kind);
        self
    }

    pub fn no_retry(mut self) -> Self {
        self.no_retry = true;
        self
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: Option<String>) -> Self {
        self.param = param;
        self
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// 400 for a body that is not what the endpoint takes.
    pub fn bad_request(message: impl Into<String>, param: Option<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message).param(param)
    }

    /// 401: no key, or one that is unknown, revoked, disabled or expired.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message).code("invalid_api_key")
    }

    /// 404 for a `model` no route answers to.
    pub fn unknown_model(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .param(Some("model".into()))
        .code("model_not_found")
    }

    /// 403 for a route the key may not use.
    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            format!("This API key is not allowed to use the model `{model}`."),
        )
        .param(Some("model".into()))
        .code("model_not_allowed")
    }

    /// 404 for a path the proxy does not serve.
    pub fn unknown_url(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Unknown request URL: {method} {path}. Please check the URL for typos."),
        )
        .code("unknown_url")
    }

    /// 413 for a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than the limit of {limit} bytes."),
        )
        .code("request_too_large")
    }

    /// The error `type` in `dialect` for this status.
    pub fn kind(&self, dialect: Dialect) -> &'static str {
        match (dialect, self.openai_type) {
            (Dialect::OpenAi, Some(kind)) => kind,
            _ => kind_for(self.status, dialect),
        }
    }

    /// The JSON body in `dialect`'s format.
    pub fn body(&self, dialect: Dialect) -> Bytes {
        let kind = self.kind(dialect);
        let value = match dialect {
            Dialect::OpenAi => serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": kind,
                    "param": self.param,
                    "code": self.code,
                }
            }),
            Dialect::Anthropic => serde_json::json!({
                "type": "error",
                "error": {"type": kind, "message": self.message},
            }),
        };
        Bytes::from(value.to_string())
    }

    /// The whole response in `dialect`'s format.
    pub fn into_response(self, dialect: Dialect) -> http::Response<ProxyBody> {
        let body = self.body(dialect);
        let mut response = http::Response::new(ProxyBody::full(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after {
            set_retry_after(headers, after);
        }
        if self.no_retry {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

/// Sets `Retry-After` (whole seconds, rounded up) and `retry-after-ms`.
pub fn set_retry_after(headers: &mut HeaderMap, after: Duration) {
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
mod tests {
    use super::*;

    #[test]
    fn openai_format_has_all_four_fields() {
        let body = ApiError::unknown_model("gpt-x").body(Dialect::OpenAi);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("gpt-x"));
    }

    #[test]
    fn anthropic_format_uses_its_types() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
        ] {
            let e = ApiError::new(StatusCode::from_u16(status).unwrap(), "m");
            let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::Anthropic)).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "status {status}");
        }
    }

    #[test]
    fn retry_after_is_sent_in_both_forms() {
        let response = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "later")
            .retry_after(Duration::from_millis(1500))
            .into_response(Dialect::OpenAi);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert_eq!(response.headers()["retry-after-ms"], "1500");
    }
}
