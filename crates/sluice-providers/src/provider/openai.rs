//! OpenAI and OpenAI-compatible servers (`kind = "openai"`): chat
//! completions, legacy completions, embeddings and the Responses API as
//! sent (response ids wrapped with the provider's name, see
//! [`crate::responses`]); Anthropic Messages clients translated to chat
//! completions and back.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use serde_json::Value;
use sluice_core::ProviderKind;

use super::{Provider, Service, UpstreamBody};
use crate::adapter::{
    ask_for_stream_usage, encode, invalid_translation, parse_typed, passthrough, secret,
    ClientRequest, Conversion, Dialect, Endpoint, Exchange, PrepareError,
};
use crate::anthropic;
use crate::openai;
use crate::relay::{ChatToAnthropic, OpenAiPassthrough, RelayError, StreamRelay};
use crate::responses::{self, ResponsesPassthrough};
use crate::translate::reverse;
use crate::usage::TokenUsage;

pub(super) struct OpenAi;

impl Provider for OpenAi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn serves(&self, endpoint: Endpoint) -> Option<Service> {
        let (conversion, path) = match endpoint {
            Endpoint::ChatCompletions => (Conversion::Passthrough, "/chat/completions"),
            Endpoint::Completions => (Conversion::Passthrough, "/completions"),
            Endpoint::Embeddings => (Conversion::Passthrough, "/embeddings"),
            Endpoint::Messages => (Conversion::MessagesToChat, "/chat/completions"),
            Endpoint::Responses => (Conversion::Passthrough, "/responses"),
            // No token counting endpoint: the gateway estimates.
            Endpoint::CountTokens => return None,
        };
        Some(Service { conversion, path })
    }

    fn body(
        &self,
        request: &ClientRequest,
        conversion: Conversion,
        model: &str,
        _default_max_tokens: u32,
    ) -> Result<UpstreamBody, PrepareError> {
        match conversion {
            Conversion::Passthrough if request.endpoint == Endpoint::Responses => {
                // A follow-up names the response by the upstream's id.
                let bytes = match request.previous_upstream_id() {
                    Some(previous) => {
                        let mut body = request.body().clone();
                        body.insert("model".into(), Value::String(model.to_owned()));
                        body.insert(
                            "previous_response_id".into(),
                            Value::String(previous.to_owned()),
                        );
                        encode(&body)?
                    }
                    None => passthrough(request, model)?,
                };
                Ok(UpstreamBody {
                    bytes,
                    client_wants_usage: false,
                    base64: false,
                })
            }
            Conversion::Passthrough if request.stream => {
                // Usage is read from every stream: asked for if the client
                // did not.
                let mut body = request.body().clone();
                body.insert("model".into(), Value::String(model.to_owned()));
                let client_wants_usage = ask_for_stream_usage(&mut body);
                Ok(UpstreamBody {
                    bytes: encode(&body)?,
                    client_wants_usage,
                    base64: false,
                })
            }
            Conversion::Passthrough => Ok(UpstreamBody {
                bytes: passthrough(request, model)?,
                client_wants_usage: false,
                base64: false,
            }),
            _ => {
                let messages: anthropic::MessagesRequest = parse_typed(request.body())?;
                let chat =
                    reverse::messages_to_chat(&messages, model).map_err(invalid_translation)?;
                Ok(UpstreamBody {
                    bytes: encode(&chat)?,
                    client_wants_usage: false,
                    base64: false,
                })
            }
        }
    }

    fn authenticate(&self, key: &str, headers: &mut HeaderMap) -> Result<(), PrepareError> {
        headers.insert(AUTHORIZATION, secret(&format!("Bearer {key}"))?);
        Ok(())
    }

    fn stream_relay(
        &self,
        exchange: &Exchange,
        model: &str,
        _created: u64,
    ) -> Box<dyn StreamRelay> {
        match exchange.conversion {
            Conversion::Passthrough if exchange.endpoint == Endpoint::Responses => {
                Box::new(ResponsesPassthrough::new(&exchange.provider))
            }
            Conversion::Passthrough => {
                Box::new(OpenAiPassthrough::new(!exchange.client_wants_usage))
            }
            _ => Box::new(ChatToAnthropic::new(model)),
        }
    }

    fn convert_response(
        &self,
        exchange: &Exchange,
        body: Bytes,
        model: &str,
        _created: u64,
    ) -> Result<(Bytes, Option<TokenUsage>), RelayError> {
        if exchange.endpoint == Endpoint::Responses {
            let (bytes, usage) = responses::convert(&body, &exchange.provider)?;
            return Ok((Bytes::from(bytes), usage));
        }
        if exchange.conversion == Conversion::Passthrough {
            let usage = TokenUsage::from_openai_json(&body);
            // As received: no copy.
            return Ok((body, usage));
        }
        let unreadable = |e: serde_json::Error| RelayError::Unreadable(e.to_string());
        let response: openai::ChatResponse = serde_json::from_slice(&body).map_err(unreadable)?;
        let usage = response.usage.as_ref().map(TokenUsage::from);
        let messages = reverse::chat_response_to_messages(&response, model)
            .map_err(|e| RelayError::Unreadable(e.to_string()))?;
        let bytes = serde_json::to_vec(&messages).map_err(unreadable)?;
        Ok((Bytes::from(bytes), usage))
    }
}
