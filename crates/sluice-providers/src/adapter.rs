//! Provider adapters: how a client's request, in the API it spoke, becomes
//! the HTTP request one provider understands. Pure: builds requests, never
//! touches a socket (the [`UpstreamClient`](crate::UpstreamClient) sends).
//!
//! A request is parsed once into a [`ClientRequest`], then [`prepare`]d for
//! each deployment the router tries: the request line and the headers every
//! provider takes are written here, the rest by the deployment's
//! [`Provider`](crate::provider::Provider), which picks one of three
//! [`Conversion`]s:
//! * passthrough when the provider speaks the client's API: the body goes
//!   as sent except `model` (and, for streams, OpenAI's
//!   `stream_options.include_usage`, so usage is read from every stream);
//! * OpenAI chat -> Anthropic Messages, and Anthropic Messages -> OpenAI chat,
//!   through [`crate::translate`].
//!
//! The [`crate::relay`] module turns the answers back.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};
use sluice_core::ProviderKind;

use crate::provider::{self, Service};
use crate::{body, responses, translate};
use std::sync::Arc;

/// The `anthropic-version` sent when the client did not choose one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Client headers passed on to an Anthropic upstream when the client speaks
/// Anthropic's API too.
const ANTHROPIC_FORWARDED: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// The model endpoints the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions` (legacy text completions)
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/messages` (Anthropic)
    Messages,
    /// `POST /v1/responses` (OpenAI's Responses API)
    Responses,
    /// `POST /v1/messages/count_tokens` (Anthropic)
    CountTokens,
}

impl Endpoint {
    /// The endpoint served at `path`, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Self::ChatCompletions),
            "/v1/completions" => Some(Self::Completions),
            "/v1/embeddings" => Some(Self::Embeddings),
            "/v1/messages" => Some(Self::Messages),
            "/v1/responses" => Some(Self::Responses),
            "/v1/messages/count_tokens" => Some(Self::CountTokens),
            _ => None,
        }
    }

    /// The API family the client speaks on this endpoint.
    pub fn dialect(self) -> Dialect {
        match self {
            Self::Messages | Self::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// A short, stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Messages => "messages",
            Self::Responses => "responses",
            Self::CountTokens => "count_tokens",
        }
    }

    /// Whether responses of this endpoint can stream.
    fn can_stream(self) -> bool {
        !matches!(self, Self::Embeddings | Self::CountTokens)
    }
}

/// A client's API family: decides the error format and the stream framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// The dialect a provider of `kind` speaks.
    pub fn of(kind: ProviderKind) -> Self {
        provider::of(kind).dialect()
    }
}

/// A bearer token the gateway obtains for a provider (Microsoft Entra ID):
/// kept fresh by its owner, read when a request is prepared.
pub trait BearerToken: Send + Sync {
    /// The token to send now, if one is held and unexpired.
    fn current(&self) -> Option<Arc<str>>;
}

/// Signs a whole request for a provider that authenticates by signature
/// (AWS SigV4): owned by the gateway, which holds the clock and the keys.
pub trait RequestSigner: Send + Sync {
    /// Adds the signature's headers to `request`, which is final but for
    /// them.
    fn sign(&self, request: &mut http::Request<Bytes>) -> Result<(), PrepareError>;
}

/// Where and as whom an adapter sends: one provider's address and secrets.
#[derive(Clone, Default)]
pub struct Target {
    /// The provider's name (response ids of the Responses API carry it).
    pub name: Arc<str>,
    /// The API root, e.g. `https://api.openai.com/v1`; a trailing `/` is
    /// ignored.
    pub base_url: String,
    /// The provider key, sent in the provider's auth header (marked
    /// sensitive so HTTP/2 never indexes it). `None` for keyless servers.
    pub api_key: Option<String>,
    /// Sent with every request; they win over the adapter's own headers
    /// except the auth header.
    pub extra_headers: HeaderMap,
    /// Azure OpenAI's addressing (api-version), for `azure_openai`.
    pub azure: Option<sluice_core::provider::AzureSettings>,
    /// A token sent as `Authorization: Bearer` instead of `api_key`.
    pub bearer: Option<Arc<dyn BearerToken>>,
    /// Signs every request instead of sending `api_key` (AWS Bedrock).
    pub signer: Option<Arc<dyn RequestSigner>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key nor header values.
        let names: Vec<&str> = self.extra_headers.keys().map(|k| k.as_str()).collect();
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("extra_header_names", &names)
            .field("azure", &self.azure)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("signer", &self.signer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A client's fault in the request body: becomes a 400 whose `param` is
/// `param`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    pub param: Option<String>,
    pub message: String,
}

