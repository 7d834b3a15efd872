//! A Google service account's token request (Vertex AI): a JWT signed
//! with the account's RSA key (RS256), exchanged at its `token_uri` for an
//! access token (OAuth 2.0's JWT bearer grant, RFC 7523). The answer is
//! read by [`crate::oauth`]. Pure: the time and the randomness ring's RSA
//! signing blinds with are passed in.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method};
use ring::rand::SecureRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::json;

use crate::oauth::TokenError;

/// The scope a Vertex AI token is asked for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How long the signed assertion claims to be valid (Google's most).
const ASSERTION_LIFETIME_S: u64 = 3600;

/// A service account key, parsed and its RSA key checked once.
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    key: Arc<RsaKeyPair>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
}

impl ServiceAccount {
    /// Parses a service account key file (the JSON Google issues). The
    /// error says what is wrong, never the key.
    pub fn parse(json: &str) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(json).map_err(|e| {
            // serde's message names the missing field; it never quotes
            // the key (only field names and positions).
            format!("is not a Google service account key file: {e}")
        })?;
        if file.kind != "service_account" {
            return Err(format!(
                "is a `{}` credential, not a `service_account` key",
                file.kind
            ));
        }
        if !(file.token_uri.starts_with("https://") || file.token_uri.starts_with("http://")) {
            return Err("has a `token_uri` that is not an http(s) URL".into());
        }
        let der = pem_body(&file.private_key, "PRIVATE KEY")
            .ok_or("has a `private_key` that is not a PEM `PRIVATE KEY`")?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("has a `private_key` that is not a usable RSA key: {e}"))?;
        Ok(Self {
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            token_uri: file.token_uri,
            key: Arc::new(key),
        })
    }

    /// The signed assertion for a token asked for at `now` (Unix seconds).
    pub fn assertion(&self, now: u64, rng: &dyn SecureRandom) -> Result<String, TokenError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        });
        let signed = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, rng, signed.as_bytes(), &mut signature)
            .map_err(|_| TokenError::Request("cannot sign the assertion".into()))?;
        Ok(format!("{signed}.{}", b64.encode(signature)))
    }

    /// The token request made at `now` (Unix seconds).
    pub fn token_request(
        &self,
        now: u64,
        rng: &dyn SecureRandom,
    ) -> Result<http::Request<Bytes>, TokenError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &self.assertion(now, rng)?)
            .finish();
        http::Request::builder()
            .method(Method::POST)
            .uri(&self.token_uri)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .body(Bytes::from(body))
            .map_err(|e| TokenError::Request(e.to_string()))
    }
}

/// The DER inside a PEM block labelled `label`.
pub fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let text: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    /// A key made for these tests only (`openssl genpkey -algorithm RSA`).
    const TEST_KEY: &str = include_str!("google/test-key.pem");
    const TEST_PUBLIC_KEY: &str = include_str!("google/test-key.pub.pem");

    fn key_file(token_uri: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "kid1",
            "private_key": TEST_KEY,
            "client_email": "sluice@p.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        })
        .to_string()
    }

    #[test]
    fn the_assertion_is_an_rs256_jwt_that_verifies_with_the_public_key() {
        let account =
            ServiceAccount::parse(&key_file("https://oauth2.googleapis.com/token")).unwrap();
        let rng = ring::rand::SystemRandom::new();
        let jwt = account.assertion(1_700_000_000, &rng).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "kid1"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "sluice@p.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["scope"], CLOUD_PLATFORM_SCOPE);
        assert_eq!(claims["exp"], 1_700_003_600u64);
        let public = pem_body(TEST_PUBLIC_KEY, "RSA PUBLIC KEY").unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(signed.as_bytes(), &b64.decode(parts[2]).unwrap())
            .expect("the signature verifies");
        let request = account.token_request(1_700_000_000, &rng).unwrap();
        assert_eq!(request.uri(), "https://oauth2.googleapis.com/token");
        let form: Vec<(String, String)> = form_urlencoded::parse(request.body())
            .into_owned()
            .collect();
        assert_eq!(form[0].1, "urn:ietf:params:oauth:grant-type:jwt-bearer");
        assert_eq!(form[1].0, "assertion");
    }

    #[test]
    fn a_bad_key_file_says_what_is_wrong_without_the_key() {
        let cases = [
            ("{}".to_owned(), "missing field"),
            (
                key_file("x").replace("service_account", "authorized_user"),
                "authorized_user",
            ),
            (key_file("ftp://x"), "token_uri"),
            (
                key_file("https://t").replace("BEGIN PRIVATE KEY", "BEGIN NOTHING"),
                "private_key",
            ),
            (key_file("https://t").replace("MII", "AAA"), "private_key"),
        ];
        for (json, says) in cases {
            let err = ServiceAccount::parse(&json).unwrap_err();
            assert!(err.contains(says), "{err}");
            assert!(!err.contains("MII"), "{err}");
        }
        let account = ServiceAccount::parse(&key_file("https://t")).unwrap();
        assert!(!format!("{account:?}").contains("MII"));
    }
}
