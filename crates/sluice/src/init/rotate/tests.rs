use super::*;
use crate::config;
use crate::init::{fixed_port_plan, generate, InitPlan};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use x509_parser::extensions::GeneralName;

/// A `sluice init` directory of three nodes whose admin certificates carry
/// an extra name, as `--admin-name` writes.
fn init_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c");
    let nodes = fixed_port_plan(1..=3, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 7000).expect("plan");
    let plan = InitPlan {
        admin_names: vec!["sluice-{ordinal}.peers".into()],
        ..InitPlan::new(&out, nodes)
    };
    generate(&plan).expect("generate");
    (dir, out)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// The DER of every certificate in `path`.
fn ders(path: &Path) -> Vec<Vec<u8>> {
    let bytes = fs::read(path).expect("read");
    certificates(path, &bytes)
        .expect("PEM")
        .into_iter()
        .map(|pem| pem.contents)
        .collect()
}

/// Common name, DNS and IP names, and (server, client) auth of a
/// certificate file.
fn names(path: &Path) -> (String, Vec<String>, Vec<IpAddr>, (bool, bool)) {
    let bytes = fs::read(path).expect("read");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).expect("pem");
    let cert = pem.parse_x509().expect("x509");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .expect("cn")
        .to_string();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &cert
        .subject_alternative_name()
        .expect("san")
        .expect("has SANs")
        .value
        .general_names
    {
        match name {
            GeneralName::DNSName(n) => dns.push(n.to_string()),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("v4")));
            }
            GeneralName::IPAddress(b) => {
                ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("v6")));
            }
            _ => {}
        }
    }
    let eku = cert
        .extended_key_usage()
        .expect("eku")
        .expect("has EKU")
        .value;
    (cn, dns, ips, (eku.server_auth, eku.client_auth))
}

/// Whether the certificate in `cert` verifies under the (first) CA in `ca`.
fn chains_to(cert: &Path, ca: &Path) -> bool {
    let ca_bytes = fs::read(ca).expect("read CA");
    let ca = certificates(ca, &ca_bytes).expect("CA PEM").remove(0);
    signed_by(cert, &fs::read(cert).expect("read"), &ca).expect("verify")
}

fn refused(result: anyhow::Result<StageReport>, naming: &str) {
    let err = result.expect_err("out of order: must be refused");
    assert!(
        format!("{err:#}").contains(naming),
        "the refusal should name `{naming}`: {err:#}"
    );
}

#[test]
fn stages_are_refused_out_of_order_with_the_one_to_run() {
    let (_dir, out) = init_dir();
    assert_eq!(stage(&out).expect("stage"), Stage::Idle);
    refused(reissue(&out), "rotate-ca begin");
    refused(finish(&out), "rotate-ca begin");

    begin(&out).expect("begin");
    assert_eq!(stage(&out).expect("stage"), Stage::Begun);
    refused(begin(&out), "rotate-ca reissue");
    refused(finish(&out), "rotate-ca reissue");

    reissue(&out).expect("reissue");
    assert_eq!(stage(&out).expect("stage"), Stage::Reissued);
    refused(begin(&out), "rotate-ca finish");

    finish(&out).expect("finish");
    assert_eq!(stage(&out).expect("stage"), Stage::Idle);
    refused(reissue(&out), "rotate-ca begin");
    refused(finish(&out), "rotate-ca begin");

    // Not an init directory at all.
    let empty = tempfile::tempdir().expect("tempdir");
    refused(begin(empty.path()), "ca.pem");
}

