//! Anthropic (`kind = "anthropic"`): Messages and its token counting as
//! sent, with the client's `anthropic-version`/`anthropic-beta`; OpenAI
//! chat clients translated to Messages and back; Responses API clients
//! through chat completions ([`crate::responses::translate`]). It has no
//! legacy completions or embeddings.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use sluice_core::ProviderKind;

use super::{Provider, Service, UpstreamBody};
use crate::adapter::{
    encode, invalid_translation, parse_typed, passthrough, secret, ClientRequest, Conversion,
    Dialect, Endpoint, Exchange, PrepareError, ANTHROPIC_VERSION,
};
use crate::anthropic;
use crate::openai;
use crate::relay::{AnthropicPassthrough, AnthropicToChat, Chain, RelayError, StreamRelay};
use crate::responses::translate::{chat_to_response, responses_to_chat, ChatToResponses};
use crate::translate::{self, messages_to_chat_response};
use crate::usage::TokenUsage;

pub(super) struct Anthropic;

impl Provider for Anthropic {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }

    fn serves(&self, endpoint: Endpoint) -> Option<Service> {
        if endpoint == Endpoint::CountTokens {
            return Some(Service {
                conversion: Conversion::Passthrough,
                path: "/messages/count_tokens",
            });
        }
        let conversion = match endpoint {
            Endpoint::Messages => Conversion::Passthrough,
            Endpoint::ChatCompletions => Conversion::ChatToMessages,
            Endpoint::Responses => Conversion::ResponsesViaChat,
            Endpoint::Completions | Endpoint::Embeddings => return None,
            Endpoint::CountTokens => Conversion::Passthrough,
        };
        Some(Service {
            conversion,
            path: "/messages",
        })
    }

    fn body(
        &self,
        request: &ClientRequest,
        conversion: Conversion,
        model: &str,
        default_max_tokens: u32,
    ) -> Result<UpstreamBody, PrepareError> {
        if conversion == Conversion::Passthrough {
            return Ok(UpstreamBody {
                bytes: passthrough(request, model)?,
                client_wants_usage: false,
                base64: false,
            });
        }
        let (chat, client_wants_usage) = if conversion == Conversion::ResponsesViaChat {
            let chat = responses_to_chat(request.body(), model).map_err(invalid_translation)?;
            (chat, false)
        } else {
            let mut chat: openai::ChatRequest = parse_typed(request.body())?;
            let wants = chat.request_stream_usage();
            (chat, wants)
        };
        let mut messages =
            translate::chat_to_messages(chat, default_max_tokens).map_err(invalid_translation)?;
        model.clone_into(&mut messages.model);
        Ok(UpstreamBody {
            bytes: encode(&messages)?,
            client_wants_usage,
            base64: false,
        })
    }

    fn headers(&self, request: &ClientRequest, conversion: Conversion, headers: &mut HeaderMap) {
        if conversion == Conversion::Passthrough {
            for (name, value) in request.forwarded() {
                headers.append(name, value.clone());
            }
        }
        if !headers.contains_key("anthropic-version") {
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
    }

    fn authenticate(&self, key: &str, headers: &mut HeaderMap) -> Result<(), PrepareError> {
        headers.insert("x-api-key", secret(key)?);
        Ok(())
    }

    fn stream_relay(&self, exchange: &Exchange, model: &str, created: u64) -> Box<dyn StreamRelay> {
        match exchange.conversion {
            Conversion::Passthrough => Box::<AnthropicPassthrough>::default(),
            Conversion::ResponsesViaChat => Box::new(Chain::new(
                AnthropicToChat::new(created, true),
                ChatToResponses::new(model, created),
            )),
            _ => Box::new(AnthropicToChat::new(created, exchange.client_wants_usage)),
        }
    }

    fn convert_response(
        &self,
        exchange: &Exchange,
        body: Bytes,
        model: &str,
        created: u64,
    ) -> Result<(Bytes, Option<TokenUsage>), RelayError> {
        if exchange.endpoint == Endpoint::CountTokens {
            // A count, not a use: no tokens to record.
            return Ok((body, None));
        }
        if exchange.conversion == Conversion::Passthrough {
            let usage = TokenUsage::from_anthropic_json(&body);
            // As received: no copy.
            return Ok((body, usage));
        }
        let unreadable = |e: serde_json::Error| RelayError::Unreadable(e.to_string());
        let response: anthropic::MessagesResponse =
            serde_json::from_slice(&body).map_err(unreadable)?;
        let usage = TokenUsage::from(&response.usage);
        let chat = messages_to_chat_response(response, created);
        let bytes = if exchange.conversion == Conversion::ResponsesViaChat {
            serde_json::to_vec(&chat_to_response(&chat, model, created))
        } else {
            serde_json::to_vec(&chat)
        }
        .map_err(unreadable)?;
        Ok((Bytes::from(bytes), Some(usage)))
    }
}
