//! OAuth 2.0 token answers, as Microsoft Entra ID and Google send them:
//! the token and its lifetime, or why there is none. Pure: the proxy sends
//! the requests ([`crate::entra`], [`crate::google`]) and keeps the tokens.

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

/// The shortest lifetime believed: a token said to live less is refreshed
/// at once on every use.
pub(crate) const MIN_LIFETIME: Duration = Duration::from_secs(1);

/// The longest lifetime believed (Entra ID and Google issue about an hour).
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A token the token endpoint issued.
pub struct IssuedToken {
    pub access_token: String,
    /// How long it is valid from when it was asked for.
    pub lifetime: Duration,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Why no token came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused: its `error` code and description
    /// (they never carry the secret).
    #[error("the token endpoint refused the credentials ({status}): {error}: {description}")]
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    #[error("the token endpoint's answer could not be read ({status}): {reason}")]
    Unreadable { status: u16, reason: String },
    #[error("cannot build the token request: {0}")]
    Request(String),
}

#[derive(Deserialize)]
struct Issued {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    expires_in: ExpiresIn,
}

/// `expires_in`: seconds, as a number or (older endpoints) a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Reads a token endpoint's answer (Entra ID's, Google's: OAuth 2.0's
/// shape).
pub fn parse_token_response(status: StatusCode, body: &[u8]) -> Result<IssuedToken, TokenError> {
    let unreadable = |reason: String| TokenError::Unreadable {
        status: status.as_u16(),
        reason,
    };
    if !status.is_success() {
        let refusal: Refusal = serde_json::from_slice(body)
            .map_err(|_| unreadable(format!("{} bytes that are not its error", body.len())))?;
        // The description's first line: later lines are trace ids.
        let description = refusal
            .error_description
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        return Err(TokenError::Refused {
            status: status.as_u16(),
            error: refusal.error.chars().take(100).collect(),
            description,
        });
    }
    let issued: Issued = serde_json::from_slice(body).map_err(|e| unreadable(e.to_string()))?;
    if let Some(kind) = &issued.token_type {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(unreadable(format!("token type `{kind}`, not Bearer")));
        }
    }
    if issued.access_token.is_empty()
        || issued
            .access_token
            .bytes()
            .any(|b| !(0x21..0x7f).contains(&b))
    {
        return Err(unreadable(
            "an access token that is not a header value".into(),
        ));
    }
    let seconds = match issued.expires_in {
        ExpiresIn::Number(n) => n,
        ExpiresIn::Text(text) => text
            .parse()
            .map_err(|_| unreadable(format!("expires_in `{text}` is not a number")))?,
    };
    Ok(IssuedToken {
        access_token: issued.access_token,
        lifetime: Duration::from_secs(seconds).clamp(MIN_LIFETIME, MAX_LIFETIME),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_issued_token_is_read_with_its_lifetime() {
        let token = parse_token_response(
            StatusCode::OK,
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0.x.y"}"#,
        )
        .unwrap();
        assert_eq!(token.access_token, "eyJ0.x.y");
        assert_eq!(token.lifetime, Duration::from_secs(3599));
        let text = parse_token_response(
            StatusCode::OK,
            br#"{"token_type":"Bearer","expires_in":"60","access_token":"t"}"#,
        )
        .unwrap();
        assert_eq!(text.lifetime, Duration::from_secs(60));
        assert!(!format!("{token:?}").contains("eyJ0"), "{token:?}");
    }

    #[test]
    fn a_refusal_names_the_error_without_its_trace() {
        let err = parse_token_response(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            TokenError::Refused {
                status: 401,
                error: "invalid_client".into(),
                description: "AADSTS7000215: Invalid client secret provided.".into(),
            }
        );
    }

    #[test]
    fn odd_answers_are_unreadable_not_tokens() {
        for (status, body) in [
            (StatusCode::OK, &br#"{"access_token":"t"}"#[..]),
            (
                StatusCode::OK,
                br#"{"token_type":"mac","expires_in":1,"access_token":"t"}"#,
            ),
            (
                StatusCode::OK,
                b"{\"expires_in\":1,\"access_token\":\"a\\nb\"}",
            ),
            (StatusCode::OK, br#"{"expires_in":1,"access_token":""}"#),
            (StatusCode::BAD_GATEWAY, b"<html>"),
        ] {
            assert!(
                matches!(
                    parse_token_response(status, body),
                    Err(TokenError::Unreadable { .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    proptest! {
        /// Any answer is a token or an error, never a panic; a token is a
        /// header value with a bounded lifetime.
        #[test]
        fn any_answer_is_read_safely(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..200)) {
            let status = StatusCode::from_u16(status).unwrap();
            if let Ok(token) = parse_token_response(status, &body) {
                prop_assert!(http::HeaderValue::from_str(&token.access_token).is_ok());
                prop_assert!(token.lifetime >= MIN_LIFETIME && token.lifetime <= MAX_LIFETIME);
            }
        }
    }
}
