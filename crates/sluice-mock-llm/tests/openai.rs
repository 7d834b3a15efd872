//! The OpenAI endpoints over real HTTP.

mod support;

use serde_json::{json, Value};
use sluice_mock_llm::MockConfig;
use support::{bounded, events, post, start};

fn chat(stream: bool) -> Value {
    json!({
        "model": "mock-gpt",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
        ],
        "stream": stream,
        "stream_options": {"include_usage": true}
    })
}

#[tokio::test]
async fn chat_completion_has_the_openai_shape_and_counted_usage() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let res = post(&mock, "/v1/chat/completions", chat(false), &[]).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/json");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert!(body["created"].as_u64().unwrap() > 0);
        assert_eq!(body["model"], "mock-gpt");
        let choice = &body["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(
            choice["message"]["content"],
            "Mock reply from mock-gpt: hello there"
        );
        assert_eq!(choice["finish_reason"], "stop");
        // (1 + 2 words) + (1 + 2 words); 6 reply words.
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12})
        );
    })
    .await;
}

#[tokio::test]
async fn chat_stream_sends_role_deltas_finish_usage_then_done() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let res = post(&mock, "/v1/chat/completions", chat(true), &[]).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let events = events(&res.text().await.unwrap());
        assert!(events.iter().all(|e| e.name.is_none()));
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| e.json())
            .collect();
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "Mock reply from mock-gpt: hello there");
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 6);
        assert_eq!(usage["usage"]["prompt_tokens"], 6);
        let content_chunks = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            })
            .count();
        assert_eq!(content_chunks, 6, "one chunk per completion token");
    })
    .await;
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_chunk() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let mut req = chat(true);
        req.as_object_mut().unwrap().remove("stream_options");
        let res = post(&mock, "/v1/chat/completions", req, &[]).await;
        let events = events(&res.text().await.unwrap());
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let last = events[events.len() - 2].json();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert!(events[..events.len() - 1]
            .iter()
            .all(|e| e.json().get("usage").is_none()));
    })
    .await;
}

#[tokio::test]
async fn max_tokens_caps_the_reply_with_finish_reason_length() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let mut req = chat(false);
        req["max_completion_tokens"] = json!(3);
        let body: Value = post(&mock, "/v1/chat/completions", req, &[])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "Mock reply from");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["completion_tokens"], 3);
    })
    .await;
}

fn with_tools(stream: bool) -> Value {
    let mut req = chat(stream);
    req["tools"] = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "other"}}
    ]);
    req
}

#[tokio::test]
async fn tools_get_a_deterministic_call_of_the_first_tool() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let body: Value = post(&mock, "/v1/chat/completions", with_tools(false), &[])
            .await
            .json()
            .await
            .unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "hello there"}));
        assert_eq!(
            body["usage"]["total_tokens"],
            body["usage"]["prompt_tokens"].as_u64().unwrap()
                + body["usage"]["completion_tokens"].as_u64().unwrap()
        );

        let res = post(&mock, "/v1/chat/completions", with_tools(true), &[]).await;
        let events = events(&res.text().await.unwrap());
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| e.json())
            .collect();
        let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(first["index"], 0);
        assert_eq!(first["function"]["name"], "get_weather");
        let fragments: Vec<&str> = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .filter(|a| !a.is_empty())
            .collect();
        assert!(fragments.len() > 1, "arguments arrive in pieces");
        assert_eq!(
            fragments.concat(),
            call["function"]["arguments"].as_str().unwrap()
        );
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(
            chunks.last().unwrap()["usage"]["completion_tokens"],
            fragments.len()
        );
    })
    .await;
}

#[tokio::test]
async fn after_a_tool_result_the_reply_is_text() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let mut req = with_tools(false);
        req["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}));
        let body: Value = post(&mock, "/v1/chat/completions", req, &[])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "Mock reply from mock-gpt: hello there"
        );
    })
    .await;
}

#[tokio::test]
async fn legacy_completions_stream_and_not() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let req = json!({"model": "mock-gpt", "prompt": "say hi", "max_tokens": 5});
        let body: Value = post(&mock, "/v1/completions", req.clone(), &[])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["object"], "text_completion");
        assert_eq!(body["choices"][0]["text"], "Mock reply from mock-gpt: say");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8})
        );

        let mut streamed = req;
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        let events = events(
            &post(&mock, "/v1/completions", streamed, &[])
                .await
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| e.json())
            .collect();
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(text, "Mock reply from mock-gpt: say");
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "length"
        );
        assert_eq!(chunks.last().unwrap()["usage"], body["usage"]);
    })
    .await;
}

