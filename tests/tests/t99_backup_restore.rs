//! Backup and restore, as `docs/operations.md` tells an operator to do it:
//! `sluice cluster snapshot export` on a running cluster, a fresh 3-node
//! cluster made with the old data key (`sluice init --data-key-from`),
//! `sluice cluster snapshot restore` into it; then every node of the new
//! cluster holds the same providers, routes, keys, admin tokens and quota
//! policies, and a restored key gets a completion through a restored
//! provider whose credential is still sealed. A cluster with another data
//! key refuses the file until it is re-sealed (`snapshot reseal`).

use sluice_e2e::dataplane::{DataPlane, GPT};
use sluice_e2e::{json, Cluster, ProxyClient, Value};
use std::path::Path;
use std::time::Duration;

/// A provider with a credential, and a route on it.
const KEYED_PROVIDER: &str = "keyed";
const KEYED_ROUTE: &str = "keyed-gpt";

/// What an operator configured, as every node of `cluster` reports it
/// through the admin API (quota levels and leases left out: they are not
/// restored).
fn configuration(cluster: &Cluster, id: u64) -> Value {
    let admin = cluster.admin(id);
    let get = |path: &str| {
        let (status, body) = admin.get(path);
        assert_eq!(status, 200, "GET {path} on node {id}: {body}");
        body
    };
    let keys = get("/admin/v1/keys");
    let mut quotas = Vec::new();
    for key in keys["keys"].as_array().expect("keys") {
        let id = key["id"].as_str().expect("key id");
        let quota = get(&format!("/admin/v1/keys/{id}/quota"));
        let buckets: Vec<Value> = quota["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| json!([b["scope"], b["unit"], b["capacity"], b["refill"]]))
            .collect();
        quotas.push(json!({"key": id, "on_no_quorum": quota["on_no_quorum"], "buckets": buckets}));
    }
    // `status` of a key is computed at the time of the answer; the rest is stored.
    json!({
        "providers": get("/admin/v1/providers"),
        "routes": get("/admin/v1/routes"),
        "keys": keys,
        "tokens": get("/admin/v1/tokens"),
        "quotas": quotas,
    })
}

/// The source: the standard data plane, a provider with a credential, a
/// key with cluster-wide limits, an admin token and a revoked key.
fn source() -> (DataPlane, String) {
    let plane = DataPlane::start(Cluster::builder().fast_elections());
    plane.write(
        "/admin/v1/providers",
        &json!({"name": KEYED_PROVIDER, "kind": "openai", "base_url": plane.mock.v1(), "api_key": "sk-upstream-credential"}),
    );
    plane.create_route(KEYED_ROUTE, &[(KEYED_PROVIDER, "mock-gpt", 1)], &[]);
    let limited = plane.cluster.cli_json(
        1,
        &[
            "keys",
            "create",
            "--name",
            "team-a",
            "--route",
            KEYED_ROUTE,
            "--rpm",
            "600",
            "--tpm",
            "100000",
        ],
    );
    let limited = limited["key"].as_str().expect("the new key's secret");
    plane
        .cluster
        .cli_json(1, &["tokens", "create", "--name", "ops"]);
    let (revoked, _) = plane.create_key("gone", &[]);
    plane.write(&format!("/admin/v1/keys/{revoked}/revoke"), &json!({}));
    (plane, limited.to_string())
}

fn export(cluster: &Cluster, file: &Path) -> Value {
    cluster.cli_json(
        2,
        &[
            "cluster",
            "snapshot",
            "export",
            "--out",
            file.to_str().expect("UTF-8 path"),
        ],
    )
}

/// A chat completion through node `id` of `cluster` with `key` on `route`
/// answers 200, waiting until the node serves it.
fn completion_works(cluster: &Cluster, id: u64, key: &str, route: &str) {
    let proxy = ProxyClient::new(cluster.proxy_url(id), Some(key));
    let body = json!({"model": route, "messages": [{"role": "user", "content": "hello"}]});
    let mut last = String::new();
    let served = cluster
        .deadline()
        .within(Duration::from_secs(15))
        .poll("", || {
            let reply = proxy.post("/v1/chat/completions", &body);
            last = format!("{} {}", reply.status, reply.text);
            reply.status == 200
        });
    if served.is_err() {
        cluster.fail(format!(
            "node {id} does not complete on {route}: last answer {last}"
        ));
    }
}

#[test]
fn backup_restored_into_a_fresh_cluster_gives_the_same_configuration() {
    let (plane, limited_key) = source();
    let file = plane.cluster.root().join("backup.bin");
    let summary = export(&plane.cluster, &file);
    assert_eq!(summary["providers"], 3, "{summary}");
    assert_eq!(summary["keys"], 4, "{summary}");
    assert_eq!(summary["admin_tokens"], 1, "{summary}");
    assert_eq!(summary["quotas"], 1, "{summary}");
    let bytes = std::fs::read(&file).expect("the backup file");
    let needle = b"sk-upstream-credential";
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "a provider credential is in clear in the backup"
    );
    let expected = configuration(&plane.cluster, 1);

    // A new cluster, made with the old cluster's data key.
    let fresh = Cluster::builder()
        .fast_elections()
        .data_key_from(plane.cluster.out_dir().join("data.key"))
        .start();
    assert_ne!(fresh.cluster_id(), plane.cluster.cluster_id());
    let report = fresh.cli_json(
        3,
        &[
            "cluster",
            "snapshot",
            "restore",
            "--in",
            file.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(report["restored"]["routes"], 4, "{report}");
    assert_eq!(
        report["source_cluster_id"].as_str(),
        Some(plane.cluster.cluster_id())
    );
    for id in fresh.ids() {
        let restored = configuration(&fresh, id);
        assert_eq!(restored, expected, "node {id} after the restore");
    }

    // Restored keys call restored providers, the credential opening under
    // the same data key; the quota policy admits them.
    completion_works(&fresh, 1, &plane.key, GPT);
    completion_works(&fresh, 2, &limited_key, KEYED_ROUTE);

    // A second restore would overwrite configuration: refused without
    // --force. A corrupt file is refused before anything is sent.
    let again = fresh.cli(
        1,
        &[
            "cluster",
            "snapshot",
            "restore",
            "--in",
            file.to_str().unwrap(),
        ],
    );
    assert_ne!(again.code(), 0, "{again}");
    assert!(again.stderr.contains("conflict"), "{again}");
    let mut corrupt = bytes.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    let corrupt_file = plane.cluster.root().join("corrupt.bin");
    std::fs::write(&corrupt_file, &corrupt).expect("writing the corrupt copy");
    let refused = fresh.cli(
        1,
        &[
            "cluster",
            "snapshot",
            "restore",
            "--force",
            "--in",
            corrupt_file.to_str().unwrap(),
        ],
    );
    assert_ne!(refused.code(), 0, "{refused}");
    assert!(refused.stderr.contains("checksum"), "{refused}");
    assert_eq!(configuration(&fresh, 1), expected);

    // With --force the same file restores again (the configuration is the same).
    let forced = fresh.cli_json(
        1,
        &[
            "cluster",
            "snapshot",
            "restore",
            "--force",
            "--in",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(forced["restored"]["keys"], 4, "{forced}");
    assert_eq!(configuration(&fresh, 2), expected);
}

#[test]
fn a_backup_under_another_data_key_is_refused_until_resealed() {
    let (plane, limited_key) = source();
    let file = plane.cluster.root().join("backup.bin");
    export(&plane.cluster, &file);
    let other = Cluster::builder().nodes(1).fast_elections().start();
    let path = file.to_str().unwrap();
    let refused = other.cli(1, &["cluster", "snapshot", "restore", "--in", path]);
    assert_ne!(refused.code(), 0, "{refused}");
    assert!(refused.stderr.contains("api_key"), "{refused}");
    let (status, providers) = other.admin(1).get("/admin/v1/providers");
    assert_eq!(status, 200);
    assert_eq!(providers["providers"], json!([]), "nothing may change");

    let resealed = plane.cluster.root().join("resealed.bin");
    let old_key = plane.cluster.out_dir().join("data.key");
    let new_key = other.out_dir().join("data.key");
    let summary = other.cli_json(
        1,
        &[
            "cluster",
            "snapshot",
            "reseal",
            "--in",
            path,
            "--out",
            resealed.to_str().unwrap(),
            "--from-data-key",
            old_key.to_str().unwrap(),
            "--to-data-key",
            new_key.to_str().unwrap(),
        ],
    );
    assert_eq!(summary["providers"], 3, "{summary}");
    other.cli_json(
        1,
        &[
            "cluster",
            "snapshot",
            "restore",
            "--in",
            resealed.to_str().unwrap(),
        ],
    );
    completion_works(&other, 1, &limited_key, KEYED_ROUTE);
}
