use super::*;
use crate::adapter::Conversion;
use crate::adapter::Endpoint;
use crate::anthropic;
use proptest::prelude::*;
use sluice_core::ProviderKind;

fn exchange(
    endpoint: Endpoint,
    kind: ProviderKind,
    conversion: Conversion,
    client_wants_usage: bool,
) -> Exchange {
    Exchange {
        provider: "p".into(),
        endpoint,
        kind,
        conversion,
        stream: true,
        client_wants_usage,
        base64: false,
    }
}

fn openai_passthrough(client_wants_usage: bool) -> Exchange {
    exchange(
        Endpoint::ChatCompletions,
        ProviderKind::OpenAi,
        Conversion::Passthrough,
        client_wants_usage,
    )
}

fn chunk(id: &str, content: &str) -> String {
    format!(
        r#"{{"id":"{id}","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":"{content}"}},"finish_reason":null}}]}}"#
    )
}

fn finish_chunk() -> String {
    r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_owned()
}

const USAGE_CHUNK: &str = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;

fn openai_wire() -> String {
    format!(
        "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: {USAGE_CHUNK}\n\ndata: [DONE]\n\n",
        chunk("c", "Hel"),
        chunk("c", "lo"),
        finish_chunk()
    )
}

/// Feeds `wire` in pieces cut at `cuts`; returns the output and the relay.
fn run(relay: &mut dyn StreamRelay, wire: &[u8], cuts: &[usize]) -> Result<Vec<u8>, RelayError> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts.into_iter().chain([wire.len()]) {
        relay.feed(&wire[at..cut.max(at)], &mut out)?;
        at = cut.max(at);
    }
    relay.finish()?;
    Ok(out)
}

fn events(out: &[u8]) -> Vec<SseEvent> {
    SseParser::new().feed(out).unwrap()
}

proptest! {
    /// However the upstream bytes are cut, the client gets the same events,
    /// each whole, and the usage is read.
    #[test]
    fn openai_passthrough_is_independent_of_cuts(cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let wire = openai_wire();
        let mut whole = stream_relay(&openai_passthrough(false), "m", 1);
        let expected = run(whole.as_mut(), wire.as_bytes(), &[]).unwrap();
        let mut relay = stream_relay(&openai_passthrough(false), "m", 1);
        let out = run(relay.as_mut(), wire.as_bytes(), &cuts).unwrap();
        prop_assert_eq!(&out, &expected);
        prop_assert_eq!(relay.usage(), Some(TokenUsage { prompt_tokens: 3, completion_tokens: 4 }));
    }

    #[test]
    fn anthropic_to_chat_is_independent_of_cuts(cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let wire = anthropic_wire();
        let x = exchange(Endpoint::ChatCompletions, ProviderKind::Anthropic, Conversion::ChatToMessages, true);
        let expected = run(stream_relay(&x, "m", 1).as_mut(), wire.as_bytes(), &[]).unwrap();
        let out = run(stream_relay(&x, "m", 1).as_mut(), wire.as_bytes(), &cuts).unwrap();
        prop_assert_eq!(out, expected);
    }
}

#[test]
fn the_usage_chunk_is_hidden_unless_the_client_asked() {
    let wire = openai_wire();
    let mut hidden = stream_relay(&openai_passthrough(false), "m", 1);
    let out = run(hidden.as_mut(), wire.as_bytes(), &[]).unwrap();
    let data: Vec<String> = events(&out).into_iter().map(|e| e.data).collect();
    assert_eq!(data.len(), 4, "{data:?}");
    assert!(data.iter().all(|d| !d.contains("\"usage\"")));
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert_eq!(hidden.usage().unwrap().total_tokens(), 7);

    let mut shown = stream_relay(&openai_passthrough(true), "m", 1);
    let out = run(shown.as_mut(), wire.as_bytes(), &[]).unwrap();
    assert_eq!(events(&out).len(), 5);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        wire,
        "a passthrough with nothing hidden is byte for byte the upstream's"
    );
}

