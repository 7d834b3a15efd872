//! docs/operations.md followed step by step, with the real `sluice` CLI
//! against real nodes, for the sections no other suite runs:
//! * 4, a voter's disk dies: remove it, make it anew under a new id with a
//!   rerun of `sluice init`, let it join and catch up, promote it, and check
//!   it counts toward the quorum;
//! * 6, node certificates re-issued with `sluice init` and installed one
//!   node at a time, each node then serving with (and reporting) its new
//!   certificate while the cluster keeps committing; the CA replaced with
//!   `sluice cluster rotate-ca` in three rolling restarts, the cluster
//!   committing after each node's, and a node back on a certificate of the
//!   old CA refused;
//! * 7, admin tokens: replicated ones created, switched to and deleted; the
//!   bootstrap token's hash replaced through two rolling restarts;
//! * 8, a rolling upgrade (followers, leadership transfer, old leader) under
//!   load from a client that routes by `/readyz` like a load balancer: no
//!   request fails, no connection is refused (`[proxy] shutdown_delay_ms`
//!   takes each node out of rotation before its listeners close), and a
//!   stream in flight on a stopping node finishes.
//!
//! Sections 2, 3 and 5 are run by t40 (membership) and t99 (backup and
//! restore); `deploy/` by t98.

use sha2::{Digest, Sha256};
use sluice_e2e::dataplane::{DataPlane, GPT};
use sluice_e2e::process::{cmdline_of, run_to_completion, Completed};
use sluice_e2e::{json, sluice_bin, Admin, Cluster, ClusterBuilder, Deadline, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one `sluice init` or `sluice serve --check` may take.
const COMMAND_BUDGET: Duration = Duration::from_secs(30);
/// Budget of each test: several restarts, each a few seconds.
const TEST_BUDGET: Duration = Duration::from_secs(180);
/// How long the cluster gets to pass `sluice cluster doctor` again.
const DOCTOR_BUDGET: Duration = Duration::from_secs(30);

/// Three nodes with test timing and this suite's budget.
fn three_nodes() -> ClusterBuilder {
    Cluster::builder().fast_elections().budget(TEST_BUDGET)
}

/// Runs the `sluice` binary (no admin URL or token in its environment).
fn sluice(args: &[&str], deadline: Deadline) -> Completed {
    let mut command = std::process::Command::new(sluice_bin());
    command.args(args).env("NO_COLOR", "1");
    run_to_completion(command, deadline.within(COMMAND_BUDGET))
}

/// `sluice cluster doctor --json` through node `via`, until it exits 0.
fn wait_doctor_ok(cluster: &Cluster, via: u64) -> Value {
    let mut last = String::new();
    let mut report = Value::Null;
    let deadline = cluster.deadline().within(DOCTOR_BUDGET);
    let ok = deadline.poll("", || {
        let done = cluster.cli(via, &["cluster", "doctor", "--json"]);
        last = done.to_string();
        report = serde_json::from_str(&done.stdout).unwrap_or(Value::Null);
        done.status.and_then(|s| s.code()) == Some(0)
    });
    if ok.is_err() {
        cluster.fail(format!(
            "sluice cluster doctor (via node {via}) not OK within {DOCTOR_BUDGET:?}: {last}"
        ));
    }
    report
}

/// A `--base-port` for `sluice init --host 127.0.0.1` under which node
/// `id`'s three ports (raft UDP, admin and proxy TCP) are free now.
fn free_base_port_for(id: u16) -> u16 {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos()) as u16;
    (0..2000u16)
        .map(|i| 20_000 + (seed.wrapping_add(i.wrapping_mul(37))) % 30_000)
        .find(|&base| {
            let first = base + 10 * (id - 1);
            UdpSocket::bind(("127.0.0.1", first)).is_ok()
                && TcpListener::bind(("127.0.0.1", first + 1)).is_ok()
                && TcpListener::bind(("127.0.0.1", first + 2)).is_ok()
        })
        .expect("three free ports in a row on 127.0.0.1")
}

/// SHA-256 (hex) of the DER bytes of the certificate in the PEM file `path`.
fn certificate_sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .unwrap_or_else(|e| panic!("{} is not PEM: {e}", path.display()));
    hex::encode(Sha256::digest(&pem.contents))
}

