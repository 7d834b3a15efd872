//! The Responses API endpoints over real HTTP.

mod support;

use serde_json::{json, Value};
use sluice_mock_llm::MockConfig;
use support::{bounded, client, events, get_json, post, start};

#[tokio::test]
async fn a_response_is_made_stored_read_and_deleted() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let res = post(
            &mock,
            "/v1/responses",
            json!({"model": "mock-gpt", "input": "hello there", "instructions": "be brief"}),
            &[],
        )
        .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["object"], "response");
        assert_eq!(body["status"], "completed");
        let id = body["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("resp_mock"));
        assert_eq!(
            body["output"][0]["content"][0]["text"],
            "Mock reply from mock-gpt: hello there"
        );
        // Two messages (input and instructions) of 2 words each, 6 words out.
        assert_eq!(body["usage"]["input_tokens"], 6);
        assert_eq!(body["usage"]["output_tokens"], 6);
        assert_eq!(body["usage"]["total_tokens"], 12);

        // A follow-up of a stored response; of an unknown one, a 404.
        let follow = post(
            &mock,
            "/v1/responses",
            json!({"model": "mock-gpt", "input": "more", "previous_response_id": id}),
            &[],
        )
        .await;
        assert_eq!(follow.status(), 200);
        let unknown = post(
            &mock,
            "/v1/responses",
            json!({"model": "mock-gpt", "input": "more", "previous_response_id": "resp_elsewhere"}),
            &[],
        )
        .await;
        assert_eq!(unknown.status(), 404);
        let error: Value = unknown.json().await.unwrap();
        assert_eq!(error["error"]["param"], "previous_response_id");

        let url = format!("{}/v1/responses/{id}", mock.base_url());
        let (status, got) = get_json(&url).await;
        assert_eq!(status, 200);
        assert_eq!(got["id"], id.as_str());
        let deleted = client().delete(&url).send().await.unwrap();
        assert_eq!(deleted.status(), 200);
        assert_eq!(get_json(&url).await.0, 404);
    })
    .await;
}

#[tokio::test]
async fn a_stream_sends_typed_events_and_ends_with_the_whole_response() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let res = post(
            &mock,
            "/v1/responses",
            json!({"model": "mock-gpt", "input": "one two", "stream": true}),
            &[],
        )
        .await;
        assert_eq!(res.status(), 200);
        let events = events(&res.text().await.unwrap());
        let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ];
        expected.extend(["response.output_text.delta"; 6]);
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(names, expected);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.json()["type"], names[i]);
            assert_eq!(e.json()["sequence_number"], i);
        }
        let done = &events.last().unwrap().json()["response"];
        assert_eq!(done["usage"]["output_tokens"], 6);
        let text: String = events
            .iter()
            .filter(|e| e.name.as_deref() == Some("response.output_text.delta"))
            .map(|e| e.json()["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(done["output"][0]["content"][0]["text"], text);
    })
    .await;
}

#[tokio::test]
async fn a_function_tool_is_called_and_max_output_tokens_cuts_text() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let tools = json!([{"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
        let res = post(
            &mock,
            "/v1/responses",
            json!({"model": "mock-gpt", "input": "Paris", "tools": tools}),
            &[],
        )
        .await;
        let body: Value = res.json().await.unwrap();
        let call = &body["output"][0];
        assert_eq!(call["type"], "function_call");
        assert_eq!(call["name"], "get_weather");
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"city": "Paris"}));
        let cut = post(
            &mock,
            "/v1/responses",
            json!({"model": "mock-gpt", "input": "a b c d e f", "max_output_tokens": 2}),
            &[],
        )
        .await;
        let body: Value = cut.json().await.unwrap();
        assert_eq!(body["status"], "incomplete");
        assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(body["usage"]["output_tokens"], 2);
    })
    .await;
}
