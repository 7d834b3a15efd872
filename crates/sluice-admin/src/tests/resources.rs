//! Providers, routes, keys and tokens end to end.

use super::{assert_error, create_provider, create_route, Fixture};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_core::DataKey;

#[tokio::test]
async fn providers_are_created_read_replaced_and_deleted_without_echoing_the_key() {
    let f = Fixture::start().await;
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/providers",
            Some(json!({"name": "openai", "kind": "openai", "base_url": "https://api.openai.com/v1",
                        "api_key": "sk-upstream-secret", "headers": {"OpenAI-Organization": "org-1"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["api_key_set"], true);
    assert_eq!(body["timeouts"]["connect_ms"], 5000);
    assert!(body.get("api_key").is_none());
    assert!(!body.to_string().contains("sk-upstream"));

    let (status, again) = f
        .call(
            Method::POST,
            "/admin/v1/providers",
            Some(json!({"name": "openai", "kind": "openai", "base_url": "http://x"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&again, "conflict", None);

    let (status, one) = f
        .call(Method::GET, "/admin/v1/providers/openai", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["headers"]["OpenAI-Organization"], "org-1");
    let (status, list) = f
        .call(Method::GET, "/admin/v1/providers?consistency=stale", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["providers"].as_array().map(Vec::len), Some(1));
    assert!(!list.to_string().contains("sk-upstream"));

    let (status, put) = f
        .call(
            Method::PUT,
            "/admin/v1/providers/openai",
            Some(json!({"kind": "openai", "base_url": "https://eu.api.openai.com/v1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(
        put["api_key_set"], true,
        "PUT without api_key keeps the credential"
    );
    let (_, put) = f
        .call(
            Method::PUT,
            "/admin/v1/providers/openai",
            Some(json!({"kind": "openai", "base_url": "http://x", "api_key": null})),
        )
        .await;
    assert_eq!(put["api_key_set"], false);

    let (status, body) = f
        .call(Method::DELETE, "/admin/v1/providers/openai", None)
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = f
        .call(Method::GET, "/admin/v1/providers/openai", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", None);
    f.stop().await;
}

#[tokio::test]
async fn secret_headers_are_sealed_write_only_and_kept_or_replaced() {
    let f = Fixture::start().await;
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/providers",
            Some(json!({"name": "corp", "kind": "openai", "base_url": "https://llm.corp.example/v1",
                        "headers": {"X-Team": "ml"},
                        "secret_headers": {"Authorization": "Basic c2VjcmV0LXZhbHVl", "X-Org-Token": "org-secret"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["secret_header_names"],
        json!(["Authorization", "X-Org-Token"])
    );
    assert!(body.get("secret_headers").is_none(), "{body}");
    let shown = body.to_string();
    assert!(
        !shown.contains("c2VjcmV0") && !shown.contains("org-secret"),
        "{shown}"
    );

    // Stored sealed, in the provider's and the header's context.
    let state = f.node.local_state();
    let stored = &state.provider("corp").expect("stored").secret_headers;
    let key = DataKey::from_bytes([42; 32]);
    let context = sluice_core::provider::secret_header_context("corp", "X-Org-Token");
    assert_eq!(
        key.open(&context, &stored["X-Org-Token"]).unwrap().0,
        "org-secret"
    );
    assert!(key.open("corp", &stored["X-Org-Token"]).is_err());
    let encoded = format!("{:?}", state.provider("corp"));
    assert!(!encoded.contains("org-secret"), "{encoded}");

    // A PUT without them keeps them; an object replaces them all.
    let put = |secret: Option<Value>| {
        let mut body = json!({"kind": "openai", "base_url": "https://llm.corp.example/v1"});
        if let Some(secret) = secret {
            body["secret_headers"] = secret;
        }
        f.call(Method::PUT, "/admin/v1/providers/corp", Some(body))
    };
    let (status, kept) = put(None).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(
        kept["secret_header_names"],
        json!(["Authorization", "X-Org-Token"])
    );
    let (_, replaced) = put(Some(json!({"X-Org-Token": "rotated"}))).await;
    assert_eq!(replaced["secret_header_names"], json!(["X-Org-Token"]));
    let (_, cleared) = put(Some(json!({}))).await;
    assert_eq!(cleared["secret_header_names"], json!([]));

    // Bad ones are refused naming the field, and nothing is echoed.
    for (secret, headers, field) in [
        (json!({"Host": "x"}), json!({}), "secret_headers.Host"),
        (
            json!({"bad name": "x"}),
            json!({}),
            "secret_headers.bad name",
        ),
        (json!({"X-Key": "a\nb"}), json!({}), "secret_headers.X-Key"),
        (json!({"X-Key": ""}), json!({}), "secret_headers.X-Key"),
        (
            json!({"x-team": "leak-me"}),
            json!({"X-Team": "ml"}),
            "secret_headers.x-team",
        ),
    ] {
        let (status, body) = f
            .call(
                Method::POST,
                "/admin/v1/providers",
                Some(
                    json!({"name": "bad", "kind": "openai", "base_url": "http://x",
                            "headers": headers, "secret_headers": secret}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_error(&body, "validation_error", Some(field));
        assert!(!body.to_string().contains("leak-me"), "{body}");
    }
    let (status, _) = f.call(Method::GET, "/admin/v1/providers/bad", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    f.stop().await;
}

#[tokio::test]
async fn routes_with_slashes_are_created_read_and_deleted() {
    let f = Fixture::start().await;
    create_provider(&f, "vllm").await;
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/routes",
            Some(json!({"name": "meta-llama/Llama-3-8b",
                        "deployments": [{"provider": "vllm", "model": "llama3", "weight": 3}],
                        "pricing": {"prompt_usd_per_mtok": 0.15, "completion_usd_per_mtok": 0.6}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["pricing"],
        json!({"prompt_usd_per_mtok": 0.15, "completion_usd_per_mtok": 0.6})
    );
    let path = "/admin/v1/routes/meta-llama%2FLlama-3-8b";
    let (status, one) = f.call(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["deployments"][0]["weight"], 3);
    let (status, put) = f
        .call(
            Method::PUT,
            path,
            Some(json!({"deployments": [{"provider": "vllm", "model": "llama3.1"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["deployments"][0]["model"], "llama3.1");
    let (_, list) = f.call(Method::GET, "/admin/v1/routes", None).await;
    assert_eq!(list["routes"][0]["name"], "meta-llama/Llama-3-8b");

    let (status, body) = f
        .call(Method::DELETE, "/admin/v1/providers/vllm", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a provider in use cannot go");
    assert_error(&body, "conflict", None);
    let (status, _) = f.call(Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f.call(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    f.stop().await;
}

#[tokio::test]
async fn key_secret_is_returned_only_at_creation() {
    let f = Fixture::start().await;
    let (status, created) = f
        .call(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": "ci", "expires_in_s": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["key"]
        .as_str()
        .expect("secret in creation response")
        .to_string();
    assert!(secret.starts_with("sk-sluice-"));
    assert_eq!(created["status"], "active");
    let id = created["id"].as_str().expect("id").to_string();

    let (_, list) = f.call(Method::GET, "/admin/v1/keys", None).await;
    let (_, one) = f
        .call(Method::GET, &format!("/admin/v1/keys/{id}"), None)
        .await;
    for body in [&list, &one] {
        assert!(!body.to_string().contains(&secret), "{body}");
        assert!(!body.to_string().contains("hash"), "{body}");
    }
    assert_eq!(one["prefix"], &secret[..16]);

    let (_, disabled) = f
        .call(Method::POST, &format!("/admin/v1/keys/{id}/disable"), None)
        .await;
    assert_eq!(
        (disabled["enabled"].clone(), disabled["status"].clone()),
        (json!(false), json!("disabled"))
    );
    let (_, enabled) = f
        .call(Method::POST, &format!("/admin/v1/keys/{id}/enable"), None)
        .await;
    assert_eq!(enabled["status"], "active");
    let (_, revoked) = f
        .call(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None)
        .await;
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at_ms"].is_u64());

    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": "x", "allowed_routes": ["missing"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_error", Some("allowed_routes[0]"));
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": "x", "expires_at_ms": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_error", Some("expires_at_ms"));

    let (status, _) = f
        .call(Method::DELETE, &format!("/admin/v1/keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f
        .call(Method::GET, &format!("/admin/v1/keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    f.stop().await;
}

#[tokio::test]
async fn replicated_admin_tokens_work_until_deleted() {
    let f = Fixture::start().await;
    let (status, created) = f
        .call(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"name": "ops"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().expect("token").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    let (status, _, list) = f
        .send(Method::GET, "/admin/v1/tokens", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.to_string().contains(&token));
    let (status, _) = f
        .call(Method::DELETE, &format!("/admin/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = f
        .send(Method::GET, "/admin/v1/tokens", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    f.stop().await;
}

#[tokio::test]
async fn key_quotas_are_set_on_creation_changed_by_patch_and_shown_live() {
    let f = Fixture::start().await;
    create_route(&f, "r", "p").await;

    // A bad quota creates nothing.
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": "bad", "rpm": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_error", Some("rpm"));
    let (_, list) = f.call(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(0));

    let (status, created) = f
        .call(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": "app", "rpm": 600, "tpm": 100000, "budget_usd": 25, "budget_period": "day"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["limits"],
        json!([
            "600 requests a minute",
            "100000 tokens a minute",
            "$25.00 a day (UTC)"
        ]),
        "the key says the limits it was given"
    );
    assert_eq!(created["reserve"], "max_tokens");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, quota) = f
        .call(Method::GET, &format!("/admin/v1/keys/{id}/quota"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{quota}");
    let buckets = quota["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3, "{quota}");
    let unit = |u: &str| buckets.iter().find(|b| b["unit"] == u).unwrap().clone();
    assert_eq!(unit("requests")["capacity"], 600);
    assert_eq!(unit("requests")["level"], 600);
    assert_eq!(unit("tokens")["refill"], "100000 a minute");
    assert_eq!(unit("tokens")["limit"], "100000 tokens a minute");
    assert_eq!(unit("micro_usd")["capacity"], 25_000_000);
    assert_eq!(unit("micro_usd")["remaining"], "$25.00");
    let (_, got) = f
        .call(Method::GET, &format!("/admin/v1/keys/{id}"), None)
        .await;
    assert_eq!(got["limits"], created["limits"]);
    assert_eq!(quota["on_no_quorum"], "deny");

    // PATCH merges: tpm removed, rpm changed, the budget kept.
    let (status, patched) = f
        .call(
            Method::PATCH,
            &format!("/admin/v1/keys/{id}"),
            Some(json!({"tpm": null, "rpm": 60, "on_no_quorum": "local_share"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let units: Vec<&str> = patched["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units, vec!["requests", "micro_usd"], "{patched}");
    assert_eq!(patched["on_no_quorum"], "local_share");
    let (status, body) = f
        .call(
            Method::PATCH,
            &format!("/admin/v1/keys/{id}"),
            Some(json!({"rpn": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A key x route quota, on a route that exists.
    let (status, body) = f
        .call(
            Method::PUT,
            &format!("/admin/v1/keys/{id}/routes/nope/quota"),
            Some(json!({"rpm": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_error", Some("route"));
    let (status, body) = f
        .call(
            Method::PUT,
            &format!("/admin/v1/keys/{id}/routes/r/quota"),
            Some(json!({"rpm": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["scope"] == "route:r" && b["capacity"] == 5));

    // Deleting the key deletes its quotas with it.
    let (status, _) = f
        .call(Method::DELETE, &format!("/admin/v1/keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f
        .call(Method::GET, &format!("/admin/v1/keys/{id}/quota"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
