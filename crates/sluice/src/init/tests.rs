use super::*;
use crate::config::CONFIG_FILE_NAME;
use sluice_raft::Bootstrap;
use std::net::{Ipv4Addr, SocketAddr};
use x509_parser::extensions::GeneralName;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn read_cert(path: &Path) -> (Vec<String>, Vec<IpAddr>, bool) {
    let bytes = fs::read(path).expect("read cert");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).expect("pem");
    let cert = pem.parse_x509().expect("x509");
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns.push(n.to_string()),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("v4")));
                }
                _ => {}
            }
        }
    }
    (dns, ips, cert.is_ca())
}

#[test]
fn generated_cluster_loads_and_rerun_adds_a_node_without_touching_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c");
    let nodes = free_port_plan(1..=3, LOCALHOST).expect("ports");
    let first = generate(&InitPlan::new(&out, nodes.clone())).expect("generate");

    assert_eq!(first.configs.len(), 3);
    assert!(first.admin_token.starts_with(TOKEN_PREFIX));
    for file in [CA_KEY_FILE, DATA_KEY_FILE, ADMIN_TOKEN_FILE] {
        assert_eq!(mode(&out.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&out.join("node-2").join(NODE_KEY_FILE)), 0o600);
    let key_text = fs::read_to_string(out.join(DATA_KEY_FILE)).expect("data key");
    assert_eq!(key_text.trim().len(), 64);
    assert!(DataKey::from_hex(&key_text).is_ok());

    let (_, _, ca_is_ca) = read_cert(&out.join(CA_CERT_FILE));
    assert!(ca_is_ca);
    for (node, path) in nodes.iter().zip(&first.configs) {
        let config = config::load(path).expect("generated config loads");
        assert_eq!(config.cluster_id, first.cluster_id);
        assert_eq!(config.node_id, node.id);
        assert_eq!(config.listen.raft, node.raft);
        assert_eq!(
            config.data_dir,
            std::path::absolute(node_dir(&out, node.id).join("data")).expect("abs")
        );
        assert!(matches!(config.bootstrap, Bootstrap::InitialMembers(ref m) if m.len() == 3));
        assert_eq!(
            config.admin_token_hashes,
            vec![hash_secret(&first.admin_token)]
        );
        let (dns, ips, is_ca) = read_cert(&config.tls.node_cert);
        assert!(!is_ca);
        assert_eq!(
            dns,
            vec![node_dns_name(node.id), CLUSTER_DNS_NAME.to_string()]
        );
        assert_eq!(ips, vec![LOCALHOST]);
    }

    let before: Vec<Vec<u8>> = [CA_CERT_FILE, CA_KEY_FILE, DATA_KEY_FILE, ADMIN_TOKEN_FILE]
        .iter()
        .map(|f| fs::read(out.join(f)).expect("read"))
        .chain(first.configs.iter().map(|p| fs::read(p).expect("read")))
        .collect();

    // Rerun with the same nodes (other ports: they must be ignored) plus node 4.
    let mut plan = InitPlan::new(
        &out,
        fixed_port_plan(1..=4, LOCALHOST, 27000).expect("plan"),
    );
    plan.initial_members = existing_initial_members(&out)
        .expect("scan")
        .expect("initial members");
    let second = generate(&plan).expect("rerun");
    assert_eq!(second.cluster_id, first.cluster_id);
    assert_eq!(second.admin_token, first.admin_token);
    assert_eq!(second.kept_nodes, vec![1, 2, 3]);
    assert_eq!(second.created, vec![node_dir(&out, 4)]);

    let after: Vec<Vec<u8>> = [CA_CERT_FILE, CA_KEY_FILE, DATA_KEY_FILE, ADMIN_TOKEN_FILE]
        .iter()
        .map(|f| fs::read(out.join(f)).expect("read"))
        .chain(first.configs.iter().map(|p| fs::read(p).expect("read")))
        .collect();
    assert!(before == after, "a rerun changed existing files");

    let node4 =
        config::load(&second.configs[3]).expect("node 4 loads (its cert chains to the old CA)");
    let Bootstrap::Join(join) = &node4.bootstrap else {
        panic!("node 4 should join, got {:?}", node4.bootstrap);
    };
    let expected: Vec<String> = nodes.iter().map(|n| n.raft.to_string()).collect();
    assert_eq!(join, &expected);
    assert_eq!(node4.listen.raft, SocketAddr::new(LOCALHOST, 27030));

    // Running it again changes nothing at all.
    let third = generate(&plan).expect("third run");
    assert!(third.created.is_empty());
    assert_eq!(third.kept_nodes, vec![1, 2, 3, 4]);
}

#[test]
fn a_conflicting_cluster_id_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plan = InitPlan::new(
        dir.path(),
        fixed_port_plan([1], LOCALHOST, 7000).expect("plan"),
    );
    plan.cluster_id = Some("c-one".into());
    generate(&plan).expect("generate");
    plan.cluster_id = Some("c-two".into());
    let err = generate(&plan).expect_err("must refuse");
    assert!(err.to_string().contains("c-one"), "{err:#}");
}

