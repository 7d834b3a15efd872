use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::anthropic::MessagesResponse;
use crate::openai::{ChatChunk, ChatResponse, FinishReason};
use crate::sse::{SseEvent, SseParser};
use crate::translate::reverse::chat_response_to_messages;

fn response(body: Value) -> ChatResponse {
    serde_json::from_value(body).unwrap()
}

fn chunk(choices: Value, usage: Value) -> ChatChunk {
    serde_json::from_value(json!({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-up",
        "choices": choices, "usage": usage
    }))
    .unwrap()
}

fn delta(delta: Value, finish: Value) -> ChatChunk {
    chunk(
        json!([{"index": 0, "delta": delta, "finish_reason": finish}]),
        Value::Null,
    )
}

fn feed_all(stream: &mut ChatToMessagesStream, chunks: &[ChatChunk]) -> Vec<Value> {
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(stream.feed(chunk).unwrap());
    }
    events.extend(stream.finish().unwrap());
    events
        .iter()
        .map(|event| serde_json::to_value(event).unwrap())
        .collect()
}

/// A stream that has begun a text block.
fn saying_hi() -> ChatToMessagesStream {
    let mut stream = ChatToMessagesStream::new("c");
    let events = stream.feed(&delta(json!({"content": "hi"}), Value::Null));
    assert_eq!(events.unwrap().len(), 3);
    stream
}

fn usage_only(prompt: u64, completion: u64) -> ChatChunk {
    chunk(json!([]), upstream_usage(Some((prompt, completion))))
}

/// A stream of one delta, then `finish`, then `[DONE]`.
fn one_block_stream(first: Value, finish: &str) -> (Vec<Value>, ChatToMessagesStream) {
    let mut stream = ChatToMessagesStream::new("c");
    let chunks = [delta(first, Value::Null), delta(json!({}), json!(finish))];
    (feed_all(&mut stream, &chunks), stream)
}

#[test]
fn tool_stream_becomes_anthropic_events_in_order() {
    let chunks = [
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        delta(json!({"content": "Okay, let's check"}), Value::Null),
        delta(json!({"content": " the weather."}), Value::Null),
        delta(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        delta(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
            Value::Null,
        ),
        delta(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}}]}),
            Value::Null,
        ),
        delta(json!({}), json!("tool_calls")),
        usage_only(472, 89),
    ];
    let mut stream = ChatToMessagesStream::new("claude-asked");
    let events = feed_all(&mut stream, &chunks);
    assert_eq!(
        events,
        vec![
            json!({"type": "message_start", "message": {"id": "msg_chatcmpl-s", "type": "message", "role": "assistant", "model": "claude-asked", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay, let's check"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " the weather."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"San Francisco, CA\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 89, "input_tokens": 472}}),
            json!({"type": "message_stop"}),
        ]
    );
    assert_eq!(
        stream.usage(),
        Some(TokenUsage {
            prompt_tokens: 472,
            completion_tokens: 89
        })
    );
    assert!(stream.is_finished());
}

#[test]
fn message_delta_waits_for_the_usage_chunk() {
    let mut stream = saying_hi();
    let at_finish = stream.feed(&delta(json!({}), json!("stop"))).unwrap();
    assert_eq!(at_finish, vec![StreamEvent::ContentBlockStop { index: 0 }]);
    let at_usage = stream.feed(&usage_only(5, 1)).unwrap();
    assert_eq!(
        at_usage.iter().map(StreamEvent::name).collect::<Vec<_>>(),
        ["message_delta", "message_stop"]
    );
    assert!(stream.finish().unwrap().is_empty());
    assert!(matches!(
        stream.feed(&delta(json!({}), Value::Null)),
        Err(ReplyError::AfterEnd)
    ));
}

#[test]
fn without_a_usage_chunk_done_ends_the_message() {
    let (events, stream) = one_block_stream(json!({"content": "hi"}), "length");
    assert_eq!(
        events[events.len() - 2],
        json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"output_tokens": 0}})
    );
    assert_eq!(stream.usage(), None);
}

#[test]
fn a_usage_only_chunk_before_the_end_makes_no_content() {
    let mut stream = saying_hi();
    assert!(stream.feed(&usage_only(5, 1)).unwrap().is_empty());
    assert!(!stream.is_finished());
}

#[test]
fn a_stream_cut_before_its_finish_reason_is_an_error() {
    assert!(matches!(
        ChatToMessagesStream::new("c").finish(),
        Err(ReplyError::Truncated)
    ));
    let mut stream = saying_hi();
    assert!(matches!(stream.finish(), Err(ReplyError::Truncated)));
    assert!(!stream.is_finished());
}

