//! `Idempotency-Key`: a write sent again under its key is applied once and
//! answers the first result; the key cannot be reused for another request.

use super::{assert_error, create_route, Fixture, TOKEN};
use crate::idempotency::{HEADER, REPLAYED_HEADER};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};

impl Fixture {
    /// Sends a JSON request (or none) with the bootstrap token and `key`.
    async fn keyed(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(HEADER, key);
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        let (status, headers, bytes) = self.respond(request).await;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (status, headers, json)
    }
}

impl Fixture {
    /// Sends the same keyed request twice, as a client retrying would;
    /// checks both answer `expected`, the first fresh and the second from
    /// the record. Answers both bodies.
    async fn sent_twice(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> (Value, Value) {
        let (status, headers, first) = self.keyed(method.clone(), path, key, body.clone()).await;
        assert_eq!(status, expected, "{first}");
        assert!(!replayed(&headers), "the first sending is applied");
        let (status, headers, second) = self.keyed(method, path, key, body).await;
        assert_eq!(
            status, expected,
            "the same status the second time: {second}"
        );
        assert!(replayed(&headers), "a replay says so: {headers:?}");
        (first, second)
    }
}

fn replayed(headers: &HeaderMap) -> bool {
    headers
        .get(REPLAYED_HEADER)
        .is_some_and(|v| v.as_bytes() == b"true")
}

#[tokio::test]
async fn a_key_created_twice_under_one_idempotency_key_is_one_key_with_one_secret() {
    let f = Fixture::start().await;
    create_route(&f, "gpt", "p").await;
    let body = json!({"name": "ci", "allowed_routes": ["gpt"], "rpm": 60});
    let (first, second) = f
        .sent_twice(
            Method::POST,
            "/admin/v1/keys",
            "key-create-1",
            Some(body.clone()),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(second["id"], first["id"]);
    assert_eq!(
        second["key"], first["key"],
        "the retry shows the secret of the one key that was made"
    );
    let (_, list) = f.call(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(1), "{list}");
    // The quota (the request's second write) was set once and is answered too.
    let id = first["id"].as_str().expect("id");
    let (status, quota) = f
        .call(Method::GET, &format!("/admin/v1/keys/{id}/quota"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{quota}");
    assert_eq!(quota["buckets"][0]["capacity"], 60, "{quota}");

    // Without a key the same body makes another key.
    let (status, third) = f.call(Method::POST, "/admin/v1/keys", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(third["id"], first["id"]);
    f.stop().await;
}

#[tokio::test]
async fn creates_and_deletes_sent_again_answer_their_first_result() {
    let f = Fixture::start().await;
    let provider = json!({"name": "p", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"});
    let (first, again) = f
        .sent_twice(
            Method::POST,
            "/admin/v1/providers",
            "p-1",
            Some(provider.clone()),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(again, first, "the same provider, same timestamps");
    let (status, body) = f
        .call(Method::POST, "/admin/v1/providers", Some(provider))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "unkeyed, it runs again: {body}"
    );

    // Deleted twice: 204 twice, not a 404 the second time.
    f.sent_twice(
        Method::DELETE,
        "/admin/v1/providers/p",
        "del-1",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let (status, _) = f.call(Method::DELETE, "/admin/v1/providers/p", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    f.stop().await;
}

#[tokio::test]
async fn admin_tokens_made_under_one_key_are_one_token() {
    let f = Fixture::start().await;
    let (first, second) = f
        .sent_twice(
            Method::POST,
            "/admin/v1/tokens",
            "tok-1",
            Some(json!({"name": "ops"})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(second["token"], first["token"]);
    assert_eq!(second["id"], first["id"]);
    let (_, list) = f.call(Method::GET, "/admin/v1/tokens", None).await;
    assert_eq!(list["tokens"].as_array().map(Vec::len), Some(1), "{list}");
    f.stop().await;
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_a_422_naming_the_header() {
    let f = Fixture::start().await;
    let (status, _, _) = f
        .keyed(
            Method::POST,
            "/admin/v1/providers",
            "shared",
            Some(json!({"name": "a", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = f
        .keyed(
            Method::POST,
            "/admin/v1/providers",
            "shared",
            Some(json!({"name": "b", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_error", Some(HEADER));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("different request")),
        "{body}"
    );
    let (status, _) = f.call(Method::GET, "/admin/v1/providers/b", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was applied");

    for bad in ["", "é-not-ascii"] {
        let request = Request::post("/admin/v1/providers")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                HEADER,
                axum::http::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            )
            .body(Body::from("{}"))
            .expect("request");
        let (status, _, bytes) = f.respond(request).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_error(&body, "validation_error", Some(HEADER));
    }
    f.stop().await;
}

#[tokio::test]
async fn the_header_is_read_only_after_authentication_and_not_on_reads() {
    let f = Fixture::start().await;
    let request = Request::post("/admin/v1/providers")
        .header(HEADER, "")
        .body(Body::from("{}"))
        .expect("request");
    let (status, _, _) = f.respond(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = f
        .keyed(Method::GET, "/admin/v1/providers", "read-1", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    f.stop().await;
}

#[test]
fn the_document_offers_the_header_on_every_write() {
    let doc = serde_json::to_value(crate::openapi::document()).expect("document");
    let params = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (path, method) in [
        ("/admin/v1/keys", "post"),
        ("/admin/v1/providers/{name}", "put"),
        ("/admin/v1/keys/{id}", "patch"),
        ("/admin/v1/routes/{name}", "delete"),
        ("/admin/v1/cluster/snapshot", "post"),
    ] {
        assert!(
            params(path, method).iter().any(|p| p == HEADER),
            "{method} {path}: {:?}",
            params(path, method)
        );
    }
    assert!(!params("/admin/v1/keys", "get").iter().any(|p| p == HEADER));
}
