//! The request's identity and its `tracing` spans.
//!
//! Every answer carries an `x-request-id`: the client's own when it sent a
//! sane one (1 to [`MAX_REQUEST_ID`] visible ASCII characters), else one
//! made here (`req_` and 32 hex digits). The same id is the `request_id`
//! field of the request's span, so a client's complaint, the node's logs and
//! an exported trace meet on one string.
//!
//! Spans, all at DEBUG: `request` (`request_id`, `method`, `path`,
//! `endpoint`, `route`, `deployment`, `status`, `stream_end`), and below it
//! `admission` (the quota decision), `upstream_attempt` (one call to a
//! deployment: `provider`, `model`) and `relay` (a stream on its way to the
//! client). DEBUG, so that at the usual log level a request creates no span
//! at all unless traces are exported (the exporter's filter enables them).
//! Span fields never hold a key, a header's value other than the request
//! id, or any part of a body.

use http::{HeaderMap, HeaderValue, Request};
use sluice_core::{Deployment, Provider};
use tracing::Span;

/// Longest client-sent `x-request-id` that is kept.
pub const MAX_REQUEST_ID: usize = 128;

/// The request's id: the client's `x-request-id` if sane, else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get("x-request-id") {
        Some(id) if is_sane(id.as_bytes()) => id.clone(),
        _ => generated(rand::random::<u128>()),
    }
}

/// 1 to [`MAX_REQUEST_ID`] bytes, each visible ASCII (no space, no control).
fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

/// `req_` and 32 hex digits (hand-rolled: `format!` showed in profiles).
fn generated(random: u128) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = *b"req_00000000000000000000000000000000";
    for (i, digit) in id[4..].iter_mut().enumerate() {
        *digit = HEX[((random >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).expect("ASCII hex is a valid header value")
}

/// The span of one request; the fields left empty are recorded as the
/// request goes.
pub fn request_span<B>(request: &Request<B>, id: &HeaderValue) -> Span {
    tracing::debug_span!(
        "request",
        // Sane by construction: visible ASCII.
        request_id = id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = request.uri().path(),
        endpoint = tracing::field::Empty,
        route = tracing::field::Empty,
        deployment = tracing::field::Empty,
        status = tracing::field::Empty,
        stream_end = tracing::field::Empty,
        otel.kind = "server",
    )
}

/// The span of one upstream call.
pub(crate) fn attempt_span(provider: &Provider, deployment: &Deployment) -> Span {
    tracing::debug_span!(
        "upstream_attempt",
        provider = provider.name.as_str(),
        model = deployment.model.as_str(),
        otel.kind = "client",
    )
}

/// The span of a request's quota decision.
pub(crate) fn admission_span() -> Span {
    tracing::debug_span!("admission")
}

/// The span of a stream relayed to the client, below the request's.
pub(crate) fn relay_span(request: &Span) -> Span {
    tracing::debug_span!(parent: request, "relay")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_ids_are_prefixed_hex() {
        assert_eq!(
            generated(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            "req_0123456789abcdef0011223344556677"
        );
        assert_eq!(generated(0), "req_00000000000000000000000000000000");
    }

    #[test]
    fn a_sane_client_id_is_kept_and_others_are_replaced() {
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-request-id",
                HeaderValue::from_bytes(value).expect("valid header"),
            );
            request_id(&headers)
        };
        assert_eq!(with(b"client-42/abc"), "client-42/abc");
        for bad in [
            &b"has space"[..],
            b"tab\there",
            &[b'a'; MAX_REQUEST_ID + 1],
            b"\xff",
        ] {
            let id = with(bad);
            assert!(id.as_bytes().starts_with(b"req_"), "{bad:?} gave {id:?}");
        }
        assert_eq!(with(&[b'a'; MAX_REQUEST_ID]).len(), MAX_REQUEST_ID);
        assert!(request_id(&HeaderMap::new())
            .as_bytes()
            .starts_with(b"req_"));
    }

    proptest! {
        #[test]
        fn every_id_answered_is_bounded_visible_ascii(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                headers.insert("x-request-id", v);
            }
            let id = request_id(&headers);
            prop_assert!(is_sane(id.as_bytes()));
        }
    }
}
