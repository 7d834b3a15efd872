//! AWS Bedrock's Converse API (`kind = "bedrock"`), at
//! `https://bedrock-runtime.{region}.amazonaws.com`: chat completions,
//! Anthropic Messages and Responses API clients translated to `converse`
//! (`converse-stream` when streamed), every request SigV4-signed with the
//! provider's IAM keys ([`crate::aws`]; the proxy's signer, on
//! [`Target::signer`], signs once the request is whole). The translations
//! are in [`crate::bedrock`]; a Messages or Responses client goes through
//! chat completions both ways, its stream through a [`Chain`] of relays.

use bytes::Bytes;
use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue};
use sluice_core::ProviderKind;

use super::{answer_from_chat, chat_of, relay_via_chat, Provider, Service, UpstreamBody};
use crate::adapter::{
    encode, invalid_translation, join, ClientRequest, Conversion, Dialect, Endpoint, Exchange,
    PrepareError, Target,
};
use crate::bedrock::{chat_to_converse, converse_to_chat, ConverseResponse, ConverseToChat};
use crate::relay::{RelayError, StreamRelay};
use crate::usage::TokenUsage;

pub(super) struct Bedrock;

impl Provider for Bedrock {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Bedrock
    }

    /// Its answers reach clients translated to OpenAI's chat completions
    /// first; its errors are read as Bedrock's.
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn serves(&self, endpoint: Endpoint) -> Option<Service> {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => Some(Service {
                conversion: Conversion::Native,
                path: "/converse",
            }),
            // Embeddings are another API on Bedrock (InvokeModel, one
            // body per model family): not yet. Legacy completions neither;
            // token counting is estimated by the gateway.
            Endpoint::Embeddings | Endpoint::Completions | Endpoint::CountTokens => None,
        }
    }

    /// `/model/{model}/converse` or `/converse-stream`, the model id
    /// percent-encoded whole: Bedrock's ids hold `:` and inference profile
    /// ARNs `/`, which must not split the path.
    fn url(
        &self,
        target: &Target,
        service: Service,
        request: &ClientRequest,
        model: &str,
    ) -> Result<String, PrepareError> {
        if model.is_empty() || model.len() > 2048 {
            return Err(PrepareError::Target(
                "a Bedrock model id is 1-2048 characters".into(),
            ));
        }
        let method = if request.stream {
            "/converse-stream"
        } else {
            service.path
        };
        Ok(join(
            &target.base_url,
            &format!("/model/{}{method}", encode_segment(model)),
        ))
    }

    fn body(
        &self,
        request: &ClientRequest,
        _conversion: Conversion,
        model: &str,
        _default_max_tokens: u32,
    ) -> Result<UpstreamBody, PrepareError> {
        let (chat, client_wants_usage) = chat_of(request, model)?;
        let body = chat_to_converse(&chat).map_err(invalid_translation)?;
        Ok(UpstreamBody {
            bytes: encode(&body)?,
            client_wants_usage,
            base64: false,
        })
    }

    fn headers(&self, request: &ClientRequest, _conversion: Conversion, headers: &mut HeaderMap) {
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(if request.stream {
                "application/vnd.amazon.eventstream"
            } else {
                "application/json"
            }),
        );
    }

    /// Bedrock takes no key: its requests are signed (the target's
    /// signer does it, from the provider's IAM keys).
    fn authenticate(&self, _key: &str, _headers: &mut HeaderMap) -> Result<(), PrepareError> {
        Err(PrepareError::Target(
            "a bedrock provider signs its requests with its AWS keys, and has no signer".into(),
        ))
    }

    fn stream_relay(&self, exchange: &Exchange, model: &str, created: u64) -> Box<dyn StreamRelay> {
        relay_via_chat(exchange, model, created, |usage| {
            ConverseToChat::new(model, created, usage)
        })
    }

    fn convert_response(
        &self,
        exchange: &Exchange,
        body: Bytes,
        model: &str,
        created: u64,
    ) -> Result<(Bytes, Option<TokenUsage>), RelayError> {
        let answer: ConverseResponse =
            serde_json::from_slice(&body).map_err(|e| RelayError::Unreadable(e.to_string()))?;
        let (chat, usage) = converse_to_chat(&answer, model, created)?;
        Ok((answer_from_chat(exchange, &chat, model, created)?, usage))
    }
}