#[test]
fn begin_trusts_the_new_ca_beside_the_old_and_changes_nothing_else() {
    let (_dir, out) = init_dir();
    let old_ca = fs::read(out.join(CA_CERT_FILE)).expect("ca");
    let old_key = fs::read(out.join(CA_KEY_FILE)).expect("ca key");
    let node_pem = fs::read(out.join("node-1").join(NODE_CERT_FILE)).expect("node");

    let report = begin(&out).expect("begin");
    assert_eq!(report.install, vec![out.join(CA_CERT_FILE)]);
    assert_eq!(report.next, Some("reissue"));

    let bundle = ders(&out.join(CA_CERT_FILE));
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[0], ders(&out.join(OLD_CA_CERT_FILE))[0]);
    assert_eq!(bundle[1], ders(&out.join(NEXT_CA_CERT_FILE))[0]);
    assert_ne!(bundle[0], bundle[1]);
    let subject = |der: &[u8]| {
        let (_, cert) = x509_parser::parse_x509_certificate(der).expect("x509");
        cert.subject().to_string()
    };
    assert_ne!(
        subject(&bundle[0]),
        subject(&bundle[1]),
        "the two CAs are told apart by name"
    );
    assert_eq!(fs::read(out.join(OLD_CA_CERT_FILE)).expect("old"), old_ca);
    assert_eq!(fs::read(out.join(CA_KEY_FILE)).expect("key"), old_key);
    assert_eq!(mode(&out.join(NEXT_CA_KEY_FILE)), 0o600);
    Ca::load(
        &read_text(&out.join(NEXT_CA_CERT_FILE)).expect("next"),
        &read_text(&out.join(NEXT_CA_KEY_FILE)).expect("next key"),
    )
    .expect("the new CA's certificate and key belong together");
    assert_eq!(
        fs::read(out.join("node-1").join(NODE_CERT_FILE)).expect("node"),
        node_pem
    );
    // Every node's config loads (`serve --check`) with the bundle.
    for id in 1..=3 {
        config::load(&crate::init::node_config(&out, id)).expect("loads with the bundle");
    }

    // `sluice init` still adds a node meanwhile, from the old CA.
    let mut plan = InitPlan::new(
        &out,
        fixed_port_plan(1..=4, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 7000).expect("plan"),
    );
    plan.initial_members = vec![1, 2, 3];
    generate(&plan).expect("adding a node during the rotation");
    assert!(chains_to(
        &out.join("node-4").join(NODE_CERT_FILE),
        &out.join(OLD_CA_CERT_FILE)
    ));
    config::load(&crate::init::node_config(&out, 4)).expect("node 4 loads");
}

#[test]
fn reissued_certificates_chain_to_the_new_ca_and_keep_their_names() {
    let (_dir, out) = init_dir();
    let files = [NODE_CERT_FILE, ADMIN_CERT_FILE];
    let before: Vec<_> = (1..=3)
        .flat_map(|id| files.map(|f| names(&out.join(format!("node-{id}")).join(f))))
        .collect();
    let configs: Vec<Vec<u8>> = (1..=3)
        .map(|id| fs::read(crate::init::node_config(&out, id)).expect("config"))
        .collect();
    let old_keys: Vec<Vec<u8>> = (1..=3)
        .map(|id| fs::read(out.join(format!("node-{id}")).join(NODE_KEY_FILE)).expect("key"))
        .collect();
    begin(&out).expect("begin");

    let report = reissue(&out).expect("reissue");
    assert!(report.kept_nodes.is_empty());
    assert_eq!(report.install.len(), 3 * 4, "{:#?}", report.install);
    let after: Vec<_> = (1..=3)
        .flat_map(|id| files.map(|f| names(&out.join(format!("node-{id}")).join(f))))
        .collect();
    assert_eq!(before, after, "the names changed");
    assert!(after[0].1.contains(&"node-1.sluice".to_string()));
    assert!(after[1].1.contains(&"sluice-0.peers".to_string()));
    assert_eq!(
        after[0].3,
        (true, true),
        "a node certificate serves both ends"
    );
    assert_eq!(
        after[1].3,
        (true, false),
        "an admin certificate only serves"
    );
    for id in 1..=3u64 {
        let dir = out.join(format!("node-{id}"));
        for (cert, key) in NODE_PAIRS {
            assert!(chains_to(&dir.join(cert), &out.join(NEXT_CA_CERT_FILE)));
            assert!(!chains_to(&dir.join(cert), &out.join(OLD_CA_CERT_FILE)));
            assert_eq!(mode(&dir.join(key)), 0o600);
        }
        let i = usize::try_from(id - 1).expect("index");
        assert_ne!(fs::read(dir.join(NODE_KEY_FILE)).expect("key"), old_keys[i]);
        assert_eq!(
            fs::read(crate::init::node_config(&out, id)).expect("config"),
            configs[i],
            "node {id}'s config was touched"
        );
        // The checks of `serve --check`: key and certificate belong together
        // and chain to the bundle.
        config::load(&crate::init::node_config(&out, id)).expect("loads");
    }

    // A rerun has nothing left to do.
    let node_1 = fs::read(out.join("node-1").join(NODE_CERT_FILE)).expect("cert");
    let again = reissue(&out).expect("rerun");
    assert!(again.written.is_empty(), "{:#?}", again.written);
    assert_eq!(again.kept_nodes, vec![1, 2, 3]);
    assert_eq!(
        fs::read(out.join("node-1").join(NODE_CERT_FILE)).expect("cert"),
        node_1
    );
}

