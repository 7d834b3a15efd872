//! What a mock instance serves, fixed at start.

use crate::Behavior;

/// Configuration of one mock upstream. Tests build it directly.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Model ids listed by `GET /v1/models` and accepted by every endpoint;
    /// any other model is answered with 404 in the API's own error shape.
    pub models: Vec<String>,
    /// When set, every API request must carry this key as
    /// `Authorization: Bearer KEY` or `x-api-key: KEY`, else 401.
    /// The `/_mock/*` control endpoints never require it.
    pub require_api_key: Option<String>,
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
            behavior: Behavior::default(),
            embedding_dims: 8,
            models_created: 1_700_000_000,
        }
    }
}

impl MockConfig {
    pub(crate) fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }
}