#[test]
fn usage_riding_on_a_content_chunk_is_stripped_not_the_content() {
    let with_usage = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let wire = format!("data: {with_usage}\n\ndata: [DONE]\n\n");
    let mut relay = stream_relay(&openai_passthrough(false), "m", 1);
    let out = run(relay.as_mut(), wire.as_bytes(), &[]).unwrap();
    let first: serde_json::Value = serde_json::from_str(&events(&out)[0].data).unwrap();
    assert!(first.get("usage").is_none());
    assert_eq!(first["choices"][0]["delta"]["content"], "x");
    assert_eq!(relay.usage().unwrap().total_tokens(), 2);
}

#[test]
fn a_stream_cut_before_done_is_truncated() {
    let wire = format!("data: {}\n\n", chunk("c", "Hel"));
    let mut relay = stream_relay(&openai_passthrough(false), "m", 1);
    let mut out = Vec::new();
    relay.feed(wire.as_bytes(), &mut out).unwrap();
    assert_eq!(events(&out).len(), 1, "what came is relayed at once");
    assert_eq!(relay.finish(), Err(RelayError::Truncated));
    assert!(!relay.is_done());
}

#[test]
fn an_error_object_in_the_stream_is_reported() {
    let wire = format!(
        "data: {}\n\ndata: {{\"error\":{{\"message\":\"overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}\n\n",
        chunk("c", "a")
    );
    let mut relay = stream_relay(&openai_passthrough(false), "m", 1);
    let mut out = Vec::new();
    let err = relay.feed(wire.as_bytes(), &mut out).unwrap_err();
    assert_eq!(
        err,
        RelayError::Upstream {
            kind: "server_error".into(),
            message: "overloaded".into()
        }
    );
}

#[test]
fn garbage_in_a_stream_is_unreadable() {
    let mut relay = stream_relay(&openai_passthrough(false), "m", 1);
    let mut out = Vec::new();
    assert!(matches!(
        relay.feed(b"data: {not json\n\n", &mut out),
        Err(RelayError::Unreadable(_))
    ));
}

fn anthropic_wire() -> String {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type":"ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

#[test]
fn anthropic_passthrough_relays_every_event_and_reads_usage() {
    let x = exchange(
        Endpoint::Messages,
        ProviderKind::Anthropic,
        Conversion::Passthrough,
        false,
    );
    let wire = anthropic_wire();
    let mut relay = stream_relay(&x, "claude", 1);
    let out = run(relay.as_mut(), wire.as_bytes(), &[]).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), wire);
    assert!(relay.is_done());
    assert_eq!(
        relay.usage(),
        Some(TokenUsage {
            prompt_tokens: 9,
            completion_tokens: 5
        })
    );
    let cut = &wire[..wire.find("event: message_stop").unwrap()];
    let mut relay = stream_relay(&x, "claude", 1);
    assert_eq!(
        run(relay.as_mut(), cut.as_bytes(), &[]),
        Err(RelayError::Truncated)
    );
}

#[test]
fn anthropic_to_chat_ends_with_usage_when_asked_and_done() {
    let wire = anthropic_wire();
    for wants in [false, true] {
        let x = exchange(
            Endpoint::ChatCompletions,
            ProviderKind::Anthropic,
            Conversion::ChatToMessages,
            wants,
        );
        let mut relay = stream_relay(&x, "m", 42);
        let out = run(relay.as_mut(), wire.as_bytes(), &[]).unwrap();
        let data: Vec<String> = events(&out).into_iter().map(|e| e.data).collect();
        assert_eq!(data.last().unwrap(), "[DONE]");
        let usage_chunks = data.iter().filter(|d| d.contains("\"usage\"")).count();
        assert_eq!(usage_chunks, usize::from(wants), "{data:?}");
        let text: String = data
            .iter()
            .filter_map(|d| serde_json::from_str::<ChatChunk>(d).ok())
            .flat_map(|c| c.choices)
            .filter_map(|c| c.delta.content)
            .collect();
        assert_eq!(text, "Hi");
    }
}

