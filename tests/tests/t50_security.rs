//! Security: the Raft transport is mutual TLS under the cluster's CA; a node
//! whose certificate another CA signed is never let in.

use sluice::init::{self, free_port_plan, InitPlan};
use sluice_e2e::process::Process;
use sluice_e2e::{sluice_bin, Cluster};
use std::process::Command;
use std::time::Duration;

#[test]
fn node_with_a_certificate_from_another_ca_never_becomes_a_member() {
    let cluster = Cluster::builder().nodes(3).fast_elections().start();

    // A second `sluice init` directory: same cluster id and member addresses,
    // but its own CA, and a node 4 that is told to join the real cluster.
    let foreign_out = cluster.root().join("foreign");
    let mut nodes = cluster.plans();
    nodes.extend(free_port_plan([4], "127.0.0.1".parse().expect("ip")).expect("free ports"));
    let foreign = init::generate(&InitPlan {
        out: foreign_out.clone(),
        cluster_id: Some(cluster.cluster_id().to_string()),
        nodes,
        initial_members: vec![1, 2, 3],
        raft: None,
        admin_names: Vec::new(),
    })
    .expect("generating the foreign directory");
    assert_ne!(
        std::fs::read(foreign_out.join(init::CA_CERT_FILE)).expect("foreign CA"),
        std::fs::read(cluster.out_dir().join(init::CA_CERT_FILE)).expect("cluster CA"),
        "the foreign directory must have its own CA"
    );
    let config = init::node_config(&foreign_out, 4);
    let mut command = Command::new(sluice_bin());
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(init::node_dir(&foreign_out, 4));
    let log = cluster.root().join("logs").join("foreign-node-4.log");
    let mut intruder = Process::spawn("foreign node 4", command, &log);

    // For 5 s, no member lists node 4.
    let leader = cluster.leader();
    let outcome = cluster.deadline().holds_for(Duration::from_secs(5), || {
        cluster.ids().into_iter().all(|id| {
            // A node that does not answer proves nothing either way.
            cluster
                .status(id)
                .is_none_or(|s| !Cluster::member_ids(&s).contains(&4))
        })
    });
    if let Err(after) = outcome {
        cluster.fail(format!(
            "node 4, signed by another CA, became a member after {after:?}\n{}",
            intruder.log_tail(40)
        ));
    }
    let intruder_running = intruder.is_running();
    eprintln!(
        "foreign node 4 {} after 5 s\n{}",
        if intruder_running {
            "still runs (outside the cluster)"
        } else {
            "exited"
        },
        intruder.log_tail(15)
    );

    // The cluster still works, and the intruder got none of its data.
    cluster.create_provider(leader, "after-intrusion");
    for id in cluster.ids() {
        cluster.wait_has_providers(
            id,
            &["after-intrusion".to_string()],
            Duration::from_secs(10),
        );
    }
    if intruder_running {
        let admin = sluice_e2e::Admin::new(
            format!("https://{}", extra_admin(&foreign_out)),
            Some(foreign.admin_token.clone()),
            &foreign_out.join(init::CA_CERT_FILE),
        );
        assert!(!admin.is_ready(), "the foreign node must not be ready");
        assert!(
            !admin.has_provider("after-intrusion"),
            "the foreign node must not have the cluster's data"
        );
    }
}

/// Node 4's admin address from its generated config.
fn extra_admin(out: &std::path::Path) -> String {
    let config = sluice::config::load(&init::node_config(out, 4)).expect("foreign node 4 config");
    config.listen.admin.to_string()
}
