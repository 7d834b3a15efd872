//! The Anthropic Messages endpoint over real HTTP.

mod support;

use serde_json::{json, Value};
use sluice_mock_llm::MockConfig;
use support::{bounded, events, post, start};

fn request(stream: bool) -> Value {
    json!({
        "model": "mock-claude",
        "max_tokens": 100,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": stream
    })
}

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

#[tokio::test]
async fn message_has_the_anthropic_shape_and_counted_usage() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let res = post(&mock, "/v1/messages", request(false), &[VERSION]).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["type"], "message");
        assert_eq!(body["role"], "assistant");
        assert!(body["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(
            body["content"],
            json!([{"type": "text", "text": "Mock reply from mock-claude: hello there"}])
        );
        assert_eq!(body["stop_reason"], "end_turn");
        assert_eq!(body["stop_sequence"], Value::Null);
        assert_eq!(
            body["usage"],
            json!({"input_tokens": 6, "output_tokens": 6})
        );
    })
    .await;
}

#[tokio::test]
async fn stream_sends_named_events_in_order_with_cumulative_usage() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        // No anthropic-version header: accepted.
        let res = post(&mock, "/v1/messages", request(true), &[]).await;
        assert_eq!(res.status(), 200);
        let events = events(&res.text().await.unwrap());
        let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
        let mut expected = vec!["message_start", "content_block_start", "ping"];
        expected.extend(["content_block_delta"; 6]);
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(names, expected);
        for e in &events {
            assert_eq!(
                e.json()["type"],
                e.name.as_deref().unwrap(),
                "data.type matches the event name"
            );
        }
        let start = events[0].json();
        assert_eq!(
            start["message"]["usage"],
            json!({"input_tokens": 6, "output_tokens": 1})
        );
        assert_eq!(start["message"]["content"], json!([]));
        let text: String = events
            .iter()
            .filter(|e| e.name.as_deref() == Some("content_block_delta"))
            .map(|e| {
                let d = e.json();
                assert_eq!(d["delta"]["type"], "text_delta");
                d["delta"]["text"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(text, "Mock reply from mock-claude: hello there");
        let delta = events[events.len() - 2].json();
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 6);
        assert!(!events.iter().any(|e| e.data == "[DONE]"));
    })
    .await;
}

#[tokio::test]
async fn max_tokens_caps_the_reply_with_stop_reason_max_tokens() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let mut req = request(false);
        req["max_tokens"] = json!(2);
        let body: Value = post(&mock, "/v1/messages", req, &[])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["content"][0]["text"], "Mock reply");
        assert_eq!(body["stop_reason"], "max_tokens");
        assert_eq!(body["usage"]["output_tokens"], 2);
    })
    .await;
}

#[tokio::test]
async fn tools_get_a_tool_use_block_streamed_as_input_json_deltas() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let tools = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
        let mut req = request(false);
        req["tools"] = tools.clone();
        let body: Value = post(&mock, "/v1/messages", req, &[]).await.json().await.unwrap();
        assert_eq!(body["stop_reason"], "tool_use");
        let block = &body["content"][0];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"], json!({"city": "hello there"}));

        let mut req = request(true);
        req["tools"] = tools;
        let events = events(&post(&mock, "/v1/messages", req, &[]).await.text().await.unwrap());
        assert_eq!(events[1].json()["content_block"]["type"], "tool_use");
        let partial: Vec<String> = events.iter().filter(|e| e.name.as_deref() == Some("content_block_delta")).map(|e| {
            let d = e.json();
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        }).collect();
        assert!(partial.len() > 1);
        let input: Value = serde_json::from_str(&partial.concat()).unwrap();
        assert_eq!(input, block["input"]);
        let delta = events[events.len() - 2].json();
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["output_tokens"], partial.len());
    })
    .await;
}

fn assert_anthropic_error(body: &Value, kind: &str) {
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn errors_use_the_anthropic_shape() {
    bounded(async {
        let mock = start(MockConfig {
            require_api_key: Some("sk-ant".into()),
            ..MockConfig::default()
        })
        .await;
        let key = ("x-api-key", "sk-ant");
        let mut req = request(false);
        req.as_object_mut().unwrap().remove("max_tokens");
        let res = post(&mock, "/v1/messages", req, &[key]).await;
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert_anthropic_error(&body, "invalid_request_error");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"));

        let res = support::client()
            .post(format!("{}/v1/messages", mock.base_url()))
            .header("x-api-key", "sk-ant")
            .body("[")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_anthropic_error(&res.json().await.unwrap(), "invalid_request_error");

        let mut req = request(false);
        req["model"] = json!("claude-9");
        let res = post(&mock, "/v1/messages", req, &[key]).await;
        assert_eq!(res.status(), 404);
        assert_anthropic_error(&res.json().await.unwrap(), "not_found_error");

        let res = post(&mock, "/v1/messages", request(false), &[]).await;
        assert_eq!(res.status(), 401);
        assert_anthropic_error(&res.json().await.unwrap(), "authentication_error");
    })
    .await;
}

#[tokio::test]
async fn count_tokens_counts_the_prompt_by_the_mock_rule() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let res = post(
            &mock,
            "/v1/messages/count_tokens",
            json!({"model": "mock-claude", "system": "be brief",
                   "messages": [{"role": "user", "content": "hello there"}]}),
            &[VERSION],
        )
        .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        // Two messages (system and user) of two words each.
        assert_eq!(body, json!({"input_tokens": 6}));
        let unknown = post(
            &mock,
            "/v1/messages/count_tokens",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            &[VERSION],
        )
        .await;
        assert_eq!(unknown.status(), 404);
    })
    .await;
}
