use super::*;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message as Frame_};
use proptest::prelude::*;

/// One event-stream frame as Bedrock sends it.
pub(crate) fn frame(kind: &str, payload: &Value) -> Vec<u8> {
    let message = Frame_::new(serde_json::to_vec(payload).unwrap())
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(kind.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    out
}

fn exception(kind: &str, message: &str) -> Vec<u8> {
    let message = Frame_::new(serde_json::to_vec(&json!({ "message": message })).unwrap())
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(kind.to_owned().into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("exception".into()),
        ));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    out
}

/// The frames of a streamed text answer.
pub(crate) fn text_stream(pieces: &[&str], stop: &str, input: u64, output: u64) -> Vec<Vec<u8>> {
    let mut frames = vec![frame("messageStart", &json!({"role": "assistant"}))];
    for piece in pieces {
        frames.push(frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
        ));
    }
    frames.push(frame("contentBlockStop", &json!({"contentBlockIndex": 0})));
    frames.push(frame("messageStop", &json!({ "stopReason": stop })));
    frames.push(frame(
        "metadata",
        &json!({"usage": {"inputTokens": input, "outputTokens": output,
                          "totalTokens": input + output},
                "metrics": {"latencyMs": 5}}),
    ));
    frames
}

fn tool_stream() -> Vec<Vec<u8>> {
    vec![
        frame("messageStart", &json!({"role": "assistant"})),
        frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "Let me look."}}),
        ),
        frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
        frame(
            "contentBlockStart",
            &json!({"contentBlockIndex": 1,
                    "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "weather"}}}),
        ),
        frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}),
        ),
        frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Oslo\"}"}}}),
        ),
        frame("contentBlockStop", &json!({"contentBlockIndex": 1})),
        frame("messageStop", &json!({"stopReason": "tool_use"})),
        frame(
            "metadata",
            &json!({"usage": {"inputTokens": 10, "outputTokens": 7, "totalTokens": 17}}),
        ),
    ]
}

fn chat(body: Value) -> openai::ChatRequest {
    serde_json::from_value(body).unwrap()
}

fn chunks_of(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn a_conversation_with_tools_and_images_translates() {
    let request = chat(json!({
        "model": "m",
        "messages": [
            {"role": "developer", "content": "terse"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"c\": 3}"},
            {"role": "tool", "tool_call_id": "call_1", "content": "plain"},
            {"role": "user", "content": "thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "d",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "temperature": 0.5, "top_p": 0.9, "stop": "END", "max_completion_tokens": 9,
        "seed": 3, "user": "u"
    }));
    let converse = chat_to_converse(&request).unwrap();
    let body = serde_json::to_value(&converse).unwrap();
    assert_eq!(body["system"], json!([{"text": "terse"}]));
    assert_eq!(
        body["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw0K"}}})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": [{"toolUse":
            {"toolUseId": "call_1", "name": "weather", "input": {"city": "Oslo"}}}]})
    );
    // Both results and the next user text are one user turn.
    assert_eq!(body["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["messages"][2]["content"][0]["toolResult"],
        json!({"toolUseId": "call_1", "content": [{"json": {"c": 3}}]})
    );
    assert_eq!(
        body["messages"][2]["content"][1]["toolResult"]["content"],
        json!([{"text": "plain"}])
    );
    assert_eq!(body["messages"][2]["content"][2], json!({"text": "thanks"}));
    assert_eq!(
        body["inferenceConfig"],
        json!({"maxTokens": 9, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
    );
    assert_eq!(body["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["city"],
        json!({"type": "string"})
    );
    assert!(body.get("seed").is_none() && body.get("user").is_none());
}

#[test]
fn what_cannot_translate_is_refused_naming_the_field() {
    for (body, field) in [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
    ] {
        let mut request = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        request
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let error = chat_to_converse(&chat(request)).unwrap_err();
        assert_eq!(error.path(), field);
    }
    let url_image = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}),
    );
    assert_eq!(
        chat_to_converse(&url_image).unwrap_err().path(),
        "messages[0].content[0].image_url.url"
    );
    let none_after_calls = chat(json!({"model": "m", "tool_choice": "none",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"}]}));
    assert_eq!(
        chat_to_converse(&none_after_calls).unwrap_err().path(),
        "tool_choice"
    );
    // Without tool calls yet, `none` sends no tools at all.
    let none = chat(json!({"model": "m", "tool_choice": "none",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(chat_to_converse(&none).unwrap().tool_config, None);
    let only_system = chat(json!({"model": "m", "messages": [{"role": "system", "content": "x"}]}));
    assert_eq!(
        chat_to_converse(&only_system).unwrap_err().path(),
        "messages"
    );
}

#[test]
fn a_whole_answer_with_a_tool_call_becomes_a_chat_completion() {
    let answer: ConverseResponse = serde_json::from_value(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Checking."},
            {"reasoningContent": {"reasoningText": {"text": "hmm"}}},
            {"toolUse": {"toolUseId": "tooluse_9", "name": "weather", "input": {"city": "Oslo"}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8,
                  "cacheReadInputTokens": 2, "cacheWriteInputTokens": 1}
    }))
    .unwrap();
    let (chat, usage) = converse_to_chat(&answer, "m", 9).unwrap();
    let message = &chat.choices[0].message;
    assert_eq!(message.content.as_deref(), Some("Checking."));
    let call = &message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "tooluse_9");
    assert_eq!(call.function.arguments, r#"{"city":"Oslo"}"#);
    assert_eq!(chat.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let usage = usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (8, 3));

    for (stop, finish) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("guardrail_intervened", FinishReason::ContentFilter),
        ("content_filtered", FinishReason::ContentFilter),
    ] {
        let answer: ConverseResponse = serde_json::from_value(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
            "stopReason": stop}))
        .unwrap();
        let (chat, _) = converse_to_chat(&answer, "m", 0).unwrap();
        assert_eq!(chat.choices[0].finish_reason, Some(finish), "{stop}");
    }
    assert!(converse_to_chat(&ConverseResponse::default(), "m", 0).is_err());
}

#[test]
fn a_stream_becomes_chunks_with_its_usage_last() {
    let mut relay = ConverseToChat::new("m", 1, true);
    let mut out = Vec::new();
    for frame in text_stream(&["Hel", "lo"], "end_turn", 3, 2) {
        relay.feed(&frame, &mut out).unwrap();
    }
    assert!(relay.is_done());
    relay.finish().unwrap();
    let chunks = chunks_of(&out);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hel");
    assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "lo");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["usage"]["total_tokens"], 5);
    assert!(String::from_utf8(out)
        .unwrap()
        .ends_with("data: [DONE]\n\n"));

    // Without the client asking, no usage chunk (it is still read).
    let mut relay = ConverseToChat::new("m", 1, false);
    let mut out = Vec::new();
    for frame in text_stream(&["x"], "max_tokens", 3, 1) {
        relay.feed(&frame, &mut out).unwrap();
    }
    let chunks = chunks_of(&out);
    assert!(chunks
        .iter()
        .all(|c| c.get("usage").is_none_or(Value::is_null)));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    assert_eq!(relay.usage().unwrap().total_tokens(), 4);
}

