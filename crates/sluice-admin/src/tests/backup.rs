//! Backups: export, restore refused over configuration without force, bad
//! files and foreign data keys refused with the field named, and the node
//! report.

use super::{assert_error, create_provider, Fixture};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_core::backup::Backup;
use sluice_core::DataKey;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON body")
}

#[tokio::test]
async fn export_then_restore_with_force_and_bad_files_refused() {
    let f = Fixture::start().await;
    create_provider(&f, "up").await;
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/routes",
            Some(json!({"name": "gpt", "deployments": [{"provider": "up", "model": "m"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, file) = f
        .send_bytes(Method::GET, "/admin/v1/cluster/snapshot", Vec::new())
        .await;
    assert_eq!(status, StatusCode::OK);
    let backup = Backup::from_bytes(&file).expect("a backup file");
    assert_eq!(backup.cluster_id, "admin-tests");
    assert_eq!(backup.config.providers.len(), 1);
    assert_eq!(backup.config.routes.len(), 1);
    let needle = b"sk-upstream-secret";
    assert!(!file.windows(needle.len()).any(|w| w == needle));

    // The cluster holds configuration: only force replaces it.
    let (status, body) = f
        .send_bytes(Method::POST, "/admin/v1/cluster/snapshot", file.clone())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&json(&body), "conflict", None);
    let (status, body) = f
        .send_bytes(
            Method::POST,
            "/admin/v1/cluster/snapshot?force=true",
            file.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let report = json(&body);
    assert_eq!(report["restored"]["providers"], 1);
    assert_eq!(report["restored"]["routes"], 1);
    assert_eq!(report["source_cluster_id"], "admin-tests");

    // A corrupt file changes nothing and says why.
    let mut corrupt = file.clone();
    let last = corrupt.len() - 40;
    corrupt[last] ^= 1;
    let (status, body) = f
        .send_bytes(
            Method::POST,
            "/admin/v1/cluster/snapshot?force=true",
            corrupt,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&json(&body), "validation_error", Some("backup"));
    assert!(json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("checksum"));

    // Credentials sealed under another data key would not open here.
    let mut foreign = backup.clone();
    let other = DataKey::from_bytes([9; 32]);
    foreign.config.providers[0].api_key = Some(other.seal("up", "sk-other", [3; 12]));
    let (status, body) = f
        .send_bytes(
            Method::POST,
            "/admin/v1/cluster/snapshot?force=true",
            foreign.to_bytes().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(
        &json(&body),
        "validation_error",
        Some("providers[0].api_key"),
    );

    let (status, providers) = f.call(Method::GET, "/admin/v1/providers", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        providers["providers"].as_array().map(Vec::len),
        Some(1),
        "{providers}"
    );

    let (status, node) = f.call(Method::GET, "/admin/v1/node", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node["node_id"], 1);
    assert!(node["clock_ms"].as_u64().is_some_and(|ms| ms > 0), "{node}");
    f.stop().await;
}
