//! `deploy/`: every example node configuration passes `sluice serve
//! --check`, and the files around them agree with them.
//!
//! The examples name certificate and key files that are not in the
//! repository (`sluice init` makes them per cluster), and `--check` reads
//! and verifies those files. So the test makes real ones with `sluice
//! init`'s code and rewrites only the four file paths (`tls.*`,
//! `secrets.data_key_file`) to point at them: every other field is checked
//! as shipped. The Kubernetes configs are taken out of the ConfigMap with a
//! YAML parser; the manifests and the compose file are parsed and held to
//! what the configs assume (names, ports, the ordinal-to-node mapping).

use serde_json::Value;
use sluice::init::{self, fixed_port_plan, InitPlan};
use sluice_e2e::process::run_to_completion;
use sluice_e2e::{sluice_bin, Deadline};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every document of a YAML file, merge keys (`<<: *anchor`) applied.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            let mut value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{}: merge keys: {e}", path.display()));
            serde_json::to_value(value).expect("YAML as JSON")
        })
        .collect()
}

/// Certificates, keys and a data key for nodes 1-3, from `sluice init`.
struct Material {
    dir: tempfile::TempDir,
}

impl Material {
    fn new() -> Material {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = fixed_port_plan(1..=3, IpAddr::V4(Ipv4Addr::LOCALHOST), 7000).expect("plan");
        init::generate(&InitPlan::new(dir.path().join("pki"), nodes)).expect("sluice init");
        Material { dir }
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// Runs `sluice serve --check` on `text` (node `id`'s config from
    /// `origin`) with only its certificate, key and data key paths pointed
    /// at the generated files. Returns the config as shipped.
    fn check(&self, origin: &str, id: u64, text: &str) -> toml::Table {
        let mut config: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{origin} is not TOML: {e}"));
        assert_eq!(
            config.get("node_id").and_then(toml::Value::as_integer),
            Some(id as i64),
            "{origin}: node_id"
        );
        let shipped = config.clone();
        let pki = self.pki();
        let node = init::node_dir(&pki, id);
        for (table, field, file) in [
            ("tls", "ca_cert", pki.join(init::CA_CERT_FILE)),
            ("tls", "node_cert", node.join(init::NODE_CERT_FILE)),
            ("tls", "node_key", node.join(init::NODE_KEY_FILE)),
            ("secrets", "data_key_file", pki.join(init::DATA_KEY_FILE)),
            ("admin", "tls_cert", node.join(init::ADMIN_CERT_FILE)),
            ("admin", "tls_key", node.join(init::ADMIN_KEY_FILE)),
        ] {
            let section = config
                .get_mut(table)
                .and_then(toml::Value::as_table_mut)
                .unwrap_or_else(|| panic!("{origin}: no [{table}]"));
            assert!(section.contains_key(field), "{origin}: no {table}.{field}");
            section.insert(
                field.to_string(),
                toml::Value::String(file.display().to_string()),
            );
        }
        let checked = self.dir.path().join(format!(
            "{}.toml",
            origin.replace(['/', '.', ' ', '[', ']'], "_")
        ));
        std::fs::write(&checked, toml::to_string(&config).expect("TOML")).expect("write");
        let mut command = Command::new(sluice_bin());
        command.args(["serve", "--check", "--config"]).arg(&checked);
        let done = run_to_completion(command, Deadline::after(Duration::from_secs(30)));
        assert_eq!(done.code(), 0, "sluice serve --check on {origin}: {done}");
        assert!(done.stdout.contains(": OK"), "{origin}: {done}");
        shipped
    }
}

fn string<'a>(config: &'a toml::Table, path: &[&str]) -> &'a str {
    let mut value = config.get(path[0]);
    for key in &path[1..] {
        value = value.and_then(|v| v.get(key));
    }
    value
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("no string at {}", path.join(".")))
}

/// The configs of one cluster agree: one cluster id, the same members, and
/// every member is one of the configs.
fn assert_one_cluster(name: &str, configs: &BTreeMap<u64, toml::Table>) {
    let first = configs.values().next().expect("configs");
    let ids: Vec<u64> = configs.keys().copied().collect();
    assert_eq!(ids, vec![1, 2, 3], "{name}: nodes");
    for (id, config) in configs {
        assert_eq!(
            config["cluster_id"], first["cluster_id"],
            "{name}: node {id}'s cluster_id"
        );
        assert_eq!(
            config["cluster"], first["cluster"],
            "{name}: node {id}'s initial_members differ"
        );
    }
    let members = first["cluster"]["initial_members"]
        .as_array()
        .expect("initial_members");
    let member_ids: Vec<i64> = members
        .iter()
        .map(|m| m["id"].as_integer().expect("id"))
        .collect();
    assert_eq!(member_ids, vec![1, 2, 3], "{name}: initial_members");
}

