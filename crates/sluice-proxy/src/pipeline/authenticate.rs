//! Phase 1, authenticate: the virtual key, against this node's copy of the
//! replicated state: `Authorization: Bearer <key>` (OpenAI clients) or `x-api-key:
//! <key>` (Anthropic clients). Keys are looked up by their SHA-256, the only
//! form the cluster stores; a key revoked, disabled or expired is refused on
//! a node as soon as that node has applied the change.
//!
//! Or, when the node trusts JWT issuers, a token of one of them in the same
//! headers (see [`crate::jwt`]): its subject stands for a key of its own,
//! made through the Raft log on the subject's first request, with the
//! routes and quotas of the key template its claims select. From there on
//! the request is that key's, exactly as with a virtual key.

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::HeaderMap;
use sluice_core::key::KeyRefusal;
use sluice_core::secret::hash_secret;
use sluice_core::{State, VirtualKey};

use crate::error::ProxyError;
use crate::jwt::looks_like_jwt;
use crate::worker::Worker;
use crate::RegisterError;

/// How long a client is told to wait when a subject's key cannot be made.
const REGISTER_RETRY_AFTER: Duration = Duration::from_secs(1);

/// If the request presents a JWT (the node trusts issuers and the
/// credential has a JWT's shape): the id of the key its subject stands
/// for, made if this is the subject's first request (or its template
/// changed), `state` then being this node's state with it applied. `None`
/// for any other credential, which [`key`] looks up as a virtual key,
/// unless the node takes tokens only (`accept_virtual_keys = false`):
/// then it is refused here.
pub(crate) async fn jwt_subject(
    worker: &Worker,
    state: &mut Arc<State>,
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<Option<String>, ProxyError> {
    let Some(jwt) = &worker.jwt else {
        return Ok(None);
    };
    let Some(token) = presented(headers).filter(|token| looks_like_jwt(token)) else {
        if !worker.config.accept_virtual_keys {
            return Err(ProxyError::unauthenticated(
                "This gateway accepts only bearer tokens (JWTs) of its identity providers, not API keys.",
            ));
        }
        return Ok(None);
    };
    let subject = jwt.verify(worker.default_client(), token, now_ms).await?;
    let id = subject.key_id();
    let current = state
        .key(&id)
        .and_then(|k| k.subject.as_ref())
        .is_some_and(|s| s.template == subject.template);
    if !current {
        let Some(registry) = &worker.subjects else {
            return Err(ProxyError::auth_unavailable(
                "This gateway cannot make keys for new token subjects.".into(),
                REGISTER_RETRY_AFTER,
            ));
        };
        match registry.register(subject).await {
            Ok(()) => *state = worker.state.state(),
            Err(RegisterError::Unavailable(why)) => {
                return Err(ProxyError::auth_unavailable(
                    format!("The key of this token's subject cannot be made now: {why}"),
                    REGISTER_RETRY_AFTER,
                ))
            }
            Err(RegisterError::Refused(why)) => {
                return Err(ProxyError::unauthenticated(format!(
                    "The bearer token was refused: its subject's key cannot be made: {why}."
                )))
            }
        }
    }
    Ok(Some(id))
}

/// The subject key `id` (as [`jwt_subject`] made it), if it and its
/// template may be used at `now_ms`.
fn subject_key<'s>(state: &'s State, id: &str, now_ms: u64) -> Result<&'s VirtualKey, ProxyError> {
    let key = state.key(id).ok_or_else(|| {
        ProxyError::unauthenticated("The bearer token's subject has no key on this node.")
    })?;
    let template = key
        .subject
        .as_ref()
        .and_then(|s| state.key(&s.template))
        .ok_or_else(|| {
            ProxyError::unauthenticated("The key template of the bearer token's subject is gone.")
        })?;
    key.check_usable(now_ms)
        .map_err(|refusal| refusal_error(refusal, "This token's subject"))?;
    template
        .check_usable(now_ms)
        .map_err(|refusal| refusal_error(refusal, "The key template of this token's subject"))?;
    Ok(key)
}

/// The 401 for a key refused because `refusal`; `whose` names it.
fn refusal_error(refusal: KeyRefusal, whose: &str) -> ProxyError {
    ProxyError::unauthenticated(match refusal {
        KeyRefusal::Revoked => format!("{whose} has been revoked."),
        KeyRefusal::Disabled => format!("{whose} is disabled."),
        KeyRefusal::Expired => format!("{whose} has expired."),
    })
}

/// The key the client presented, if any.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The usable key of the request at `now_ms`, or the 401 to answer: the
/// subject key `subject` (from [`jwt_subject`]), or else the virtual key
/// the request presents.
pub(crate) fn key<'s>(
    state: &'s State,
    headers: &HeaderMap,
    subject: Option<&str>,
    now_ms: u64,
) -> Result<&'s VirtualKey, ProxyError> {
    if let Some(id) = subject {
        return subject_key(state, id, now_ms);
    }
    let Some(secret) = presented(headers) else {
        return Err(ProxyError::unauthenticated(
            "You didn't provide an API key. Provide it in an `Authorization: Bearer <key>` or an `x-api-key: <key>` header.",
        ));
    };
    let Some(key) = state.key_by_hash(&hash_secret(secret)) else {
        return Err(ProxyError::unauthenticated(format!(
            "Incorrect API key provided: {}.",
            masked(secret)
        )));
    };
    key.check_usable(now_ms)
        .map_err(|refusal| refusal_error(refusal, "This API key"))?;
    Ok(key)
}

/// A presented secret as OpenAI shows it back: the first few and the last
/// four characters.
fn masked(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len().min(8));
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_and_x_api_key_are_both_read() {
        assert_eq!(
            presented(&headers("authorization", "Bearer sk-1")),
            Some("sk-1")
        );
        assert_eq!(
            presented(&headers("authorization", "bearer  sk-1 ")),
            Some("sk-1")
        );
        assert_eq!(presented(&headers("x-api-key", "sk-2")), Some("sk-2"));
        assert_eq!(presented(&headers("authorization", "Basic abc")), None);
        assert_eq!(presented(&headers("authorization", "Bearer ")), None);
        assert_eq!(presented(&HeaderMap::new()), None);
    }

    #[test]
    fn secrets_are_masked_in_errors() {
        let m = masked("sk-sluice-0123456789abcdefWXYZ");
        assert_eq!(m, "sk-sluic***WXYZ");
        assert_eq!(masked("short"), "*****");
    }

    #[test]
    fn unknown_keys_are_refused_without_echoing_them() {
        let state = State::default();
        let err = key(
            &state,
            &headers("authorization", "Bearer sk-sluice-nope-nope-nope-1234"),
            None,
            0,
        )
        .unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(!err.message().contains("nope-nope"));
    }
}