/// The SHA-256 of the node certificate node `id` says it serves with.
fn served_certificate(cluster: &Cluster, id: u64) -> String {
    let (status, report) = cluster.admin(id).get("/admin/v1/node");
    assert_eq!(status, 200, "node {id}: {report}");
    report["certificates"]
        .as_array()
        .and_then(|certs| certs.iter().find(|c| c["role"] == "node"))
        .and_then(|c| c["sha256"].as_str())
        .unwrap_or_else(|| panic!("node {id} reports no node certificate: {report}"))
        .to_string()
}

/// The running nodes, followers first and the leader last: the order of a
/// rolling restart.
fn followers_then_leader(cluster: &Cluster) -> Vec<u64> {
    let leader = cluster.leader();
    let mut order: Vec<u64> = cluster
        .running_ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    order.push(leader);
    order
}

// ----- 4. Replace a node's disk ----------------------------------------------

#[test]
fn a_voter_whose_disk_died_comes_back_under_a_new_id() {
    let mut cluster = three_nodes().start();
    let leader = cluster.leader();
    let before: Vec<String> = (0..5).map(|i| format!("before-{i}")).collect();
    for name in &before {
        cluster.create_provider(leader, name);
    }
    let dead = cluster.follower();
    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|&i| i != dead).collect();

    // The disk dies under the running node.
    cluster.kill9(dead);
    let old_data = cluster.data_dir(dead);

    // 1. Still a member: remove it.
    let done = cluster.cli(survivors[0], &["cluster", "remove", &dead.to_string()]);
    assert_eq!(done.code(), 0, "sluice cluster remove: {done}");
    let status = cluster.status(survivors[0]).expect("status");
    assert_eq!(Cluster::member_ids(&status), survivors, "{status:#}");

    // 2. Move the old data dir aside.
    let broken = old_data.with_file_name("data.broken");
    std::fs::rename(&old_data, &broken).expect("moving the data dir aside");

    // 3. Make the node anew under a new id, on the same machine: a rerun of
    // `sluice init` with one more node, which touches nothing existing.
    let kept: BTreeMap<u64, String> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let config = std::fs::read_to_string(cluster.config_path(id)).expect("config");
            (id, config)
        })
        .collect();
    let new = 4u64;
    let base = free_base_port_for(new as u16).to_string();
    let out = cluster.out_dir().to_str().expect("UTF-8 path").to_string();
    let done = sluice(
        &[
            "init",
            "--out",
            &out,
            "--nodes",
            "4",
            "--host",
            "127.0.0.1",
            "--base-port",
            &base,
        ],
        cluster.deadline(),
    );
    assert_eq!(done.code(), 0, "sluice init: {done}");
    for (id, config) in &kept {
        let now = std::fs::read_to_string(cluster.config_path(*id)).expect("config");
        assert_eq!(&now, config, "sluice init changed node {id}'s config");
    }
    cluster.adopt(new);
    let joins = std::fs::read_to_string(cluster.config_path(new)).expect("config");
    assert!(
        joins.contains("join") && !joins.contains("initial_members"),
        "node {new} should join the running cluster:\n{joins}"
    );
    cluster.start_node(new);
    cluster.wait_until(
        Duration::from_secs(30),
        format!("node {new} listed as a learner"),
        || {
            cluster.status(survivors[0]).is_some_and(|s| {
                Cluster::role_in(&s, new).is_some_and(|r| r.eq_ignore_ascii_case("learner"))
            })
        },
    );
    cluster.wait_ready(new);
    cluster.wait_has_providers(new, &before, Duration::from_secs(20));

    // 4. It was a voter: promote it; the doctor is satisfied.
    let done = cluster.cli(survivors[0], &["cluster", "promote", &new.to_string()]);
    assert_eq!(done.code(), 0, "sluice cluster promote: {done}");
    let status = cluster.status(survivors[0]).expect("status");
    assert_eq!(
        Cluster::role_in(&status, new).map(|r| r.to_ascii_lowercase()),
        Some("voter".to_string()),
        "{status:#}"
    );
    let report = wait_doctor_ok(&cluster, new);
    let reachable = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["check"] == "reachable")
        .count();
    assert_eq!(reachable, 3, "{report:#}");

    // The new voter counts: with one of the old voters stopped, the other
    // and the new node still commit.
    let stopped = survivors[0];
    let other = survivors[1];
    cluster.stop(stopped);
    cluster.create_provider(other, "after");
    cluster.wait_has_providers(new, &["after".to_string()], Duration::from_secs(20));
    assert!(
        broken.is_dir(),
        "the broken data dir stays where it was moved"
    );
}

