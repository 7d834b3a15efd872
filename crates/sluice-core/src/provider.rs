//! Providers: the upstream model APIs Sluice forwards to.

use crate::{name::check_ident, ApplyError, SealedSecret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProviderKind {
    /// OpenAI and everything that speaks its API (vLLM, Ollama, Groq, ...).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "openai" => Some(ProviderKind::OpenAi),
            "anthropic" => Some(ProviderKind::Anthropic),
            _ => None,
        }
    }
}

/// Upstream timeouts, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub connect_ms: u64,
    pub first_byte_ms: u64,
    pub total_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 5_000,
            first_byte_ms: 60_000,
            total_ms: 600_000,
        }
    }
}

/// An upstream provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// Unique name, referenced by route deployments.
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The credential, sealed under the cluster data key (never in clear).
    pub api_key: Option<SealedSecret>,
    /// Extra request headers sent upstream (not secret: stored in clear;
    /// credential headers are refused, see [`CREDENTIAL_HEADERS`]).
    pub headers: BTreeMap<String, String>,
    /// Extra request headers whose values are secrets (a second credential,
    /// an `Authorization` of another scheme), each sealed under the cluster
    /// data key in the context [`secret_header_context`]. Write-only: the
    /// API shows their names.
    pub secret_headers: BTreeMap<String, SealedSecret>,
    pub timeouts: Timeouts,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// Headers that carry a credential (lower case): refused in a provider's
/// clear `headers`, which are stored in the log and the state as they are
/// and returned by `GET`.
pub const CREDENTIAL_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "cookie",
    "x-amz-security-token",
];

/// The most secret headers a provider has.
pub const MAX_SECRET_HEADERS: usize = 16;

/// The context a provider's secret header is sealed in: bound to the
/// provider and the header, so a sealed value cannot be moved to another.
/// (Provider names are identifiers, without `/`, so this never equals a
/// provider name, the context of `api_key`.)
pub fn secret_header_context(provider: &str, header: &str) -> String {
    format!("{provider}/headers/{}", header.to_ascii_lowercase())
}

/// Checks an extra header's name: an HTTP token that the gateway does not
/// manage itself. `field` names it in the error.
fn check_header_name(field: &str, name: &str) -> Result<(), ApplyError> {
    let token_ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token_ok {
        return Err(ApplyError::invalid(
            field,
            "is not a valid HTTP header name",
        ));
    }
    if matches!(
        name.to_ascii_lowercase().as_str(),
        "host" | "content-length" | "transfer-encoding" | "connection"
    ) {
        return Err(ApplyError::invalid(
            field,
            "is managed by the gateway and cannot be set",
        ));
    }
    Ok(())
}

/// One secret a provider holds sealed.
pub struct SealedField<S> {
    /// Where it is given: `api_key` or `secret_headers.<name>`.
    pub field: String,
    /// The context it is sealed in.
    pub context: String,
    pub sealed: S,
}

/// Names and contexts for provider `name`'s sealed `credential` and
/// `headers`, by shared or exclusive reference alike.
fn sealed_fields<'a, S>(
    name: &str,
    credential: Option<S>,
    headers: impl Iterator<Item = (&'a String, S)>,
) -> Vec<SealedField<S>> {
    let credential = credential.map(|sealed| SealedField {
        field: "api_key".to_owned(),
        context: name.to_owned(),
        sealed,
    });
    let headers = headers.map(|(header, sealed)| SealedField {
        field: format!("secret_headers.{header}"),
        context: secret_header_context(name, header),
        sealed,
    });
    credential.into_iter().chain(headers).collect()
}

impl Provider {
    /// Every secret the provider holds sealed: its credential, then its
    /// secret headers.
    pub fn sealed(&self) -> Vec<SealedField<&SealedSecret>> {
        sealed_fields(
            &self.name,
            self.api_key.as_ref(),
            self.secret_headers.iter(),
        )
    }

