//! The audit log through the API: every write with its actor and the
//! object before and after, no secret ever shown, filters and pages.

use super::{create_provider, Fixture, TOKEN};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn audit(f: &Fixture, query: &str) -> Value {
    let (status, body) = f
        .call(Method::GET, &format!("/admin/v1/audit{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn actions(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn every_write_is_recorded_with_its_actor_and_no_secret() {
    let f = Fixture::start().await;
    create_provider(&f, "up").await;
    // A duplicate is refused: no entry.
    let (status, _) = f
        .call(
            Method::POST,
            "/admin/v1/providers",
            Some(json!({"name": "up", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The credential replaced.
    let (status, body) = f
        .call(
            Method::PUT,
            "/admin/v1/providers/up",
            Some(json!({"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-second-secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A token of role `keys` makes a key.
    let (status, made) = f
        .call(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"name": "key-keeper", "role": "keys"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let keeper = made["token"].as_str().unwrap().to_owned();
    let keeper_id = made["id"].as_str().unwrap().to_owned();
    let (status, _, key) = f
        .send(
            Method::POST,
            "/admin/v1/keys",
            Some(&keeper),
            Some(json!({"name": "app", "rpm": 60}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key_id = key["id"].as_str().unwrap().to_owned();
    let secret = key["key"].as_str().unwrap().to_owned();
    let (status, _, _) = f
        .send(
            Method::POST,
            &format!("/admin/v1/keys/{key_id}/revoke"),
            Some(&keeper),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let page = audit(&f, "").await;
    assert_eq!(
        actions(&page),
        [
            "create_provider provider:up".to_owned(),
            "update_provider provider:up".to_owned(),
            format!("create_admin_token admin_token:{keeper_id}"),
            // The key with its quota, in one command.
            format!("create_key key:{key_id}"),
            format!("revoke_key key:{key_id}"),
        ]
    );
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries[0]["actor"]["token_id"], "bootstrap");
    assert_eq!(entries[0]["actor"]["role"], "admin");
    assert!(entries[0]["before"].is_null());
    assert_eq!(entries[0]["after"]["api_key_set"], true);
    assert_eq!(entries[1]["secrets_replaced"], json!(["api_key"]));
    assert_eq!(entries[3]["actor"]["token_id"], keeper_id.as_str());
    assert_eq!(entries[3]["actor"]["token_name"], "key-keeper");
    assert_eq!(entries[3]["actor"]["role"], "keys");
    assert_eq!(
        entries[3]["after"]["limits"],
        json!(["60 requests a minute"])
    );
    assert_eq!(entries[4]["before"]["status"], "active");
    assert_eq!(entries[4]["after"]["status"], "revoked");
    assert!(page.get("next_after").is_none());
    assert!(page["oldest_at_ms"].as_u64().is_some());

    // No secret anywhere: provider keys, the key, the tokens.
    let text = page.to_string();
    for secret in [
        "sk-upstream-secret",
        "sk-second-secret",
        &secret,
        &keeper,
        TOKEN,
    ] {
        assert!(!text.contains(secret), "{secret} shown in the audit log");
    }

    // Filters and pages.
    let mine = audit(&f, &format!("?token_id={keeper_id}")).await;
    assert_eq!(mine["entries"].as_array().unwrap().len(), 2);
    let first = audit(&f, "?limit=2").await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let next = first["next_after"].as_u64().expect("another page");
    let second = audit(&f, &format!("?limit=2&after={next}")).await;
    assert_eq!(
        actions(&second)[0],
        format!("create_admin_token admin_token:{keeper_id}")
    );
    let providers = audit(&f, "?target=provider%3A").await;
    assert_eq!(providers["entries"].as_array().unwrap().len(), 2);
    let (status, body) = f.call(Method::GET, "/admin/v1/audit?limit=0", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    super::assert_error(&body, "validation_error", Some("limit"));

    // A `keys` token may not read it.
    let (status, _, _) = f
        .send(Method::GET, "/admin/v1/audit", Some(&keeper), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    f.stop().await;
}