#[test]
fn stream_protocol_violations_are_errors() {
    let call = |index: u32, id: Option<&str>, arguments: &str| {
        delta(
            json!({"tool_calls": [{"index": index, "id": id, "function": {"name": id.map(|_| "f"), "arguments": arguments}}]}),
            Value::Null,
        )
    };
    let mut stream = ChatToMessagesStream::new("c");
    assert!(matches!(
        stream.feed(&call(0, None, "{}")),
        Err(ReplyError::ToolCallUnnamed { index: 0 })
    ));

    let mut stream = ChatToMessagesStream::new("c");
    stream.feed(&call(0, Some("a"), "{}")).unwrap();
    stream.feed(&call(1, Some("b"), "{}")).unwrap();
    assert!(matches!(
        stream.feed(&call(0, None, "")),
        Err(ReplyError::ToolCallResumed { index: 0 })
    ));

    let mut stream = ChatToMessagesStream::new("c");
    stream.feed(&call(0, Some("a"), "{\"x\":")).unwrap();
    assert!(matches!(
        stream.feed(&delta(json!({}), json!("tool_calls"))),
        Err(ReplyError::ToolInput(e)) if e.path() == "tool_calls[0].function.arguments"
    ));

    let mut stream = ChatToMessagesStream::new("c");
    stream.feed(&delta(json!({}), json!("stop"))).unwrap();
    assert!(matches!(
        stream.feed(&delta(json!({"content": "late"}), Value::Null)),
        Err(ReplyError::AfterFinish)
    ));
}

#[test]
fn a_streamed_refusal_stops_with_refusal() {
    let (events, _) = one_block_stream(json!({"refusal": "No."}), "stop");
    assert_eq!(
        events[2],
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "No."}})
    );
    assert_eq!(
        events[4]["delta"]["stop_reason"],
        json!("refusal"),
        "{events:?}"
    );
}

// Properties. An OpenAI reply, streamed with text and tool arguments cut
// anywhere and its bytes split anywhere, must give the events whose content
// assembles to what the whole reply translates to, in Anthropic's order.

#[derive(Debug, Clone)]
struct Reply {
    text: String,
    calls: Vec<(String, Map<String, Value>)>,
    finish: FinishReason,
    usage: Option<(u64, u64)>,
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    let call = (
        "[a-z_]{1,10}",
        proptest::collection::btree_map("[a-z]{1,6}", "\\PC{0,10}", 0..4),
    )
        .prop_map(|(name, args)| {
            let args = args.into_iter().map(|(k, v)| (k, Value::String(v)));
            (name, args.collect())
        });
    (
        "\\PC{0,40}",
        proptest::collection::vec(call, 0..4),
        prop_oneof![
            Just(FinishReason::Stop),
            Just(FinishReason::Length),
            Just(FinishReason::ToolCalls),
            Just(FinishReason::ContentFilter),
        ],
        proptest::option::of((0u64..100_000, 0u64..100_000)),
    )
        .prop_map(|(text, calls, finish, usage)| Reply {
            text,
            calls,
            finish,
            usage,
        })
}

fn upstream_usage(usage: Option<(u64, u64)>) -> Value {
    usage.map_or(Value::Null, |(prompt, completion)| {
        json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
    })
}

fn whole_response(reply: &Reply) -> ChatResponse {
    let calls: Vec<Value> = reply
        .calls
        .iter()
        .enumerate()
        .map(|(k, (name, args))| json!({"id": format!("call_{k}"), "type": "function", "function": {"name": name, "arguments": Value::Object(args.clone()).to_string()}}))
        .collect();
    response(json!({
        "id": "chatcmpl-s", "object": "chat.completion", "created": 1, "model": "gpt-up",
        "choices": [{"index": 0, "finish_reason": reply.finish, "message": {
            "role": "assistant",
            "content": reply.text,
            "tool_calls": (!calls.is_empty()).then_some(calls)
        }}],
        "usage": upstream_usage(reply.usage)
    }))
}

/// `text` in pieces of the given lengths in chars, then the rest.
fn pieces(text: &str, lengths: &[usize]) -> Vec<String> {
    let mut chars = text.chars();
    let mut out: Vec<String> = lengths
        .iter()
        .map(|&n| chars.by_ref().take(n).collect())
        .collect();
    out.push(chars.collect());
    out
}