    /// [`Provider::sealed`], to seal again (under another data key).
    pub fn sealed_mut(&mut self) -> Vec<SealedField<&mut SealedSecret>> {
        sealed_fields(
            &self.name,
            self.api_key.as_mut(),
            self.secret_headers.iter_mut(),
        )
    }

    /// Checks every field that does not depend on the rest of the state.
    pub fn validate(&self) -> Result<(), ApplyError> {
        check_ident("name", &self.name)?;
        validate_base_url(&self.base_url)?;
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            check_header_name(&field, name)?;
            if CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(ApplyError::invalid(
                    field,
                    "carries a credential, and headers are stored and shown in clear: \
                     give it in `secret_headers` (sealed, never shown), or the provider's \
                     key as `api_key`",
                ));
            }
            if value.len() > 4096 || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(ApplyError::invalid(
                    field,
                    "value must be at most 4096 bytes without CR, LF or NUL",
                ));
            }
        }
        if self.headers.len() > 32 {
            return Err(ApplyError::invalid("headers", "at most 32 extra headers"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in self.headers.keys() {
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(ApplyError::invalid(
                    format!("headers.{name}"),
                    "is given twice (header names are case-insensitive)",
                ));
            }
        }
        for name in self.secret_headers.keys() {
            let field = format!("secret_headers.{name}");
            check_header_name(&field, name)?;
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(ApplyError::invalid(
                    field,
                    "is given twice, or also in `headers` (header names are case-insensitive)",
                ));
            }
        }
        if self.secret_headers.len() > MAX_SECRET_HEADERS {
            return Err(ApplyError::invalid(
                "secret_headers",
                format!("at most {MAX_SECRET_HEADERS} secret headers"),
            ));
        }
        let t = &self.timeouts;
        for (field, value) in [
            ("timeouts.connect_ms", t.connect_ms),
            ("timeouts.first_byte_ms", t.first_byte_ms),
            ("timeouts.total_ms", t.total_ms),
        ] {
            if value == 0 || value > 3_600_000 {
                return Err(ApplyError::invalid(
                    field,
                    "must be between 1 and 3600000 ms",
                ));
            }
        }
        if t.first_byte_ms > t.total_ms {
            return Err(ApplyError::invalid(
                "timeouts.first_byte_ms",
                "must not exceed timeouts.total_ms",
            ));
        }
        Ok(())
    }
}

fn validate_base_url(url: &str) -> Result<(), ApplyError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| ApplyError::invalid("base_url", "must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty()
        || url.len() > 2048
        || url
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        || url.contains(['?', '#'])
    {
        return Err(ApplyError::invalid(
            "base_url",
            "must be an absolute http(s) URL with a host and no query, fragment or whitespace",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn provider(name: &str) -> Provider {
        Provider {
            name: name.into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
            headers: BTreeMap::new(),
            secret_headers: Default::default(),
            timeouts: Timeouts::default(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn field_of(p: &Provider) -> String {
        match p.validate() {
            Err(ApplyError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(provider("ok").validate().is_ok());
        let mut p = provider("ok");
        p.base_url = "ftp://x".into();
        assert_eq!(field_of(&p), "base_url");
        p.base_url = "https://".into();
        assert_eq!(field_of(&p), "base_url");
        let mut p = provider("ok");
        p.headers.insert("x-bad\n".into(), "v".into());
        assert_eq!(field_of(&p), "headers.x-bad\n");
        let mut p = provider("ok");
        p.headers.insert("Host".into(), "v".into());
        assert_eq!(field_of(&p), "headers.Host");
        for name in [
            "Authorization",
            "x-api-key",
            "API-Key",
            "Proxy-Authorization",
        ] {
            let mut p = provider("ok");
            p.headers.insert(name.into(), "Bearer sk-secret".into());
            assert_eq!(field_of(&p), format!("headers.{name}"));
        }
        let mut p = provider("ok");
        p.timeouts.total_ms = 0;
        assert_eq!(
            field_of(&p),
            "timeouts.connect_ms".replace("connect", "total")
        );
    }

    #[test]
    fn kind_parses_its_own_names() {
        for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ProviderKind::parse("OpenAI"), None);
    }
}
