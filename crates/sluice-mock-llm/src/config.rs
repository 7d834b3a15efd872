//! What a mock instance serves, fixed at start.

use crate::Behavior;

/// Configuration of one mock upstream. Tests build it directly.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Model ids listed by `GET /v1/models` and accepted by every endpoint;
    /// any other model is answered with 404 in the API's own error shape.
    pub models: Vec<String>,
    /// When set, every API request must carry this key as
    /// `Authorization: Bearer KEY`, `x-api-key: KEY` or (Azure)
    /// `api-key: KEY`, or a token from the mock's Entra ID (below), else
    /// 401. The `/_mock/*` control endpoints never require it, nor do
    /// Bedrock's paths, which know only SigV4 (`aws`, below).
    pub require_api_key: Option<String>,
    /// When set, the mock is also a Microsoft Entra ID token endpoint
    /// (`POST /{tenant}/oauth2/v2.0/token`) for this one app registration,
    /// and every API request must carry one of its live tokens as
    /// `Authorization: Bearer` (or the `require_api_key` key).
    pub entra: Option<MockEntra>,
    /// When set, the mock is also Google's token endpoint (`POST /token`)
    /// for this one service account, and Vertex AI's paths take only its
    /// tokens.
    pub google: Option<MockGoogle>,
    /// When set, Bedrock's paths (`POST /model/{modelId}/converse` and
    /// `/converse-stream`) take only requests SigV4-signed with this one
    /// IAM identity, verified by the mock's own SigV4 implementation, and
    /// refuse the others with 403 as AWS does; when unset they take any
    /// request.
    pub aws: Option<MockAws>,
    /// The instance-wide behaviour at start; changeable at run time.
    pub behavior: Behavior,
    /// Dimensions of the vectors returned by `/v1/embeddings`.
    pub embedding_dims: usize,
    /// `created` reported for every model by `GET /v1/models` (Unix seconds),
    /// fixed so listings are deterministic.
    pub models_created: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            models: vec!["mock-gpt".into(), "mock-claude".into(), "mock-embed".into()],
            require_api_key: None,
            entra: None,
            google: None,
            aws: None,
            behavior: Behavior::default(),
            embedding_dims: 8,
            models_created: 1_700_000_000,
        }
    }
}

/// The one app registration the mock's Entra ID knows.
#[derive(Clone, PartialEq, Eq)]
pub struct MockEntra {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// The lifetime of the tokens it issues, in seconds.
    pub token_ttl_s: u64,
}

impl std::fmt::Debug for MockEntra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockEntra")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_ttl_s", &self.token_ttl_s)
            .finish()
    }
}

/// The one service account the mock's Google token endpoint knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockGoogle {
    pub client_email: String,
    /// Its public key: PKCS#1 `RSA PUBLIC KEY` DER.
    pub public_key_der: Vec<u8>,
    /// The lifetime of the tokens it issues, in seconds.
    pub token_ttl_s: u64,
}

/// The one IAM identity the mock's Bedrock takes: requests must be
/// SigV4-signed with it.
#[derive(Clone, PartialEq, Eq)]
pub struct MockAws {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests must carry it as `x-amz-security-token`, signed.
    pub session_token: Option<String>,
    /// The region in the signature's credential scope (the service is
    /// `bedrock`).
    pub region: String,
}

impl std::fmt::Debug for MockAws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs and test failure output.
        f.debug_struct("MockAws")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .finish()
    }
}

impl MockConfig {
    pub(crate) fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_keeps_aws_secrets_out() {
        let aws = MockAws {
            access_key_id: "AKIDMOCK".into(),
            secret_access_key: "s3cr3t".into(),
            session_token: Some("t0k3n".into()),
            region: "us-east-1".into(),
        };
        let shown = format!("{aws:?}");
        assert!(shown.contains("AKIDMOCK") && shown.contains("us-east-1"));
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0k3n"),
            "{shown}"
        );
    }
}
