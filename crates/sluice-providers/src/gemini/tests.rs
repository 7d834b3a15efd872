use super::*;
use proptest::prelude::*;

fn chat(body: Value) -> openai::ChatRequest {
    serde_json::from_value(body).unwrap()
}

fn path_of(err: TranslateError) -> String {
    err.path().to_owned()
}

#[test]
fn a_conversation_with_tools_becomes_alternating_turns() {
    let request = chat(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": "and kind"},
            {"role": "user", "content": [
                {"type": "text", "text": "weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
            {"role": "assistant", "content": "21 degrees at noon"},
            {"role": "user", "content": "thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": "END", "seed": 7,
        "response_format": {"type": "json_object"}
    }));
    let gemini = serde_json::to_value(chat_to_gemini(&request).unwrap()).unwrap();
    assert_eq!(
        gemini["systemInstruction"],
        json!({"parts": [{"text": "be brief\n\nand kind"}]})
    );
    let roles: Vec<&str> = gemini["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user", "model", "user"]);
    assert_eq!(
        gemini["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBO"}})
    );
    assert_eq!(
        gemini["contents"][1]["parts"],
        json!([
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {}}}
        ])
    );
    // Both results in one user turn, each named after its call.
    assert_eq!(
        gemini["contents"][2]["parts"],
        json!([
            {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}}
        ])
    );
    assert_eq!(
        gemini["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["properties"]["city"],
        json!({"type": "string"})
    );
    assert_eq!(
        gemini["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_eq!(
        gemini["generationConfig"],
        json!({"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 100, "stopSequences": ["END"],
               "seed": 7, "responseMimeType": "application/json"})
    );
}

#[test]
fn what_cannot_be_sent_names_its_field() {
    let base = |messages: Value| chat(json!({"model": "m", "messages": messages}));
    let cases = [
        (
            base(
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]),
            ),
            "messages[0].content[0].image_url.url",
        ),
        (
            base(json!([{"role": "tool", "tool_call_id": "nope", "content": "x"}])),
            "messages[0].tool_call_id",
        ),
        (
            base(
                json!([{"role": "assistant", "content": null, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]),
            ),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            base(json!([{"role": "system", "content": "only"}])),
            "messages",
        ),
    ];
    for (request, path) in cases {
        assert_eq!(path_of(chat_to_gemini(&request).unwrap_err()), path);
    }
    let mut n = base(json!([{"role": "user", "content": "hi"}]));
    n.extra.insert("n".into(), json!(2));
    assert_eq!(path_of(chat_to_gemini(&n).unwrap_err()), "n");
    let mut format = base(json!([{"role": "user", "content": "hi"}]));
    format
        .extra
        .insert("response_format".into(), json!({"type": "xml"}));
    assert_eq!(
        path_of(chat_to_gemini(&format).unwrap_err()),
        "response_format.type"
    );
}

#[test]
fn an_answer_becomes_a_chat_completion() {
    let answer: GenerateResponse = serde_json::from_value(json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"text": "It is "}, {"text": "sunny."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3, "totalTokenCount": 18},
        "responseId": "abc"
    }))
    .unwrap();
    let (response, usage) = gemini_to_chat(&answer, "route", 9).unwrap();
    let value = serde_json::to_value(&response).unwrap();
    assert_eq!(value["id"], "chatcmpl-abc");
    assert_eq!(value["model"], "route");
    assert_eq!(value["choices"][0]["message"]["content"], "It is sunny.");
    assert_eq!(
        value["choices"][0]["message"]["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
    );
    assert_eq!(value["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        usage,
        Some(TokenUsage {
            prompt_tokens: 10,
            completion_tokens: 8
        })
    );
    for (reason, expected) in [
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("STOP", "stop"),
    ] {
        let answer: GenerateResponse = serde_json::from_value(json!({
            "candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]
        }))
        .unwrap();
        let (response, _) = gemini_to_chat(&answer, "m", 0).unwrap();
        let value = serde_json::to_value(&response).unwrap();
        assert_eq!(value["choices"][0]["finish_reason"], expected);
    }
    let blocked: GenerateResponse =
        serde_json::from_value(json!({"promptFeedback": {"blockReason": "SAFETY"}})).unwrap();
    let (response, _) = gemini_to_chat(&blocked, "m", 0).unwrap();
    assert_eq!(
        serde_json::to_value(&response).unwrap()["choices"][0]["finish_reason"],
        "content_filter"
    );
    assert!(gemini_to_chat(&GenerateResponse::default(), "m", 0).is_err());
}

/// A Gemini stream's bytes: text in `pieces`, then a finish with usage.
fn stream_bytes(pieces: &[&str], call: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let event = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}],
                           "responseId": "s1", "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": i + 1}});
        out.extend_from_slice(format!("data: {event}\r\n\r\n").as_bytes());
    }
    let mut last = json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}],
                          "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": pieces.len() + 1, "totalTokenCount": 4 + pieces.len()}});
    if call {
        last["candidates"][0]["content"]["parts"] =
            json!([{"functionCall": {"name": "f", "args": {"a": 1}}}]);
    }
    out.extend_from_slice(format!("data: {last}\r\n\r\n").as_bytes());
    out
}

