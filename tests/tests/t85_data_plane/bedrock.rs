//! AWS Bedrock providers (`kind = "bedrock"`) through every node, against
//! a mock that speaks the Converse API and its binary event stream, and
//! verifies every request's SigV4 signature with its own implementation
//! (not the signer the gateway uses): OpenAI chat, Anthropic Messages and
//! Responses API clients, streamed and not, tools, an upstream error, a
//! cut stream, refused keys, usage and a quota.

use super::*;
use sluice_e2e::dataplane::{
    MockLlm, AWS_ACCESS_KEY_ID, AWS_REGION, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
};

/// The provider's IAM keys as its credential.
fn keys(secret: &str) -> String {
    json!({
        "access_key_id": AWS_ACCESS_KEY_ID,
        "secret_access_key": secret,
        "session_token": AWS_SESSION_TOKEN,
    })
    .to_string()
}

fn bedrock_provider(plane: &DataPlane, name: &str, mock: &MockLlm, keys: &str, headers: Value) {
    plane.write(
        "/admin/v1/providers",
        &json!({
            "name": name,
            "kind": "bedrock",
            "base_url": mock.url(),
            "bedrock": {"region": AWS_REGION},
            "api_key": keys,
            "headers": headers,
        }),
    );
}

/// Settings and keys a Bedrock provider cannot have are refused by the
/// admin API, naming the field, never repeating a secret.
fn check_bad_settings_refused(plane: &DataPlane) {
    let base = json!({"name": "br-bad", "kind": "bedrock", "base_url": "https://x.example",
                      "bedrock": {"region": "us-east-1"}, "api_key": keys("s3cr3t-value")});
    for (change, field, says) in [
        (json!({"bedrock": null}), "bedrock", "region"),
        (
            json!({"bedrock": {"region": "US East"}}),
            "bedrock.region",
            "region",
        ),
        (json!({"api_key": null}), "api_key", "access_key_id"),
        (
            json!({"api_key": "AKIDEXAMPLE:s3cr3t-value"}),
            "api_key",
            "JSON",
        ),
        (
            json!({"api_key": r#"{"access_key_id": "AKIDEXAMPLE", "secret": "s3cr3t-value"}"#}),
            "api_key",
            "secret",
        ),
        (json!({"kind": "openai"}), "bedrock", "bedrock providers"),
    ] {
        let mut body = base.clone();
        for (name, value) in change.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value.clone();
            }
        }
        let (status, answer) = plane.cluster.admin(1).post("/admin/v1/providers", &body);
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{body}: {answer}");
        assert!(!answer.to_string().contains("s3cr3t"), "{answer}");
    }
}

