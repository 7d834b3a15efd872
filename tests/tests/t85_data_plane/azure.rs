//! Azure OpenAI providers (`kind = "azure_openai"`) through every node
//! against a mock that checks what Azure checks: the resource key in
//! `api-key`, `api-version` on dated paths, and Microsoft Entra ID tokens
//! it issued itself (to the one app registration it knows, expiring after
//! a few seconds so the gateway must refresh them).

use super::*;
use sluice_e2e::dataplane::{
    MockLlm, AZURE_RESOURCE_KEY as RESOURCE_KEY, ENTRA_CLIENT_SECRET as CLIENT_SECRET,
};

/// Short enough that the test sees tokens refreshed.
const TOKEN_TTL_S: u64 = 3;

/// The Azure mock: requires the resource key or one of its Entra tokens.
fn azure_mock(plane: &DataPlane) -> MockLlm {
    MockLlm::start_azure(
        &plane.cluster.root().join("mock-azure.log"),
        plane.cluster.deadline(),
        TOKEN_TTL_S,
    )
}

#[test]
fn azure_openai_serves_every_endpoint_on_every_node_with_a_key_or_entra_tokens() {
    let plane = start();
    let azure = azure_mock(&plane);
    let dated = json!({"api_version": "2024-10-21"});
    plane.create_azure_provider("az-key", &azure, dated.clone(), RESOURCE_KEY, json!({}));
    plane.create_azure_provider(
        "az-entra",
        &azure,
        json!({"api_version": "v1", "entra": azure.entra_settings()}),
        CLIENT_SECRET,
        json!({}),
    );
    plane.create_azure_provider(
        "az-responses",
        &azure,
        json!({"api_version": "2025-03-01-preview"}),
        RESOURCE_KEY,
        json!({}),
    );
    plane.create_route("az", &[("az-key", "mock-gpt", 1)], &[]);
    plane.create_route("az-entra", &[("az-entra", "mock-gpt", 1)], &[]);
    plane.create_route("az-embed", &[("az-key", "mock-embed", 1)], &[]);
    plane.create_route("az-resp", &[("az-responses", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["az", "az-entra", "az-embed", "az-resp"]);

    for id in plane.cluster.ids() {
        // Chat, plain and streamed with and without usage, by both
        // credentials; Anthropic clients translated; embeddings.
        check_chat(&plane.proxy(id), id, "az");
        check_chat(&plane.proxy(id), id, "az-entra");
        let reply = plane.proxy(id).with_key(None).post_with(
            "/v1/messages",
            &messages("az-entra", "hello azure"),
            &anthropic_headers(&plane.key),
        );
        assert_json_ok(&reply, &format!("node {id}, messages on az-entra"));
        assert_eq!(reply.body["type"], "message", "{}", reply.text);
        let reply = plane.proxy(id).post(
            "/v1/embeddings",
            &json!({"model": "az-embed", "input": "embed me"}),
        );
        assert_json_ok(&reply, &format!("node {id}, embeddings on az-embed"));
        assert_eq!(
            reply.body["data"][0]["object"], "embedding",
            "{}",
            reply.text
        );

        // The Responses API, made and read back by its id.
        let reply = plane.proxy(id).post(
            "/v1/responses",
            &json!({"model": "az-resp", "input": "hello from azure"}),
        );
        assert_json_ok(&reply, &format!("node {id}, responses on az-resp"));
        let response_id = reply.body["id"].as_str().expect("a response id");
        assert!(response_id.starts_with("resp_sl1"), "{}", reply.text);
        let stored = plane.proxy(id).get(&format!("/v1/responses/{response_id}"));
        assert_eq!(stored.status, 200, "{}", stored.text);
        assert_eq!(stored.body["status"], "completed", "{}", stored.text);
    }

    let stats = azure.stats();
    assert_eq!(
        stats["unauthorized"], 0,
        "every credential was right: {stats}"
    );
    assert_eq!(
        azure.requests_to("/v1/chat/completions"),
        stats["azure_requests"].as_u64().unwrap()
            - azure.requests_to("/v1/embeddings")
            - azure.requests_to("/v1/responses")
            - 3, // the stored responses read back
        "every chat call came by Azure's paths: {stats}"
    );
    // One token per node (each node has its own), maybe refreshed once.
    let issued = stats["tokens_issued"].as_u64().unwrap();
    assert!((3..=9).contains(&issued), "{stats}");

    // Tokens expire after 3 s: calls through node 1 go on succeeding
    // while the gateway gets new ones.
    let before = issued;
    let proxy = plane.proxy(1);
    let mut calls = 0;
    let refreshed = plane
        .cluster
        .deadline()
        .within(Duration::from_secs(20))
        .poll("a refreshed Entra token", || {
            let reply = proxy.post("/v1/chat/completions", &chat("az-entra", "again"));
            assert_eq!(
                reply.status, 200,
                "call {calls} on az-entra: {}",
                reply.text
            );
            calls += 1;
            azure.counter("tokens_issued") >= before + 2
        });
    refreshed.unwrap_or_else(|e| panic!("{e}: {}", azure.stats()));
    assert_eq!(azure.counter("unauthorized"), 0, "{}", azure.stats());
    assert_eq!(azure.counter("token_refusals"), 0, "{}", azure.stats());

    // Usage is recorded against both Azure providers.
    wait_provider_usage(&plane, "usage of az-key", |g| {
        g["group"] == "az-key" && g["requests"].as_u64() >= Some(3 * 4)
    });
    wait_provider_usage(&plane, "usage of az-entra", |g| {
        g["group"] == "az-entra" && g["prompt_tokens"].as_u64() > Some(0)
    });
}

#[test]
fn azure_openai_failures_are_answered_as_openai_would_and_quotas_hold() {
    let plane = start();
    let azure = azure_mock(&plane);
    let dated = json!({"api_version": "2024-10-21"});
    plane.create_azure_provider(
        "az-500",
        &azure,
        dated.clone(),
        RESOURCE_KEY,
        json!({"x-mock-status": "500"}),
    );
    plane.create_azure_provider(
        "az-cut",
        &azure,
        dated.clone(),
        RESOURCE_KEY,
        json!({"x-mock-drop-after-chunks": "2"}),
    );
    plane.create_azure_provider(
        "az-bad-secret",
        &azure,
        json!({"api_version": "v1", "entra": azure.entra_settings()}),
        "not-the-client-secret",
        json!({}),
    );
    plane.create_azure_provider("az-ok", &azure, dated, RESOURCE_KEY, json!({}));
    plane.create_route("az-500", &[("az-500", "mock-gpt", 1)], &[]);
    plane.create_route("az-cut", &[("az-cut", "mock-gpt", 1)], &[]);
    plane.create_route("az-bad", &[("az-bad-secret", "mock-gpt", 1)], &[]);
    plane.create_route("az-ok", &[("az-ok", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["az-500", "az-cut", "az-bad", "az-ok"]);

    for id in plane.cluster.ids() {
        // An upstream 500: an error in OpenAI's format.
        let reply = plane
            .proxy(id)
            .post("/v1/chat/completions", &chat("az-500", "fail"));
        assert!(reply.status >= 500, "node {id}: {}", reply.text);
        assert!(
            reply.body["error"]["message"].is_string(),
            "node {id}: {}",
            reply.text
        );

        check_cut_stream(&plane, id, "az-cut");

        // A client secret Entra ID refuses: a 502, the secret nowhere.
        let reply = plane
            .proxy(id)
            .post("/v1/chat/completions", &chat("az-bad", "hello"));
        assert_eq!(reply.status, 502, "node {id}: {}", reply.text);
        assert!(reply.body["error"]["message"].is_string(), "{}", reply.text);
        assert!(
            !reply.text.contains("not-the-client-secret"),
            "{}",
            reply.text
        );
    }
    assert!(azure.counter("token_refusals") >= 1, "{}", azure.stats());
    assert_eq!(azure.counter("tokens_issued"), 0, "{}", azure.stats());
    for id in plane.cluster.ids() {
        let log = plane.cluster.log(id);
        assert!(
            !log.contains("not-the-client-secret") && !log.contains(RESOURCE_KEY),
            "node {id} logged a secret"
        );
    }
    assert!(
        plane
            .cluster
            .ids()
            .iter()
            .any(|id| plane.cluster.log(*id).contains("invalid_client")),
        "no node logged why Entra ID refused"
    );

    // A quota holds on Azure routes as on any: 3 a minute, across nodes.
    check_quota_holds(&plane, "az-limited", "az-ok");
}