/// How long a node may take from SIGTERM until its listeners are drained:
/// `[proxy] shutdown_delay_ms` + `drain_timeout_ms` (defaults 0 and 10 s).
fn stopping_ms(config: &toml::Table) -> u64 {
    let proxy = |key: &str, default: u64| {
        config
            .get("proxy")
            .and_then(|p| p.get(key))
            .and_then(toml::Value::as_integer)
            .map_or(default, |ms| ms as u64)
    };
    proxy("shutdown_delay_ms", 0) + proxy("drain_timeout_ms", 10_000)
}

#[test]
fn bare_metal_configs_pass_check_and_fit_the_systemd_unit() {
    let material = Material::new();
    let dir = deploy_dir().join("bare-metal");
    let configs: BTreeMap<u64, toml::Table> = (1..=3)
        .map(|id| {
            let path = dir.join(format!("node-{id}/sluice.toml"));
            (
                id,
                material.check(&format!("bare-metal/node-{id}"), id, &read(&path)),
            )
        })
        .collect();
    assert_one_cluster("bare-metal", &configs);

    // The unit: its config path and state directory are the configs', and it
    // waits longer than the shutdown delay and the drain before SIGKILL.
    let unit = read(&deploy_dir().join("systemd/sluice.service"));
    let setting = |key: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .collect()
    };
    for (key, value) in [
        ("User", "sluice"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("StateDirectory", "sluice"),
    ] {
        assert_eq!(setting(key), vec![value], "sluice.service {key}");
    }
    assert!(
        !setting("LimitNOFILE").is_empty(),
        "sluice.service LimitNOFILE"
    );
    assert!(
        setting("ExecStart")
            .iter()
            .any(|e| e.ends_with("serve --config /etc/sluice/node-${SLUICE_NODE}/sluice.toml")),
        "ExecStart: {:?}",
        setting("ExecStart")
    );
    let stop: u64 = setting("TimeoutStopSec")[0]
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    for (id, config) in &configs {
        assert_eq!(
            string(config, &["data_dir"]),
            "/var/lib/sluice",
            "node {id}"
        );
        assert!(
            stopping_ms(config) + 5_000 <= stop * 1000,
            "node {id} waits and drains for {} ms, the unit kills after {stop} s",
            stopping_ms(config)
        );
    }
}

