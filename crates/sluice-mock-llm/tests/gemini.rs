//! Google's Gemini API as the mock speaks it: what the gateway's Gemini
//! translation is tested against.

mod support;

use serde_json::{json, Value};
use sluice_mock_llm::MockConfig;
use support::{bounded, post, start};

fn config() -> MockConfig {
    MockConfig {
        require_api_key: Some("AIza-mock".into()),
        ..MockConfig::default()
    }
}

const KEY: [(&str, &str); 1] = [("x-goog-api-key", "AIza-mock")];

fn generate(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

#[tokio::test]
async fn generate_content_answers_with_candidates_and_usage() {
    bounded(async {
        let mock = start(config()).await;
        let res = post(
            &mock,
            "/v1beta/models/mock-gpt:generateContent",
            generate("hello gemini"),
            &KEY,
        )
        .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["candidates"][0]["content"]["parts"][0]["text"],
            "Mock reply from mock-gpt: hello gemini"
        );
        assert_eq!(body["candidates"][0]["finishReason"], "STOP");
        assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 6);

        let with_tool = json!({
            "contents": [{"role": "user", "parts": [{"text": "Paris"}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]
        });
        let res = post(&mock, "/v1beta/models/mock-gpt:generateContent", with_tool, &KEY).await;
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["candidates"][0]["content"]["parts"][0]["functionCall"],
            json!({"name": "get_weather", "args": {"city": "Paris"}})
        );
    })
    .await;
}

#[tokio::test]
async fn the_stream_is_sse_events_the_last_with_its_finish_reason() {
    bounded(async {
        let mock = start(config()).await;
        let res = post(
            &mock,
            "/v1beta/models/mock-gpt:streamGenerateContent?alt=sse",
            generate("two words"),
            &KEY,
        )
        .await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(events.len(), 6, "{text}");
        assert!(events[..5]
            .iter()
            .all(|e| e["candidates"][0].get("finishReason").is_none()));
        assert_eq!(events[5]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(events[5]["usageMetadata"]["candidatesTokenCount"], 6);
    })
    .await;
}

#[tokio::test]
async fn embeddings_come_one_per_request() {
    bounded(async {
        let mock = start(config()).await;
        let body = json!({"requests": [
            {"model": "models/mock-embed", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/mock-embed", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3}
        ]});
        let res = post(&mock, "/v1beta/models/mock-embed:batchEmbedContents", body, &KEY).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["embeddings"][0]["values"].as_array().unwrap().len(), 8);
        assert_eq!(body["embeddings"][1]["values"].as_array().unwrap().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn errors_are_in_geminis_shape() {
    bounded(async {
        let mock = start(config()).await;
        let path = "/v1beta/models/mock-gpt:generateContent";
        for (headers, status, kind) in [
            (vec![], 403, "PERMISSION_DENIED"),
            (
                vec![("authorization", "Bearer AIza-mock")],
                403,
                "PERMISSION_DENIED",
            ),
            (vec![("x-goog-api-key", "wrong")], 400, "INVALID_ARGUMENT"),
            (
                vec![("x-goog-api-key", "AIza-mock"), ("x-mock-status", "503")],
                503,
                "UNAVAILABLE",
            ),
        ] {
            let res = post(&mock, path, generate("x"), &headers).await;
            assert_eq!(res.status(), status);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["status"], kind, "{body}");
            assert_eq!(body["error"]["code"], status);
        }
        let res = post(
            &mock,
            "/v1beta/models/nope:generateContent",
            generate("x"),
            &KEY,
        )
        .await;
        assert_eq!(res.status(), 404);
    })
    .await;
}
