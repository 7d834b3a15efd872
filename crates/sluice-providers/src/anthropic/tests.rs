use super::*;
use serde_json::json;

#[test]
fn request_with_every_block_kind_round_trips() {
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C", "is_error": false}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "stop_sequences": ["STOP"],
        "temperature": 0.5,
        "stream": true,
        "top_k": 5
    });
    let request: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(request.extra.get("top_k"), Some(&json!(5)));
    assert_eq!(serde_json::to_value(&request).unwrap(), body);
}

#[test]
fn response_parses() {
    let response: MessagesResponse = serde_json::from_str(
        r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":91,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#,
    )
    .unwrap();
    assert_eq!(response.stop_reason, Some(StopReason::ToolUse));
    assert_eq!(response.usage.input_tokens, 472);
    assert_eq!(response.content.len(), 2);
}

/// The event payloads of a real streamed tool call, in order.
pub(crate) const TOOL_STREAM: &[&str] = &[
    r#"{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}"#,
    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    r#"{"type": "ping"}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let's check"}}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the weather."}}"#,
    r#"{"type":"content_block_stop","index":0}"#,
    r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}"#,
    r#"{"type":"content_block_stop","index":1}"#,
    r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    r#"{"type":"message_stop"}"#,
];

#[test]
fn real_stream_events_parse_and_name_themselves() {
    let names: Vec<&str> = TOOL_STREAM
        .iter()
        .map(|raw| serde_json::from_str::<StreamEvent>(raw).unwrap().name())
        .collect();
    assert_eq!(names[0], "message_start");
    assert_eq!(names[2], "ping");
    assert_eq!(names[12], "message_stop");
}

#[test]
fn stream_error_event_parses() {
    let event: StreamEvent = serde_json::from_str(
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    )
    .unwrap();
    assert_eq!(
        event,
        StreamEvent::Error {
            error: ErrorObject {
                kind: "overloaded_error".into(),
                message: "Overloaded".into()
            }
        }
    );
}

#[test]
fn error_body_has_its_type_tag() {
    let body = ErrorBody {
        error: ErrorObject {
            kind: "not_found_error".into(),
            message: "model: claude-x".into(),
        },
    };
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        json!({"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"}})
    );
}
