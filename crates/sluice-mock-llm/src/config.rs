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
    /// 401. The `/_mock/*` control endpoints never require it.
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

impl MockConfig {
    pub(crate) fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }
}
