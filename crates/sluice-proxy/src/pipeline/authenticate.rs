//! Phase 1, authenticate: the virtual key, against this node's copy of the
//! replicated state: `Authorization: Bearer <key>` (OpenAI clients) or `x-api-key:
//! <key>` (Anthropic clients). Keys are looked up by their SHA-256, the only
//! form the cluster stores; a key revoked, disabled or expired is refused on
//! a node as soon as that node has applied the change.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use sluice_core::key::KeyRefusal;
use sluice_core::secret::hash_secret;
use sluice_core::{State, VirtualKey};

use crate::error::ProxyError;

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

/// The usable key the request presents at `now_ms`, or the 401 to answer.
pub(crate) fn key<'s>(
    state: &'s State,
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<&'s VirtualKey, ProxyError> {
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
    key.check_usable(now_ms).map_err(|refusal| {
        ProxyError::unauthenticated(match refusal {
            KeyRefusal::Revoked => "This API key has been revoked.",
            KeyRefusal::Disabled => "This API key is disabled.",
            KeyRefusal::Expired => "This API key has expired.",
        })
    })?;
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
            0,
        )
        .unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(!err.message().contains("nope-nope"));
    }
}
