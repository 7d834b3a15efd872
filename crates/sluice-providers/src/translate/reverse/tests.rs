use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::anthropic::MessagesRequest;
use crate::openai::{ChatResponse, FinishReason};
use crate::translate::chat_to_messages;
use crate::usage::TokenUsage;

fn request(body: Value) -> MessagesRequest {
    serde_json::from_value(body).unwrap()
}

fn to_chat(body: Value) -> Value {
    serde_json::to_value(messages_to_chat(&request(body), "gpt-up").unwrap()).unwrap()
}

fn refusal_path(body: Value) -> String {
    messages_to_chat(&request(body), "gpt-up")
        .unwrap_err()
        .path()
        .to_owned()
}

#[test]
fn conversation_with_system_images_and_tools_translates() {
    let chat = to_chat(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this was taken?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/b.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "14:00"}]},
                {"type": "text", "text": "Thanks"}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 5,
        "metadata": {"user_id": "u-42"}
    }));
    assert_eq!(
        chat,
        json!({
            "model": "gpt-up",
            "messages": [
                {"role": "system", "content": "Be brief.\n\nUse metric units."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather where this was taken?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}}
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "14:00"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "max_tokens": 300,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": ["END"],
            "user": "u-42"
        })
    );
}

#[test]
fn tool_results_go_before_the_rest_of_their_turn() {
    let chat = to_chat(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Here:"},
            {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
        ]}]
    }));
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
            {"role": "user", "content": "Here:"}
        ])
    );
}

#[test]
fn failed_tool_results_are_marked_in_their_text() {
    let chat = to_chat(json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "city not found", "is_error": true},
            {"type": "tool_result", "tool_use_id": "t2", "is_error": true},
            {"type": "tool_result", "tool_use_id": "t3", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "is_error": true},
            {"type": "tool_result", "tool_use_id": "t4", "is_error": false}
        ]}]
    }));
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "tool", "tool_call_id": "t1", "content": "Error: city not found"},
            {"role": "tool", "tool_call_id": "t2", "content": "Error"},
            {"role": "tool", "tool_call_id": "t3", "content": [{"type": "text", "text": "Error: a"}, {"type": "text", "text": "b"}]},
            {"role": "tool", "tool_call_id": "t4", "content": ""}
        ])
    );
}

#[test]
fn tool_choice_maps_every_mode() {
    let choice = |tool_choice: Value| {
        let chat = to_chat(json!({
            "model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "tool_choice": tool_choice
        }));
        (
            chat["tool_choice"].clone(),
            chat.get("parallel_tool_calls").cloned(),
        )
    };
    assert_eq!(choice(json!({"type": "auto"})), (json!("auto"), None));
    assert_eq!(
        choice(json!({"type": "auto", "disable_parallel_tool_use": false})),
        (json!("auto"), Some(json!(true)))
    );
    assert_eq!(choice(json!({"type": "none"})), (json!("none"), None));
    assert_eq!(
        choice(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            Some(json!(false))
        )
    );
}

#[test]
fn streaming_requests_ask_for_usage() {
    let chat = to_chat(json!({
        "model": "m", "max_tokens": 10, "stream": true,
        "system": "s",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }));
    assert_eq!(chat["stream"], json!(true));
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "system", "content": "s"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}
        ])
    );
}

#[test]
fn untranslatable_blocks_are_refused_by_path() {
    let thinking = json!({
        "model": "m", "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}]}
        ]
    });
    assert_eq!(refusal_path(thinking), "messages[1].content[0]");
    let image_in_tool_result = json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "text", "text": "see"},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
        ]}]}]
    });
    assert_eq!(
        refusal_path(image_in_tool_result),
        "messages[0].content[0].content[1]"
    );
    let tool_use_from_user = json!({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]
    });
    assert_eq!(refusal_path(tool_use_from_user), "messages[0].content[1]");
    let image_system = json!({
        "model": "m", "max_tokens": 10,
        "system": [{"type": "text", "text": "a"}, {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
        "messages": [{"role": "user", "content": "hi"}]
    });
    assert_eq!(refusal_path(image_system), "system[1]");
    let empty = json!({"model": "m", "max_tokens": 10, "messages": []});
    assert_eq!(refusal_path(empty), "messages");
}

#[test]
fn document_blocks_are_refused_when_the_body_is_parsed() {
    let body = br#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"x"}}]}]}"#;
    let error = crate::body::parse::<MessagesRequest>(body).unwrap_err();
    assert!(error.path.starts_with("messages[0]"), "{}", error.path);
}

fn response(body: Value) -> ChatResponse {
    serde_json::from_value(body).unwrap()
}

#[test]
fn response_with_text_and_tool_calls_translates() {
    let upstream = response(json!({
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-up",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]
        }}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                  "prompt_tokens_details": {"cached_tokens": 60}}
    }));
    let translated = chat_response_to_messages(&upstream, "claude-asked").unwrap();
    assert_eq!(
        serde_json::to_value(&translated).unwrap(),
        json!({
            "id": "msg_chatcmpl-9", "type": "message", "role": "assistant", "model": "claude-asked",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 40, "output_tokens": 20, "cache_read_input_tokens": 60}
        })
    );
    assert_eq!(
        TokenUsage::from(&translated.usage),
        TokenUsage::from(upstream.usage.as_ref().unwrap())
    );
}

