//! Authentication and the admin error shape.

use super::{assert_error, create_provider, Fixture, TOKEN};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

#[tokio::test]
async fn missing_or_wrong_token_is_refused_with_a_challenge() {
    let f = Fixture::start().await;
    for token in [None, Some("sluice-admin-wrong")] {
        let (status, headers, body) = f
            .send(Method::GET, "/admin/v1/providers", token, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_error(&body, "unauthorized", None);
    }
    let (status, _, _) = f
        .send(Method::GET, "/admin/v1/providers", Some(TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    f.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_rejected_in_the_admin_error_shape() {
    let f = Fixture::start().await;
    let (status, _, body) = f
        .send(
            Method::POST,
            "/admin/v1/providers",
            Some(TOKEN),
            Some("{\"name\":".into()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_request", None);

    let request = Request::post("/admin/v1/providers")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .expect("request");
    let response = f.router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/providers",
            Some(json!({"name": "p", "kind": "openai", "base_url": "http://x", "colour": "blue"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_error", Some("colour"));

    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (status, _, body) = f
        .send(Method::POST, "/admin/v1/tokens", Some(TOKEN), Some(big))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large", None);

    let (status, _, body) = f
        .send(Method::GET, "/admin/v1/nothing-here", Some(TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", None);
    f.stop().await;
}

#[tokio::test]
async fn invalid_fields_are_named() {
    let f = Fixture::start().await;
    create_provider(&f, "openai").await;
    let route = |deployment: Value, pricing: Value| json!({"name": "gpt-4o", "deployments": [deployment], "pricing": pricing});
    let cases = [
        (
            route(
                json!({"provider": "openai", "model": "gpt-4o", "weight": 0}),
                json!({}),
            ),
            "deployments[0].weight",
        ),
        (
            route(json!({"provider": "nope", "model": "gpt-4o"}), json!({})),
            "deployments[0].provider",
        ),
        (
            route(
                json!({"provider": "openai", "model": "gpt-4o"}),
                json!({"prompt_usd_per_mtok": -1}),
            ),
            "pricing.prompt_usd_per_mtok",
        ),
        (
            route(
                json!({"provider": "openai", "model": "gpt-4o"}),
                json!({"completion_usd_per_mtok": 0.1234567}),
            ),
            "pricing.completion_usd_per_mtok",
        ),
        (
            route(
                json!({"provider": "openai", "model": "gpt-4o", "weight": "x"}),
                json!({}),
            ),
            "deployments[0].weight",
        ),
    ];
    for (body, field) in cases {
        let (status, response) = f.call(Method::POST, "/admin/v1/routes", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{response}");
        assert_error(&response, "validation_error", Some(field));
    }
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/providers",
            Some(json!({"name": "x", "kind": "openai", "base_url": "ftp://x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_error", Some("base_url"));
    // A credential in clear headers is refused, and nothing of it is kept
    // or echoed.
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/providers",
            Some(json!({
                "name": "leaky", "kind": "openai", "base_url": "https://api.openai.com/v1",
                "headers": {"Authorization": "Bearer sk-live-secret"},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_error", Some("headers.Authorization"));
    assert!(!body.to_string().contains("sk-live-secret"), "{body}");
    let (status, _) = f.call(Method::GET, "/admin/v1/providers/leaky", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    f.stop().await;
}
