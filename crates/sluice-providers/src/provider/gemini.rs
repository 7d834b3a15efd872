//! Google's Gemini API (`kind = "gemini"`), e.g. at
//! `https://generativelanguage.googleapis.com/v1beta`, and the same API on
//! Vertex AI (`kind = "vertex"`) at
//! `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google`,
//! authenticated with a service account's OAuth token (the proxy gets it,
//! [`crate::google`]) instead of an API key: chat completions
//! and Anthropic Messages clients translated to `generateContent` (and
//! `streamGenerateContent?alt=sse`), embeddings to `batchEmbedContents`;
//! the key goes in `x-goog-api-key`. The translations are in
//! [`crate::gemini`]; a Messages client goes through chat completions
//! both ways ([`crate::translate::reverse`]), its stream through a
//! [`Chain`] of the two relays.

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use sluice_core::ProviderKind;

use super::{
    answer_from_chat, chat_of, path_segment, relay_via_chat, Provider, Service, UpstreamBody,
};
use crate::adapter::{
    encode, invalid_translation, join, secret, ClientRequest, Conversion, Dialect, Endpoint,
    Exchange, PrepareError, Target,
};
use crate::gemini::{
    chat_to_gemini, embeddings_to_gemini, embeddings_to_vertex, gemini_embeddings_to_openai,
    gemini_to_chat, vertex_embeddings_to_openai, GeminiToChat, GenerateResponse,
};
use crate::relay::{RelayError, StreamRelay};
use crate::usage::TokenUsage;

/// Gemini's API, at Google AI ([`GEMINI`]) or on Vertex AI ([`VERTEX`]).
pub(super) struct Gemini {
    kind: ProviderKind,
}

pub(super) const GEMINI: Gemini = Gemini {
    kind: ProviderKind::Gemini,
};

pub(super) const VERTEX: Gemini = Gemini {
    kind: ProviderKind::Vertex,
};

const API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

