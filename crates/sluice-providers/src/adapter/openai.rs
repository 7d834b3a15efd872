//! OpenAI-compatible providers: `POST {base}/chat/completions` with
//! `Authorization: Bearer KEY`; responses and chunks are already in the
//! gateway's shape.

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};

use super::{
    join, secret, Adapter, AdapterError, ChatStreamDecoder, PreparedChat, StreamItem, Target,
};
use crate::body;
use crate::openai::{ChatChunk, ChatRequest, ChatResponse, ErrorBody};
use crate::sse::SseParser;

/// The adapter for every OpenAI-compatible API.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiAdapter;

impl Adapter for OpenAiAdapter {
    fn chat_request(
        &self,
        target: &Target,
        chat: &ChatRequest,
    ) -> Result<PreparedChat, AdapterError> {
        let mut chat = chat.clone();
        let stream = chat.stream == Some(true);
        let client_wants_usage = chat.request_stream_usage();
        let body = Bytes::from(serde_json::to_vec(&chat)?);
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .uri(join(&target.base_url, "/chat/completions"))
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
            .ok_or_else(|| AdapterError::InvalidTarget("request builder".into()))?;
        for name in target.extra_headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &target.extra_headers {
            headers.append(name, value.clone());
        }
        if let Some(key) = &target.api_key {
            headers.insert(AUTHORIZATION, secret(&format!("Bearer {key}"))?);
        }
        let request = builder
            .body(body)
            .map_err(|e| AdapterError::InvalidTarget(e.to_string()))?;
        Ok(PreparedChat {
            request,
            stream,
            client_wants_usage,
        })
    }

    fn parse_chat_response(&self, body: &[u8]) -> Result<ChatResponse, AdapterError> {
        Ok(body::parse(body)?)
    }

    fn chat_stream(&self, _created: u64) -> Box<dyn ChatStreamDecoder> {
        Box::new(OpenAiStream::default())
    }
}

/// OpenAI `data:` chunks up to `data: [DONE]`.
#[derive(Debug, Default)]
pub struct OpenAiStream {
    parser: SseParser,
    done: bool,
}

impl ChatStreamDecoder for OpenAiStream {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamItem>, AdapterError> {
        let mut items = Vec::new();
        for event in self.parser.feed(bytes)? {
            if self.done {
                return Err(AdapterError::AfterEnd);
            }
            let data = event.data.trim();
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                self.done = true;
                items.push(StreamItem::Done);
                continue;
            }
            if event.event.as_deref() == Some("error") || data.starts_with("{\"error\"") {
                if let Ok(error) = serde_json::from_str::<ErrorBody>(data) {
                    return Err(AdapterError::UpstreamError(error));
                }
            }
            let chunk: ChatChunk = body::parse(data.as_bytes())?;
            items.push(StreamItem::Chunk(chunk));
        }
        Ok(items)
    }

    fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(stream: bool) -> ChatRequest {
        body::parse(
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn target() -> Target {
        let mut extra_headers = http::HeaderMap::new();
        extra_headers.insert("x-org", HeaderValue::from_static("acme"));
        Target {
            base_url: "https://api.example.com/v1/".into(),
            api_key: Some("sk-secret".into()),
            extra_headers,
        }
    }

    #[test]
    fn builds_a_bearer_request_and_asks_for_stream_usage() {
        let prepared = OpenAiAdapter
            .chat_request(&target(), &request(true))
            .unwrap();
        let req = &prepared.request;
        assert_eq!(req.uri(), "https://api.example.com/v1/chat/completions");
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer sk-secret");
        assert!(req.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(req.headers()["x-org"], "acme");
        assert!(prepared.stream);
        assert!(!prepared.client_wants_usage);
        let sent: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert!(!format!("{:?}", target()).contains("sk-secret"));
    }

    #[test]
    fn non_streaming_requests_are_left_alone() {
        let prepared = OpenAiAdapter
            .chat_request(&target(), &request(false))
            .unwrap();
        let sent: serde_json::Value = serde_json::from_slice(prepared.request.body()).unwrap();
        assert!(sent.get("stream_options").is_none());
        assert!(!prepared.stream);
    }

    #[test]
    fn decodes_chunks_split_anywhere_and_the_end() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        let wire = format!("data: {chunk}\n\ndata: [DONE]\n\n");
        for split in 0..wire.len() {
            let mut decoder = OpenAiAdapter.chat_stream(0);
            let mut items = decoder.feed(&wire.as_bytes()[..split]).unwrap();
            items.extend(decoder.feed(&wire.as_bytes()[split..]).unwrap());
            assert_eq!(items.len(), 2, "split at {split}");
            assert!(matches!(&items[0], StreamItem::Chunk(c) if c.id == "c"));
            assert_eq!(items[1], StreamItem::Done);
            assert!(decoder.finished());
        }
    }

    #[test]
    fn an_error_in_the_stream_is_reported() {
        let mut decoder = OpenAiAdapter.chat_stream(0);
        let err = decoder
            .feed(b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n")
            .unwrap_err();
        assert!(matches!(err, AdapterError::UpstreamError(e) if e.error.message == "boom"));
        assert!(!decoder.finished());
    }
}