#[test]
fn finish_leaves_the_new_ca_alone_and_retires_the_old() {
    let (_dir, out) = init_dir();
    let old_cert = fs::read_to_string(out.join(CA_CERT_FILE)).expect("ca");
    let old_key = fs::read_to_string(out.join(CA_KEY_FILE)).expect("ca key");
    let old_node = tempfile::tempdir().expect("tempdir");
    for file in [NODE_CERT_FILE, NODE_KEY_FILE] {
        fs::copy(out.join("node-1").join(file), old_node.path().join(file)).expect("copy");
    }
    begin(&out).expect("begin");
    let next_cert = fs::read_to_string(out.join(NEXT_CA_CERT_FILE)).expect("next");
    let next_key = fs::read_to_string(out.join(NEXT_CA_KEY_FILE)).expect("next key");
    reissue(&out).expect("reissue");

    let report = finish(&out).expect("finish");
    assert_eq!(report.next, None);
    assert_eq!(
        fs::read_to_string(out.join(CA_CERT_FILE)).unwrap(),
        next_cert
    );
    assert_eq!(fs::read_to_string(out.join(CA_KEY_FILE)).unwrap(), next_key);
    assert_eq!(mode(&out.join(CA_KEY_FILE)), 0o600);
    for gone in [NEXT_CA_CERT_FILE, NEXT_CA_KEY_FILE, OLD_CA_CERT_FILE] {
        assert!(!out.join(gone).exists(), "{gone} is left");
    }
    let [(_, retired_key), (_, retired_cert)] = report.retired.as_slice() else {
        panic!("two files retired: {:#?}", report.retired);
    };
    assert_eq!(fs::read_to_string(retired_cert).unwrap(), old_cert);
    assert_eq!(fs::read_to_string(retired_key).unwrap(), old_key);
    assert_eq!(mode(retired_key), 0o600);
    let name = retired_cert.file_name().unwrap().to_string_lossy();
    assert!(name.starts_with("retired-ca-"), "{name}");

    // The nodes load with the new CA alone; the old certificate does not.
    config::load(&crate::init::node_config(&out, 1)).expect("loads");
    let config_path = crate::init::node_config(&out, 1);
    let text = fs::read_to_string(&config_path).expect("config");
    let mut raw = config::parse(&text).expect("parse");
    raw.tls.node_cert = old_node.path().join(NODE_CERT_FILE);
    raw.tls.node_key = old_node.path().join(NODE_KEY_FILE);
    let errors = config::validate(raw, config_path.parent().expect("dir"))
        .expect_err("a certificate of the old CA is refused");
    assert!(
        errors.iter().any(|e| e.field == "tls.node_cert"),
        "{errors:#?}"
    );

    // `sluice init` signs a new node with the new CA.
    let mut plan = InitPlan::new(
        &out,
        fixed_port_plan(1..=4, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 7000).expect("plan"),
    );
    plan.initial_members = vec![1, 2, 3];
    generate(&plan).expect("adding a node after the rotation");
    assert!(chains_to(
        &out.join("node-4").join(NODE_CERT_FILE),
        &out.join(CA_CERT_FILE)
    ));

    // A second rotation retires this CA under another name.
    begin(&out).expect("begin again");
    reissue(&out).expect("reissue again");
    let second = finish(&out).expect("finish again");
    assert_ne!(second.retired[1].1, *retired_cert);
}
