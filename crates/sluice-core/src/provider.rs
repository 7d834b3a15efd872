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
    /// Azure OpenAI: OpenAI's API at an Azure resource, addressed by
    /// deployment and `api-version` (see [`AzureSettings`]).
    AzureOpenAi,
    /// Google's Gemini API (`generateContent`), with an API key.
    Gemini,
    /// Gemini on Google Cloud's Vertex AI, with a service account key.
    Vertex,
    /// AWS Bedrock's Converse API, SigV4-signed with an IAM identity's
    /// keys in the provider's region (see [`BedrockSettings`]).
    Bedrock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::AzureOpenAi => "azure_openai",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Vertex => "vertex",
            ProviderKind::Bedrock => "bedrock",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Every kind.
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::AzureOpenAi,
        ProviderKind::Gemini,
        ProviderKind::Vertex,
        ProviderKind::Bedrock,
    ];
}

/// The `api-version` an Azure OpenAI provider uses when none is given: the
/// latest generally available dated version of the inference API.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// The first dated Azure `api-version` with the Responses API.
pub const AZURE_RESPONSES_API_VERSION: &str = "2025-03-01-preview";

/// Microsoft Entra ID's authority for the public cloud.
pub const ENTRA_DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The scope of a token for Azure OpenAI (Cognitive Services).
pub const ENTRA_DEFAULT_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// How an Azure OpenAI provider is addressed and authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureSettings {
    /// `v1` for the v1 API (`/openai/v1/...`, the deployment named by
    /// `model`), or a dated version such as `2024-10-21`
    /// (`/openai/deployments/{deployment}/...?api-version=...`).
    pub api_version: String,
    /// Microsoft Entra ID client credentials: when set, the provider's
    /// `api_key` is the app registration's client secret, exchanged for
    /// bearer tokens; when not, `api_key` is sent as `api-key`.
    pub entra: Option<EntraSettings>,
}

/// An app registration that gets Entra ID tokens with the client
/// credentials grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraSettings {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The authority tokens come from, e.g.
    /// `https://login.microsoftonline.com` (another for sovereign clouds).
    pub authority_url: String,
    /// The scope asked for.
    pub scope: String,
}

impl AzureSettings {
    /// Whether `api_version` is the v1 API rather than a dated version.
    pub fn is_v1(&self) -> bool {
        self.api_version == "v1"
    }

    fn validate(&self) -> Result<(), ApplyError> {
        let dated = |v: &str| {
            v.len() >= 10
                && v.len() <= 32
                && v.as_bytes()[..10].iter().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        *b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
                && v[10..]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !(self.is_v1() || dated(&self.api_version)) {
            return Err(ApplyError::invalid(
                "azure.api_version",
                "must be `v1` or a dated version such as `2024-10-21` or `2025-03-01-preview`",
            ));
        }
        if let Some(entra) = &self.entra {
            for (field, value) in [
                ("azure.entra.tenant_id", &entra.tenant_id),
                ("azure.entra.client_id", &entra.client_id),
            ] {
                let ok = !value.is_empty()
                    && value.len() <= 128
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                if !ok {
                    return Err(ApplyError::invalid(
                        field,
                        "must be 1-128 of letters, digits, `-`, `.`, `_` (a GUID or a domain)",
                    ));
                }
            }
            validate_url("azure.entra.authority_url", &entra.authority_url)?;
            if entra.scope.is_empty()
                || entra.scope.len() > 512
                || entra.scope.bytes().any(|b| b.is_ascii_control())
            {
                return Err(ApplyError::invalid(
                    "azure.entra.scope",
                    "must be 1-512 characters without control characters",
                ));
            }
        }
        Ok(())
    }
}

/// Where an AWS Bedrock provider's requests are signed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BedrockSettings {
    /// The AWS region, e.g. `us-east-1`: part of every request's SigV4
    /// signature (its credential scope), so it must be the region of the
    /// endpoint at `base_url`.
    pub region: String,
}

impl BedrockSettings {
    fn validate(&self) -> Result<(), ApplyError> {
        // `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`...
        let region = &self.region;
        let ok = (4..=32).contains(&region.len())
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !region.starts_with('-')
            && !region.ends_with('-');
        if !ok {
            return Err(ApplyError::invalid(
                "bedrock.region",
                "must be an AWS region such as `us-east-1` (lower-case letters, digits, `-`)",
            ));
        }
        Ok(())
    }
}

