//! [`UpstreamAnswer`]: an upstream's answer with an error status, as the
//! proxy keeps it to pass on.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use sluice_providers::{anthropic, bedrock, gemini, openai, Dialect};

use super::Fault;

/// Upstream headers passed on with an upstream error: what tells a client
/// when to retry.
pub(super) const RETRY_HEADERS: [&str; 3] = ["retry-after", "retry-after-ms", "x-should-retry"];

/// An upstream's answer with an error status.
#[derive(Debug)]
pub struct UpstreamAnswer {
    pub status: StatusCode,
    /// Its headers that say when to retry ([`RETRY_HEADERS`]), no others.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The API the upstream speaks.
    pub dialect: Dialect,
    /// A 404 for a response the client named (see
    /// [`UpstreamAnswer::names_a_missing_response`]), read once from the
    /// body.
    missing_response: bool,
}

impl UpstreamAnswer {
    /// The answer of an upstream speaking `dialect`, keeping only the
    /// headers that say when to retry.
    pub fn new(status: StatusCode, headers: &HeaderMap, body: Bytes, dialect: Dialect) -> Self {
        let mut kept = HeaderMap::new();
        for name in RETRY_HEADERS {
            if let Some(value) = headers.get(name) {
                kept.insert(name, value.clone());
            }
        }
        let missing_response = status == StatusCode::NOT_FOUND && names_a_response(&body);
        Self {
            status,
            headers: kept,
            body,
            dialect,
            missing_response,
        }
    }

    /// The status the client gets: an upstream 401/403/404 is the
    /// gateway's misconfiguration (its credentials, its model name), not
    /// the client's, so 502.
    pub fn status_out(&self) -> StatusCode {
        match self.status.as_u16() {
            404 if self.names_a_missing_response() => self.status,
            401 | 403 | 404 => StatusCode::BAD_GATEWAY,
            _ => self.status,
        }
    }

    /// A 404 for a response the client named (`previous_response_id`, or
    /// a stored response it asked for): the client's fault, passed on.
    pub fn names_a_missing_response(&self) -> bool {
        self.missing_response
    }

    /// Whose fault: the client's request (a 4xx passed on as is), the
    /// gateway's configuration (401/403/404), or the upstream's (429, 5xx).
    pub fn fault(&self) -> Fault {
        if self.names_a_missing_response() {
            return Fault::Client;
        }
        match self.status.as_u16() {
            401 | 403 | 404 => Fault::Gateway,
            408 | 429 => Fault::Upstream,
            _ if self.status.is_server_error() => Fault::Upstream,
            _ => Fault::Client,
        }
    }

    /// The message of its body, in either API's format.
    pub fn message(&self) -> Option<String> {
        self.message_in(Dialect::OpenAi)
            .or_else(|| self.message_in(Dialect::Anthropic))
            .or_else(|| {
                // Gemini's: `{"error": {"code", "message", "status"}}`.
                serde_json::from_slice::<gemini::ErrorBody>(&self.body)
                    .ok()
                    .map(|e| e.error.message)
                    .filter(|m| !m.is_empty())
            })
            .or_else(|| {
                // Bedrock's: `{"message": "..."}`.
                serde_json::from_slice::<bedrock::ErrorBody>(&self.body)
                    .ok()
                    .map(|e| e.message)
                    .filter(|m| !m.is_empty())
            })
    }

    /// The message of an error body in `dialect`'s own shape.
    fn message_in(&self, dialect: Dialect) -> Option<String> {
        match dialect {
            Dialect::OpenAi => serde_json::from_slice::<openai::ErrorBody>(&self.body)
                .ok()
                .map(|e| e.error.message),
            Dialect::Anthropic => serde_json::from_slice::<anthropic::ErrorBody>(&self.body)
                .ok()
                .map(|e| e.error.message),
        }
    }

    /// Whether its body goes to a `dialect` client as sent: the upstream
    /// speaks the client's API, the status is unchanged, and the body is
    /// an error in that API's shape (not another's, such as Gemini's).
    pub(super) fn passes_through(&self, dialect: Dialect) -> bool {
        self.dialect == dialect
            && self.status_out() == self.status
            && self.message_in(dialect).is_some()
    }

    /// The wait the upstream asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

/// The wait `headers` ask for, from `retry-after-ms` or `Retry-After`
/// (seconds; an HTTP date is ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if let Some(ms) = read("retry-after-ms").filter(|v| v.is_finite() && *v >= 0.0) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    read("retry-after")
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Whether an error body names a response of the Responses API: its
/// `param` is `previous_response_id`, or its code says the previous
/// response was not found.
fn names_a_response(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        #[serde(default)]
        param: Option<String>,
        #[serde(default)]
        code: Option<String>,
    }
    serde_json::from_slice::<Body>(body).is_ok_and(|b| {
        b.error.param.as_deref() == Some("previous_response_id")
            || b.error.code.as_deref() == Some("previous_response_not_found")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        h.insert("retry-after-ms", HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }
}