fn relay_all(bytes: &[u8], cuts: &[usize], wants_usage: bool) -> (String, GeminiToChat) {
    let mut relay = GeminiToChat::new("route", 5, wants_usage);
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(at, bytes.len());
        relay.feed(&bytes[at..cut], &mut out).unwrap();
        at = cut;
    }
    (String::from_utf8(out).unwrap(), relay)
}

fn chunks_of(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn a_stream_becomes_chat_chunks_ending_with_usage_and_done() {
    let (text, relay) = relay_all(&stream_bytes(&["Hel", "lo"], true), &[], true);
    assert!(relay.is_done() && relay.finish().is_ok());
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks = chunks_of(&text);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["id"], "chatcmpl-s1");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello");
    let call = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"]["tool_calls"].is_array())
        .unwrap();
    assert_eq!(
        call["choices"][0]["delta"]["tool_calls"][0]["function"],
        json!({"name": "f", "arguments": "{\"a\":1}"})
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 6);
    assert_eq!(relay.usage().unwrap().total_tokens(), 6);

    let (hidden, relay) = relay_all(&stream_bytes(&["x"], false), &[], false);
    assert!(chunks_of(&hidden).iter().all(|c| c.get("usage").is_none()));
    assert!(relay.usage().is_some(), "read even when not shown");
}

#[test]
fn a_cut_or_failing_stream_is_reported() {
    let bytes = stream_bytes(&["a", "b"], false);
    // Everything but the finishing event.
    let cut = bytes.len() - 200.min(bytes.len() / 2);
    let mut relay = GeminiToChat::new("m", 0, false);
    let mut out = Vec::new();
    relay.feed(&bytes[..cut], &mut out).unwrap();
    assert_eq!(relay.finish(), Err(RelayError::Truncated));
    let mut relay = GeminiToChat::new("m", 0, false);
    let error = json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}});
    assert_eq!(
        relay.feed(format!("data: {error}\n\n").as_bytes(), &mut out),
        Err(RelayError::Upstream {
            kind: "UNAVAILABLE".into(),
            message: "overloaded".into()
        })
    );
}

proptest! {
    /// Bytes split anywhere relay to exactly what they relay whole.
    #[test]
    fn splitting_never_changes_the_stream(
        pieces in prop::collection::vec("[a-z ]{0,6}", 0..5),
        call in any::<bool>(),
        wants_usage in any::<bool>(),
        mut cuts in prop::collection::vec(0usize..2000, 0..8),
    ) {
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let bytes = stream_bytes(&pieces, call);
        cuts.sort_unstable();
        let (whole, _) = relay_all(&bytes, &[], wants_usage);
        let (split, relay) = relay_all(&bytes, &cuts, wants_usage);
        prop_assert_eq!(whole, split);
        prop_assert!(relay.is_done());
    }

    /// Any bytes: events or an error, never a panic.
    #[test]
    fn any_bytes_are_read_safely(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut relay = GeminiToChat::new("m", 0, true);
        let mut out = Vec::new();
        let _ = relay.feed(&bytes, &mut out);
    }
}