impl InvalidRequest {
    fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            message: message.into(),
        }
    }
}

/// A client request, parsed once and prepared for each deployment tried.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub endpoint: Endpoint,
    /// The body as sent (a JSON object).
    body: Map<String, Value>,
    /// `model`: the route the client asked for.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Headers passed on to a provider that speaks the client's API.
    forwarded: HeaderMap,
    /// A Responses API follow-up of a response the gateway relayed: the
    /// provider that made it and its id there (see [`crate::responses`]).
    previous: Option<(String, String)>,
}

impl ClientRequest {
    /// Parses `body` for `endpoint`: a JSON object with a string `model`
    /// and, if present, a boolean `stream`.
    pub fn parse(
        endpoint: Endpoint,
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<Self, InvalidRequest> {
        let value: Value = serde_json::from_slice(body).map_err(|e| InvalidRequest {
            param: None,
            message: format!(
                "We could not parse the JSON body of your request: {e}. (The body must be a JSON object.)"
            ),
        })?;
        let Value::Object(body) = value else {
            return Err(InvalidRequest {
                param: None,
                message: "The request body must be a JSON object.".into(),
            });
        };
        let model = match body.get("model") {
            Some(Value::String(model)) if !model.is_empty() => model.clone(),
            Some(Value::String(_)) | None => {
                return Err(InvalidRequest::new(
                    "model",
                    "You must provide a model parameter.",
                ))
            }
            Some(_) => return Err(InvalidRequest::new("model", "`model` must be a string.")),
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => *stream,
            Some(_) => return Err(InvalidRequest::new("stream", "`stream` must be a boolean.")),
        };
        if stream && !endpoint.can_stream() {
            return Err(InvalidRequest::new(
                "stream",
                "This endpoint does not support streaming.",
            ));
        }
        let previous = match (endpoint, body.get("previous_response_id")) {
            (Endpoint::Responses, Some(Value::String(id))) => responses::upstream_of(id),
            _ => None,
        };
        let mut forwarded = HeaderMap::new();
        if endpoint.dialect() == Dialect::Anthropic {
            for name in ANTHROPIC_FORWARDED {
                for value in headers.get_all(name) {
                    forwarded.append(HeaderName::from_static(name), value.clone());
                }
            }
        }
        Ok(Self {
            endpoint,
            body,
            model,
            stream,
            forwarded,
            previous,
        })
    }

    /// The body as the client sent it.
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The client's headers passed on to a provider that speaks its API.
    pub(crate) fn forwarded(&self) -> &HeaderMap {
        &self.forwarded
    }

    /// The provider a Responses API follow-up must go to: the one that
    /// made its `previous_response_id`.
    pub fn pinned_provider(&self) -> Option<&str> {
        self.previous
            .as_ref()
            .map(|(provider, _)| provider.as_str())
    }

    /// The upstream's id of the response this one follows.
    pub(crate) fn previous_upstream_id(&self) -> Option<&str> {
        self.previous.as_ref().map(|(_, id)| id.as_str())
    }

    /// `max_tokens` (or OpenAI's `max_completion_tokens`, or the Responses
    /// API's `max_output_tokens`), when set.
    pub fn max_tokens(&self) -> Option<u64> {
        ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|field| self.body.get(*field).and_then(Value::as_u64))
    }
}

/// How a request and its answer are carried between the two APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The provider speaks the client's API.
    Passthrough,
    /// An OpenAI chat client, an Anthropic provider.
    ChatToMessages,
    /// An Anthropic Messages client, an OpenAI-compatible provider.
    MessagesToChat,
    /// Into the provider's own API, neither OpenAI's nor Anthropic's
    /// (Gemini): the provider knows how by the endpoint.
    Native,
    /// A Responses API client, a provider without that API: through chat
    /// completions ([`crate::responses::translate`]) to the provider's own.
    ResponsesViaChat,
}

