//! The admin API of a real node: authentication and error responses.
//!
//! Every error is `{"error": {"type", "message", "field"}}` with the status
//! its type implies.

use serde_json::{json, Value};
use sluice_e2e::admin::provider_body;
use sluice_e2e::Cluster;

fn single_node() -> Cluster {
    Cluster::builder().nodes(1).fast_elections().start()
}

/// Checks the admin error shape and returns its `type`.
fn error_type(status: u16, body: &Value) -> String {
    let error = &body["error"];
    assert!(
        error.is_object(),
        "status {status}: body is not an admin error: {body}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "status {status}: error without a message: {body}"
    );
    error["type"]
        .as_str()
        .unwrap_or_else(|| panic!("status {status}: error without a type: {body}"))
        .to_string()
}

#[test]
fn request_without_a_token_is_refused_with_401() {
    let cluster = single_node();
    let anonymous = cluster.admin(1).with_token(None);
    for (status, body) in [
        anonymous.get("/admin/v1/providers"),
        anonymous.post("/admin/v1/providers", &provider_body("p")),
        anonymous.get("/admin/v1/cluster"),
    ] {
        assert_eq!(status, 401, "{body}");
        assert_eq!(error_type(status, &body), "unauthorized");
    }
    // Health endpoints stay open to load balancers.
    assert_eq!(anonymous.get("/healthz").0, 200);
    assert_eq!(anonymous.get("/readyz").0, 200);
    // Nothing was written.
    assert_eq!(cluster.admin(1).provider_names(), Some(vec![]));
}

#[test]
fn request_with_a_wrong_token_is_refused_with_401() {
    let cluster = single_node();
    let wrong = cluster
        .admin(1)
        .with_token(Some("sluice_admin_0000000000000000000000000000"));
    let (status, body) = wrong.get("/admin/v1/providers");
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_type(status, &body), "unauthorized");
    // A token that is right except for its last character.
    let mut almost = cluster.token().to_string();
    let last = almost.pop().expect("non-empty token");
    almost.push(if last == 'a' { 'b' } else { 'a' });
    let (status, body) = cluster
        .admin(1)
        .with_token(Some(&almost))
        .post("/admin/v1/providers", &provider_body("p"));
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains(cluster.token()),
        "the error must not echo the token: {body}"
    );
}

#[test]
fn malformed_json_is_refused_with_400() {
    let cluster = single_node();
    let admin = cluster.admin(1);
    for raw in ["{\"name\": \"p\", ", "not json", "{\"name\": }", ""] {
        let (status, body) = admin.post_raw("/admin/v1/providers", raw);
        assert_eq!(status, 400, "body {raw:?} → {body}");
        assert_eq!(error_type(status, &body), "invalid_request", "{body}");
    }
}

#[test]
fn truncated_json_is_refused_with_400_even_when_its_start_parses() {
    // Not JSON at all: the error must say so, not blame a field of a
    // half-read document.
    let cluster = single_node();
    let (status, body) = cluster.admin(1).post_raw("/admin/v1/providers", "[1, 2");
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_type(status, &body), "invalid_request", "{body}");
}