#[test]
fn bedrock_serves_every_client_api_signed_and_fails_over_cleanly() {
    let plane = start();
    check_bad_settings_refused(&plane);
    let aws = MockLlm::start_aws(
        &plane.cluster.root().join("mock-aws.log"),
        plane.cluster.deadline(),
    );
    let good = keys(AWS_SECRET_ACCESS_KEY);
    bedrock_provider(&plane, "br", &aws, &good, json!({}));
    bedrock_provider(
        &plane,
        "br-wrong",
        &aws,
        &keys("not-the-secret-key"),
        json!({}),
    );
    bedrock_provider(
        &plane,
        "br-cut",
        &aws,
        &good,
        json!({"x-mock-drop-after-chunks": "2"}),
    );
    bedrock_provider(
        &plane,
        "br-503",
        &aws,
        &good,
        json!({"x-mock-status": "503"}),
    );
    // The model id Bedrock uses has a `:`: percent-encoded in the path,
    // double-encoded in what is signed.
    plane.create_route("br", &[("br", "mock-gpt", 1)], &[]);
    plane.create_route("br-wrong", &[("br-wrong", "mock-gpt", 1)], &[]);
    plane.create_route("br-cut", &[("br-cut", "mock-gpt", 1)], &[]);
    plane.create_route("br-503", &[("br-503", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["br", "br-wrong", "br-cut", "br-503"]);

    for id in plane.cluster.ids() {
        // Chat, plain and streamed with and without usage.
        check_chat(&plane.proxy(id), id, "br");

        // An Anthropic Messages client, whole and streamed.
        let what = format!("node {id}, messages on br");
        let reply = plane.proxy(id).with_key(None).post_with(
            "/v1/messages",
            &messages("br", "hello bedrock"),
            &anthropic_headers(&plane.key),
        );
        assert_json_ok(&reply, &what);
        assert_eq!(reply.body["type"], "message", "{what}: {}", reply.text);
        let text = reply.body["content"][0]["text"].as_str().unwrap_or("");
        assert!(text.contains("hello bedrock"), "{what}: {}", reply.text);
        let mut request = messages("br", "stream bedrock");
        request["stream"] = json!(true);
        let stream = read_stream(
            plane.proxy(id).with_key(None).stream_with(
                "/v1/messages",
                &request,
                &anthropic_headers(&plane.key),
            ),
            &what,
        );
        assert_eq!(
            stream.names().last(),
            Some(&"message_stop"),
            "{}",
            stream.dump()
        );
        assert!(
            stream.anthropic_text().contains("stream bedrock"),
            "{}",
            stream.dump()
        );

        // The Responses API, whole and streamed.
        let what = format!("node {id}, responses on br");
        let reply = plane.proxy(id).post(
            "/v1/responses",
            &json!({"model": "br", "input": "hello responses"}),
        );
        assert_json_ok(&reply, &what);
        assert_eq!(reply.body["object"], "response", "{what}: {}", reply.text);
        assert_eq!(reply.body["status"], "completed", "{what}: {}", reply.text);
        let stream = read_stream(
            plane.proxy(id).stream(
                "/v1/responses",
                &json!({"model": "br", "input": "stream responses", "stream": true}),
            ),
            &what,
        );
        assert_responses_stream_whole(&stream);

        // Tools: the model's tool use comes back as a tool call, streamed
        // in pieces and whole.
        let tools = json!({
            "model": "br",
            "messages": [{"role": "user", "content": "Paris"}],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        });
        let reply = plane.proxy(id).post("/v1/chat/completions", &tools);
        assert_json_ok(&reply, &format!("node {id}, tools on br"));
        let call = &reply.body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather", "{}", reply.text);
        assert_eq!(
            call["function"]["arguments"], "{\"city\":\"Paris\"}",
            "{}",
            reply.text
        );
        assert_eq!(reply.body["choices"][0]["finish_reason"], "tool_calls");
        let mut streamed_tools = tools.clone();
        streamed_tools["stream"] = json!(true);
        let stream = read_stream(
            plane
                .proxy(id)
                .stream("/v1/chat/completions", &streamed_tools),
            &format!("node {id}, streamed tools on br"),
        );
        let arguments: String = stream
            .chunks()
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(arguments, "{\"city\":\"Paris\"}", "{}", stream.dump());

        // A wrong secret: Bedrock's 403 is the gateway's misconfiguration
        // (a 502), never the secret in an answer.
        let reply = plane
            .proxy(id)
            .post("/v1/chat/completions", &chat("br-wrong", "hello"));
        assert_eq!(reply.status, 502, "node {id}: {}", reply.text);
        assert!(!reply.text.contains("wJalr"), "{}", reply.text);

        // Bedrock's 503, in the client's format with Bedrock's message.
        let reply = plane
            .proxy(id)
            .post("/v1/chat/completions", &chat("br-503", "fail"));
        assert_eq!(reply.status, 503, "node {id}: {}", reply.text);
        assert!(
            reply.body["error"]["message"].as_str().is_some(),
            "node {id}: {}",
            reply.text
        );

        check_cut_stream(&plane, id, "br-cut");
    }
    // br-wrong's calls (each tried as often as the retry policy allows)
    // are the only ones refused, and every refusal was its signature's.
    let stats = aws.stats();
    assert!(stats["signature_refusals"].as_u64() >= Some(3), "{stats}");
    assert_eq!(
        stats["signature_refusals"], stats["unauthorized"],
        "{stats}"
    );
    assert!(
        stats["bedrock_requests"].as_u64() >= Some(3 * 12),
        "{stats}"
    );
    for id in plane.cluster.ids() {
        let log = plane.cluster.log(id);
        assert!(
            !log.contains(AWS_SECRET_ACCESS_KEY) && !log.contains(AWS_SESSION_TOKEN),
            "node {id} logged an AWS secret"
        );
    }
    // The keys rotated with `sluice providers update`: every node signs
    // with the new ones, no restart, and the other settings are kept.
    let file = plane.cluster.root().join("bedrock-keys.json");
    std::fs::write(&file, keys(AWS_SECRET_ACCESS_KEY)).expect("writing the keys");
    let done = plane.cluster.cli(
        1,
        &[
            "providers",
            "update",
            "br-wrong",
            "--api-key-file",
            file.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(done.code(), 0, "sluice providers update: {done}");
    assert!(!done.stdout.contains(AWS_SECRET_ACCESS_KEY), "{done}");
    for id in plane.cluster.ids() {
        let proxy = plane.proxy(id);
        plane.cluster.wait_until(
            Duration::from_secs(10),
            format!("node {id} signing br-wrong with the rotated keys"),
            || {
                proxy
                    .post("/v1/chat/completions", &chat("br-wrong", "rotated"))
                    .status
                    == 200
            },
        );
    }
    let (_, provider) = plane.cluster.admin(1).get("/admin/v1/providers/br-wrong");
    assert_eq!(provider["bedrock"]["region"], AWS_REGION, "{provider}");

    wait_provider_usage(&plane, "usage of br", |g| {
        g["group"] == "br" && g["completion_tokens"].as_u64() > Some(0)
    });
    check_quota_holds(&plane, "br-limited", "br");
}
