//! Pacing and failure injection.
//!
//! A [`Behavior`] is set for the whole instance (at start through
//! [`MockConfig::behavior`](crate::MockConfig::behavior), at run time through
//! [`MockHandle::set_behavior`](crate::MockHandle::set_behavior) or
//! `PUT /_mock/behavior` with the same fields as JSON). Each request may
//! override any field with a header; a header wins over the instance value:
//!
//! | header | field | effect |
//! |---|---|---|
//! | `x-mock-header-delay-ms` | `header_delay_ms` | wait before sending the response headers (every response, errors included) |
//! | `x-mock-first-byte-ms` | `first_byte_ms` | wait after the headers, before the first body byte |
//! | `x-mock-chunk-ms` | `chunk_ms` | wait between two stream events |
//! | `x-mock-status` | `fail_status` | answer with this status and an error body in the API's shape (`0` = no failure) |
//! | `x-mock-retry-after-ms` | `retry_after_ms` | `retry-after` / `retry-after-ms` sent with an injected 429 or 503 |
//! | `x-mock-drop-after-chunks` | `drop_after_chunks` | abort the body after N stream events (a non-streaming body is cut halfway) |
//!
//! A header that does not parse as an unsigned integer is refused with 400.

use std::time::Duration;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::fault::Fault;

/// Instance-wide pacing and failure injection. The default is a fast,
/// healthy upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// Delay before the response headers are sent (a slow upstream).
    pub header_delay_ms: u64,
    /// Delay between the headers and the first body byte.
    pub first_byte_ms: u64,
    /// Delay between two stream events.
    pub chunk_ms: u64,
    /// Answer every API request with this status (and an error body).
    pub fail_status: Option<u16>,
    /// Back-off advertised with an injected 429 or 503; 1000 when unset.
    pub retry_after_ms: Option<u64>,
    /// Abort the response body after this many stream events, so the client
    /// sees a truncated body rather than a clean end.
    pub drop_after_chunks: Option<u32>,
}

/// The behaviour in force for one request: the instance value with the
/// request's header overrides applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub header_delay: Duration,
    pub first_byte: Duration,
    pub chunk: Duration,
    pub fail_status: Option<u16>,
    pub retry_after_ms: u64,
    pub drop_after_chunks: Option<u32>,
}

impl Behavior {
    /// Resolves the plan for one request, header overrides first.
    pub(crate) fn plan(&self, headers: &HeaderMap) -> Result<Plan, Fault> {
        let header_delay_ms =
            header(headers, "x-mock-header-delay-ms")?.unwrap_or(self.header_delay_ms);
        let first_byte_ms = header(headers, "x-mock-first-byte-ms")?.unwrap_or(self.first_byte_ms);
        let chunk_ms = header(headers, "x-mock-chunk-ms")?.unwrap_or(self.chunk_ms);
        let fail_status = match header(headers, "x-mock-status")? {
            Some(0) => None,
            Some(code) => Some(
                u16::try_from(code)
                    .ok()
                    .filter(|c| (100..=999).contains(c))
                    .ok_or_else(|| bad_header("x-mock-status"))?,
            ),
            None => self.fail_status,
        };
        let retry_after_ms = header(headers, "x-mock-retry-after-ms")?
            .or(self.retry_after_ms)
            .unwrap_or(1000);
        let drop_after_chunks = match header(headers, "x-mock-drop-after-chunks")? {
            Some(n) => Some(u32::try_from(n).map_err(|_| bad_header("x-mock-drop-after-chunks"))?),
            None => self.drop_after_chunks,
        };
        Ok(Plan {
            header_delay: Duration::from_millis(header_delay_ms),
            first_byte: Duration::from_millis(first_byte_ms),
            chunk: Duration::from_millis(chunk_ms),
            fail_status,
            retry_after_ms,
            drop_after_chunks,
        })
    }
}

fn header(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, Fault> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| bad_header(name)),
    }
}

fn bad_header(name: &'static str) -> Fault {
    Fault::BadRequest {
        message: format!("header {name} must be an unsigned integer"),
        param: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_override_the_instance_behavior() {
        let instance = Behavior {
            chunk_ms: 5,
            fail_status: Some(503),
            ..Behavior::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-status", "0".parse().unwrap());
        headers.insert("x-mock-first-byte-ms", "200".parse().unwrap());
        let plan = instance.plan(&headers).unwrap();
        assert_eq!(plan.fail_status, None);
        assert_eq!(plan.first_byte, Duration::from_millis(200));
        assert_eq!(plan.chunk, Duration::from_millis(5));
        assert_eq!(plan.retry_after_ms, 1000);
    }

    #[test]
    fn unparsable_header_is_a_bad_request() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-chunk-ms", "fast".parse().unwrap());
        assert!(matches!(
            Behavior::default().plan(&headers),
            Err(Fault::BadRequest { .. })
        ));
    }
}
