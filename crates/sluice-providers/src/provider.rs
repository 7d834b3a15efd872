//! One provider, one module, behind one trait: everything that differs
//! between the upstream APIs Sluice speaks.
//!
//! A [`Provider`] says which client endpoints it serves and how
//! ([`Provider::serves`]: passthrough or a translation, and the upstream
//! path), writes the upstream body and its own headers, authenticates the
//! request, and turns its answers, whole or streamed, back into the
//! client's API with the usage read on the way. What is the same for every
//! provider (the request line, `Content-Type`/`Accept`, the provider's
//! configured headers) is in [`crate::adapter::prepare`], which asks the
//! provider for the rest.
//!
//! Adding a provider is adding a module here with its tests, and one arm to
//! [`of`], the only place that maps a [`ProviderKind`] to its code.

mod anthropic;
mod azure_openai;
mod bedrock;
mod gemini;
mod openai;

use bytes::Bytes;
use http::HeaderMap;
use sluice_core::ProviderKind;

use crate::adapter::{
    invalid_translation, join, parse_typed, ClientRequest, Conversion, Dialect, Endpoint, Exchange,
    PrepareError, Target,
};
use crate::relay::{Chain, ChatToAnthropic, RelayError, StreamRelay};
use crate::responses::translate::{chat_to_response, responses_to_chat, ChatToResponses};
use crate::translate::reverse;
use crate::usage::TokenUsage;
use crate::{anthropic as anthropic_api, openai as openai_api};

/// The body a provider sends upstream for one request.
pub struct UpstreamBody {
    pub bytes: Vec<u8>,
    /// For a stream: whether the client asked for the usage chunk itself
    /// (when not, the gateway asked on its own behalf and the relay hides
    /// it).
    pub client_wants_usage: bool,
    /// For embeddings translated to another API: whether the client asked
    /// for base64 vectors (`encoding_format`).
    pub base64: bool,
}

/// How a request goes to a provider: its conversion and the path under the
/// provider's base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub conversion: Conversion,
    pub path: &'static str,
}

/// One upstream API.
pub trait Provider: Sync {
    fn kind(&self) -> ProviderKind;

    /// The API family of its answers and errors.
    fn dialect(&self) -> Dialect;

    /// How it serves `endpoint`, or `None` when its API has no such thing
    /// (the router then tries another deployment).
    fn serves(&self, endpoint: Endpoint) -> Option<Service>;

    /// The upstream body for `request`, carried by `conversion` (one
    /// [`Provider::serves`] gave), for the deployment that knows the model
    /// as `model`. `default_max_tokens` fills a mandatory `max_tokens` the
    /// client did not set.
    fn body(
        &self,
        request: &ClientRequest,
        conversion: Conversion,
        model: &str,
        default_max_tokens: u32,
    ) -> Result<UpstreamBody, PrepareError>;

    /// Headers of its API (versions, the client's headers it passes on);
    /// the provider's configured headers are added after them and win.
    fn headers(&self, _request: &ClientRequest, _conversion: Conversion, _headers: &mut HeaderMap) {
    }

    /// The URL of `service` at `target` for `request`, for the deployment
    /// that knows the model as `model`: by default the service's path under
    /// the base URL.
    fn url(
        &self,
        target: &Target,
        service: Service,
        _request: &ClientRequest,
        _model: &str,
    ) -> Result<String, PrepareError> {
        Ok(join(&target.base_url, service.path))
    }

    /// The URL of the stored response `upstream_id`, or of its `suffix`
    /// (`/input_items`; the Responses API; `service` is how the provider
    /// serves it).
    fn stored_response_url(
        &self,
        target: &Target,
        service: Service,
        upstream_id: &str,
        suffix: &str,
    ) -> Result<String, PrepareError> {
        Ok(join(
            &target.base_url,
            &format!("{}/{upstream_id}{suffix}", service.path),
        ))
    }

    /// Whether an error answer says the provider's credential was refused
    /// though its status does not (Gemini answers a bad key with 400): the
    /// gateway's misconfiguration then, not the client's request.
    fn refuses_credential(&self, _status: http::StatusCode, _body: &[u8]) -> bool {
        false
    }

    /// Sends `key` the way its API takes it, marked sensitive.
    fn authenticate(&self, key: &str, headers: &mut HeaderMap) -> Result<(), PrepareError>;

    /// The relay for a streamed answer to `exchange`. `model` is the name
    /// the client asked for, `created` the Unix time for made-up chunks.
    fn stream_relay(&self, exchange: &Exchange, model: &str, created: u64) -> Box<dyn StreamRelay>;

