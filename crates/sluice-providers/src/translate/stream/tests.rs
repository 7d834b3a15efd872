use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::anthropic::{ContentBlock, MessagesResponse, StopReason};
use crate::openai::FinishReason;
use crate::sse::SseParser;
use crate::translate::messages_to_chat_response;

fn event(raw: &str) -> StreamEvent {
    serde_json::from_str(raw).unwrap()
}

#[test]
fn real_tool_stream_translates_to_openai_chunks() {
    let mut translator = StreamTranslator::new(7);
    let chunks: Vec<Value> = crate::anthropic::tests::TOOL_STREAM
        .iter()
        .filter_map(|raw| translator.translate(&event(raw)).unwrap())
        .map(|chunk| serde_json::to_value(chunk).unwrap())
        .collect();
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(*deltas[0], json!({"role": "assistant", "content": ""}));
    assert_eq!(*deltas[1], json!({"content": "Okay, let's check"}));
    assert_eq!(*deltas[2], json!({"content": " the weather."}));
    assert_eq!(
        *deltas[3],
        json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
    );
    assert_eq!(
        *deltas[5],
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]})
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], json!("tool_calls"));
    assert_eq!(last["object"], json!("chat.completion.chunk"));
    assert_eq!(last["id"], json!("msg_014p7gG3wDgGV9EUtLvnow3U"));
    assert!(translator.is_finished());
    let usage = serde_json::to_value(translator.usage_chunk().unwrap()).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561})
    );
}

#[test]
fn upstream_error_event_becomes_an_error() {
    let mut translator = StreamTranslator::new(0);
    translator
        .translate(&event(crate::anthropic::tests::TOOL_STREAM[0]))
        .unwrap();
    let error = translator
        .translate(&event(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ))
        .unwrap_err();
    assert!(matches!(&error, StreamError::Upstream(e) if e.kind == "overloaded_error"));
    assert!(!translator.is_finished());
}

#[test]
fn protocol_violations_are_errors() {
    let mut translator = StreamTranslator::new(0);
    assert!(matches!(
        translator.translate(&event(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#
        )),
        Err(StreamError::NotStarted { .. })
    ));
    translator
        .translate(&event(crate::anthropic::tests::TOOL_STREAM[0]))
        .unwrap();
    assert!(matches!(
        translator.translate(&event(
            r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{"}}"#
        )),
        Err(StreamError::NotAToolBlock { index: 3 })
    ));
    assert!(matches!(
        translator.translate_sse(&SseEvent::named("content_block_delta", "{not json")),
        Err(StreamError::Unreadable { .. })
    ));
}

// The stream, built as Anthropic would send it, must translate to what the
// whole response translates to, however text, JSON and bytes are cut.

#[derive(Debug, Clone)]
enum Block {
    Text(String),
    Tool(String, serde_json::Map<String, Value>),
}

fn arb_block() -> impl Strategy<Value = Block> {
    prop_oneof![
        "\\PC{0,30}".prop_map(Block::Text),
        (
            "[a-z_]{1,10}",
            proptest::collection::btree_map("[a-z]{1,6}", "\\PC{0,10}", 0..4)
        )
            .prop_map(|(name, args)| Block::Tool(
                name,
                args.into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect()
            )),
    ]
}

fn arb_stop() -> impl Strategy<Value = StopReason> {
    prop_oneof![
        Just(StopReason::EndTurn),
        Just(StopReason::MaxTokens),
        Just(StopReason::StopSequence),
        Just(StopReason::ToolUse),
    ]
}

/// Cuts `text` at the given points (modulo its length, moved back to char boundaries).
fn split(text: &str, cuts: &[usize]) -> Vec<String> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| {
            let mut at = c % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        })
        .collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for at in points.into_iter().chain([text.len()]) {
        pieces.push(text[from..at].to_owned());
        from = at;
    }
    pieces
}