#[test]
fn compose_cluster_configs_pass_check_and_match_the_compose_file() {
    let material = Material::new();
    let dir = deploy_dir().join("container");
    let configs: BTreeMap<u64, toml::Table> = (1..=3)
        .map(|id| {
            let path = dir.join(format!("node-{id}.toml"));
            (
                id,
                material.check(&format!("container/node-{id}.toml"), id, &read(&path)),
            )
        })
        .collect();
    assert_one_cluster("compose", &configs);

    let compose = yaml_documents(&dir.join("compose.yaml"));
    assert_eq!(compose.len(), 1, "compose.yaml: one document");
    let services = compose[0]["services"]
        .as_object()
        .expect("compose services");
    assert_eq!(services.len(), 3, "compose services");
    for (id, config) in &configs {
        let name = format!("sluice-{id}");
        let service = &services[&name];
        let config_path = format!("/etc/sluice/node-{id}/sluice.toml");
        assert_eq!(
            service["command"],
            serde_json::json!(["serve", "--config", config_path]),
            "{name}"
        );
        let volumes: Vec<&str> = service["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|v| v.as_str().expect("short volume syntax"))
            .collect();
        assert!(
            volumes.contains(&format!("./node-{id}.toml:{config_path}:ro").as_str()),
            "{name} mounts its config: {volumes:?}"
        );
        assert!(volumes.contains(&"./cluster:/etc/sluice:ro"), "{volumes:?}");
        assert!(
            volumes
                .iter()
                .any(|v| v.ends_with(":/var/lib/sluice") && !v.starts_with('.')),
            "{name} keeps its data on a volume: {volumes:?}"
        );
        assert_eq!(service["hostname"], name.as_str());
        assert_eq!(service["read_only"], true, "{name}");
        assert_eq!(
            string(config, &["advertise", "raft"]),
            format!("{name}:7000"),
            "node {id} advertises its service name"
        );
    }

    let containerfile = read(&dir.join("Containerfile"));
    assert!(
        containerfile.matches("\nFROM ").count() + usize::from(containerfile.starts_with("FROM "))
            >= 2,
        "Containerfile is multi-stage"
    );
    assert!(containerfile.contains("\nUSER 10001"), "non-root");
    assert!(
        containerfile.contains("/readyz"),
        "HEALTHCHECK asks /readyz"
    );
    assert!(containerfile.contains("VOLUME [\"/var/lib/sluice\"]"));
}

#[test]
fn kubernetes_configs_pass_check_and_the_manifests_hold_together() {
    let material = Material::new();
    let dir = deploy_dir().join("kubernetes");
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files += 1;
            for document in yaml_documents(&path) {
                assert!(document["apiVersion"].is_string(), "{path:?}");
                let kind = document["kind"].as_str().expect("kind").to_string();
                by_kind.entry(kind).or_default().push(document);
            }
        }
    }
    assert!(files >= 4, "manifests found: {files}");
    let one = |kind: &str| -> &Value {
        let found = by_kind.get(kind).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(found.len(), 1, "one {kind}");
        &found[0]
    };

    // The configs, out of the ConfigMap.
    let config_map = one("ConfigMap");
    let data = config_map["data"].as_object().expect("ConfigMap data");
    let configs: BTreeMap<u64, toml::Table> = (1..=3)
        .map(|id| {
            let key = format!("node-{id}.toml");
            let text = data[&key].as_str().expect("config text");
            (
                id,
                material.check(&format!("kubernetes ConfigMap {key}"), id, text),
            )
        })
        .collect();
    assert_one_cluster("kubernetes", &configs);
    assert_eq!(data.len(), 3);

    let set = one("StatefulSet");
    let spec = &set["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    let peers = spec["serviceName"].as_str().expect("serviceName");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let grace_ms = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds")
        * 1000;
    for (id, config) in &configs {
        assert!(
            stopping_ms(config) + 5_000 <= grace_ms,
            "node {id} waits and drains for {} ms, the pod is killed after {grace_ms} ms",
            stopping_ms(config)
        );
    }
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["livenessProbe"]["httpGet"]["path"].is_string());
    assert!(container["resources"]["requests"].is_object());
    assert!(spec["volumeClaimTemplates"][0]["metadata"]["name"].is_string());
    let mounts: BTreeMap<&str, &str> = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().expect("name"),
                m["mountPath"].as_str().expect("path"),
            )
        })
        .collect();
    let secret_volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"].is_object())
        .expect("a Secret volume");
    let secret_dir = mounts[secret_volume["name"].as_str().expect("name")];

    // The entrypoint maps the pod's ordinal to its node's config: run the
    // shell line with `echo` in place of the binary for each pod name.
    let line = container["args"][0].as_str().expect("entrypoint line");
    let echo = line.replace("exec /usr/local/bin/sluice", "echo");
    assert_ne!(echo, line, "the entrypoint runs /usr/local/bin/sluice");
    let config_dir = mounts["config"];
    for (id, config) in &configs {
        let pod_name = format!("sluice-{}", id - 1);
        let mut command = Command::new("sh");
        command.args(["-c", &echo]).env("HOSTNAME", &pod_name);
        let done = run_to_completion(command, Deadline::after(Duration::from_secs(10)));
        assert_eq!(
            done.stdout.trim(),
            format!("serve --config {config_dir}/node-{id}.toml"),
            "pod {pod_name}: {done}"
        );
        assert_eq!(
            string(config, &["advertise", "raft"]),
            format!("{pod_name}.{peers}:7000"),
            "node {id} advertises its pod's stable name"
        );
        assert!(
            string(config, &["tls", "node_key"]).starts_with(secret_dir),
            "node {id}'s key comes from the Secret"
        );
    }

    let services = by_kind.get("Service").expect("Services");
    let headless = services
        .iter()
        .find(|s| s["metadata"]["name"] == peers)
        .expect("the StatefulSet's headless Service");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert!(
        headless["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["port"] == 7000 && p["protocol"] == "UDP"),
        "Raft over UDP on the headless Service"
    );
    assert!(
        services
            .iter()
            .any(|s| s["metadata"]["name"] != peers && s["spec"]["clusterIP"] != "None"),
        "a Service for traffic"
    );
    assert_eq!(one("PodDisruptionBudget")["spec"]["maxUnavailable"], 1);
}
