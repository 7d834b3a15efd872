use super::*;
use serde_json::json;

#[test]
fn sdk_request_with_images_tools_and_unknown_fields_round_trips() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "18C"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_completion_tokens": 256,
        "temperature": 0.2,
        "stop": ["\n\n"],
        "seed": 42,
        "response_format": {"type": "json_object"}
    });
    let request: ChatRequest = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(request.extra.get("seed"), Some(&json!(42)));
    assert_eq!(request.stop, Some(Stop::Many(vec!["\n\n".into()])));
    assert!(matches!(request.tool_choice, Some(ToolChoice::Function(_))));
    assert_eq!(serde_json::to_value(&request).unwrap(), body);
}

#[test]
fn string_stop_and_mode_tool_choice_parse() {
    let request: ChatRequest = serde_json::from_value(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "stop": "END", "tool_choice": "required"
    }))
    .unwrap();
    assert_eq!(request.stop, Some(Stop::One("END".into())));
    assert_eq!(
        request.tool_choice,
        Some(ToolChoice::Mode(ToolChoiceMode::Required))
    );
}

#[test]
fn stream_chunk_with_tool_call_fragment_parses() {
    let chunk: ChatChunk = serde_json::from_str(
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    )
    .unwrap();
    let fragment = &chunk.choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!(fragment.index, 1);
    assert_eq!(fragment.id, None);
    assert_eq!(
        fragment.function.as_ref().unwrap().arguments.as_deref(),
        Some("{\"ci")
    );
}

#[test]
fn final_usage_chunk_has_no_choices() {
    let chunk: ChatChunk = serde_json::from_str(
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}"#,
    )
    .unwrap();
    let usage = chunk.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 12));
    assert!(usage.extra.contains_key("prompt_tokens_details"));
}

#[test]
fn response_parses() {
    let response: ChatResponse = serde_json::from_str(
        r#"{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
    )
    .unwrap();
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        response.choices[0].message.content.as_deref(),
        Some("Hello!")
    );
}

#[test]
fn error_body_always_has_param_and_code() {
    let body = ErrorBody {
        error: ErrorObject {
            message: "Incorrect API key provided".into(),
            kind: "invalid_request_error".into(),
            param: None,
            code: Some(json!("invalid_api_key")),
        },
    };
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
    );
}

#[test]
fn stream_usage_is_requested_and_the_client_choice_remembered() {
    let mut request: ChatRequest = serde_json::from_value(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true
    }))
    .unwrap();
    assert!(!request.request_stream_usage());
    assert_eq!(
        serde_json::to_value(&request).unwrap()["stream_options"],
        json!({"include_usage": true})
    );
    assert!(request.request_stream_usage(), "now it is set");

    let mut blocking: ChatRequest = serde_json::from_value(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}]
    }))
    .unwrap();
    assert!(!blocking.request_stream_usage());
    assert_eq!(blocking.stream_options, None);
}
