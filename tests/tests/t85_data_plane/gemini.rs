//! Gemini providers (`kind = "gemini"`) through every node, against a mock
//! that speaks Gemini's API and takes its key only in `x-goog-api-key`:
//! OpenAI chat and Anthropic Messages clients translated both ways,
//! streamed and not, embeddings, upstream errors, a cut stream, usage and
//! a quota.

use super::*;
use sluice_e2e::dataplane::MockLlm;

const GEMINI_KEY: &str = "AIza-e2e-gemini-key";

/// A mock requiring [`GEMINI_KEY`], and a `gemini` provider `name` on it
/// sending `headers`.
fn gemini_mock(plane: &DataPlane) -> MockLlm {
    MockLlm::start_with(
        &plane.cluster.root().join("mock-gemini.log"),
        plane.cluster.deadline(),
        &["--api-key-env", "MOCK_GEMINI_KEY"],
        &[("MOCK_GEMINI_KEY", GEMINI_KEY)],
    )
}

fn gemini_provider(plane: &DataPlane, name: &str, mock: &MockLlm, key: &str, headers: Value) {
    plane.write(
        "/admin/v1/providers",
        &json!({
            "name": name,
            "kind": "gemini",
            "base_url": format!("{}/v1beta", mock.url()),
            "api_key": key,
            "headers": headers,
        }),
    );
}

#[test]
fn gemini_serves_chat_messages_and_embeddings_on_every_node() {
    let plane = start();
    let gemini = gemini_mock(&plane);
    gemini_provider(&plane, "gem", &gemini, GEMINI_KEY, json!({}));
    plane.create_route("gem", &[("gem", "mock-gpt", 1)], &[]);
    plane.create_route("gem-embed", &[("gem", "mock-embed", 1)], &[]);
    plane.wait_served(&plane.key, &["gem", "gem-embed"]);

    for id in plane.cluster.ids() {
        // Chat, plain and streamed with and without usage: the same checks
        // as for the OpenAI and Anthropic kinds.
        check_chat(&plane.proxy(id), id, "gem");

        // An Anthropic Messages client, whole and streamed.
        let what = format!("node {id}, messages on gem");
        let reply = plane.proxy(id).with_key(None).post_with(
            "/v1/messages",
            &messages("gem", "hello gemini"),
            &anthropic_headers(&plane.key),
        );
        assert_json_ok(&reply, &what);
        assert_eq!(reply.body["type"], "message", "{what}: {}", reply.text);
        assert_eq!(
            reply.body["stop_reason"], "end_turn",
            "{what}: {}",
            reply.text
        );
        let text = reply.body["content"][0]["text"].as_str().unwrap_or("");
        assert!(text.contains("hello gemini"), "{what}: {}", reply.text);
        let mut request = messages("gem", "stream gemini");
        request["stream"] = json!(true);
        let stream = read_stream(
            plane.proxy(id).with_key(None).stream_with(
                "/v1/messages",
                &request,
                &anthropic_headers(&plane.key),
            ),
            &what,
        );
        let names = stream.names();
        assert_eq!(names.first(), Some(&"message_start"), "{}", stream.dump());
        assert_eq!(names.last(), Some(&"message_stop"), "{}", stream.dump());
        assert!(
            stream.anthropic_text().contains("stream gemini"),
            "{}",
            stream.dump()
        );

        // Tools: the model's function call comes back as a tool call.
        let reply = plane.proxy(id).post(
            "/v1/chat/completions",
            &json!({
                "model": "gem",
                "messages": [{"role": "user", "content": "Paris"}],
                "tools": [{"type": "function", "function": {"name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            }),
        );
        assert_json_ok(&reply, &format!("node {id}, tools on gem"));
        let call = &reply.body["choices"][0]["message"]["tool_calls"][0]["function"];
        assert_eq!(call["name"], "get_weather", "{}", reply.text);
        assert_eq!(call["arguments"], "{\"city\":\"Paris\"}", "{}", reply.text);
        assert_eq!(reply.body["choices"][0]["finish_reason"], "tool_calls");

        // Embeddings, floats and base64.
        for format in ["float", "base64"] {
            let reply = plane.proxy(id).post(
                "/v1/embeddings",
                &json!({"model": "gem-embed", "input": ["one", "two"], "encoding_format": format}),
            );
            assert_json_ok(
                &reply,
                &format!("node {id}, embeddings ({format}) on gem-embed"),
            );
            assert_eq!(reply.body["data"][1]["index"], 1, "{}", reply.text);
        }
    }
    assert_eq!(gemini.counter("unauthorized"), 0, "{}", gemini.stats());
    assert!(
        gemini.requests_to("/v1beta/models:streamGenerateContent") >= 9,
        "{}",
        gemini.stats()
    );

    // Usage is recorded against the provider.
    wait_provider_usage(&plane, "usage of gem", |g| {
        g["group"] == "gem"
            && g["requests"].as_u64() >= Some(3 * 6)
            && g["completion_tokens"].as_u64() > Some(0)
    });
}

#[test]
fn gemini_failures_are_answered_in_the_clients_format_and_quotas_hold() {
    let plane = start();
    let gemini = gemini_mock(&plane);
    gemini_provider(
        &plane,
        "gem-503",
        &gemini,
        GEMINI_KEY,
        json!({"x-mock-status": "503"}),
    );
    gemini_provider(
        &plane,
        "gem-cut",
        &gemini,
        GEMINI_KEY,
        json!({"x-mock-drop-after-chunks": "2"}),
    );
    gemini_provider(&plane, "gem-badkey", &gemini, "AIza-not-the-key", json!({}));
    gemini_provider(&plane, "gem-ok", &gemini, GEMINI_KEY, json!({}));
    plane.create_route("gem-503", &[("gem-503", "mock-gpt", 1)], &[]);
    plane.create_route("gem-cut", &[("gem-cut", "mock-gpt", 1)], &[]);
    plane.create_route("gem-badkey", &[("gem-badkey", "mock-gpt", 1)], &[]);
    plane.create_route("gem-ok", &[("gem-ok", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["gem-503", "gem-cut", "gem-badkey", "gem-ok"]);

    for id in plane.cluster.ids() {
        // Gemini's 503, in OpenAI's format and in Anthropic's.
        let reply = plane
            .proxy(id)
            .post("/v1/chat/completions", &chat("gem-503", "fail"));
        assert_eq!(reply.status, 503, "node {id}: {}", reply.text);
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("injected 503")),
            "node {id}: Gemini's message passed on: {}",
            reply.text
        );
        assert!(reply.body["error"]["type"].is_string(), "{}", reply.text);
        let reply = plane.proxy(id).with_key(None).post_with(
            "/v1/messages",
            &messages("gem-503", "fail"),
            &anthropic_headers(&plane.key),
        );
        assert_eq!(reply.status, 503, "node {id}: {}", reply.text);
        assert_eq!(reply.body["type"], "error", "{}", reply.text);

        // A key Gemini refuses: the gateway's misconfiguration, not the
        // client's request.
        let reply = plane
            .proxy(id)
            .post("/v1/chat/completions", &chat("gem-badkey", "hello"));
        assert_eq!(reply.status, 502, "node {id}: {}", reply.text);
        assert!(!reply.text.contains("AIza-not-the-key"), "{}", reply.text);

        check_cut_stream(&plane, id, "gem-cut");
    }
    assert!(gemini.counter("unauthorized") >= 3, "{}", gemini.stats());

    // A quota holds on Gemini routes as on any: 3 a minute, across nodes.
    check_quota_holds(&plane, "gem-limited", "gem-ok");
}
