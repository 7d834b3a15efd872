//! The OpenAPI document, health endpoints and cluster status.

use super::{assert_error, Fixture, TOKEN};
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
        "/admin/v1/cluster",
        "/admin/v1/cluster/learners",
        "/admin/v1/cluster/voters/{id}",
        "/admin/v1/cluster/members/{id}",
        "/admin/v1/cluster/leader",
        "/admin/v1/cluster/snapshot",
        "/admin/v1/node",
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