#[test]
fn streamed_tool_calls_keep_their_ids_and_input_pieces() {
    let mut relay = ConverseToChat::new("m", 1, false);
    let mut out = Vec::new();
    for frame in tool_stream() {
        relay.feed(&frame, &mut out).unwrap();
    }
    let chunks = chunks_of(&out);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls[0][0]["id"], "tooluse_1");
    assert_eq!(calls[0][0]["function"]["name"], "weather");
    let arguments: String = calls
        .iter()
        .filter_map(|c| c[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, r#"{"city":"Oslo"}"#);
    assert!(calls.iter().all(|c| c[0]["index"] == 0));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(relay.usage().unwrap().total_tokens(), 17);
}

#[test]
fn a_cut_stream_a_failure_and_a_hostile_length_are_errors() {
    // Cut after messageStop: the metadata (and its usage) never came.
    let frames = text_stream(&["a"], "end_turn", 1, 1);
    let mut relay = ConverseToChat::new("m", 1, false);
    let mut out = Vec::new();
    for frame in &frames[..frames.len() - 1] {
        relay.feed(frame, &mut out).unwrap();
    }
    // And half a frame.
    let last = &frames[frames.len() - 1];
    relay.feed(&last[..last.len() / 2], &mut out).unwrap();
    assert!(matches!(relay.finish(), Err(RelayError::Truncated)));

    let mut relay = ConverseToChat::new("m", 1, false);
    relay.feed(&frames[0], &mut out).unwrap();
    let error = relay
        .feed(
            &exception("throttlingException", "Too many tokens"),
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(&error, RelayError::Upstream { kind, message }
            if kind == "throttlingException" && message == "Too many tokens"),
        "{error:?}"
    );

    let mut relay = ConverseToChat::new("m", 1, false);
    let huge = u32::MAX.to_be_bytes();
    assert!(matches!(
        relay.feed(&huge, &mut out),
        Err(RelayError::Unreadable(_))
    ));
    // A damaged frame fails its CRC.
    let mut damaged = frames[0].clone();
    let at = damaged.len() - 6;
    damaged[at] ^= 0xff;
    let mut relay = ConverseToChat::new("m", 1, false);
    assert!(matches!(
        relay.feed(&damaged, &mut out),
        Err(RelayError::Unreadable(_))
    ));
}

proptest! {
    /// However the upstream's bytes are split, the client gets the same
    /// chunks and the same usage.
    #[test]
    fn the_relay_is_split_invariant(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
        let whole: Vec<u8> = tool_stream().concat();
        let mut expected = Vec::new();
        let mut relay = ConverseToChat::new("m", 1, true);
        relay.feed(&whole, &mut expected).unwrap();
        prop_assert!(relay.is_done());

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (whole.len() + 1)).collect();
        cuts.sort_unstable();
        let mut relay = ConverseToChat::new("m", 1, true);
        let mut out = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([whole.len()]) {
            relay.feed(&whole[from..cut], &mut out).unwrap();
            from = cut;
        }
        prop_assert_eq!(out, expected);
        prop_assert_eq!(relay.usage().unwrap().total_tokens(), 17);
    }

    /// Any bytes: an error or chunks, never a panic or unbounded growth.
    #[test]
    fn any_bytes_are_survived(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut relay = ConverseToChat::new("m", 1, true);
        let mut out = Vec::new();
        let _ = relay.feed(&bytes, &mut out);
        prop_assert!(relay.frames.buffer.len() <= MAX_FRAME);
    }
}
