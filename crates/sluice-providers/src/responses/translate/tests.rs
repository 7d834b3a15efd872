use super::*;
use proptest::prelude::*;

fn body(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn chat_json(value: Value) -> Value {
    serde_json::to_value(responses_to_chat(&body(value), "up").unwrap()).unwrap()
}

#[test]
fn a_conversation_of_input_items_becomes_chat_messages() {
    let chat = chat_json(json!({
        "model": "route",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "weather?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBO"}
            ]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "21C"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "21C at noon"}]},
            {"role": "user", "content": "thanks"}
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "d",
                   "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "store": false, "metadata": {"a": "b"}, "stream": true
    }));
    assert_eq!(chat["model"], "up");
    let messages = chat["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "tool",
            "tool",
            "assistant",
            "user"
        ]
    );
    assert_eq!(
        messages[1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBO"
    );
    assert_eq!(messages[2]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(messages[2]["tool_calls"][1]["function"]["name"], "get_time");
    assert_eq!(
        messages[4],
        json!({"role": "tool", "tool_call_id": "c2", "content": "noon"})
    );
    assert_eq!(messages[5]["content"], "21C at noon");
    assert_eq!(chat["tools"][0]["function"]["strict"], true);
    assert_eq!(chat["tool_choice"]["function"]["name"], "get_weather");
    assert_eq!(chat["max_completion_tokens"], 50);
    assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
    assert_eq!(chat["stream_options"]["include_usage"], true);
    assert!(chat.get("store").is_none() && chat.get("metadata").is_none());
}

#[test]
fn what_cannot_be_translated_names_its_field() {
    for (request, path) in [
        (
            json!({"input": "hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"input": "hi", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (json!({"input": []}), "input"),
        (
            json!({"input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
            "input[0].content[0].image_url",
        ),
        (
            json!({"input": [{"role": "critic", "content": "x"}]}),
            "input[0].role",
        ),
    ] {
        let err = responses_to_chat(&body(request.clone()), "m").unwrap_err();
        assert_eq!(err.path(), path, "{request}");
    }
}

fn chat_response(value: Value) -> ChatResponse {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_chat_completion_becomes_a_response_object() {
    let chat = chat_response(json!({
        "id": "chatcmpl-msg_01", "object": "chat.completion", "created": 5, "model": "x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.",
            "tool_calls": [{"id": "toolu_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    }));
    let response = chat_to_response(&chat, "route", 7);
    assert_eq!(response["id"], "resp_01");
    assert_eq!(response["output"][0]["id"], "msg_01");
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed");
    assert_eq!(response["model"], "route");
    assert_eq!(response["output"][0]["content"][0]["text"], "Let me look.");
    assert_eq!(response["output"][1]["type"], "function_call");
    assert_eq!(response["output"][1]["call_id"], "toolu_1");
    assert_eq!(response["output"][1]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(response["usage"]["input_tokens"], 10);
    assert_eq!(response["usage"]["total_tokens"], 14);

    let cut = chat_response(json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 5, "model": "x",
        "choices": [{"index": 0, "finish_reason": "length",
                     "message": {"role": "assistant", "content": "trunc"}}]
    }));
    let response = chat_to_response(&cut, "route", 7);
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

/// A chat stream: text pieces, then (maybe) a tool call in two fragments,
/// a finish, usage, `[DONE]`.
fn chat_stream(pieces: &[&str], call: bool) -> Vec<u8> {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(json!({"role": "assistant"}), None)];
    for piece in pieces {
        events.push(chunk(json!({"content": piece}), None));
    }
    if call {
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_0", "type": "function",
                                   "function": {"name": "f", "arguments": "{\"a\""}}]}),
            None,
        ));
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
            None,
        ));
    }
    events.push(chunk(
        json!({}),
        Some(if call { "tool_calls" } else { "stop" }),
    ));
    events.push(
        json!({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1,
                       "model": "m", "choices": [],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
    );
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(format!("data: {event}\n\n").as_bytes());
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn relay(bytes: &[u8], cuts: &[usize]) -> (Vec<Value>, ChatToResponses) {
    let mut relay = ChatToResponses::new("route", 9);
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(at, bytes.len());
        relay.feed(&bytes[at..cut], &mut out).unwrap();
        at = cut;
    }
    let text = String::from_utf8(out).unwrap();
    let events = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (events, relay)
}

#[test]
fn a_chat_stream_becomes_typed_response_events() {
    let (events, relay) = relay(&chat_stream(&["Hel", "lo"], true), &[]);
    assert!(relay.is_done());
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let numbers: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..15).collect::<Vec<u64>>());
    assert_eq!(events[6]["text"], "Hello");
    assert_eq!(events[9]["output_index"], 1);
    assert_eq!(events[12]["arguments"], "{\"a\":1}");
    let done = &events[14]["response"];
    assert_eq!(done["id"], "resp_s1");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][1]["name"], "f");
    assert_eq!(done["usage"]["total_tokens"], 5);
    assert_eq!(relay.usage().unwrap().total_tokens(), 5);
}

#[test]
fn a_chat_stream_cut_before_done_is_truncated() {
    let bytes = chat_stream(&["a"], false);
    let cut = bytes.len() - "data: [DONE]\n\n".len();
    let mut relay = ChatToResponses::new("m", 0);
    let mut out = Vec::new();
    relay.feed(&bytes[..cut], &mut out).unwrap();
    assert_eq!(relay.finish(), Err(RelayError::Truncated));
}

proptest! {
    /// Bytes split anywhere give exactly the events they give whole.
    #[test]
    fn splitting_never_changes_the_events(
        pieces in prop::collection::vec("[a-z ]{1,5}", 0..4),
        call in any::<bool>(),
        mut cuts in prop::collection::vec(0usize..3000, 0..8),
    ) {
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let bytes = chat_stream(&pieces, call);
        cuts.sort_unstable();
        let (whole, _) = relay(&bytes, &[]);
        let (split, r) = relay(&bytes, &cuts);
        prop_assert_eq!(whole, split);
        prop_assert!(r.is_done());
    }
}
