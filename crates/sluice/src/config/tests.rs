use super::*;
use std::net::{IpAddr, Ipv4Addr};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A directory laid out by `sluice init` (CA, keys, token, three nodes on
/// fixed ports; nothing is bound), and node 1's config text.
fn fixture() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cluster");
    let nodes = crate::init::fixed_port_plan(1..=3, LOCALHOST, 17000).expect("plan");
    crate::init::generate(&crate::init::InitPlan::new(&out, nodes)).expect("generate");
    let path = out.join("node-1").join(CONFIG_FILE_NAME);
    let text = std::fs::read_to_string(&path).expect("read config");
    (dir, path, text)
}

fn fields(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn a_typo_is_reported_with_its_field_path() {
    let (_dir, _path, text) = fixture();
    let text = text.replacen("admin = ", "admn = ", 1);
    let err = parse(&text).expect_err("typo must fail");
    assert_eq!(err.field, "listen.admn", "{err}");
    assert!(err.message.contains("unknown field `admn`"), "{err}");
    assert!(err.message.contains("line "), "{err}");
}

#[test]
fn a_wrong_type_is_reported_with_its_field_path() {
    let (_dir, _path, text) = fixture();
    let text = text.replacen("node_id = 1", "node_id = \"one\"", 1);
    let err = parse(&text).expect_err("wrong type must fail");
    assert_eq!(err.field, "node_id", "{err}");
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let (_dir, path, text) = fixture();
    let mut raw = parse(&text).expect("parse");
    raw.cluster_id = "Bad_Id".into();
    raw.node_id = 0;
    raw.listen.proxy = "localhost".into();
    raw.listen.admin = "0.0.0.0:9090".into();
    raw.advertise.proxy_url = Some("ftp://x".into());
    raw.secrets.data_key_file = "missing.key".into();
    raw.admin.token_sha256 = vec!["abc".into()];
    raw.cluster.join = Some(vec!["127.0.0.1:7071".into()]);
    raw.raft.election_timeout_min_ms = Some(2000);
    raw.log.level = "info,=[".into();
    raw.limits.max_body_bytes = 0;
    let errors = validate(raw, path.parent().expect("dir")).expect_err("must fail");
    let fields = fields(&errors);
    for expected in [
        "cluster_id",
        "node_id",
        "listen.proxy",
        "advertise.admin_url",
        "advertise.proxy_url",
        "secrets.data_key_file",
        "admin.token_sha256[0]",
        "cluster",
        "raft.election_timeout_min_ms",
        "log.level",
        "limits.max_body_bytes",
    ] {
        assert!(
            fields.contains(&expected),
            "missing {expected} in {errors:#?}"
        );
    }
}

#[test]
fn a_valid_config_round_trips() {
    let (_dir, path, text) = fixture();
    let raw = parse(&text).expect("parse");
    let again = parse(&toml::to_string(&raw).expect("serialize")).expect("reparse");
    assert_eq!(raw, again);

    let config = load(&path).expect("load");
    assert_eq!(config.node_id, 1);
    assert_eq!(config.listen.raft, "127.0.0.1:17000".parse().expect("addr"));
    assert_eq!(
        config.listen.admin,
        "127.0.0.1:17001".parse().expect("addr")
    );
    // The admin API serves HTTPS: `sluice init` wrote its certificate.
    assert_eq!(config.advertise.admin_url, "https://127.0.0.1:17001");
    assert!(config.admin_tls.is_some());
    assert_eq!(config.advertise.proxy_url, "http://127.0.0.1:17002");
    assert_eq!(config.admin_token_hashes.len(), 1);
    assert_eq!(config.limits.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(config.log.format, LogFormat::Text);
    let Bootstrap::InitialMembers(members) = &config.bootstrap else {
        panic!("expected initial members, got {:?}", config.bootstrap);
    };
    assert_eq!(members.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    let options = config.node_options();
    assert_eq!(options.advertise, config.advertise);
    assert_eq!(
        options.timing.heartbeat_interval_ms,
        RaftTiming::default().heartbeat_interval_ms
    );
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let (dir, path, _text) = fixture();
    let config = load(&path).expect("load");
    let cluster = std::path::absolute(dir.path().join("cluster")).expect("absolute");
    let node = cluster.join("node-1");
    assert_eq!(config.data_dir, node.join("data"));
    assert_eq!(config.tls.ca_cert, node.join("..").join("ca.pem"));
    assert_eq!(config.tls.node_key, node.join("node-key.pem"));
    assert_eq!(config.data_key_file, node.join("..").join("data.key"));

    let mut raw = parse(&std::fs::read_to_string(&path).expect("read")).expect("parse");
    raw.data_dir = "/var/lib/sluice".into();
    let config = validate(raw, &node).expect("validate");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/sluice"));
}

#[test]
fn unspecified_listen_address_requires_advertise() {
    let (_dir, path, text) = fixture();
    let dir = path.parent().expect("dir");
    let mut raw = parse(&text).expect("parse");
    raw.listen.raft = "0.0.0.0:17000".into();
    let errors = validate(raw.clone(), dir).expect_err("must fail");
    assert_eq!(fields(&errors), vec!["advertise.raft"], "{errors:#?}");

    raw.advertise.raft = Some("127.0.0.1:17000".into());
    validate(raw, dir).expect("advertised address makes it valid");
}

#[test]
fn initial_members_must_include_this_node_once_with_its_own_addresses() {
    let (_dir, path, text) = fixture();
    let dir = path.parent().expect("dir");
    let raw = parse(&text).expect("parse");

    let mut wrong_addr = raw.clone();
    if let Some(members) = wrong_addr.cluster.initial_members.as_mut() {
        members[0].raft = "127.0.0.1:1".into();
        members[2].id = 2;
    }
    let errors = validate(wrong_addr, dir).expect_err("must fail");
    let fields = fields(&errors);
    assert!(
        fields.contains(&"cluster.initial_members[0].raft"),
        "{errors:#?}"
    );
    assert!(
        fields.contains(&"cluster.initial_members[2].id"),
        "{errors:#?}"
    );

    let mut missing = raw.clone();
    missing.node_id = 9;
    let errors = validate(missing, dir).expect_err("must fail");
    assert_eq!(
        fields_of(&errors),
        vec!["cluster.initial_members"],
        "{errors:#?}"
    );

    let mut both = raw;
    both.cluster.join = Some(vec!["127.0.0.1:17010".into()]);
    let errors = validate(both, dir).expect_err("must fail");
    assert_eq!(fields_of(&errors), vec!["cluster"], "{errors:#?}");
}

fn fields_of(errors: &[ConfigError]) -> Vec<String> {
    errors.iter().map(|e| e.field.clone()).collect()
}

#[test]
fn raft_timing_rules() {
    let (_dir, path, text) = fixture();
    let mut raw = parse(&text).expect("parse");
    raw.raft.heartbeat_interval_ms = Some(700);
    raw.raft.election_timeout_max_ms = Some(300);
    let errors = validate(raw, path.parent().expect("dir")).expect_err("must fail");
    assert_eq!(
        fields_of(&errors),
        vec!["raft.heartbeat_interval_ms", "raft.election_timeout_min_ms"],
        "{errors:#?}"
    );

    // The leader lease (min - heartbeat) must cover a heartbeat.
    let mut raw = parse(&text).expect("parse");
    raw.raft.heartbeat_interval_ms = Some(100);
    raw.raft.election_timeout_min_ms = Some(150);
    raw.raft.election_timeout_max_ms = Some(400);
    let errors = validate(raw, path.parent().expect("dir")).expect_err("must fail");
    assert_eq!(
        fields_of(&errors),
        vec!["raft.election_timeout_min_ms"],
        "{errors:#?}"
    );
    assert!(errors[0].message.contains("twice"), "{errors:#?}");
}

#[test]
fn tls_files_must_belong_together() {
    let (dir, path, text) = fixture();
    let mut raw = parse(&text).expect("parse");
    // Node 2's key does not match node 1's certificate.
    raw.tls.node_key = dir.path().join("cluster/node-2/node-key.pem");
    let errors = validate(raw, path.parent().expect("dir")).expect_err("must fail");
    assert_eq!(fields_of(&errors), vec!["tls.node_key"], "{errors:#?}");
}

/// During a CA rotation `ca_cert` holds the old CA and the new one: a node
/// certificate signed by either passes `serve --check`, one signed by
/// neither does not.
#[test]
fn a_node_certificate_from_any_ca_of_a_bundle_is_accepted() {
    let (dir, path, text) = fixture();
    let (other, _, _) = fixture();
    let (third, _, _) = fixture();
    let cluster = dir.path().join("cluster");
    let ca = |d: &tempfile::TempDir| std::fs::read_to_string(d.path().join("cluster/ca.pem"));
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, ca(&dir).unwrap() + &ca(&other).unwrap()).expect("bundle");

    for (node_dir, expect_ok) in [
        (cluster.join("node-1"), true),
        (other.path().join("cluster/node-1"), true),
        (third.path().join("cluster/node-1"), false),
    ] {
        let mut raw = parse(&text).expect("parse");
        raw.tls.ca_cert = bundle.clone();
        raw.tls.node_cert = node_dir.join("node.pem");
        raw.tls.node_key = node_dir.join("node-key.pem");
        let checked = validate(raw, path.parent().expect("dir"));
        match (checked, expect_ok) {
            (Ok(_), true) => {}
            (Err(errors), false) => {
                assert_eq!(fields_of(&errors), vec!["tls.node_cert"], "{errors:#?}");
                assert!(
                    errors[0].message.contains("not signed by any CA in"),
                    "{errors:#?}"
                );
            }
            (Ok(_), false) => panic!("{}: accepted", node_dir.display()),
            (Err(errors), true) => panic!("{}: {errors:#?}", node_dir.display()),
        }
    }

    // A bundle holding something else than certificates is refused.
    std::fs::write(
        &bundle,
        ca(&dir).unwrap() + &std::fs::read_to_string(cluster.join("ca-key.pem")).unwrap(),
    )
    .expect("bundle");
    let mut raw = parse(&text).expect("parse");
    raw.tls.ca_cert = bundle;
    let errors = validate(raw, path.parent().expect("dir")).expect_err("must fail");
    assert_eq!(fields_of(&errors), vec!["tls.ca_cert"], "{errors:#?}");
}

#[test]
fn load_reports_every_problem_with_the_file_name() {
    let (_dir, path, text) = fixture();
    std::fs::write(
        &path,
        text.replace("node_id = 1", "node_id = 0")
            .replace("level = \"info\"", "level = \"=[\""),
    )
    .expect("write");
    let err = load(&path).expect_err("must fail");
    assert_eq!(err.file, path);
    let shown = err.to_string();
    assert!(shown.contains("node_id: must be >= 1"), "{shown}");
    assert!(shown.contains("log.level"), "{shown}");
}

#[test]
fn proxy_settings_are_checked_and_applied() {
    let (_dir, path, text) = fixture();
    let config_dir = path.parent().expect("dir");
    let err = parse(&format!("{text}\n[proxy]\nretrys = 3\n")).expect_err("typo");
    assert_eq!(err.field, "proxy.retrys", "{err}");

    let mut raw = parse(&text).expect("parse");
    raw.proxy.retries = Some(11);
    raw.proxy.breaker_failures = Some(0);
    raw.proxy.tls_cert = Some(raw.tls.node_cert.clone());
    raw.limits.max_header_bytes = Some(10);
    raw.proxy
        .upstream_ca
        .insert("internal".into(), PathBuf::from("missing-ca.pem"));
    let errors = validate(raw, config_dir).expect_err("must fail");
    assert_eq!(
        fields_of(&errors),
        vec![
            "proxy.retries",
            "proxy.breaker_failures",
            "limits.max_header_bytes",
            "proxy.upstream_ca.internal",
            "proxy.tls_key"
        ],
        "{errors:#?}"
    );

    let mut raw = parse(&text).expect("parse");
    raw.proxy.retries = Some(0);
    raw.proxy.breaker_cooldown_ms = Some(1500);
    raw.proxy.drain_timeout_ms = Some(2500);
    raw.proxy.shutdown_delay_ms = Some(4000);
    // The node certificate doubles as a server certificate here.
    raw.proxy.tls_cert = Some(raw.tls.node_cert.clone());
    raw.proxy.tls_key = Some(raw.tls.node_key.clone());
    raw.limits.max_body_bytes = 4096;
    raw.proxy
        .upstream_ca
        .insert("internal".into(), raw.tls.ca_cert.clone());
    let config = validate(raw, config_dir).expect("valid");
    assert!(config.proxy.upstream_ca["internal"].starts_with(b"-----BEGIN CERTIFICATE"));
    assert_eq!(config.proxy.retries, 0);
    assert_eq!(config.proxy.max_body_bytes, 4096);
    assert_eq!(
        config.proxy.breaker_cooldown,
        std::time::Duration::from_millis(1500)
    );
    assert_eq!(
        config.shutdown,
        Shutdown {
            delay: std::time::Duration::from_millis(4000),
            drain: std::time::Duration::from_millis(2500),
        }
    );
    assert!(config.proxy_tls.is_some());
}

#[test]
fn quota_settings_are_checked_and_applied() {
    let (_dir, path, text) = fixture();
    let config_dir = path.parent().expect("dir");
    let err = parse(&format!("{text}\n[quotas]\ntick = 50\n")).expect_err("typo");
    assert_eq!(err.field, "quotas.tick", "{err}");

    let mut raw = parse(&text).expect("parse");
    raw.quotas.tick_ms = Some(5);
    raw.quotas.completion_estimate_tokens = Some(0);
    let errors = validate(raw, config_dir).expect_err("must fail");
    assert_eq!(
        fields_of(&errors),
        vec!["quotas.tick_ms", "quotas.completion_estimate_tokens"],
        "{errors:#?}"
    );
    let mut raw = parse(&text).expect("parse");
    raw.quotas.tick_ms = Some(1_500);
    let errors = validate(raw, config_dir).expect_err("ttl below two ticks");
    assert_eq!(fields_of(&errors), vec!["quotas.lease_ttl_ms"]);

    let mut raw = parse(&text).expect("parse");
    raw.quotas.tick_ms = Some(50);
    raw.quotas.lease_ttl_ms = Some(1_000);
    raw.quotas.max_wait_ms = Some(0);
    raw.quotas.standing_ms = Some(0);
    raw.quotas.completion_estimate_tokens = Some(256);
    let config = validate(raw, config_dir).expect("valid");
    assert_eq!(config.quotas.tick_ms, 50);
    assert_eq!(config.quotas.lease_ttl_ms, 1_000);
    assert_eq!(config.quotas.max_wait_ms, 0);
    assert_eq!(config.quotas.standing_ms, 0, "no standing reserves");
    assert_eq!(config.proxy.completion_estimate_tokens, 256);
}

#[test]
fn usage_settings_are_checked_and_applied() {
    let (_dir, path, text) = fixture();
    let config_dir = path.parent().expect("dir");
    let err = parse(&format!("{text}\n[usage]\nflush_ms = 50\n")).expect_err("typo");
    assert_eq!(err.field, "usage.flush_ms", "{err}");

    let config = validate(parse(&text).expect("parse"), config_dir).expect("valid");
    assert_eq!(config.usage, super::UsageSettings::default());
    assert_eq!(config.usage.retention_days, 35);

    let mut raw = parse(&text).expect("parse");
    raw.usage.flush_interval_ms = Some(50);
    raw.usage.retention_days = Some(0);
    raw.usage.minute_retention_hours = Some(0);
    let errors = validate(raw, config_dir).expect_err("must fail");
    assert_eq!(
        fields_of(&errors),
        vec![
            "usage.flush_interval_ms",
            "usage.retention_days",
            "usage.minute_retention_hours"
        ],
        "{errors:#?}"
    );
    // Minutes kept longer than anything is kept: a typo, not a wish.
    let mut raw = parse(&text).expect("parse");
    raw.usage.retention_days = Some(1);
    raw.usage.minute_retention_hours = Some(25);
    let errors = validate(raw, config_dir).expect_err("must fail");
    assert_eq!(fields_of(&errors), vec!["usage.minute_retention_hours"]);

    let mut raw = parse(&text).expect("parse");
    raw.usage.flush_interval_ms = Some(250);
    raw.usage.retention_days = Some(7);
    let config = validate(raw, config_dir).expect("valid");
    assert_eq!(
        config.usage.flush_interval,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(config.usage.retention_ms(), 7 * 86_400_000);
    assert_eq!(config.usage.minute_retention_ms(), 48 * 3_600_000);
}

#[test]
fn the_audit_retention_is_checked_and_applied() {
    let (_dir, path, text) = fixture();
    let config_dir = path.parent().expect("dir");
    let config = validate(parse(&text).expect("parse"), config_dir).expect("valid");
    assert_eq!(
        config.audit_retention_days,
        super::DEFAULT_AUDIT_RETENTION_DAYS
    );
    for bad in [0, 3_651] {
        let mut raw = parse(&text).expect("parse");
        raw.admin.audit_retention_days = Some(bad);
        let errors = validate(raw, config_dir).expect_err("must fail");
        assert_eq!(fields_of(&errors), vec!["admin.audit_retention_days"]);
    }
    let mut raw = parse(&text).expect("parse");
    raw.admin.audit_retention_days = Some(30);
    assert_eq!(
        validate(raw, config_dir)
            .expect("valid")
            .audit_retention_days,
        30
    );
}

#[test]
fn connection_limits_of_both_listeners_are_checked_and_named() {
    let (_dir, path, text) = fixture();
    let config_dir = path.parent().expect("dir");
    let err =
        parse(&text.replacen("[admin]\n", "[admin]\nidle_timout_ms = 5\n", 1)).expect_err("typo");
    assert_eq!(err.field, "admin.idle_timout_ms", "{err}");
    let err = parse(&format!("{text}\n[proxy]\nmax_conections = 5\n")).expect_err("typo");
    assert_eq!(err.field, "proxy.max_conections", "{err}");

    let mut raw = parse(&text).expect("parse");
    raw.proxy.first_request_timeout_ms = Some(0);
    raw.proxy.max_connections = Some(0);
    raw.admin.idle_timeout_ms = Some(3_600_001);
    raw.admin.max_header_bytes = Some(100);
    raw.admin.max_headers = Some(0);
    let errors = validate(raw, config_dir).expect_err("must fail");
    let fields = fields(&errors);
    for expected in [
        "proxy.first_request_timeout_ms",
        "proxy.max_connections",
        "admin.idle_timeout_ms",
        "admin.max_header_bytes",
        "admin.max_headers",
    ] {
        assert!(fields.contains(&expected), "{expected} in {errors:#?}");
    }

    let mut raw = parse(&text).expect("parse");
    raw.proxy.first_request_timeout_ms = Some(2_000);
    raw.proxy.idle_timeout_ms = Some(30_000);
    raw.proxy.max_headers = Some(50);
    raw.proxy.max_connections = Some(500);
    raw.admin.header_read_timeout_ms = Some(4_000);
    raw.admin.max_connections = Some(20);
    let config = validate(raw, config_dir).expect("valid");
    let proxy = config.proxy.connections();
    assert_eq!(proxy.first_request_timeout, Duration::from_secs(2));
    assert_eq!(proxy.idle_timeout, Duration::from_secs(30));
    assert_eq!((proxy.max_headers, proxy.max_connections), (50, 500));
    assert_eq!(
        config.admin_connections.header_read_timeout,
        Duration::from_secs(4)
    );
    assert_eq!(config.admin_connections.max_connections, 20);
    assert_eq!(config.admin_connections.max_header_bytes, 16 * 1024);
}

#[test]
fn the_admin_api_is_https_unless_plain_http_is_asked_for() {
    let (_dir, path, text) = fixture();
    let dir = path.parent().expect("dir");
    // Neither a certificate nor plain_http: refused, naming the field.
    let mut raw = parse(&text).expect("parse");
    raw.admin.tls_cert = None;
    raw.admin.tls_key = None;
    let errors = validate(raw.clone(), dir).expect_err("no admin TLS");
    let named = errors
        .iter()
        .find(|e| e.field == "admin.tls_cert")
        .unwrap_or_else(|| panic!("{errors:#?}"));
    assert!(named.message.contains("plain_http"), "{errors:#?}");
    // Plain HTTP, asked for: served so, and advertised so.
    raw.admin.plain_http = Some(true);
    raw.advertise.admin_url = None;
    raw.cluster.initial_members = raw.cluster.initial_members.map(|members| {
        members
            .into_iter()
            .map(|mut m| {
                m.admin_url = m.admin_url.replace("https://", "http://");
                m
            })
            .collect()
    });
    let config = validate(raw.clone(), dir).expect("plain HTTP");
    assert!(config.admin_tls.is_none());
    assert_eq!(config.advertise.admin_url, "http://127.0.0.1:17001");
    // Both: refused.
    let mut both = parse(&text).expect("parse");
    both.admin.plain_http = Some(true);
    let errors = validate(both, dir).expect_err("both");
    assert!(fields(&errors).contains(&"admin.plain_http"), "{errors:#?}");
    // Half a pair.
    let mut half = parse(&text).expect("parse");
    half.admin.tls_key = None;
    let errors = validate(half, dir).expect_err("half");
    assert!(fields(&errors).contains(&"admin.tls_key"), "{errors:#?}");
}

#[test]
fn jwt_issuers_are_checked_and_their_fields_named() {
    let (_dir, path, text) = fixture();
    let config_dir = path.parent().expect("dir");
    let good = r#"
[[proxy.jwt_issuers]]
name = "corp"
issuer = "https://login.example.com/"
jwks_url = "https://login.example.com/jwks"
audience = "sluice"
template_claim = "team"
templates = { red = "key_0123456789abcdef" }
"#;
    let config =
        validate(parse(&format!("{text}{good}")).expect("parse"), config_dir).expect("valid");
    let issuer = &config.proxy.jwt_issuers[0];
    assert_eq!(issuer.subject_claim, "sub");
    assert_eq!(issuer.clock_skew, std::time::Duration::from_secs(60));
    assert_eq!(issuer.templates["red"], "key_0123456789abcdef");

    // A typo names its field.
    let typo = good.replace("audience", "audiences");
    let err = parse(&format!("{text}{typo}")).expect_err("typo");
    assert!(err.field.starts_with("proxy.jwt_issuers"), "{err}");

    let bad = r#"
[[proxy.jwt_issuers]]
name = "corp"
issuer = "https://login.example.com/"
jwks_url = "http://login.example.com/jwks"
audience = "sluice"
template_claim = "team"
templates = { red = "sk-sluice-not-an-id" }
clock_skew_s = 3600

[[proxy.jwt_issuers]]
name = "corp"
issuer = "https://login.example.com/"
jwks_url = "http://127.0.0.1:9/jwks"
audience = ""
"#;
    let errors = validate(parse(&format!("{text}{bad}")).expect("parse"), config_dir)
        .expect_err("must fail");
    assert_eq!(
        fields_of(&errors),
        vec![
            "proxy.jwt_issuers[0].jwks_url",
            "proxy.jwt_issuers[0].templates.red",
            "proxy.jwt_issuers[0].clock_skew_s",
            "proxy.jwt_issuers[1].name",
            "proxy.jwt_issuers[1].issuer",
            "proxy.jwt_issuers[1].audience",
            "proxy.jwt_issuers[1].default_template",
        ],
        "{errors:#?}"
    );
}

#[test]
fn virtual_keys_are_refused_only_beside_jwt_issuers() {
    let (_dir, path, text) = fixture();
    let config_dir = path.parent().expect("dir");
    let errors = validate(
        parse(&format!("{text}\n[proxy]\naccept_virtual_keys = false\n")).expect("parse"),
        config_dir,
    )
    .expect_err("no way in");
    assert_eq!(fields_of(&errors), vec!["proxy.accept_virtual_keys"]);
    let config = validate(parse(&text).expect("parse"), config_dir).expect("valid");
    assert!(config.proxy.accept_virtual_keys);
}