/// What the relay of the answer needs to know about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The provider's name.
    pub provider: Arc<str>,
    pub endpoint: Endpoint,
    pub kind: ProviderKind,
    pub conversion: Conversion,
    pub stream: bool,
    /// For an OpenAI stream: whether the client asked for the usage chunk.
    /// When `false` the gateway asked for it on its own behalf and the
    /// chunk must not reach the client.
    pub client_wants_usage: bool,
    /// For embeddings translated to another API: base64 vectors asked for.
    pub base64: bool,
}

/// A request ready for one deployment.
#[derive(Debug)]
pub struct Prepared {
    pub request: http::Request<Bytes>,
    pub exchange: Exchange,
}

/// Why a request cannot go to one deployment.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The provider's API has no such endpoint (embeddings on Anthropic):
    /// try another deployment.
    #[error("{kind} providers do not serve {endpoint}", kind = .kind.as_str(), endpoint = .endpoint.as_str())]
    Unsupported {
        kind: ProviderKind,
        endpoint: Endpoint,
    },
    /// The request cannot be translated for this provider: the client's fault.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The provider's settings cannot make a request (a bad URL or header).
    #[error("provider misconfigured: {0}")]
    Target(String),
}

/// Builds the request for a deployment of a `kind` provider at `target`
/// that knows the model as `upstream_model`. `default_max_tokens` fills
/// Anthropic's mandatory `max_tokens` when an OpenAI client set none.
pub fn prepare(
    request: &ClientRequest,
    kind: ProviderKind,
    target: &Target,
    upstream_model: &str,
    default_max_tokens: u32,
) -> Result<Prepared, PrepareError> {
    let provider = provider::of(kind);
    let endpoint = request.endpoint;
    let Service { conversion, path } = provider
        .serves(endpoint)
        .ok_or(PrepareError::Unsupported { kind, endpoint })?;
    let service = Service { conversion, path };
    let url = provider.url(target, service, request, upstream_model)?;
    let body = provider.body(request, conversion, upstream_model, default_max_tokens)?;
    let stream = request.stream;
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
    let headers = builder
        .headers_mut()
        .ok_or_else(|| PrepareError::Target("invalid base URL".into()))?;
    provider.headers(request, conversion, headers);
    authorize(provider, target, headers)?;
    let mut request = builder
        .body(Bytes::from(body.bytes))
        .map_err(|e| PrepareError::Target(e.to_string()))?;
    if let Some(signer) = &target.signer {
        signer.sign(&mut request)?;
    }
    Ok(Prepared {
        request,
        exchange: Exchange {
            provider: Arc::clone(&target.name),
            endpoint,
            kind,
            conversion,
            stream,
            client_wants_usage: body.client_wants_usage,
            base64: body.base64,
        },
    })
}

/// The provider's configured headers (they win over the API's own), then
/// its credential (none for a signed provider: its signer adds it once
/// the request is whole).
fn authorize(
    provider: &dyn provider::Provider,
    target: &Target,
    headers: &mut HeaderMap,
) -> Result<(), PrepareError> {
    for name in target.extra_headers.keys() {
        headers.remove(name);
    }
    for (name, value) in &target.extra_headers {
        headers.append(name, value.clone());
    }
    if let Some(bearer) = &target.bearer {
        let token = bearer
            .current()
            .ok_or_else(|| PrepareError::Target("no access token for the provider yet".into()))?;
        headers.insert(
            http::header::AUTHORIZATION,
            secret(&format!("Bearer {token}"))?,
        );
    } else if let (None, Some(key)) = (&target.signer, &target.api_key) {
        provider.authenticate(key, headers)?;
    }
    Ok(())
}

/// What of a stored response is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    /// The response itself (`GET` or `DELETE`).
    Response,
    /// Its input items (`GET .../input_items`), with the client's query
    /// (`after`, `before`, `limit`, `order`, `include[]`) as sent.
    InputItems { query: Option<&'a str> },
}

