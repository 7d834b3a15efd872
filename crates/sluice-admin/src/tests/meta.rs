//! The OpenAPI document, health endpoints and cluster status.

use super::{assert_error, create_provider, Fixture, TOKEN};
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn openapi_health_and_cluster_status() {
    let f = Fixture::start().await;
    let (status, _, doc) = f
        .send(Method::GET, "/admin/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/admin/v1/providers/{name}",
        "/admin/v1/routes",
        "/admin/v1/keys/{id}/revoke",
        "/admin/v1/cluster/leader",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );

    let (status, _, health) = f.send(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));
    let (status, _, ready) = f.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["ready"], true);

    let (status, cluster) = f.call(Method::GET, "/admin/v1/cluster", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cluster["leader_id"], 1);
    assert_eq!(cluster["members"][0]["role"], "voter");
    let (status, _, body) = f
        .send(
            Method::POST,
            "/admin/v1/cluster/voters/not-a-number",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_request", None);
    f.stop().await;
}

#[test]
fn openapi_document_lists_every_endpoint() {
    let doc = serde_json::to_value(crate::openapi::document()).expect("document serializes");
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        "/admin/v1/providers",
        "/admin/v1/providers/{name}",
        "/admin/v1/routes",
        "/admin/v1/routes/{name}",
        "/admin/v1/keys",
        "/admin/v1/keys/{id}",
        "/admin/v1/keys/{id}/revoke",
        "/admin/v1/keys/{id}/enable",
        "/admin/v1/keys/{id}/disable",
        "/admin/v1/keys/{id}/quota",
        "/admin/v1/keys/{id}/spend",
        "/admin/v1/usage",
        "/admin/v1/keys/{id}/routes/{route}/quota",
        "/admin/v1/tokens",
        "/admin/v1/tokens/{id}",
        "/admin/v1/audit",
        "/admin/v1/cluster",
        "/admin/v1/cluster/learners",
        "/admin/v1/cluster/voters/{id}",
        "/admin/v1/cluster/members/{id}",
        "/admin/v1/cluster/leader",
        "/admin/v1/cluster/snapshot",
        "/admin/v1/node",
        "/admin/v1/node/state",
        "/admin/v1/openapi.json",
        "/healthz",
        "/readyz",
    ];
    for path in expected {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert_eq!(paths.len(), expected.len());
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert_eq!(doc["security"], json!([{"admin_token": []}]));
    assert_eq!(paths["/healthz"]["get"]["security"], json!([{}]));
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
    // Every `$ref` in the document resolves.
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref to {name}"
        );
    }
}

/// The state digest names the applied index it belongs to, matches the
/// node's own state, and changes with a write.
#[tokio::test]
async fn state_digest_follows_the_applied_state() {
    let f = Fixture::start().await;
    let (status, before) = f.call(Method::GET, "/admin/v1/node/state", None).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["node_id"], 1);
    let digest = f.node.local_state().digest().expect("digest");
    assert_eq!(before["digest"], digest.as_str());
    assert_eq!(digest.len(), 64);
    create_provider(&f, "digested").await;
    let (status, after) = f.call(Method::GET, "/admin/v1/node/state", None).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert!(
        after["applied_index"].as_u64() > before["applied_index"].as_u64(),
        "{before} then {after}"
    );
    assert_ne!(after["digest"], before["digest"]);
    assert_eq!(
        after["digest"],
        f.node.local_state().digest().expect("digest").as_str()
    );
    let (status, _, _) = f
        .send_raw(Method::GET, "/admin/v1/node/state", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