#[test]
fn raft_timing_is_written_into_every_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plan = InitPlan::new(
        dir.path(),
        fixed_port_plan(1..=2, LOCALHOST, 7000).expect("plan"),
    );
    plan.raft = Some(RaftTiming {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 200,
        election_timeout_max_ms: 400,
        ..RaftTiming::default()
    });
    let output = generate(&plan).expect("generate");
    for path in output.configs {
        let config = config::load(&path).expect("load");
        assert_eq!(config.raft.heartbeat_interval_ms, 50);
        assert_eq!(config.raft.election_timeout_max_ms, 400);
        assert!(path.ends_with(CONFIG_FILE_NAME));
    }
}

#[test]
fn fixed_ports_leave_ten_per_node() {
    let plan = fixed_port_plan([1, 3], LOCALHOST, 7000).expect("plan");
    assert_eq!(plan[0].raft.port(), 7000);
    assert_eq!(plan[0].admin.port(), 7001);
    assert_eq!(plan[1].proxy.port(), 7022);
    assert!(fixed_port_plan([10_000], LOCALHOST, 7000).is_err());
}

#[test]
fn an_adopted_data_key_is_kept_by_generate_and_never_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first");
    generate(&InitPlan::new(
        &first,
        fixed_port_plan([1], LOCALHOST, 7000).expect("plan"),
    ))
    .expect("generate");
    let old_key = first.join(DATA_KEY_FILE);
    let second = dir.path().join("second");
    adopt_data_key(&second, &old_key).expect("adopt");
    generate(&InitPlan::new(
        &second,
        fixed_port_plan([1], LOCALHOST, 7100).expect("plan"),
    ))
    .expect("generate");
    assert_eq!(
        fs::read_to_string(second.join(DATA_KEY_FILE)).unwrap(),
        fs::read_to_string(&old_key).unwrap()
    );
    assert_eq!(mode(&second.join(DATA_KEY_FILE)), 0o600);
    assert_eq!(mode(&second), 0o700);
    // Adopting the same key again is a no-op; another key is refused.
    adopt_data_key(&second, &old_key).expect("same key");
    let third = dir.path().join("third");
    generate(&InitPlan::new(
        &third,
        fixed_port_plan([1], LOCALHOST, 7200).expect("plan"),
    ))
    .expect("generate");
    let err = adopt_data_key(&second, &third.join(DATA_KEY_FILE)).expect_err("must refuse");
    assert!(err.to_string().contains("refusing"), "{err:#}");
    let err = adopt_data_key(&third, &third.join("cluster-id")).expect_err("not a key");
    assert!(
        err.to_string().contains("does not hold a data key"),
        "{err:#}"
    );
}

/// Ports are picked below the kernel's ephemeral range (where an outgoing
/// connection never lands on them), all different, and a crowded range
/// falls back to a port the kernel picks.
#[test]
fn free_ports_come_from_outside_the_ephemeral_range() {
    let range = quiet_ports();
    let nodes = free_port_plan(1..=5, LOCALHOST).expect("ports");
    let mut seen = std::collections::BTreeSet::new();
    for n in &nodes {
        for port in [n.admin.port(), n.proxy.port()] {
            assert!(seen.insert(port), "port {port} handed out twice");
            if !range.is_empty() {
                assert!(range.contains(&port), "{port} outside {range:?}");
            }
        }
    }
    let taken = std::net::TcpListener::bind((LOCALHOST, 0)).expect("a port");
    let port = taken.local_addr().expect("addr").port();
    let only = port..port + 1;
    let fallback = bind_quiet(&only, |p| std::net::TcpListener::bind((LOCALHOST, p)))
        .expect("the kernel's pick");
    assert_ne!(fallback.local_addr().expect("addr").port(), port);
}

#[test]
fn each_node_gets_an_admin_certificate_for_its_addresses_and_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c");
    let nodes = fixed_port_plan(1..=2, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 7000).expect("plan");
    let plan = InitPlan {
        admin_names: vec!["sluice-{ordinal}.peers".into(), "node{id}.example".into()],
        ..InitPlan::new(&out, nodes)
    };
    let generated = generate(&plan).expect("generate");
    for (id, path) in [1u64, 2].into_iter().zip(&generated.configs) {
        let config = config::load(path).expect("loads");
        let files = config.admin_tls.expect("the admin API serves HTTPS");
        assert_eq!(mode(&files.key), 0o600);
        assert!(config.advertise.admin_url.starts_with("https://"));
        let (dns, ips, is_ca) = read_cert(&files.cert);
        assert!(!is_ca);
        assert_eq!(
            dns,
            vec![
                format!("admin.node-{id}.sluice"),
                "localhost".to_string(),
                format!("sluice-{}.peers", id - 1),
                format!("node{id}.example"),
            ]
        );
        assert_eq!(ips, vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), LOCALHOST]);
        // Signed by the cluster's CA, for servers only.
        let bytes = fs::read(&files.cert).expect("read");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).expect("pem");
        let cert = pem.parse_x509().expect("x509");
        let ca_bytes = fs::read(out.join(CA_CERT_FILE)).expect("ca");
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca_bytes).expect("pem");
        let ca = ca_pem.parse_x509().expect("x509");
        assert!(cert.verify_signature(Some(ca.public_key())).is_ok());
        let usage = cert
            .extended_key_usage()
            .expect("eku")
            .expect("has an EKU")
            .value;
        assert!(usage.server_auth && !usage.client_auth);
    }
}