/// The Bedrock runtime endpoint of `region` (its public address in AWS's
/// commercial partition).
pub fn bedrock_endpoint(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
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
    /// Azure OpenAI's settings: set exactly for `azure_openai` providers
    /// (boxed: every other provider, and every command, stays small).
    pub azure: Option<Box<AzureSettings>>,
    /// AWS Bedrock's settings: set exactly for `bedrock` providers.
    pub bedrock: Option<Box<BedrockSettings>>,
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
        validate_url("base_url", &self.base_url)?;
        match (self.kind, &self.azure) {
            (ProviderKind::AzureOpenAi, Some(azure)) => azure.validate()?,
            (ProviderKind::AzureOpenAi, None) => {
                return Err(ApplyError::invalid(
                    "azure",
                    "an azure_openai provider needs its settings (`api_version`)",
                ))
            }
            (_, Some(_)) => {
                return Err(ApplyError::invalid(
                    "azure",
                    format!(
                        "is a setting of azure_openai providers, not of {}",
                        self.kind.as_str()
                    ),
                ))
            }
            (_, None) => {}
        }
        match (self.kind, &self.bedrock) {
            (ProviderKind::Bedrock, Some(bedrock)) => bedrock.validate()?,
            (ProviderKind::Bedrock, None) => {
                return Err(ApplyError::invalid(
                    "bedrock",
                    "a bedrock provider needs its settings: `bedrock.region`, the AWS region \
                     its requests are signed for",
                ))
            }
            (_, Some(_)) => {
                return Err(ApplyError::invalid(
                    "bedrock",
                    format!(
                        "is a setting of bedrock providers, not of {}",
                        self.kind.as_str()
                    ),
                ))
            }
            (_, None) => {}
        }
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

    /// Checks what the provider needs to authenticate, once its credential
    /// is known (an update may keep the stored one).
    pub fn check_credential(&self) -> Result<(), ApplyError> {
        let needed = match self.kind {
            ProviderKind::Gemini => Some("the Gemini API key (sent as `x-goog-api-key`)"),
            ProviderKind::Vertex => Some("the service account key file (JSON)"),
            ProviderKind::Bedrock => Some(
                "the IAM identity's keys as JSON: `access_key_id`, `secret_access_key` and, \
                 for temporary credentials, `session_token`",
            ),
            _ => None,
        };
        if let (Some(what), None) = (needed, &self.api_key) {
            return Err(ApplyError::invalid(
                "api_key",
                format!(
                    "a {} provider needs a credential: {what}",
                    self.kind.as_str()
                ),
            ));
        }
        if self.kind == ProviderKind::AzureOpenAi && self.api_key.is_none() {
            let what = match self.azure.as_ref().and_then(|a| a.entra.as_ref()) {
                Some(_) => "the Entra ID app registration's client secret",
                None => "the resource's key (sent as `api-key`)",
            };
            return Err(ApplyError::invalid(
                "api_key",
                format!("an azure_openai provider needs a credential: {what}"),
            ));
        }
        Ok(())
    }
}

/// Checks an absolute http(s) URL without query or fragment.
fn validate_url(field: &str, url: &str) -> Result<(), ApplyError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| ApplyError::invalid(field, "must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty()
        || url.len() > 2048
        || url
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        || url.contains(['?', '#'])
    {
        return Err(ApplyError::invalid(
            field,
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
            azure: None,
            bedrock: None,
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

    fn azure(api_version: &str) -> Provider {
        let mut p = provider("az");
        p.kind = ProviderKind::AzureOpenAi;
        p.azure = Some(Box::new(AzureSettings {
            api_version: api_version.into(),
            entra: None,
        }));
        p
    }

    #[test]
    fn azure_settings_belong_to_azure_providers_only() {
        assert!(azure("2024-10-21").validate().is_ok());
        assert!(azure("2025-03-01-preview").validate().is_ok());
        assert!(azure("v1").validate().is_ok());
        for bad in [
            "",
            "latest",
            "2024-1-21",
            "2024-10-21 ",
            "2024-10-21&x=1",
            "V1",
        ] {
            assert_eq!(field_of(&azure(bad)), "azure.api_version", "{bad:?}");
        }
        let mut p = azure("v1");
        p.azure = None;
        assert_eq!(field_of(&p), "azure");
        let mut p = azure("v1");
        p.kind = ProviderKind::OpenAi;
        assert_eq!(field_of(&p), "azure");
        let mut p = azure("v1");
        p.azure.as_mut().unwrap().entra = Some(EntraSettings {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "0b9e3c43-84a1-4b5c-9d1e-5f7a2d6c8e01".into(),
            authority_url: ENTRA_DEFAULT_AUTHORITY.into(),
            scope: ENTRA_DEFAULT_SCOPE.into(),
        });
        assert!(p.validate().is_ok());
        p.azure.as_mut().unwrap().entra.as_mut().unwrap().tenant_id = "a/b".into();
        assert_eq!(field_of(&p), "azure.entra.tenant_id");
        p.azure.as_mut().unwrap().entra.as_mut().unwrap().tenant_id = "t".into();
        p.azure
            .as_mut()
            .unwrap()
            .entra
            .as_mut()
            .unwrap()
            .authority_url = "login".into();
        assert_eq!(field_of(&p), "azure.entra.authority_url");
    }

    #[test]
    fn an_azure_provider_needs_a_credential() {
        let p = azure("v1");
        match p.check_credential() {
            Err(ApplyError::Invalid { field, .. }) => assert_eq!(field, "api_key"),
            other => panic!("{other:?}"),
        }
        assert!(provider("keyless").check_credential().is_ok());
    }

    fn bedrock(region: &str) -> Provider {
        let mut p = provider("br");
        p.kind = ProviderKind::Bedrock;
        p.bedrock = Some(Box::new(BedrockSettings {
            region: region.into(),
        }));
        p
    }

    #[test]
    fn bedrock_settings_name_a_region_and_belong_to_bedrock_only() {
        for good in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-4",
        ] {
            assert!(bedrock(good).validate().is_ok(), "{good}");
        }
        for bad in [
            "",
            "US-EAST-1",
            "us east 1",
            "-us",
            "us-",
            "a/b",
            "us-east-1.evil.com",
        ] {
            assert_eq!(field_of(&bedrock(bad)), "bedrock.region", "{bad:?}");
        }
        let mut p = bedrock("us-east-1");
        p.bedrock = None;
        assert_eq!(field_of(&p), "bedrock");
        let mut p = provider("o");
        p.bedrock = bedrock("us-east-1").bedrock;
        assert_eq!(field_of(&p), "bedrock");
        // Its keys are its credential.
        match bedrock("us-east-1").check_credential() {
            Err(ApplyError::Invalid { field, message }) => {
                assert_eq!(field, "api_key");
                assert!(message.contains("secret_access_key"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            bedrock_endpoint("eu-west-3"),
            "https://bedrock-runtime.eu-west-3.amazonaws.com"
        );
    }

    #[test]
    fn kind_parses_its_own_names() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ProviderKind::parse("OpenAI"), None);
    }
}