#[test]
fn finish_reasons_map_to_stop_reasons() {
    assert_eq!(stop_reason(FinishReason::Stop), StopReason::EndTurn);
    assert_eq!(stop_reason(FinishReason::Length), StopReason::MaxTokens);
    assert_eq!(stop_reason(FinishReason::ToolCalls), StopReason::ToolUse);
    assert_eq!(stop_reason(FinishReason::FunctionCall), StopReason::ToolUse);
    assert_eq!(
        stop_reason(FinishReason::ContentFilter),
        StopReason::Refusal
    );
}

#[test]
fn refusals_are_text_that_stops_with_refusal() {
    let upstream = response(json!({
        "id": "msg_kept", "object": "chat.completion", "created": 1, "model": "gpt-up",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": null, "refusal": "I can't help with that."
        }}]
    }));
    let translated = chat_response_to_messages(&upstream, "c").unwrap();
    assert_eq!(translated.id, "msg_kept");
    assert_eq!(translated.stop_reason, Some(StopReason::Refusal));
    assert_eq!(
        translated.content,
        vec![ContentBlock::Text {
            text: "I can't help with that.".into()
        }]
    );
    assert_eq!(translated.usage, anthropic::Usage::default());
}

#[test]
fn invalid_upstream_tool_arguments_are_an_upstream_error() {
    for arguments in ["{\"city\":", "[1]"] {
        let upstream = response(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]
            }}]
        }));
        let error = chat_response_to_messages(&upstream, "m").unwrap_err();
        assert!(
            matches!(&error, ReplyError::ToolInput(e) if e.path() == "choices[0].message.tool_calls[0].function.arguments"),
            "{error}"
        );
    }
    let empty = response(
        json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}),
    );
    assert!(matches!(
        chat_response_to_messages(&empty, "m"),
        Err(ReplyError::NoChoices)
    ));
}

// A request made of what both directions carry comes back unchanged through
// `messages_to_chat` then `chat_to_messages`.

fn arb_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?]{1,20}"
}

fn arb_user_block() -> impl Strategy<Value = ContentBlock> {
    prop_oneof![
        arb_text().prop_map(|text| ContentBlock::Text { text }),
        "[A-Za-z0-9+/]{0,12}".prop_map(|data| ContentBlock::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data
            }
        }),
        "[a-z]{1,8}".prop_map(|name| ContentBlock::Image {
            source: ImageSource::Url {
                url: format!("https://example.com/{name}.png")
            }
        }),
    ]
}

/// An assistant turn: optional text, then tool calls; and the ids it used.
fn arb_assistant_turn() -> impl Strategy<Value = Vec<ContentBlock>> {
    (
        proptest::option::of(arb_text()),
        proptest::collection::vec(
            (
                "[a-z_]{1,8}",
                proptest::collection::btree_map("[a-z]{1,4}", arb_text(), 0..3),
            ),
            0..3,
        ),
    )
        .prop_filter("an assistant turn says something", |(text, calls)| {
            text.is_some() || !calls.is_empty()
        })
        .prop_map(|(text, calls)| {
            let mut blocks: Vec<ContentBlock> = text
                .into_iter()
                .map(|text| ContentBlock::Text { text })
                .collect();
            for (k, (name, args)) in calls.into_iter().enumerate() {
                blocks.push(ContentBlock::ToolUse {
                    id: format!("toolu_{k}"),
                    name,
                    input: Value::Object(
                        args.into_iter()
                            .map(|(key, value)| (key, Value::String(value)))
                            .collect(),
                    ),
                });
            }
            blocks
        })
}

fn content(mut blocks: Vec<ContentBlock>) -> anthropic::Content {
    match blocks.as_mut_slice() {
        [ContentBlock::Text { text }] => anthropic::Content::Text(std::mem::take(text)),
        _ => anthropic::Content::Blocks(blocks),
    }
}

fn arb_request() -> impl Strategy<Value = MessagesRequest> {
    (
        proptest::option::of(arb_text()),
        proptest::collection::vec(
            (
                proptest::collection::vec(arb_user_block(), 1..3),
                arb_assistant_turn(),
            ),
            1..4,
        ),
        proptest::option::of(proptest::collection::vec(arb_text(), 1..3)),
        any::<bool>(),
    )
        .prop_map(|(system, turns, stop_sequences, stream)| {
            let mut messages = Vec::new();
            let mut results: Vec<ContentBlock> = Vec::new();
            for (user, assistant) in turns {
                // Answer the previous turn's tool calls first, as clients do.
                let mut blocks = std::mem::take(&mut results);
                blocks.extend(user);
                messages.push(anthropic::Message {
                    role: Role::User,
                    content: content(blocks),
                });
                for block in &assistant {
                    if let ContentBlock::ToolUse { id, name, .. } = block {
                        results.push(ContentBlock::ToolResult {
                            tool_use_id: id.clone(),
                            content: Some(anthropic::ToolResultContent::Text(format!(
                                "{name} done"
                            ))),
                            is_error: None,
                        });
                    }
                }
                messages.push(anthropic::Message {
                    role: Role::Assistant,
                    content: content(assistant),
                });
            }
            MessagesRequest {
                model: "claude-asked".into(),
                messages,
                max_tokens: 512,
                system: system.map(anthropic::System::Text),
                stop_sequences,
                temperature: Some(0.5),
                top_p: None,
                stream: stream.then_some(true),
                tools: None,
                tool_choice: None,
                extra: Map::new(),
            }
        })
}

proptest! {
    #[test]
    fn requests_round_trip_through_openai(request in arb_request()) {
        let chat = messages_to_chat(&request, &request.model).unwrap();
        let back = chat_to_messages(chat, 1).unwrap();
        prop_assert_eq!(back, request);
    }
}