// ----- 6. Rotate node certificates ---------------------------------------------

/// What the admin machine keeps of `sluice init`'s output: everything but
/// the nodes' data dirs (those live on the nodes).
fn copy_admin_machine(out: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the admin machine's directory");
    for entry in std::fs::read_dir(out).expect("listing the init output") {
        let entry = entry.expect("listing the init output");
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            std::fs::create_dir_all(&target).expect("creating a node directory");
            for file in [
                "sluice.toml",
                "node.pem",
                "node-key.pem",
                "admin.pem",
                "admin-key.pem",
            ] {
                std::fs::copy(path.join(file), target.join(file)).expect("copying a node file");
            }
        } else {
            std::fs::copy(&path, &target).expect("copying a cluster file");
        }
    }
}

#[test]
fn node_certificates_rotate_one_node_at_a_time() {
    let mut cluster = three_nodes().start();
    let admin_machine = cluster.root().join("admin-machine");
    copy_admin_machine(cluster.out_dir(), &admin_machine);
    let admin_out = admin_machine.to_str().expect("UTF-8 path").to_string();

    for (round, id) in followers_then_leader(&cluster).into_iter().enumerate() {
        let installed = cluster.node_dir(id);
        let old = certificate_sha256(&installed.join("node.pem"));
        assert_eq!(served_certificate(&cluster, id), old, "node {id} before");
        let others: BTreeMap<PathBuf, String> = cluster
            .ids()
            .into_iter()
            .filter(|&other| other != id)
            .map(|other| {
                let pem = admin_machine.join(format!("node-{other}/node.pem"));
                let sha = certificate_sha256(&pem);
                (pem, sha)
            })
            .collect();

        // 1. Re-issue node `id`'s certificate with the same CA. (The config
        // written next to it is not installed: the node keeps its own.)
        let node_dir = admin_machine.join(format!("node-{id}"));
        std::fs::rename(&node_dir, node_dir.with_file_name(format!("node-{id}.old")))
            .expect("moving the old node directory aside");
        let done = sluice(
            &[
                "init",
                "--out",
                &admin_out,
                "--nodes",
                "3",
                "--host",
                "127.0.0.1",
            ],
            cluster.deadline(),
        );
        assert_eq!(done.code(), 0, "sluice init: {done}");
        let new = certificate_sha256(&node_dir.join("node.pem"));
        assert_ne!(
            new, old,
            "node {id}: sluice init issued the same certificate"
        );
        for (pem, sha) in &others {
            assert_eq!(
                &certificate_sha256(pem),
                sha,
                "{} was touched",
                pem.display()
            );
        }

        // 2. Install the certificates and keys, check, restart.
        for file in ["node.pem", "node-key.pem", "admin.pem", "admin-key.pem"] {
            std::fs::copy(node_dir.join(file), installed.join(file)).expect("installing");
        }
        let config = cluster.config_path(id).to_str().expect("UTF-8").to_string();
        let done = sluice(
            &["serve", "--check", "--config", &config],
            cluster.deadline(),
        );
        assert_eq!(done.code(), 0, "sluice serve --check: {done}");
        cluster.restart(id);
        wait_doctor_ok(&cluster, id);
        assert_eq!(served_certificate(&cluster, id), new, "node {id} after");

        // The cluster commits with the node on its new certificate: a write
        // through it reaches every node over mutual TLS.
        let name = format!("after-rotating-{round}");
        cluster.create_provider(id, &name);
        for other in cluster.ids() {
            cluster.wait_has_providers(other, std::slice::from_ref(&name), Duration::from_secs(20));
        }
    }
}

// ----- 6. Rotate the CA -------------------------------------------------------

/// Budget of the CA rotation: three rolling restarts and a refused node.
const CA_ROTATION_BUDGET: Duration = Duration::from_secs(300);

/// `sluice cluster rotate-ca STAGE --out OUT`, run on the admin machine.
fn rotate_ca(cluster: &Cluster, out: &Path, stage: &str) -> Completed {
    let out = out.to_str().expect("UTF-8 path");
    sluice(
        &["cluster", "rotate-ca", stage, "--out", out],
        cluster.deadline(),
    )
}