/// The reply as an OpenAI-compatible server streams it, as SSE bytes.
fn streamed(reply: &Reply, lengths: &[usize]) -> Vec<u8> {
    let mut chunks = vec![delta(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for piece in pieces(&reply.text, lengths) {
        chunks.push(delta(json!({"content": piece}), Value::Null));
    }
    for (k, (name, args)) in reply.calls.iter().enumerate() {
        let arguments = Value::Object(args.clone()).to_string();
        for (p, piece) in pieces(&arguments, lengths).into_iter().enumerate() {
            let call = if p == 0 {
                json!({"index": k, "id": format!("call_{k}"), "type": "function", "function": {"name": name, "arguments": piece}})
            } else {
                json!({"index": k, "function": {"arguments": piece}})
            };
            chunks.push(delta(json!({"tool_calls": [call]}), Value::Null));
        }
    }
    chunks.push(delta(json!({}), json!(reply.finish)));
    if reply.usage.is_some() {
        chunks.push(chunk(json!([]), upstream_usage(reply.usage)));
    }
    let mut wire = Vec::new();
    for chunk in &chunks {
        let data = serde_json::to_string(chunk).unwrap();
        SseEvent::data(data).encode_into(&mut wire).unwrap();
    }
    SseEvent::data(openai::STREAM_DONE)
        .encode_into(&mut wire)
        .unwrap();
    wire
}

/// Runs SSE bytes, split at `cuts`, through the parser and the translator.
fn translate_wire(wire: &[u8], cuts: &[usize]) -> (Vec<StreamEvent>, ChatToMessagesStream) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parser = SseParser::new();
    let mut stream = ChatToMessagesStream::new("claude-asked");
    let mut events = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([wire.len()]) {
        for sse in parser.feed(&wire[from..cut]).unwrap() {
            if sse.data == openai::STREAM_DONE {
                events.extend(stream.finish().unwrap());
            } else {
                let chunk: ChatChunk = serde_json::from_str(&sse.data).unwrap();
                events.extend(stream.feed(&chunk).unwrap());
            }
        }
        from = cut;
    }
    (events, stream)
}

/// What an Anthropic client assembles from the events.
fn assemble(events: &[StreamEvent]) -> MessagesResponse {
    let mut message = None;
    let mut partial_json: Vec<String> = Vec::new();
    for event in events {
        match event {
            StreamEvent::MessageStart { message: start } => message = Some(start.clone()),
            StreamEvent::ContentBlockStart { content_block, .. } => {
                let message = message.as_mut().unwrap();
                message.content.push(content_block.clone());
                partial_json.push(String::new());
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let message = message.as_mut().unwrap();
                match (&mut message.content[*index as usize], delta) {
                    (ContentBlock::Text { text }, BlockDelta::TextDelta { text: more }) => {
                        text.push_str(more)
                    }
                    (
                        ContentBlock::ToolUse { .. },
                        BlockDelta::InputJsonDelta { partial_json: more },
                    ) => partial_json[*index as usize].push_str(more),
                    other => panic!("delta does not fit its block: {other:?}"),
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                let message = message.as_mut().unwrap();
                if let ContentBlock::ToolUse { input, .. } = &mut message.content[*index as usize] {
                    let json = &partial_json[*index as usize];
                    if !json.is_empty() {
                        *input = serde_json::from_str(json).unwrap();
                    }
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                let message = message.as_mut().unwrap();
                message.stop_reason = delta.stop_reason;
                message.usage.output_tokens = usage.output_tokens;
                message.usage.input_tokens = usage.input_tokens.unwrap_or(0);
                message.usage.cache_read_input_tokens = usage.cache_read_input_tokens;
            }
            _ => {}
        }
    }
    message.unwrap()
}

/// Anthropic's framing: `message_start` first, `message_stop` last,
/// `message_delta` just before it, block indexes counting up from 0, each
/// block started once, stopped once, with deltas only while open.
fn check_framing(events: &[StreamEvent]) -> Result<(), TestCaseError> {
    let names: Vec<&str> = events.iter().map(StreamEvent::name).collect();
    prop_assert_eq!(names.first(), Some(&"message_start"));
    prop_assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    prop_assert_eq!(names.iter().filter(|n| **n == "message_start").count(), 1);
    prop_assert_eq!(names.iter().filter(|n| **n == "message_delta").count(), 1);
    let mut open: Option<u32> = None;
    let mut next = 0;
    for event in &events[1..events.len() - 2] {
        match event {
            StreamEvent::ContentBlockStart { index, .. } => {
                prop_assert_eq!(open, None);
                prop_assert_eq!(*index, next);
                open = Some(*index);
                next += 1;
            }
            StreamEvent::ContentBlockDelta { index, .. } => prop_assert_eq!(open, Some(*index)),
            StreamEvent::ContentBlockStop { index } => {
                prop_assert_eq!(open.take(), Some(*index));
            }
            other => prop_assert!(false, "unexpected {other:?}"),
        }
    }
    prop_assert_eq!(open, None);
    Ok(())
}

proptest! {
    #[test]
    fn streamed_reply_assembles_to_the_whole_reply(
        reply in arb_reply(),
        lengths in proptest::collection::vec(0usize..12, 0..5),
        byte_cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let wire = streamed(&reply, &lengths);
        let (events, stream) = translate_wire(&wire, &byte_cuts);
        prop_assert!(stream.is_finished());
        let whole = chat_response_to_messages(&whole_response(&reply), "claude-asked").unwrap();
        prop_assert_eq!(assemble(&events), whole);
        prop_assert_eq!(stream.usage(), reply.usage.map(|(prompt, completion)| TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
        }));
    }

    #[test]
    fn streamed_events_are_framed_as_anthropic_frames_them(
        reply in arb_reply(),
        lengths in proptest::collection::vec(0usize..12, 0..8),
    ) {
        let (events, _) = translate_wire(&streamed(&reply, &lengths), &[]);
        check_framing(&events)?;
    }
}