#[test]
fn invalid_field_is_refused_with_422_naming_the_field() {
    let cluster = single_node();
    let admin = cluster.admin(1);
    let cases = [
        (
            "/admin/v1/providers",
            json!({"name": "p", "kind": "openai", "base_url": "ftp://example.com"}),
            "base_url",
        ),
        (
            "/admin/v1/providers",
            json!({"name": "bad name!", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}),
            "name",
        ),
        ("/admin/v1/keys", json!({"name": ""}), "name"),
    ];
    for (path, request, field) in cases {
        let (status, body) = admin.post(path, &request);
        assert_eq!(status, 422, "POST {path} {request} → {body}");
        assert_eq!(error_type(status, &body), "validation_error", "{body}");
        assert_eq!(
            body["error"]["field"], field,
            "POST {path} {request} → {body}"
        );
    }
    // A route whose deployment names a provider that does not exist.
    let (status, body) = admin.post(
        "/admin/v1/routes",
        &json!({"name": "gpt-4o", "deployments": [{"provider": "nope", "model": "gpt-4o"}]}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["field"]
            .as_str()
            .is_some_and(|f| f.contains("provider")),
        "the field should point at the deployment's provider: {body}"
    );
    assert_eq!(admin.provider_names(), Some(vec![]), "nothing was written");
}

#[test]
fn unknown_provider_or_model_is_404() {
    let cluster = single_node();
    let admin = cluster.admin(1);
    for (status, body) in [
        admin.get("/admin/v1/providers/no-such-provider"),
        admin.delete("/admin/v1/providers/no-such-provider"),
        admin.get("/admin/v1/routes/no-such-model"),
        admin.get("/admin/v1/keys/key_0000000000000000"),
    ] {
        assert_eq!(status, 404, "{body}");
        assert_eq!(error_type(status, &body), "not_found", "{body}");
    }
}

/// Admin token roles hold on every node of a 3-node cluster: a token made
/// on node 1 carries its role to node 3, which enforces it locally.
#[test]
fn token_roles_are_enforced_on_every_node() {
    let cluster = Cluster::builder().nodes(3).fast_elections().start();
    let admin = cluster.admin(1);
    let mut tokens = std::collections::BTreeMap::new();
    for role in ["viewer", "keys", "operator"] {
        let (status, body) = admin.post(
            "/admin/v1/tokens",
            &json!({"name": format!("{role}-e2e"), "role": role}),
        );
        assert_eq!(status, 201, "{body}");
        tokens.insert(role, body["token"].as_str().expect("token").to_owned());
    }
    let on_node_3 = |role: &str| cluster.admin(3).with_token(Some(&tokens[role]));
    cluster.wait_until(
        std::time::Duration::from_secs(10),
        "node 3 knows the new tokens",
        || {
            tokens
                .keys()
                .all(|role| on_node_3(role).get("/admin/v1/routes").0 == 200)
        },
    );
    let viewer = on_node_3("viewer");
    assert_eq!(viewer.get("/admin/v1/providers").0, 200);
    for (status, body) in [
        viewer.post("/admin/v1/providers", &provider_body("p")),
        viewer.get("/admin/v1/cluster/snapshot"),
        on_node_3("keys").post("/admin/v1/providers", &provider_body("p")),
        on_node_3("operator").post("/admin/v1/tokens", &json!({"name": "escalate"})),
    ] {
        assert_eq!(status, 403, "{body}");
        assert_eq!(error_type(status, &body), "forbidden");
    }
    // What a role may do, it does on any node.
    let (status, body) =
        on_node_3("keys").post("/admin/v1/keys", &json!({"name": "made-by-keys-role"}));
    assert_eq!(status, 201, "{body}");
    // Nothing refused was written.
    assert_eq!(cluster.admin(1).provider_names(), Some(vec![]));
}

/// The audit log is the same on every node: writes made through node 1 by
/// the bootstrap token and through node 2 by a `keys` token are listed,
/// with their actors and their callers' loopback addresses, identically by
/// all three nodes; a refused write is not.
#[test]
fn the_audit_log_is_the_same_on_every_node() {
    let cluster = Cluster::builder().nodes(3).fast_elections().start();
    let (status, body) = cluster
        .admin(1)
        .post("/admin/v1/providers", &provider_body("up"));
    assert_eq!(status, 201, "{body}");
    let (status, made) = cluster.admin(1).post(
        "/admin/v1/tokens",
        &json!({"name": "keeper", "role": "keys"}),
    );
    assert_eq!(status, 201, "{made}");
    let keeper = made["token"].as_str().expect("token").to_owned();
    let keeper_id = made["id"].as_str().expect("id").to_owned();
    let on_node_2 = cluster.admin(2).with_token(Some(&keeper));
    cluster.wait_until(
        std::time::Duration::from_secs(10),
        "node 2 knows the new token",
        || on_node_2.get("/admin/v1/routes").0 == 200,
    );
    let (status, key) = on_node_2.post("/admin/v1/keys", &json!({"name": "audited"}));
    assert_eq!(status, 201, "{key}");
    // Refused (a `keys` token may not touch providers): not recorded.
    assert_eq!(
        on_node_2
            .post("/admin/v1/providers", &provider_body("p2"))
            .0,
        403
    );

    let pages: Vec<Value> = (1..=3)
        .map(|node| {
            let (status, page) = cluster.admin(node).get("/admin/v1/audit");
            assert_eq!(status, 200, "node {node}: {page}");
            page
        })
        .collect();
    assert_eq!(pages[0], pages[1], "nodes 1 and 2 differ");
    assert_eq!(pages[0], pages[2], "nodes 1 and 3 differ");
    let entries = pages[0]["entries"].as_array().expect("entries");
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"]["token_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("create_provider", "bootstrap"),
            ("create_admin_token", "bootstrap"),
            ("create_key", keeper_id.as_str()),
        ]
    );
    for e in entries {
        let address = e["actor"]["address"].as_str().expect("address");
        assert!(address.starts_with("127.0.0.1:"), "{address}");
    }
    assert_eq!(entries[2]["after"]["id"], key["id"]);
    assert!(
        !pages[0].to_string().contains(&keeper),
        "a token in the log"
    );
}