/// Node `id` restarted with what was installed, the doctor OK again, and a
/// write through it committed on every node: the cluster works with the
/// node on its new files.
fn restart_and_commit(cluster: &mut Cluster, id: u64, write: &str) {
    cluster.restart(id);
    wait_doctor_ok(cluster, id);
    cluster.create_provider(id, write);
    for other in cluster.ids() {
        cluster.wait_has_providers(other, &[write.to_string()], Duration::from_secs(20));
    }
}

#[test]
fn the_cluster_ca_rotates_in_three_rolling_restarts() {
    let mut cluster = three_nodes().budget(CA_ROTATION_BUDGET).start();
    let admin_machine = cluster.root().join("admin-machine");
    copy_admin_machine(cluster.out_dir(), &admin_machine);
    // What the nodes ran with before, to show at the end it is refused.
    let before = cluster.root().join("before-rotation");
    copy_admin_machine(cluster.out_dir(), &before);
    // The nodes of this harness share one `ca.pem` (their `[tls] ca_cert`
    // is `../ca.pem`): installing it once installs it on every node, and
    // each reads it at its restart.
    let install_ca = |cluster: &Cluster| {
        std::fs::copy(admin_machine.join("ca.pem"), cluster.ca_cert()).expect("installing ca.pem");
    };

    // A stage out of order is refused, naming the one to run.
    let done = rotate_ca(&cluster, &admin_machine, "reissue");
    assert_ne!(done.code(), 0, "reissue before begin: {done}");
    assert!(done.stderr.contains("rotate-ca begin"), "{done}");

    // 1. begin: every node trusts the old CA and the new one.
    let done = rotate_ca(&cluster, &admin_machine, "begin");
    assert_eq!(done.code(), 0, "rotate-ca begin: {done}");
    assert!(done.stdout.contains("rotate-ca reissue"), "{done}");
    let new_ca = admin_machine.join("ca-next.pem");
    let new_ca_pem = std::fs::read_to_string(&new_ca).expect("the new CA");
    let done = rotate_ca(&cluster, &admin_machine, "begin");
    assert_ne!(done.code(), 0, "begin twice: {done}");
    install_ca(&cluster);
    for (round, id) in followers_then_leader(&cluster).into_iter().enumerate() {
        restart_and_commit(&mut cluster, id, &format!("trusting-both-{round}"));
    }

    // 2. reissue: every node's certificates from the new CA, installed one
    // node at a time; the others, on either CA, keep trusting it.
    let done = rotate_ca(&cluster, &admin_machine, "reissue");
    assert_eq!(done.code(), 0, "rotate-ca reissue: {done}");
    for (round, id) in followers_then_leader(&cluster).into_iter().enumerate() {
        let old = served_certificate(&cluster, id);
        let installed = cluster.node_dir(id);
        for file in ["node.pem", "node-key.pem", "admin.pem", "admin-key.pem"] {
            std::fs::copy(
                admin_machine.join(format!("node-{id}/{file}")),
                installed.join(file),
            )
            .expect("installing");
        }
        let config = cluster.config_path(id).to_str().expect("UTF-8").to_string();
        let done = sluice(
            &["serve", "--check", "--config", &config],
            cluster.deadline(),
        );
        assert_eq!(done.code(), 0, "sluice serve --check: {done}");
        restart_and_commit(&mut cluster, id, &format!("reissued-{round}"));
        let new = served_certificate(&cluster, id);
        assert_ne!(new, old, "node {id} serves its old certificate");
        assert_eq!(new, certificate_sha256(&installed.join("node.pem")));
    }
    // Every admin API answers a client that trusts the new CA alone.
    for id in cluster.ids() {
        let admin = Admin::new(
            cluster.admin_url(id),
            Some(cluster.token().to_string()),
            &new_ca,
        );
        let (status, body) = admin.get("/admin/v1/cluster");
        assert_eq!(status, 200, "node {id}, trusting the new CA: {body}");
    }

    // 3. finish: the new CA alone.
    let done = rotate_ca(&cluster, &admin_machine, "finish");
    assert_eq!(done.code(), 0, "rotate-ca finish: {done}");
    let ca_pem = std::fs::read_to_string(admin_machine.join("ca.pem")).expect("ca.pem");
    assert_eq!(ca_pem, new_ca_pem, "ca.pem is the new CA alone");
    install_ca(&cluster);
    for (round, id) in followers_then_leader(&cluster).into_iter().enumerate() {
        restart_and_commit(&mut cluster, id, &format!("new-ca-only-{round}"));
    }
    // The harness's clients trust `ca.pem`, now the new CA alone; one
    // trusting the old CA alone is refused.
    for id in cluster.ids() {
        let (status, body) = cluster.admin(id).get("/admin/v1/cluster");
        assert_eq!(status, 200, "node {id}: {body}");
        let old_trust = Admin::new(
            cluster.admin_url(id),
            Some(cluster.token().to_string()),
            &before.join("ca.pem"),
        );
        let (status, body) = old_trust.get("/admin/v1/cluster");
        assert_eq!(
            status, 0,
            "node {id} answered a client of the old CA: {body}"
        );
    }

    // 4. A node back on a certificate of the old CA: `serve --check` says so,
    // and the cluster refuses it even though its certificate names a member
    // and it trusts both CAs itself.
    let rogue = cluster.follower();
    let others: Vec<u64> = cluster.ids().into_iter().filter(|&i| i != rogue).collect();
    cluster.stop(rogue);
    let installed = cluster.node_dir(rogue);
    let config_path = cluster.config_path(rogue).to_path_buf();
    let config_text = std::fs::read_to_string(&config_path).expect("config");
    for file in ["node.pem", "node-key.pem"] {
        std::fs::copy(
            before.join(format!("node-{rogue}/{file}")),
            installed.join(file),
        )
        .expect("installing the old certificate");
    }
    let config = config_path.to_str().expect("UTF-8").to_string();
    let done = sluice(
        &["serve", "--check", "--config", &config],
        cluster.deadline(),
    );
    assert_eq!(
        done.code(),
        2,
        "serve --check with the old certificate: {done}"
    );
    assert!(done.stderr.contains("not signed by the CA"), "{done}");

    let both = cluster.root().join("old-and-new-ca.pem");
    let old_ca_pem = std::fs::read_to_string(before.join("ca.pem")).expect("old CA");
    std::fs::write(&both, old_ca_pem + &new_ca_pem).expect("writing a bundle");
    cluster.edit_config(rogue, |table| {
        table["tls"]["ca_cert"] = toml::Value::String(both.to_str().expect("UTF-8").into());
    });
    let logged: BTreeMap<u64, usize> = others.iter().map(|&o| (o, cluster.log(o).len())).collect();
    cluster.start_node(rogue);
    cluster.wait_until(
        Duration::from_secs(30),
        format!("a member refusing node {rogue}'s certificate of the old CA"),
        || {
            logged.iter().any(|(&o, &from)| {
                cluster.log(o)[from..].lines().any(|line| {
                    line.contains("refused peer connection")
                        && line.contains("invalid peer certificate")
                })
            })
        },
    );
    cluster.create_provider(others[0], "while-refused");
    cluster.wait_has_providers(
        others[1],
        &["while-refused".to_string()],
        Duration::from_secs(20),
    );
    let kept_out = cluster.deadline().holds_for(Duration::from_secs(3), || {
        cluster
            .admin(rogue)
            .provider_names()
            .is_none_or(|names| !names.iter().any(|n| n == "while-refused"))
    });
    assert!(
        kept_out.is_ok(),
        "node {rogue} on the old CA's certificate received a write after {kept_out:?}"
    );

    // Its new certificate back, it catches up.
    cluster.stop(rogue);
    std::fs::write(&config_path, config_text).expect("restoring the config");
    for file in ["node.pem", "node-key.pem"] {
        std::fs::copy(
            admin_machine.join(format!("node-{rogue}/{file}")),
            installed.join(file),
        )
        .expect("installing the new certificate");
    }
    cluster.restart(rogue);
    wait_doctor_ok(&cluster, rogue);
    cluster.wait_has_providers(
        rogue,
        &["while-refused".to_string()],
        Duration::from_secs(20),
    );
}

