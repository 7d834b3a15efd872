//! Admin token roles: every endpoint of the served OpenAPI document, called
//! with a token of every role.

use super::{assert_error, Fixture};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_core::Role;

/// A token of `role`, made with the bootstrap token.
async fn token(f: &Fixture, role: Role) -> String {
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"name": format!("{role}-token"), "role": role.as_str()})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], role.as_str());
    body["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn every_endpoint_answers_every_role_as_the_table_says() {
    let f = Fixture::start().await;
    let (_, doc) = f.call(Method::GET, "/admin/v1/openapi.json", None).await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        tokens.push((role, token(&f, role).await));
    }
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/admin/v1/") || path == "/admin/v1/openapi.json" {
            continue;
        }
        // Parameters that name nothing: an allowed call is answered (404,
        // 400 or 422), never refused.
        let concrete = path
            .replace("{id}", "nothing")
            .replace("{name}", "nothing")
            .replace("{route}", "nothing");
        for (method, operation) in item.as_object().expect("path item") {
            let method: Method = method.to_uppercase().parse().expect("method");
            let allowed = crate::roles::allowed(&method, path);
            let described = operation["description"].as_str().unwrap_or_default();
            assert!(
                described.contains(&crate::roles::describe(allowed)),
                "{method} {path} does not state its roles: {described:?}"
            );
            let body = (method != Method::GET && method != Method::DELETE).then(|| "{}".to_owned());
            for (role, token) in &tokens {
                let (status, _, bytes) = f
                    .send_raw(method.clone(), &concrete, Some(token), body.clone())
                    .await;
                if allowed.contains(role) {
                    assert!(
                        status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                        "{role} refused {method} {path}: {status}"
                    );
                } else {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{role} on {method} {path}");
                    let error: Value = serde_json::from_slice(&bytes).expect("JSON error");
                    assert_error(&error, "forbidden", None);
                    let message = error["error"]["message"].as_str().unwrap_or_default();
                    assert!(
                        message.contains(&format!("`{role}`"))
                            && message.contains(&crate::roles::describe(allowed)),
                        "{message}"
                    );
                }
                checked += 1;
            }
        }
    }
    // 33 operations under /admin/v1 today, times 4 roles.
    assert!(checked >= 4 * 30, "only {checked} calls checked");
    f.stop().await;
}

#[tokio::test]
async fn a_viewer_reads_but_never_writes_and_never_exports() {
    let f = Fixture::start().await;
    let viewer = token(&f, Role::Viewer).await;
    let keys = token(&f, Role::Keys).await;
    let (status, _, _) = f
        .send(Method::GET, "/admin/v1/providers", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = f
        .send(
            Method::GET,
            "/admin/v1/cluster/snapshot",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The keys role makes keys, and only keys.
    super::create_route(&f, "r", "p").await;
    let (status, _, made) = f
        .send(
            Method::POST,
            "/admin/v1/keys",
            Some(&keys),
            Some(json!({"name": "app", "allowed_routes": ["r"]}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, _, _) = f
        .send(
            Method::POST,
            "/admin/v1/routes",
            Some(&keys),
            Some(
                json!({"name": "r2", "deployments": [{"provider": "p", "model": "m"}]}).to_string(),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A token's role is shown, and the default is `admin`.
    let (_, plain) = f
        .call(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"name": "plain"})),
        )
        .await;
    assert_eq!(plain["role"], "admin");
    let (status, bad) = f
        .call(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"name": "bad", "role": "root"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&bad, "validation_error", Some("role"));
    f.stop().await;
}