/// `text` as one URL path segment: unreserved characters kept, every
/// other byte `%XX`.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{prepare, RequestSigner};
    use crate::relay::{convert_response, stream_relay};
    use serde_json::{json, Value};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    /// Signs as the proxy's signer does, at a fixed time.
    struct Fixed(crate::aws::AwsCredentials);

    impl RequestSigner for Fixed {
        fn sign(&self, request: &mut http::Request<Bytes>) -> Result<(), PrepareError> {
            crate::aws::sign(
                request,
                &self.0,
                "us-east-1",
                crate::aws::BEDROCK_SERVICE,
                UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            )
        }
    }

    fn target() -> Target {
        let credentials = crate::aws::AwsCredentials::parse(
            r#"{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}"#,
        )
        .unwrap();
        Target {
            name: "br".into(),
            base_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
            signer: Some(Arc::new(Fixed(credentials))),
            ..Target::default()
        }
    }

    fn request(endpoint: Endpoint, body: Value) -> ClientRequest {
        ClientRequest::parse(endpoint, body.to_string().as_bytes(), &HeaderMap::new()).unwrap()
    }

    #[test]
    fn chat_goes_to_converse_signed_for_bedrock() {
        let chat = request(
            Endpoint::ChatCompletions,
            json!({"model": "m", "max_tokens": 20, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"}]}),
        );
        let model = "anthropic.claude-3-haiku-20240307-v1:0";
        let prepared = prepare(&chat, ProviderKind::Bedrock, &target(), model, 1).unwrap();
        assert_eq!(
            prepared.request.uri(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        let headers = prepared.request.headers();
        assert_eq!(headers["accept"], "application/json");
        assert_eq!(headers["x-amz-date"], "20231114T221320Z");
        let authorization = headers["authorization"].to_str().unwrap();
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=accept;content-type;host;x-amz-date, Signature="
            ),
            "{authorization}"
        );
        assert!(headers["authorization"].is_sensitive());
        let body: Value = serde_json::from_slice(prepared.request.body()).unwrap();
        assert_eq!(
            body,
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                   "system": [{"text": "be brief"}],
                   "inferenceConfig": {"maxTokens": 20}})
        );

        let streamed = request(
            Endpoint::ChatCompletions,
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        );
        let prepared = prepare(&streamed, ProviderKind::Bedrock, &target(), "m", 1).unwrap();
        assert!(prepared
            .request
            .uri()
            .to_string()
            .ends_with("/model/m/converse-stream"));
        assert_eq!(
            prepared.request.headers()["accept"],
            "application/vnd.amazon.eventstream"
        );
        // An inference profile ARN stays one segment.
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude";
        let prepared = prepare(&chat, ProviderKind::Bedrock, &target(), arn, 1).unwrap();
        assert!(prepared.request.uri().path().starts_with(
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude/"
        ));
    }

    #[test]
    fn without_its_signer_a_key_is_nothing_to_send() {
        let chat = request(
            Endpoint::ChatCompletions,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        );
        let mut unsigned = target();
        unsigned.signer = None;
        unsigned.api_key = Some("{}".into());
        assert!(matches!(
            prepare(&chat, ProviderKind::Bedrock, &unsigned, "m", 1),
            Err(PrepareError::Target(_))
        ));
        assert_eq!(Bedrock.serves(Endpoint::Embeddings), None);
        assert_eq!(Bedrock.serves(Endpoint::CountTokens), None);
    }

    #[test]
    fn a_messages_client_gets_messages_back_whole() {
        let messages = request(
            Endpoint::Messages,
            json!({"model": "m", "max_tokens": 50, "system": "be brief",
                   "messages": [{"role": "user", "content": "hello"}]}),
        );
        let prepared = prepare(&messages, ProviderKind::Bedrock, &target(), "b", 1).unwrap();
        let body: Value = serde_json::from_slice(prepared.request.body()).unwrap();
        assert_eq!(body["system"][0]["text"], "be brief");
        assert_eq!(body["inferenceConfig"]["maxTokens"], 50);
        let answer = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "hi there"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 4, "outputTokens": 2, "totalTokens": 6},
            "metrics": {"latencyMs": 12}
        });
        let (bytes, usage) =
            convert_response(&prepared.exchange, Bytes::from(answer.to_string()), "m", 7).unwrap();
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reply["type"], "message");
        assert_eq!(reply["content"][0]["text"], "hi there");
        assert_eq!(reply["stop_reason"], "end_turn");
        assert_eq!(usage.unwrap().total_tokens(), 6);
    }

    #[test]
    fn a_responses_client_gets_its_typed_events_from_a_converse_stream() {
        let responses = request(
            Endpoint::Responses,
            json!({"model": "m", "stream": true, "input": "hello"}),
        );
        let prepared = prepare(&responses, ProviderKind::Bedrock, &target(), "b", 1).unwrap();
        let mut relay = stream_relay(&prepared.exchange, "m", 7);
        let mut out = Vec::new();
        for frame in crate::bedrock::tests::text_stream(&["hi ", "there"], "end_turn", 4, 2) {
            relay.feed(&frame, &mut out).unwrap();
        }
        assert!(relay.is_done());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("event: response.output_text.delta"), "{text}");
        assert!(text.contains("event: response.completed"), "{text}");
        assert_eq!(relay.usage().unwrap().total_tokens(), 6);
    }
}
