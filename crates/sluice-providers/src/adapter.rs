//! Provider adapters: what turns the gateway's OpenAI-shaped chat request
//! into one provider's HTTP request, and its answers back into OpenAI
//! shapes. Adapters build requests and parse bytes; they never touch a
//! socket (the [`UpstreamClient`](crate::UpstreamClient) sends).
//!
//! * [`openai`]: OpenAI-compatible providers (OpenAI, vLLM, Ollama, Groq,
//!   Together, OpenRouter …).

pub mod openai;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::body::InvalidBody;
use crate::openai::{ChatChunk, ChatRequest, ChatResponse, ErrorBody};
use crate::sse::SseError;

pub use self::openai::OpenAiAdapter;

/// Where and as whom an adapter sends: one deployment of a provider.
#[derive(Clone, Default)]
pub struct Target {
    /// The API root, e.g. `https://api.openai.com/v1`; a trailing `/` is
    /// ignored.
    pub base_url: String,
    /// The provider key, sent in the adapter's auth header (marked
    /// sensitive so HTTP/2 never indexes it). `None` for keyless servers.
    pub api_key: Option<String>,
    /// Sent with every request; they win over the adapter's own headers
    /// except the auth header.
    pub extra_headers: HeaderMap,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key nor header values.
        let names: Vec<&str> = self.extra_headers.keys().map(|k| k.as_str()).collect();
        f.debug_struct("Target")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("extra_header_names", &names)
            .finish()
    }
}

/// A chat request ready for the upstream.
#[derive(Debug)]
pub struct PreparedChat {
    pub request: http::Request<Bytes>,
    /// Whether the request streams.
    pub stream: bool,
    /// For a stream: whether the client asked for the usage chunk itself.
    /// When `false` the adapter asked for it on the gateway's behalf and
    /// the chunk (choices empty, usage set) must not reach the client.
    pub client_wants_usage: bool,
}

/// What an upstream stream yields once decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Chunk(ChatChunk),
    /// The upstream's clean end (`data: [DONE]` for OpenAI).
    Done,
}

/// Why an adapter could not build a request or read an answer.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("invalid base URL or header: {0}")]
    InvalidTarget(String),
    #[error("request could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("upstream body: {0}")]
    InvalidBody(#[from] InvalidBody),
    #[error("upstream event stream: {0}")]
    Sse(#[from] SseError),
    /// The upstream sent an error object inside the stream.
    #[error("upstream error in stream: {}", .0.error.message)]
    UpstreamError(ErrorBody),
    /// The stream went on after its end marker.
    #[error("upstream sent data after the end of the stream")]
    AfterEnd,
}

/// Decodes one upstream event stream, bytes split anywhere.
pub trait ChatStreamDecoder: Send {
    /// Feeds the next bytes; returns what they completed.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamItem>, AdapterError>;
    /// Whether the upstream's end marker has been seen: a body that ends
    /// before it is a truncated stream.
    fn finished(&self) -> bool;
}

/// One provider API, as seen from the gateway's OpenAI chat shape.
pub trait Adapter: Send + Sync {
    /// Builds the upstream request for `chat`.
    fn chat_request(
        &self,
        target: &Target,
        chat: &ChatRequest,
    ) -> Result<PreparedChat, AdapterError>;
    /// Parses a successful non-streaming response body.
    fn parse_chat_response(&self, body: &[u8]) -> Result<ChatResponse, AdapterError>;
    /// A decoder for one streamed response. `created` stamps chunks for
    /// adapters that must make them up (the wire formats carry no clock).
    fn chat_stream(&self, created: u64) -> Box<dyn ChatStreamDecoder>;
}

/// `base` joined with `path` (`path` starts with `/`).
pub(crate) fn join(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// A header value that holds a secret.
pub(crate) fn secret(value: &str) -> Result<HeaderValue, AdapterError> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| AdapterError::InvalidTarget("API key is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}
