use serde_json::json;

use super::*;
use crate::anthropic::{MessagesResponse, StopReason};
use crate::openai::{ChatRequest, FinishReason};

fn chat(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

#[test]
fn conversation_with_system_images_tools_translates() {
    let request = chat(json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}}
            ]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:00"}]},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "get_time"}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "stop": "END",
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 300,
        "stream": true,
        "seed": 1
    }));
    let translated = serde_json::to_value(chat_to_messages(request, 4096).unwrap()).unwrap();
    assert_eq!(
        translated,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 300,
            "system": "Be brief.\n\nUse metric units.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather where this was taken?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/b.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "14:00"},
                    {"type": "text", "text": "Thanks"}
                ]}
            ],
            "tools": [
                {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"],
            "temperature": 0.3,
            "top_p": 0.9,
            "stream": true
        })
    );
}

#[test]
fn tool_results_come_first_in_a_merged_user_turn() {
    let request = chat(json!({"model": "m", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "also this"},
        {"role": "tool", "tool_call_id": "c", "content": "done"}
    ]}));
    let translated = serde_json::to_value(chat_to_messages(request, 1).unwrap()).unwrap();
    assert_eq!(
        translated["messages"][1]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "c", "content": "done"},
            {"type": "text", "text": "also this"}
        ])
    );
}

#[test]
fn max_completion_tokens_wins_and_default_fills_in() {
    let both = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "max_completion_tokens": 20}),
    );
    assert_eq!(chat_to_messages(both, 4096).unwrap().max_tokens, 20);
    let neither = chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(chat_to_messages(neither, 4096).unwrap().max_tokens, 4096);
}

#[test]
fn tool_choice_modes_map() {
    for (openai, anthropic) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!("required"), json!({"type": "any"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let request = chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": openai}),
        );
        let translated = chat_to_messages(request, 1).unwrap();
        assert_eq!(
            serde_json::to_value(translated.tool_choice).unwrap(),
            anthropic
        );
    }
}

#[test]
fn invalid_tool_arguments_name_the_field() {
    let request = chat(json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"x\": "}}
        ]}
    ]}));
    let error = chat_to_messages(request, 1).unwrap_err();
    assert_eq!(error.path(), "messages[2].tool_calls[1].function.arguments");
    assert!(matches!(error, TranslateError::InvalidJson { .. }));
}

#[test]
fn non_object_tool_arguments_are_refused() {
    let request = chat(json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}
    ]}));
    let error = chat_to_messages(request, 1).unwrap_err();
    assert_eq!(error.path(), "messages[0].tool_calls[0].function.arguments");
}

#[test]
fn unsupported_inputs_name_the_field() {
    for (body, path) in [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]}),
            "messages[0].content[1].image_url.url",
        ),
        (
            json!({"model": "m", "messages": [{"role": "system", "content": "only system"}]}),
            "messages",
        ),
        (
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}),
            "n",
        ),
    ] {
        assert_eq!(chat_to_messages(chat(body), 1).unwrap_err().path(), path);
    }
}

fn tool_response() -> MessagesResponse {
    serde_json::from_value(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Let me "},
            {"type": "text", "text": "check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 50}
    }))
    .unwrap()
}

#[test]
fn response_translates_text_tools_finish_reason_and_usage() {
    let response = messages_to_chat_response(tool_response(), 1_700_000_000);
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({
            "id": "msg_01", "object": "chat.completion", "created": 1_700_000_000u64, "model": "claude-sonnet-4-5",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                "finish_reason": "tool_calls",
                "logprobs": null
            }],
            "usage": {"prompt_tokens": 150, "completion_tokens": 20, "total_tokens": 170}
        })
    );
}

#[test]
fn stop_reasons_map() {
    for (stop, finish) in [
        (StopReason::EndTurn, FinishReason::Stop),
        (StopReason::StopSequence, FinishReason::Stop),
        (StopReason::MaxTokens, FinishReason::Length),
        (StopReason::ToolUse, FinishReason::ToolCalls),
    ] {
        assert_eq!(finish_reason(stop), finish);
    }
}