fn stream_of(response: &MessagesResponse, cuts: &[usize]) -> Vec<Value> {
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": response.id, "type": "message", "role": "assistant", "model": response.model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": response.usage.input_tokens, "output_tokens": 1}
    }})];
    for (index, block) in response.content.iter().enumerate() {
        match block {
            ContentBlock::Text { text } => {
                events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}));
                for piece in split(text, cuts) {
                    events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}));
                }
            }
            ContentBlock::ToolUse { id, name, input } => {
                events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
                events.push(json!({"type": "ping"}));
                for piece in split(&input.to_string(), cuts) {
                    events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}));
                }
            }
            _ => unreachable!("the strategy makes text and tool_use blocks only"),
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": response.stop_reason, "stop_sequence": null}, "usage": {"output_tokens": response.usage.output_tokens}}));
    events.push(json!({"type": "message_stop"}));
    events
}

/// What an OpenAI client assembles from the chunks: text, tool calls by index,
/// finish reason.
#[derive(Debug, Default, PartialEq)]
struct Assembled {
    text: String,
    tools: Vec<(String, String, String)>,
    finish: Option<FinishReason>,
}

fn assemble(chunks: &[ChatChunk]) -> Assembled {
    let mut out = Assembled::default();
    for chunk in chunks {
        for choice in &chunk.choices {
            out.text
                .push_str(choice.delta.content.as_deref().unwrap_or(""));
            for call in choice.delta.tool_calls.iter().flatten() {
                let index = call.index as usize;
                if out.tools.len() <= index {
                    out.tools.resize(index + 1, Default::default());
                }
                let slot = &mut out.tools[index];
                if let Some(id) = &call.id {
                    slot.0.clone_from(id);
                }
                if let Some(function) = &call.function {
                    if let Some(name) = &function.name {
                        slot.1.clone_from(name);
                    }
                    slot.2.push_str(function.arguments.as_deref().unwrap_or(""));
                }
            }
            if choice.finish_reason.is_some() {
                out.finish = choice.finish_reason;
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn chunked_stream_translates_like_the_whole_response(
        blocks in proptest::collection::vec(arb_block(), 0..5),
        stop in arb_stop(),
        input_tokens in 0u64..100_000,
        output_tokens in 1u64..100_000,
        text_cuts in proptest::collection::vec(any::<usize>(), 0..4),
        byte_cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let content: Vec<ContentBlock> = blocks
            .into_iter()
            .enumerate()
            .map(|(i, block)| match block {
                Block::Text(text) => ContentBlock::Text { text },
                Block::Tool(name, args) => ContentBlock::ToolUse {
                    id: format!("toolu_{i}"),
                    name,
                    input: Value::Object(args),
                },
            })
            .collect();
        let response = MessagesResponse {
            id: "msg_prop".into(),
            role: crate::anthropic::Role::Assistant,
            model: "claude-test".into(),
            content,
            stop_reason: Some(stop),
            stop_sequence: None,
            usage: crate::anthropic::Usage { input_tokens, output_tokens, ..Default::default() },
        };

        let mut wire = Vec::new();
        for event in stream_of(&response, &text_cuts) {
            let name = event["type"].as_str().unwrap().to_owned();
            SseEvent::named(name, event.to_string()).encode_into(&mut wire).unwrap();
        }
        let mut cuts: Vec<usize> = byte_cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.sort_unstable();
        let mut parser = SseParser::new();
        let mut translator = StreamTranslator::new(1);
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([wire.len()]) {
            for sse in parser.feed(&wire[from..cut]).unwrap() {
                chunks.extend(translator.translate_sse(&sse).unwrap());
            }
            from = cut;
        }
        prop_assert!(translator.is_finished());

        let whole = messages_to_chat_response(response, 1);
        let message = &whole.choices[0].message;
        let expected = Assembled {
            text: message.content.clone().unwrap_or_default(),
            tools: message
                .tool_calls
                .iter()
                .flatten()
                .map(|c| (c.id.clone(), c.function.name.clone(), c.function.arguments.clone()))
                .collect(),
            finish: whole.choices[0].finish_reason,
        };
        prop_assert_eq!(assemble(&chunks), expected);
        prop_assert_eq!(translator.usage_chunk().unwrap().usage, whole.usage);
    }
}
