//! `Idempotency-Key`: safe retries of admin writes.
//!
//! Any write (`POST`, `PUT`, `PATCH`, `DELETE`) may carry the header. The
//! `fingerprint` middleware checks its form, hashes the request (method,
//! path with query, body) and hands handlers an [`Idempotency`]; each write
//! the handler then makes through [`crate::AdminContext::write`] is proposed
//! as `Command::Idempotent` with that key, the request's hash and its step
//! (the handler's first write is step 0, the next step 1, …). The state
//! machine applies each step once per key and answers every later sending
//! of it with what the first application produced (see
//! `sluice_core::idempotency`), so a client that got a 503, a 504 or no
//! answer at all sends the same request again, to any node, and gets the
//! result of the one application. A response built from recorded results
//! carries `Idempotent-Replayed: true`.
//!
//! The same key with a different request is refused with a 422 naming the
//! header. Cluster membership operations accept the header but keep no
//! record (they are not state-machine commands): adding a learner that is
//! already one, promoting a voter or transferring leadership to the leader
//! succeed without change when sent again.

use crate::error::{ApiError, ErrorKind};
use crate::extract::{body_deadline, read_whole};
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::{request::Parts, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use sluice_core::audit::Actor;
use sluice_core::idempotency::{check_key, MAX_KEY_LEN};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// The request header that carries the key.
pub const HEADER: &str = "Idempotency-Key";
/// The response header set on an answer made from recorded results.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// The key of one request, shared by the middleware and the handler.
#[derive(Debug)]
pub struct RequestKey {
    key: String,
    fingerprint: [u8; 32],
    next_step: AtomicU32,
    replayed: AtomicBool,
}

impl RequestKey {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The step number of the handler's next write.
    pub(crate) fn next_step(&self) -> u32 {
        self.next_step.fetch_add(1, Ordering::Relaxed)
    }

    /// Notes that a write was answered from its record.
    pub(crate) fn mark_replayed(&self) {
        self.replayed.store(true, Ordering::Relaxed);
    }
}

/// What a write handler is told about its request, for the proposals it
/// makes: its key (`None` without the header) and who sent it (the admin
/// token the request was authenticated with, for the audit log).
#[derive(Debug, Clone, Default)]
pub struct Idempotency {
    key: Option<Arc<RequestKey>>,
    actor: Option<Actor>,
}

impl Idempotency {
    /// No key and no actor: every write is proposed as it is, unaudited
    /// (a node's own writes).
    pub fn none() -> Self {
        Idempotency::default()
    }

    pub fn key(&self) -> Option<&Arc<RequestKey>> {
        self.key.as_ref()
    }

    /// Who sent the request.
    pub fn actor(&self) -> Option<&Actor> {
        self.actor.as_ref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let actor = parts.extensions.get::<Actor>().cloned();
        match parts.extensions.get::<Arc<RequestKey>>() {
            Some(key) => Ok(Idempotency {
                key: Some(key.clone()),
                actor,
            }),
            // A key the middleware did not see would be silently ignored.
            None if parts.headers.contains_key(HEADER) => Err(ApiError::internal(
                "this endpoint does not read the Idempotency-Key header",
            )),
            None => Ok(Idempotency { key: None, actor }),
        }
    }
}

/// Middleware: for a write with an `Idempotency-Key`, checks the key and
/// hashes the request; marks a response made from recorded results.
pub(crate) async fn fingerprint(request: Request, next: Next) -> Result<Response, ApiError> {
    let is_write = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let Some(value) = request.headers().get(HEADER).filter(|_| is_write) else {
        return Ok(next.run(request).await);
    };
    let key = parse_key(value)?;
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    // The body is read whole here (under the largest limit of any route)
    // and handed on as it was; the route's own limit still applies when the
    // handler reads it.
    let limit = crate::backup::BACKUP_LIMIT_BYTES;
    let bytes = read_whole(body, limit, body_deadline(limit)).await?;
    let request_key = Arc::new(RequestKey {
        key,
        fingerprint: request_hash(&method, &target, &bytes),
        next_step: AtomicU32::new(0),
        replayed: AtomicBool::new(false),
    });
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(request_key.clone());
    let mut response = next.run(request).await;
    if request_key.replayed.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The header's value, checked: 1-255 printable ASCII characters.
fn parse_key(value: &HeaderValue) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::validation(
            HEADER,
            format!("must be 1-{MAX_KEY_LEN} printable ASCII characters (a UUID is a good key)"),
        )
    };
    let key = value.to_str().map_err(|_| invalid())?;
    check_key(key).map_err(|_| invalid())?;
    Ok(key.to_string())
}

/// SHA-256 of what makes two requests the same request.
fn request_hash(method: &Method, target: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [method.as_str().as_bytes(), target.as_bytes(), body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// The 504 of a write that the cluster did not confirm in time, saying
/// what the client can do about it.
pub(crate) fn unconfirmed(keyed: bool, cause: &str) -> ApiError {
    let advice = if keyed {
        "send the same request again with the same Idempotency-Key, to any node: \
         it is applied at most once and the retry answers its result"
    } else {
        "the write may or may not have been applied; send writes with an \
         Idempotency-Key header to retry them safely"
    };
    ApiError::new(ErrorKind::Timeout, format!("timed out: {cause}; {advice}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_printable_ascii_of_bounded_length() {
        let ok = |v: &str| parse_key(&HeaderValue::from_str(v).unwrap());
        assert_eq!(
            ok("0b6f1c2e-6f6c-4b8e-9d54-3f1d2c1e9a77").unwrap(),
            "0b6f1c2e-6f6c-4b8e-9d54-3f1d2c1e9a77"
        );
        for bad in ["", "tab\there", &"k".repeat(MAX_KEY_LEN + 1)] {
            let err = ok(bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(HEADER), "{bad:?}");
        }
        let non_ascii = HeaderValue::from_bytes("clé".as_bytes()).unwrap();
        assert!(parse_key(&non_ascii).is_err());
    }

    #[test]
    fn the_hash_tells_method_target_and_body_apart() {
        let base = request_hash(&Method::POST, "/admin/v1/keys", b"{}");
        assert_eq!(base, request_hash(&Method::POST, "/admin/v1/keys", b"{}"));
        assert_ne!(base, request_hash(&Method::PUT, "/admin/v1/keys", b"{}"));
        assert_ne!(base, request_hash(&Method::POST, "/admin/v1/keys?x", b"{}"));
        assert_ne!(base, request_hash(&Method::POST, "/admin/v1/keys", b"{ }"));
        // Lengths are part of the hash: no shifting bytes between parts.
        assert_ne!(
            request_hash(&Method::POST, "/a", b"b"),
            request_hash(&Method::POST, "/ab", b"")
        );
    }
}