impl Provider for Gemini {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// Its answers reach clients translated to OpenAI's chat completions
    /// first; its errors are read as Gemini's.
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn serves(&self, endpoint: Endpoint) -> Option<Service> {
        let path = match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => {
                ":generateContent"
            }
            // Vertex AI embeds with its `:predict` API.
            Endpoint::Embeddings if self.kind == ProviderKind::Vertex => ":predict",
            Endpoint::Embeddings => ":batchEmbedContents",
            // Not yet: legacy completions; token counting is estimated by
            // the gateway.
            Endpoint::Completions | Endpoint::CountTokens => return None,
        };
        Some(Service {
            conversion: Conversion::Native,
            path,
        })
    }

    fn url(
        &self,
        target: &Target,
        service: Service,
        request: &ClientRequest,
        model: &str,
    ) -> Result<String, PrepareError> {
        let model = path_segment(model)?;
        let method = if request.stream && service.path == ":generateContent" {
            ":streamGenerateContent?alt=sse"
        } else {
            service.path
        };
        Ok(join(&target.base_url, &format!("/models/{model}{method}")))
    }

    fn body(
        &self,
        request: &ClientRequest,
        _conversion: Conversion,
        model: &str,
        _default_max_tokens: u32,
    ) -> Result<UpstreamBody, PrepareError> {
        let (bytes, client_wants_usage, base64) = match request.endpoint {
            Endpoint::Embeddings => {
                let (body, base64) = if self.kind == ProviderKind::Vertex {
                    embeddings_to_vertex(request.body())
                } else {
                    embeddings_to_gemini(request.body(), model)
                }
                .map_err(invalid_translation)?;
                (encode(&body)?, false, base64)
            }
            _ => {
                let (chat, wants_usage) = chat_of(request, model)?;
                let body = chat_to_gemini(&chat).map_err(invalid_translation)?;
                (encode(&body)?, wants_usage, false)
            }
        };
        Ok(UpstreamBody {
            bytes,
            client_wants_usage,
            base64,
        })
    }

    fn refuses_credential(&self, status: http::StatusCode, body: &[u8]) -> bool {
        status == http::StatusCode::BAD_REQUEST
            && serde_json::from_slice::<crate::gemini::ErrorBody>(body)
                .is_ok_and(|e| e.error.refuses_key())
    }

    /// Gemini's API key. On Vertex AI the service account's token is
    /// sent instead (the adapter writes it); a key alone is nothing to send.
    fn authenticate(&self, key: &str, headers: &mut HeaderMap) -> Result<(), PrepareError> {
        if self.kind == ProviderKind::Vertex {
            return Err(PrepareError::Target(
                "a vertex provider authenticates with its service account's token".into(),
            ));
        }
        headers.insert(API_KEY, secret(key)?);
        Ok(())
    }

    fn stream_relay(&self, exchange: &Exchange, model: &str, created: u64) -> Box<dyn StreamRelay> {
        relay_via_chat(exchange, model, created, |usage| {
            GeminiToChat::new(model, created, usage)
        })
    }

    fn convert_response(
        &self,
        exchange: &Exchange,
        body: Bytes,
        model: &str,
        created: u64,
    ) -> Result<(Bytes, Option<TokenUsage>), RelayError> {
        let unreadable = |e: serde_json::Error| RelayError::Unreadable(e.to_string());
        if exchange.endpoint == Endpoint::Embeddings {
            let (list, usage) = if self.kind == ProviderKind::Vertex {
                let (list, usage) = vertex_embeddings_to_openai(&body, model, exchange.base64)?;
                (list, Some(usage))
            } else {
                (
                    gemini_embeddings_to_openai(&body, model, exchange.base64)?,
                    None,
                )
            };
            return Ok((
                Bytes::from(serde_json::to_vec(&list).map_err(unreadable)?),
                usage,
            ));
        }
        let answer: GenerateResponse = serde_json::from_slice(&body).map_err(unreadable)?;
        let (chat, usage) = gemini_to_chat(&answer, model, created)?;
        Ok((answer_from_chat(exchange, &chat, model, created)?, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::prepare;
    use crate::relay::{convert_response, stream_relay};
    use serde_json::{json, Value};

    fn target() -> Target {
        Target {
            name: "gem".into(),
            base_url: "https://generativelanguage.googleapis.com/v1beta".into(),
            api_key: Some("AIza-test".into()),
            ..Target::default()
        }
    }

    fn request(endpoint: Endpoint, body: Value) -> ClientRequest {
        ClientRequest::parse(endpoint, body.to_string().as_bytes(), &HeaderMap::new()).unwrap()
    }

    #[test]
    fn chat_goes_to_generate_content_with_the_key_in_its_header() {
        let chat = request(
            Endpoint::ChatCompletions,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        );
        let prepared = prepare(
            &chat,
            ProviderKind::Gemini,
            &target(),
            "gemini-2.5-flash",
            1,
        )
        .unwrap();
        assert_eq!(
            prepared.request.uri(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        let headers = prepared.request.headers();
        assert_eq!(headers["x-goog-api-key"], "AIza-test");
        assert!(headers["x-goog-api-key"].is_sensitive());
        assert!(headers.get("authorization").is_none());
        let body: Value = serde_json::from_slice(prepared.request.body()).unwrap();
        assert_eq!(
            body["contents"],
            json!([{"role": "user", "parts": [{"text": "hi"}]}])
        );

        let streamed = request(
            Endpoint::ChatCompletions,
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        );
        let prepared = prepare(&streamed, ProviderKind::Gemini, &target(), "g", 1).unwrap();
        assert!(prepared
            .request
            .uri()
            .to_string()
            .ends_with("/models/g:streamGenerateContent?alt=sse"));
        assert!(matches!(
            prepare(&chat, ProviderKind::Gemini, &target(), "a/b", 1),
            Err(PrepareError::Target(_))
        ));
    }

    #[test]
    fn a_messages_client_gets_messages_back_whole_and_streamed() {
        let messages = request(
            Endpoint::Messages,
            json!({"model": "m", "max_tokens": 50, "system": "be brief",
                   "messages": [{"role": "user", "content": "hello"}]}),
        );
        let prepared = prepare(&messages, ProviderKind::Gemini, &target(), "g", 1).unwrap();
        let body: Value = serde_json::from_slice(prepared.request.body()).unwrap();
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "be brief");
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 50);
        let answer = json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "hi there"}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
            "responseId": "r1"
        });
        let (bytes, usage) =
            convert_response(&prepared.exchange, Bytes::from(answer.to_string()), "m", 7).unwrap();
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reply["type"], "message");
        assert_eq!(reply["content"][0]["text"], "hi there");
        assert_eq!(reply["stop_reason"], "end_turn");
        assert_eq!(usage.unwrap().total_tokens(), 6);

        let mut streamed = messages.clone();
        streamed.stream = true;
        let prepared = prepare(&streamed, ProviderKind::Gemini, &target(), "g", 1).unwrap();
        let mut relay = stream_relay(&prepared.exchange, "m", 7);
        let mut out = Vec::new();
        let events = [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hi "}]}}], "responseId": "r2"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "there"}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}}),
        ];
        for event in events {
            relay
                .feed(format!("data: {event}\r\n\r\n").as_bytes(), &mut out)
                .unwrap();
        }
        assert!(relay.is_done());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("event: message_start"), "{text}");
        assert!(text.contains("\"text\":\"hi \""), "{text}");
        assert!(text.contains("event: message_stop"), "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
        assert_eq!(relay.usage().unwrap().total_tokens(), 6);
    }

    #[test]
    fn vertex_is_geminis_api_with_a_token_and_embeds_with_predict() {
        struct Token;
        impl crate::adapter::BearerToken for Token {
            fn current(&self) -> Option<std::sync::Arc<str>> {
                Some("ya29.token".into())
            }
        }
        let base = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google";
        let mut vertex = Target {
            name: "vtx".into(),
            base_url: base.into(),
            api_key: None,
            bearer: Some(std::sync::Arc::new(Token)),
            ..Target::default()
        };
        let chat = request(
            Endpoint::ChatCompletions,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        );
        let prepared =
            prepare(&chat, ProviderKind::Vertex, &vertex, "gemini-2.5-flash", 1).unwrap();
        assert_eq!(
            prepared.request.uri().to_string(),
            format!("{base}/models/gemini-2.5-flash:generateContent")
        );
        assert_eq!(
            prepared.request.headers()["authorization"],
            "Bearer ya29.token"
        );
        assert!(prepared.request.headers().get("x-goog-api-key").is_none());
        // Embeddings go to `:predict`, and come back with Vertex's counts.
        let embed = request(
            Endpoint::Embeddings,
            json!({"model": "e", "input": ["a", "b c"], "dimensions": 2}),
        );
        let prepared = prepare(
            &embed,
            ProviderKind::Vertex,
            &vertex,
            "text-embedding-005",
            1,
        )
        .unwrap();
        assert_eq!(
            prepared.request.uri().to_string(),
            format!("{base}/models/text-embedding-005:predict")
        );
        let body: Value = serde_json::from_slice(prepared.request.body()).unwrap();
        assert_eq!(
            body,
            json!({"instances": [{"content": "a"}, {"content": "b c"}],
                   "parameters": {"outputDimensionality": 2}})
        );
        let answer = json!({"predictions": [
            {"embeddings": {"values": [0.5, 1.0], "statistics": {"token_count": 1, "truncated": false}}},
            {"embeddings": {"values": [0.0, -1.0], "statistics": {"token_count": 2, "truncated": false}}}]});
        let (bytes, usage) =
            convert_response(&prepared.exchange, Bytes::from(answer.to_string()), "e", 0).unwrap();
        let list: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(list["data"][1]["embedding"], json!([0.0, -1.0]));
        assert_eq!(list["usage"]["prompt_tokens"], 3);
        assert_eq!(usage.unwrap().prompt_tokens, 3);
        // Without its token, a key is nothing a Vertex provider can send.
        vertex.bearer = None;
        vertex.api_key = Some("{}".into());
        assert!(matches!(
            prepare(&chat, ProviderKind::Vertex, &vertex, "g", 1),
            Err(PrepareError::Target(_))
        ));
    }

    #[test]
    fn a_refused_key_is_told_from_a_bad_request() {
        let refused = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}});
        let bad = json!({"error": {"code": 400, "message": "contents is not specified", "status": "INVALID_ARGUMENT"}});
        let status = http::StatusCode::BAD_REQUEST;
        assert!(GEMINI.refuses_credential(status, refused.to_string().as_bytes()));
        assert!(!GEMINI.refuses_credential(status, bad.to_string().as_bytes()));
        assert!(!GEMINI.refuses_credential(http::StatusCode::OK, refused.to_string().as_bytes()));
    }

    #[test]
    fn embeddings_come_back_as_openai_lists_in_the_encoding_asked_for() {
        let embed = request(
            Endpoint::Embeddings,
            json!({"model": "e", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 2}),
        );
        let prepared = prepare(
            &embed,
            ProviderKind::Gemini,
            &target(),
            "text-embedding-004",
            1,
        )
        .unwrap();
        assert!(prepared
            .request
            .uri()
            .to_string()
            .ends_with("/models/text-embedding-004:batchEmbedContents"));
        let body: Value = serde_json::from_slice(prepared.request.body()).unwrap();
        assert_eq!(body["requests"][1]["model"], "models/text-embedding-004");
        assert_eq!(body["requests"][1]["content"]["parts"][0]["text"], "b");
        assert_eq!(body["requests"][0]["outputDimensionality"], 2);
        let answer = json!({"embeddings": [{"values": [1.0, 0.5]}, {"values": [0.0, -1.0]}]});
        let (bytes, _) =
            convert_response(&prepared.exchange, Bytes::from(answer.to_string()), "e", 0).unwrap();
        let list: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(list["object"], "list");
        assert_eq!(list["data"][1]["index"], 1);
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(list["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(floats, [1.0, 0.5]);
    }
}