    /// A whole successful answer in the client's API, and its usage.
    fn convert_response(
        &self,
        exchange: &Exchange,
        body: Bytes,
        model: &str,
        created: u64,
    ) -> Result<(Bytes, Option<TokenUsage>), RelayError>;
}

/// The provider of `kind`.
pub fn of(kind: ProviderKind) -> &'static dyn Provider {
    match kind {
        ProviderKind::OpenAi => &openai::OpenAi,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::AzureOpenAi => &azure_openai::AzureOpenAi,
        ProviderKind::Gemini => &gemini::GEMINI,
        ProviderKind::Vertex => &gemini::VERTEX,
        ProviderKind::Bedrock => &bedrock::Bedrock,
    }
}

/// For a provider whose own API is neither client's (Gemini, Bedrock):
/// the client's request as a chat completions request (a Messages or
/// Responses request translated), and whether a chat client asked for the
/// stream's usage chunk itself.
pub(crate) fn chat_of(
    request: &ClientRequest,
    model: &str,
) -> Result<(openai_api::ChatRequest, bool), PrepareError> {
    Ok(match request.endpoint {
        Endpoint::Responses => (
            responses_to_chat(request.body(), model).map_err(invalid_translation)?,
            false,
        ),
        Endpoint::Messages => {
            let messages: anthropic_api::MessagesRequest = parse_typed(request.body())?;
            (
                reverse::messages_to_chat(&messages, model).map_err(invalid_translation)?,
                false,
            )
        }
        _ => {
            let chat: openai_api::ChatRequest = parse_typed(request.body())?;
            let wants_usage = chat.wants_stream_usage();
            (chat, wants_usage)
        }
    })
}

/// The stream relay of such a provider: its stream read as chat
/// completions by the relay `to_chat` makes (told whether to send the
/// usage chunk), then, for a Messages or Responses client, through a
/// second relay to its API (which reads the usage from that chunk).
pub(crate) fn relay_via_chat<R: StreamRelay + 'static>(
    exchange: &Exchange,
    model: &str,
    created: u64,
    to_chat: impl FnOnce(bool) -> R,
) -> Box<dyn StreamRelay> {
    match exchange.endpoint {
        Endpoint::Messages => Box::new(Chain::new(to_chat(true), ChatToAnthropic::new(model))),
        Endpoint::Responses => Box::new(Chain::new(
            to_chat(true),
            ChatToResponses::new(model, created),
        )),
        _ => Box::new(to_chat(exchange.client_wants_usage)),
    }
}

/// A whole answer of such a provider, read as the chat completion `chat`,
/// in the client's API.
pub(crate) fn answer_from_chat(
    exchange: &Exchange,
    chat: &openai_api::ChatResponse,
    model: &str,
    created: u64,
) -> Result<Bytes, RelayError> {
    let bytes = match exchange.endpoint {
        Endpoint::Messages => {
            let messages = reverse::chat_response_to_messages(chat, model)
                .map_err(|e| RelayError::Unreadable(e.to_string()))?;
            serde_json::to_vec(&messages)
        }
        Endpoint::Responses => serde_json::to_vec(&chat_to_response(chat, model, created)),
        _ => serde_json::to_vec(chat),
    }
    .map_err(|e| RelayError::Unreadable(e.to_string()))?;
    Ok(Bytes::from(bytes))
}

/// `model` as one segment of a URL path: letters, digits, `-`, `_`, `.`
/// only (deployment and model names), else the provider cannot be used
/// for it.
pub(crate) fn path_segment(model: &str) -> Result<&str, PrepareError> {
    if model.is_empty()
        || model == "."
        || model == ".."
        || !model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(PrepareError::Target(format!(
            "`{model}` cannot be part of a URL (letters, digits, `-`, `_`, `.`)"
        )));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind's provider says it is that kind, and serves the
    /// endpoints of its own API as passthrough (Gemini's and Bedrock's
    /// APIs are neither client's: they serve both translated).
    #[test]
    fn every_kind_has_its_provider() {
        for kind in ProviderKind::ALL {
            let provider = of(kind);
            assert_eq!(provider.kind(), kind);
            if matches!(
                kind,
                ProviderKind::Gemini | ProviderKind::Vertex | ProviderKind::Bedrock
            ) {
                for endpoint in [Endpoint::ChatCompletions, Endpoint::Messages] {
                    assert_eq!(
                        provider.serves(endpoint).map(|s| s.conversion),
                        Some(Conversion::Native)
                    );
                }
                continue;
            }
            let native = match provider.dialect() {
                Dialect::OpenAi => Endpoint::ChatCompletions,
                Dialect::Anthropic => Endpoint::Messages,
            };
            assert_eq!(
                provider.serves(native).map(|s| s.conversion),
                Some(Conversion::Passthrough)
            );
        }
    }
}
