//! Vertex AI providers (`kind = "vertex"`) through every node, against a
//! mock that is Google's token endpoint for one service account (it
//! verifies each signed JWT with the account's public key) and takes only
//! its tokens, which expire every few seconds.

use super::*;
use sluice_e2e::dataplane::{MockLlm, GOOGLE_SA_PRIVATE_KEY};

/// A Vertex provider's credential that is not a service account key is
/// refused by the admin API, naming `api_key`, before anything is stored.
fn check_bad_keys_refused(plane: &DataPlane) {
    for (api_key, says) in [
        ("sk-not-json", "service account"),
        (
            r#"{"type": "authorized_user", "client_email": "a", "private_key": "x", "token_uri": "https://t"}"#,
            "authorized_user",
        ),
    ] {
        let (status, body) = plane.cluster.admin(1).post(
            "/admin/v1/providers",
            &json!({"name": "vtx-bad", "kind": "vertex", "base_url": "https://x.example/v1",
                    "api_key": api_key}),
        );
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["field"], "api_key", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{body}");
    }
    let (status, body) = plane.cluster.admin(1).post(
        "/admin/v1/providers",
        &json!({"name": "vtx-bad", "kind": "vertex", "base_url": "https://x.example/v1"}),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "api_key", "{body}");
}

/// A key Google does not know for the account.
const UNKNOWN_KEY: &str = include_str!("../../fixtures/google-sa-unknown-key.pem");

fn vertex_provider(plane: &DataPlane, name: &str, mock: &MockLlm, key: &str, headers: Value) {
    plane.write(
        "/admin/v1/providers",
        &json!({
            "name": name,
            "kind": "vertex",
            "base_url": mock.vertex_base_url(),
            "api_key": mock.service_account_key(key),
            "headers": headers,
        }),
    );
}

#[test]
fn vertex_serves_chat_and_messages_with_service_account_tokens() {
    let plane = start();
    check_bad_keys_refused(&plane);
    let google = MockLlm::start_google(
        &plane.cluster.root().join("mock-google.log"),
        plane.cluster.deadline(),
        3,
    );
    vertex_provider(&plane, "vtx", &google, GOOGLE_SA_PRIVATE_KEY, json!({}));
    vertex_provider(&plane, "vtx-unknown", &google, UNKNOWN_KEY, json!({}));
    vertex_provider(
        &plane,
        "vtx-cut",
        &google,
        GOOGLE_SA_PRIVATE_KEY,
        json!({"x-mock-drop-after-chunks": "2"}),
    );
    plane.create_route("vtx", &[("vtx", "mock-gpt", 1)], &[]);
    plane.create_route("vtx-unknown", &[("vtx-unknown", "mock-gpt", 1)], &[]);
    plane.create_route("vtx-cut", &[("vtx-cut", "mock-gpt", 1)], &[]);
    plane.create_route("vtx-embed", &[("vtx", "mock-embed", 1)], &[]);
    plane.wait_served(&plane.key, &["vtx", "vtx-unknown", "vtx-cut", "vtx-embed"]);

    for id in plane.cluster.ids() {
        check_chat(&plane.proxy(id), id, "vtx");
        let reply = plane.proxy(id).with_key(None).post_with(
            "/v1/messages",
            &messages("vtx", "hello vertex"),
            &anthropic_headers(&plane.key),
        );
        assert_json_ok(&reply, &format!("node {id}, messages on vtx"));
        assert_eq!(reply.body["type"], "message", "{}", reply.text);

        // A key Google does not know: its refusal is the gateway's
        // misconfiguration, never the key in an answer.
        let reply = plane
            .proxy(id)
            .post("/v1/chat/completions", &chat("vtx-unknown", "hello"));
        assert_eq!(reply.status, 502, "node {id}: {}", reply.text);
        assert!(!reply.text.contains("PRIVATE KEY"), "{}", reply.text);

        check_cut_stream(&plane, id, "vtx-cut");

        // Embeddings through Vertex's `:predict`, floats and base64, with
        // the token counts Vertex reports as their usage.
        for format in ["float", "base64"] {
            let reply = plane.proxy(id).post(
                "/v1/embeddings",
                &json!({"model": "vtx-embed", "input": ["one", "two three"],
                        "encoding_format": format, "dimensions": 4}),
            );
            let what = format!("node {id}, embeddings ({format}) on vtx-embed");
            assert_json_ok(&reply, &what);
            assert_eq!(reply.body["data"][1]["index"], 1, "{what}: {}", reply.text);
            assert!(
                reply.body["usage"]["prompt_tokens"].as_u64() > Some(0),
                "{what}: {}",
                reply.text
            );
        }
    }
    let stats = google.stats();
    assert_eq!(
        stats["unauthorized"], 0,
        "only its own tokens were sent: {stats}"
    );
    assert!(stats["vertex_requests"].as_u64() >= Some(3 * 6), "{stats}");
    assert_eq!(stats["requests"]["/v1/models:predict"], 6, "{stats}");
    assert!(stats["token_refusals"].as_u64() >= Some(1), "{stats}");
    for id in plane.cluster.ids() {
        assert!(
            !plane.cluster.log(id).contains("PRIVATE KEY"),
            "node {id} logged a private key"
        );
    }

    // Tokens expire after 3 s: calls go on succeeding while the gateway
    // signs new assertions.
    let before = google.counter("tokens_issued");
    let proxy = plane.proxy(2);
    let mut calls = 0;
    plane
        .cluster
        .deadline()
        .within(Duration::from_secs(20))
        .poll("a refreshed Google token", || {
            let reply = proxy.post("/v1/chat/completions", &chat("vtx", "again"));
            assert_eq!(reply.status, 200, "call {calls} on vtx: {}", reply.text);
            calls += 1;
            google.counter("tokens_issued") >= before + 2
        })
        .unwrap_or_else(|e| panic!("{e}: {}", google.stats()));
    assert_eq!(google.counter("unauthorized"), 0, "{}", google.stats());

    wait_provider_usage(&plane, "usage of vtx", |g| {
        g["group"] == "vtx" && g["completion_tokens"].as_u64() > Some(0)
    });
    check_quota_holds(&plane, "vtx-limited", "vtx");
}