/// `method` of the stored response `upstream_id` (or of its input items)
/// at a `kind` provider at `target` (the Responses API; `Unsupported` for
/// a provider without it).
pub fn prepare_stored_response(
    kind: ProviderKind,
    target: &Target,
    method: Method,
    upstream_id: &str,
    stored: Stored<'_>,
) -> Result<http::Request<Bytes>, PrepareError> {
    let provider = provider::of(kind);
    let endpoint = Endpoint::Responses;
    let service = provider
        .serves(endpoint)
        .filter(|s| s.conversion == Conversion::Passthrough)
        .ok_or(PrepareError::Unsupported { kind, endpoint })?;
    // Ids are opaque but URL-safe at every provider that has them; anything
    // else would change the path.
    if upstream_id.is_empty()
        || !upstream_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(PrepareError::Invalid(InvalidRequest::new(
            "response_id",
            "Not a response id.",
        )));
    }
    let (suffix, query) = match stored {
        Stored::Response => ("", None),
        Stored::InputItems { query } => ("/input_items", query.filter(|q| !q.is_empty())),
    };
    let mut url = provider.stored_response_url(target, service, upstream_id, suffix)?;
    if let Some(query) = query {
        // Passed on as sent, once it holds nothing that could change more
        // than the query.
        if !query
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%&=[]+".contains(&b))
        {
            return Err(PrepareError::Invalid(InvalidRequest::new(
                "query",
                "The query holds characters it cannot.",
            )));
        }
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(query);
    }
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header(ACCEPT, HeaderValue::from_static("application/json"));
    let headers = builder
        .headers_mut()
        .ok_or_else(|| PrepareError::Target("invalid base URL".into()))?;
    authorize(provider, target, headers)?;
    builder
        .body(Bytes::new())
        .map_err(|e| PrepareError::Target(e.to_string()))
}

/// The body as sent with `model` replaced: written straight from the
/// parsed body, no copy (the hot path).
pub(crate) fn passthrough(request: &ClientRequest, model: &str) -> Result<Vec<u8>, PrepareError> {
    encode(&WithModel {
        body: &request.body,
        model,
    })
}

/// A request that cannot be translated for a provider: the client's fault.
pub(crate) fn invalid_translation(e: translate::TranslateError) -> InvalidRequest {
    InvalidRequest::new(e.path(), format!("Cannot be sent to this model: {e}"))
}

/// A body as sent with its `model` (which [`ClientRequest::parse`] made
/// sure is there) replaced.
struct WithModel<'a> {
    body: &'a Map<String, Value>,
    model: &'a str,
}

impl serde::Serialize for WithModel<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.body.len()))?;
        for (name, value) in self.body {
            if name == "model" {
                map.serialize_entry(name, self.model)?;
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// Sets `stream_options.include_usage`; returns whether the client had.
pub(crate) fn ask_for_stream_usage(body: &mut Map<String, Value>) -> bool {
    let options = body
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    let Value::Object(options) = options else {
        unreachable!("made an object above")
    };
    let wanted = options.get("include_usage") == Some(&Value::Bool(true));
    options.insert("include_usage".into(), Value::Bool(true));
    wanted
}

pub(crate) fn parse_typed<T: serde::de::DeserializeOwned>(
    body: &Map<String, Value>,
) -> Result<T, InvalidRequest> {
    // Re-encoding the parsed map is cheap next to a model call, and lets
    // body::parse name the field at fault.
    let bytes = serde_json::to_vec(body).map_err(|e| InvalidRequest {
        param: None,
        message: e.to_string(),
    })?;
    body::parse(&bytes).map_err(|e| InvalidRequest {
        param: (!e.path.is_empty()).then(|| e.path.clone()),
        message: format!("Invalid request: {e}"),
    })
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, PrepareError> {
    serde_json::to_vec(value).map_err(|e| PrepareError::Target(format!("cannot encode: {e}")))
}

/// `base` joined with `path` (`path` starts with `/`).
pub(crate) fn join(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + path.len());
    url.push_str(base);
    url.push_str(path);
    url
}

/// A header value that holds a secret.
pub(crate) fn secret(value: &str) -> Result<HeaderValue, PrepareError> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| PrepareError::Target("API key is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests;