#[test]
fn chat_to_anthropic_ends_with_message_stop() {
    let x = exchange(
        Endpoint::Messages,
        ProviderKind::OpenAi,
        Conversion::MessagesToChat,
        false,
    );
    let wire = openai_wire();
    let mut relay = stream_relay(&x, "public-name", 1);
    let out = run(relay.as_mut(), wire.as_bytes(), &[]).unwrap();
    let names: Vec<String> = events(&out)
        .into_iter()
        .map(|e| e.event.unwrap_or_default())
        .collect();
    assert_eq!(names.first().unwrap(), "message_start");
    assert_eq!(names[1], "ping");
    assert_eq!(names.last().unwrap(), "message_stop");
    assert!(names.contains(&"message_delta".to_owned()));
    assert_eq!(relay.usage().unwrap().total_tokens(), 7);
}

#[test]
fn whole_responses_convert_with_usage() {
    let chat = r#"{"id":"c1","object":"chat.completion","created":1,"model":"gpt","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}"#;
    let mut x = openai_passthrough(false);
    x.stream = false;
    let (body, usage) = convert_response(&x, Bytes::from(chat), "m", 1).unwrap();
    assert_eq!(&body[..], chat.as_bytes());
    assert_eq!(usage.unwrap().total_tokens(), 5);

    x.conversion = Conversion::MessagesToChat;
    x.endpoint = Endpoint::Messages;
    let (body, usage) = convert_response(&x, Bytes::from(chat), "public", 1).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "public");
    assert_eq!(v["content"][0]["text"], "Hi");
    assert_eq!(usage.unwrap().prompt_tokens, 2);

    let message = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Yo"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":4,"output_tokens":6}}"#;
    let x = exchange(
        Endpoint::ChatCompletions,
        ProviderKind::Anthropic,
        Conversion::ChatToMessages,
        false,
    );
    let (body, usage) = convert_response(&x, Bytes::from(message), "m", 77).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["created"], 77);
    assert_eq!(v["choices"][0]["message"]["content"], "Yo");
    assert_eq!(usage.unwrap().completion_tokens, 6);
    assert!(matches!(
        convert_response(&x, Bytes::from_static(b"<html>"), "m", 1),
        Err(RelayError::Unreadable(_))
    ));
}

#[test]
fn embeddings_usage_has_no_completion_tokens() {
    let mut x = openai_passthrough(false);
    x.endpoint = Endpoint::Embeddings;
    x.stream = false;
    let body =
        br#"{"object":"list","data":[],"model":"e","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    let (_, usage) = convert_response(&x, Bytes::from_static(body), "e", 1).unwrap();
    assert_eq!(
        usage,
        Some(TokenUsage {
            prompt_tokens: 8,
            completion_tokens: 0
        })
    );
}

#[test]
fn error_events_use_each_apis_framing() {
    let openai = String::from_utf8(error_event(Dialect::OpenAi, "server_error", "cut")).unwrap();
    assert!(openai.starts_with("data: {\"error\":"), "{openai}");
    assert!(openai.ends_with("\n\n"));
    let parsed: openai::ErrorBody =
        serde_json::from_str(&events(openai.as_bytes())[0].data).unwrap();
    assert_eq!(parsed.error.message, "cut");

    let anthropic =
        String::from_utf8(error_event(Dialect::Anthropic, "overloaded_error", "busy")).unwrap();
    let event = &events(anthropic.as_bytes())[0];
    assert_eq!(event.event.as_deref(), Some("error"));
    let parsed: anthropic::ErrorBody = serde_json::from_str(&event.data).unwrap();
    assert_eq!(parsed.error.kind, "overloaded_error");
}