// ----- 7. Rotate the admin token --------------------------------------------------

/// Whether every node answers `token` on an authenticated read with `want`.
fn every_node_answers(cluster: &Cluster, token: &str, want: u16) -> bool {
    cluster.ids().into_iter().all(|id| {
        let admin = Admin::new(
            cluster.admin_url(id),
            Some(token.to_string()),
            &cluster.ca_cert(),
        );
        admin.get("/admin/v1/cluster").0 == want
    })
}

fn rolling_restart(cluster: &mut Cluster) {
    for id in followers_then_leader(cluster) {
        cluster.restart(id);
    }
}

#[test]
fn admin_tokens_rotate_without_losing_access() {
    let mut cluster = three_nodes().start();
    let bootstrap = cluster.token().to_string();

    // Replicated tokens: no restart.
    let first = cluster.cli_json(1, &["tokens", "create", "--name", "ops-1"]);
    let first_token = first["token"].as_str().expect("token").to_string();
    let first_id = first["id"].as_str().expect("id").to_string();
    let done = cluster.cli_as(
        2,
        &first_token,
        &["tokens", "create", "--name", "ops-2", "--json"],
    );
    assert_eq!(done.code(), 0, "{done}");
    let second: Value = serde_json::from_str(&done.stdout).expect("JSON");
    let second_token = second["token"].as_str().expect("token").to_string();
    let done = cluster.cli_as(3, &second_token, &["tokens", "list", "--json"]);
    assert_eq!(done.code(), 0, "{done}");
    let listed: Value = serde_json::from_str(&done.stdout).expect("JSON");
    let names: BTreeSet<&str> = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["ops-1", "ops-2"]), "{listed:#}");
    assert!(
        !done.stdout.contains(&first_token) && !done.stdout.contains(&second_token),
        "a listing shows no token: {}",
        done.stdout
    );
    let done = cluster.cli_as(3, &second_token, &["tokens", "delete", &first_id]);
    assert_eq!(done.code(), 0, "{done}");
    cluster.wait_until(
        Duration::from_secs(10),
        "every node refusing the deleted token and taking the new one",
        || {
            every_node_answers(&cluster, &first_token, 401)
                && every_node_answers(&cluster, &second_token, 200)
        },
    );

    // The bootstrap token: a new one and its hash.
    let fresh = format!(
        "sluice-admin-{}",
        hex::encode(
            &Sha256::digest(format!("{:?}{}", SystemTime::now(), std::process::id()))[..24]
        )
    );
    let hash_of = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
    let set_hashes = |cluster: &Cluster, hashes: &[String]| {
        for id in cluster.ids() {
            cluster.edit_config(id, |config| {
                let admin = config
                    .get_mut("admin")
                    .and_then(toml::Value::as_table_mut)
                    .expect("[admin]");
                let list = hashes.iter().cloned().map(toml::Value::String).collect();
                admin.insert("token_sha256".into(), toml::Value::Array(list));
            });
        }
    };
    assert!(every_node_answers(&cluster, &fresh, 401), "not yet known");

    // 2. Both hashes; rolling restart; both work.
    set_hashes(&cluster, &[hash_of(&bootstrap), hash_of(&fresh)]);
    rolling_restart(&mut cluster);
    assert!(every_node_answers(&cluster, &bootstrap, 200), "old token");
    assert!(every_node_answers(&cluster, &fresh, 200), "new token");

    // 3. Tooling on the new token.
    let done = cluster.cli_as(1, &fresh, &["cluster", "status"]);
    assert_eq!(done.code(), 0, "{done}");

    // 4. The old hash removed; rolling restart; only the new one works.
    set_hashes(&cluster, &[hash_of(&fresh)]);
    rolling_restart(&mut cluster);
    assert!(every_node_answers(&cluster, &bootstrap, 401), "old token");
    assert!(every_node_answers(&cluster, &fresh, 200), "new token");
    assert!(
        every_node_answers(&cluster, &second_token, 200),
        "replicated tokens are unaffected"
    );
    let done = cluster.cli(1, &["cluster", "status"]);
    assert_eq!(done.code(), 1, "the old token is refused: {done}");
    for id in cluster.ids() {
        let log = cluster.log(id);
        for secret in [&bootstrap, &fresh, &first_token, &second_token] {
            assert!(!log.contains(secret.as_str()), "node {id} logged a token");
        }
    }
}