#[tokio::test]
async fn embeddings_are_deterministic_for_strings_arrays_and_base64() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let one: Value = post(
            &mock,
            "/v1/embeddings",
            json!({"model": "mock-embed", "input": "a b"}),
            &[],
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(one["object"], "list");
        assert_eq!(one["data"][0]["object"], "embedding");
        assert_eq!(one["data"][0]["embedding"].as_array().unwrap().len(), 8);
        assert_eq!(one["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));

        let many: Value = post(
            &mock,
            "/v1/embeddings",
            json!({"model": "mock-embed", "input": ["x", "a b"]}),
            &[],
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(many["data"][1]["embedding"], one["data"][0]["embedding"]);
        assert_eq!(many["data"][1]["index"], 1);

        let b64: Value = post(
            &mock,
            "/v1/embeddings",
            json!({"model": "mock-embed", "input": "a b", "encoding_format": "base64"}),
            &[],
        )
        .await
        .json()
        .await
        .unwrap();
        let encoded = b64["data"][0]["embedding"].as_str().unwrap();
        assert_eq!(encoded.len(), 44, "8 f32 = 32 bytes = 44 base64 chars");
    })
    .await;
}

#[tokio::test]
async fn models_lists_the_configured_models() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let body: Value = support::client()
            .get(format!("{}/v1/models", mock.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["object"], "list");
        let ids: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["mock-gpt", "mock-claude", "mock-embed"]);
        assert_eq!(body["data"][0]["object"], "model");
        assert!(body["data"][0]["created"].is_u64());
        assert!(body["data"][0]["owned_by"].is_string());
    })
    .await;
}

fn assert_openai_error(body: &Value, kind: &str, code: Value) {
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert_eq!(error["type"], kind, "{body}");
    assert!(error.as_object().unwrap().contains_key("param"), "{body}");
    assert_eq!(error["code"], code, "{body}");
}

#[tokio::test]
async fn errors_use_the_openai_shape() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let url = format!("{}/v1/chat/completions", mock.base_url());
        let res = support::client()
            .post(&url)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_openai_error(
            &res.json().await.unwrap(),
            "invalid_request_error",
            Value::Null,
        );

        let res = post(
            &mock,
            "/v1/chat/completions",
            json!({"model": "mock-gpt"}),
            &[],
        )
        .await;
        assert_eq!(res.status(), 400);
        assert!(res.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages"));

        let res = post(
            &mock,
            "/v1/chat/completions",
            json!({"model": "gpt-9", "messages": []}),
            &[],
        )
        .await;
        assert_eq!(res.status(), 404);
        assert_openai_error(
            &res.json().await.unwrap(),
            "invalid_request_error",
            json!("model_not_found"),
        );

        let res = post(
            &mock,
            "/v1/embeddings",
            json!({"model": "nope", "input": "x"}),
            &[],
        )
        .await;
        assert_eq!(res.status(), 404);
    })
    .await;
}

#[tokio::test]
async fn a_required_key_is_accepted_as_bearer_or_x_api_key_else_401() {
    bounded(async {
        let mock = start(MockConfig {
            require_api_key: Some("sk-mock".into()),
            ..MockConfig::default()
        })
        .await;
        let res = post(&mock, "/v1/chat/completions", chat(false), &[]).await;
        assert_eq!(res.status(), 401);
        assert_openai_error(
            &res.json().await.unwrap(),
            "invalid_request_error",
            Value::Null,
        );
        let res = post(
            &mock,
            "/v1/chat/completions",
            chat(false),
            &[("authorization", "Bearer sk-wrong")],
        )
        .await;
        assert_eq!(res.status(), 401);
        assert_openai_error(
            &res.json().await.unwrap(),
            "invalid_request_error",
            json!("invalid_api_key"),
        );
        let res = post(
            &mock,
            "/v1/chat/completions",
            chat(false),
            &[("authorization", "Bearer sk-mock")],
        )
        .await;
        assert_eq!(res.status(), 200);
        let res = post(
            &mock,
            "/v1/chat/completions",
            chat(false),
            &[("x-api-key", "sk-mock")],
        )
        .await;
        assert_eq!(res.status(), 200);
    })
    .await;
}