// ----- 8. Rolling upgrade ---------------------------------------------------------

/// What the load balancer saw.
#[derive(Debug, Default)]
struct Tally {
    answered: AtomicU64,
    streams: AtomicU64,
    /// Connections refused before anything was sent, retried elsewhere.
    rerouted: AtomicU64,
    failures: Mutex<Vec<String>>,
    by_node: Mutex<BTreeMap<u64, u64>>,
}

/// A client that behaves like a load balancer in front of the proxies: it
/// health-checks every node's `/readyz` every 50 ms, sends each request
/// (on a new connection) to the next node in rotation, and retries a
/// refused connection on another node (nothing was sent).
struct Balancer {
    proxies: BTreeMap<u64, String>,
    key: String,
    in_rotation: Mutex<BTreeSet<u64>>,
    next: AtomicU64,
    stop: AtomicBool,
    tally: Tally,
}

impl Balancer {
    fn pick(&self) -> Option<u64> {
        let rotation: Vec<u64> = self.in_rotation.lock().unwrap().iter().copied().collect();
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        (!rotation.is_empty()).then(|| rotation[n % rotation.len()])
    }

    fn health_checks(&self) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .expect("client");
        while !self.stop.load(Ordering::Relaxed) {
            for (&id, url) in &self.proxies {
                let ready = http
                    .get(format!("{url}/readyz"))
                    .send()
                    .is_ok_and(|r| r.status() == 200);
                let mut rotation = self.in_rotation.lock().unwrap();
                if ready {
                    rotation.insert(id);
                } else {
                    rotation.remove(&id);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends requests until stopped; `stream`: streamed ones on `route`.
    fn traffic(&self, route: &str, stream: bool) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let words = if stream { 20 } else { 3 };
        let body = json!({
            "model": route,
            "stream": stream,
            "messages": [{"role": "user", "content": vec!["word"; words].join(" ")}],
        });
        while !self.stop.load(Ordering::Relaxed) {
            let Some(id) = self.pick() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let sent = http
                .post(format!("{}/v1/chat/completions", self.proxies[&id]))
                .bearer_auth(&self.key)
                .json(&body)
                .send();
            let outcome = match sent {
                Err(e) if e.is_connect() => {
                    self.tally.rerouted.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => Err(format!("{e:?}")),
                Ok(response) => {
                    let status = response.status();
                    match response.text() {
                        Ok(text) if status == 200 && (!stream || text.contains("data: [DONE]")) => {
                            Ok(())
                        }
                        Ok(text) => Err(format!("{status}: {text}")),
                        Err(e) => Err(format!("{status}, body cut: {e:?}")),
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    let counter = if stream {
                        &self.tally.streams
                    } else {
                        &self.tally.answered
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    *self.tally.by_node.lock().unwrap().entry(id).or_default() += 1;
                }
                Err(why) => self
                    .tally
                    .failures
                    .lock()
                    .unwrap()
                    .push(format!("node {id}: {why}")),
            }
        }
    }
}

#[test]
fn a_rolling_upgrade_under_load_answers_every_request() {
    let mut plane = DataPlane::start(
        three_nodes()
            // Out of rotation (a 503 from /readyz) for 3 s before the
            // listeners close: the balancer checks every 50 ms.
            .config_extra("[proxy]\nshutdown_delay_ms = 3000\n"),
    );
    // Streams of ~24 events 200 ms apart (4.8 s): longer than the delay, so
    // a stream in flight on a stopping node must be drained, not cut.
    plane.create_provider("mock-slow", "openai", json!({"x-mock-chunk-ms": "200"}));
    plane.create_route("slow", &[("mock-slow", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["slow"]);

    // The "new release": another copy of the binary, at its own path.
    let release = plane.cluster.root().join("release-2");
    std::fs::create_dir(&release).expect("creating the release directory");
    let new_bin = release.join("sluice");
    std::fs::copy(sluice_bin(), &new_bin).expect("installing the new binary");

    let balancer = Arc::new(Balancer {
        proxies: plane
            .cluster
            .ids()
            .into_iter()
            .map(|id| (id, plane.cluster.proxy_url(id)))
            .collect(),
        key: plane.key.clone(),
        in_rotation: Mutex::new(plane.cluster.ids().into_iter().collect()),
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        tally: Tally::default(),
    });
    let threads: Vec<_> = [
        ("health", ""),
        ("plain", GPT),
        ("plain", GPT),
        ("stream", "slow"),
    ]
    .into_iter()
    .map(|(kind, route)| {
        let balancer = Arc::clone(&balancer);
        let route = route.to_string();
        std::thread::spawn(move || match kind {
            "health" => balancer.health_checks(),
            _ => balancer.traffic(&route, kind == "stream"),
        })
    })
    .collect();
    let answered = |b: &Balancer| b.tally.answered.load(Ordering::Relaxed);

    // 1. The doctor is OK.
    wait_doctor_ok(&plane.cluster, 1);
    let leader = plane.cluster.leader();
    let mut order: Vec<u64> = plane
        .cluster
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    order.push(leader);

    let mut drained = Vec::new();
    for (i, &id) in order.iter().enumerate() {
        if id == leader {
            // 4. Last the leader: leadership first goes to an upgraded voter.
            let to = order[0];
            let done = plane
                .cluster
                .cli(to, &["cluster", "transfer-leader", &to.to_string()]);
            assert_eq!(done.code(), 0, "sluice cluster transfer-leader: {done}");
            let now = plane.cluster.new_leader_other_than(leader);
            assert_eq!(now, to, "leadership went to node {now}, not {to}");
        }
        // 2. Install, check with the new binary, restart. A stream is in
        // flight on the node when it gets SIGTERM.
        plane.cluster.set_binary(id, &new_bin);
        let config = plane
            .cluster
            .config_path(id)
            .to_str()
            .expect("UTF-8")
            .to_string();
        let mut check = std::process::Command::new(&new_bin);
        check.args(["serve", "--check", "--config", &config]);
        let done = run_to_completion(check, plane.cluster.deadline().within(COMMAND_BUDGET));
        assert_eq!(done.code(), 0, "sluice serve --check: {done}");
        let mut in_flight = plane.proxy(id).stream(
            "/v1/chat/completions",
            &json!({"model": "slow", "stream": true,
                    "messages": [{"role": "user", "content": vec!["word"; 20].join(" ")}]}),
        );
        let first = in_flight.next_event().expect("a first event");
        assert!(first.is_some(), "the stream on node {id} started");
        drained.push(std::thread::spawn(move || in_flight.read_to_end()));
        let before = answered(&balancer);
        let exit = plane.cluster.stop(id);
        assert!(exit.success(), "node {id} stopped with {exit}");
        plane.cluster.spawn(id);
        plane.cluster.wait_ready(id);
        // 3. Ready, the doctor OK, back in rotation and answering.
        wait_doctor_ok(&plane.cluster, id);
        plane.cluster.wait_until(
            Duration::from_secs(15),
            format!("node {id} back in rotation (step {i})"),
            || balancer.in_rotation.lock().unwrap().contains(&id),
        );
        assert!(
            answered(&balancer) > before,
            "traffic went on during node {id}'s restart"
        );
    }
    let after = answered(&balancer);
    plane.cluster.wait_until(
        Duration::from_secs(15),
        "more requests answered after the upgrade",
        || answered(&balancer) > after + 50,
    );
    balancer.stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("a balancer thread panicked");
    }

    for (id, stream) in order.iter().zip(drained) {
        let transcript = stream.join().expect("reading the in-flight stream");
        assert!(
            transcript.ends_with_done(),
            "the stream in flight on node {id} at SIGTERM was cut: {}",
            transcript.dump()
        );
    }
    let failures = balancer.tally.failures.lock().unwrap();
    let by_node = balancer.tally.by_node.lock().unwrap();
    eprintln!(
        "rolling upgrade: {} answered, {} streams, {} rerouted, by node {by_node:?}",
        answered(&balancer),
        balancer.tally.streams.load(Ordering::Relaxed),
        balancer.tally.rerouted.load(Ordering::Relaxed),
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {failures:#?}",
        failures.len()
    );
    assert!(balancer.tally.streams.load(Ordering::Relaxed) > 0);
    // Every node left the rotation (its /readyz said 503) before its
    // listeners closed: no connection was ever refused.
    assert_eq!(balancer.tally.rerouted.load(Ordering::Relaxed), 0);
    for id in plane.cluster.ids() {
        let pid = plane.cluster.pid(id).expect("running");
        let cmdline = cmdline_of(pid).unwrap_or_default();
        assert!(
            cmdline.contains(new_bin.to_str().expect("UTF-8")),
            "node {id} runs {cmdline}"
        );
    }
}
