//! Data dirs: a node refuses to start on a data dir it cannot read or that is
//! not its own, says why on stderr, exits non-zero, and writes nothing there.

use sluice_e2e::files::{copy_tree, hash_tree, remove_tree};
use sluice_e2e::Cluster;
use std::path::Path;
use std::time::Duration;

/// How long a refusing `sluice serve` may take to exit.
const EXIT_BUDGET: Duration = Duration::from_secs(15);

/// A cluster of `nodes` that ran, committed a write and was stopped cleanly:
/// each node's data dir is a real, healthy one.
fn stopped_cluster(nodes: u64) -> Cluster {
    let mut cluster = Cluster::builder().nodes(nodes).fast_elections().start();
    cluster.create_provider(1, "kept");
    for id in cluster.ids() {
        cluster.wait_has_providers(id, &["kept".to_string()], Duration::from_secs(10));
    }
    for id in cluster.ids() {
        cluster.stop(id);
    }
    cluster
}

/// Runs node 1 on its (damaged) data dir and checks it refuses: non-zero
/// exit in time, stderr naming the data dir and containing each of
/// `expected`, and every file in the dir byte-for-byte as before.
fn assert_refused_untouched(cluster: &mut Cluster, expected: &[&str]) {
    let data_dir = cluster.data_dir(1);
    let before = hash_tree(&data_dir);
    let exit = cluster.serve_once(1, EXIT_BUDGET);
    let after = hash_tree(&data_dir);
    let report = format!(
        "exit: {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
        exit.status, exit.stderr, exit.stdout
    );
    let status = exit.status.unwrap_or_else(|| {
        panic!("sluice serve kept running on a bad data dir for {EXIT_BUDGET:?}\n{report}")
    });
    assert!(
        !status.success(),
        "sluice serve exited 0 on a bad data dir\n{report}"
    );
    assert!(
        status.code().is_some(),
        "sluice serve died of a signal instead of exiting with an error\n{report}"
    );
    let data_dir_text = data_dir.display().to_string();
    assert!(
        exit.stderr.contains(&data_dir_text)
            || exit.stderr.contains("data dir")
            || exit.stderr.contains("data_dir"),
        "stderr should name the data dir ({data_dir_text})\n{report}"
    );
    for needle in expected {
        assert!(
            exit.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}\n{report}"
        );
    }
    assert_eq!(before, after, "the data dir was modified\n{report}");
    eprintln!(
        "refused as expected: {}",
        exit.stderr.trim_end().lines().last().unwrap_or("")
    );
}

fn overwrite(path: &Path, bytes: &[u8]) {
    assert!(
        path.is_file(),
        "{} should exist in a used data dir",
        path.display()
    );
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[test]
fn garbage_identity_file_is_refused_and_left_untouched() {
    let mut cluster = stopped_cluster(1);
    overwrite(
        &cluster.data_dir(1).join("sluice-node.json"),
        b"\x00\x01not json at all{{{",
    );
    assert_refused_untouched(&mut cluster, &["sluice-node.json"]);
}

#[test]
fn garbage_sled_db_file_is_refused_and_left_untouched() {
    let mut cluster = stopped_cluster(1);
    let db = cluster.data_dir(1).join("db").join("db");
    let len = std::fs::metadata(&db).expect("db/db").len() as usize;
    let garbage: Vec<u8> = (0..len.max(4096)).map(|i| (i * 131 % 251) as u8).collect();
    overwrite(&db, &garbage);
    assert_refused_untouched(&mut cluster, &[]);
}

#[test]
fn truncated_sled_conf_is_refused_and_left_untouched() {
    let mut cluster = stopped_cluster(1);
    overwrite(&cluster.data_dir(1).join("db").join("conf"), b"");
    assert_refused_untouched(&mut cluster, &[]);
}

#[test]
fn data_dir_copied_from_another_node_is_refused_and_left_untouched() {
    let mut cluster = stopped_cluster(3);
    let ours = cluster.data_dir(1);
    remove_tree(&ours);
    copy_tree(&cluster.data_dir(2), &ours);
    assert_refused_untouched(&mut cluster, &["node 2"]);
}

#[test]
fn data_dir_with_unrelated_files_is_refused_and_left_untouched() {
    let mut cluster = Cluster::builder().nodes(1).fast_elections().plan_only();
    let data_dir = cluster.data_dir(1);
    std::fs::create_dir_all(data_dir.join("photos")).expect("creating dirs");
    std::fs::write(data_dir.join("notes.txt"), b"not a sluice data dir\n").expect("writing");
    std::fs::write(
        data_dir.join("photos").join("cat.jpg"),
        [0xFFu8, 0xD8, 0xFF, 0xE0],
    )
    .expect("writing");
    assert_refused_untouched(&mut cluster, &["sluice-node.json"]);
}

/// A second `sluice serve` on a data dir that a running node holds (its
/// own ports, the same data dir) is refused as in use: it names the other
/// process, never calls the store corrupt, and the running node is unharmed.
#[test]
fn data_dir_held_by_a_running_node_is_refused_as_in_use_not_corrupt() {
    let cluster = Cluster::builder().nodes(1).fast_elections().start();
    let free_tcp = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free TCP port")
            .to_string()
    };
    let free_udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .to_string();
    let text = std::fs::read_to_string(cluster.config_path(1)).expect("node 1's config");
    let mut config: toml::Table = text.parse().expect("node 1's config is TOML");
    let listen = config
        .get_mut("listen")
        .and_then(toml::Value::as_table_mut)
        .expect("[listen]");
    // It still claims node 1's addresses, as the membership lists them.
    let mut advertise = toml::Table::new();
    advertise.insert("raft".into(), listen["raft"].clone());
    for (name, key, scheme) in [
        ("admin", "admin_url", "https"),
        ("proxy", "proxy_url", "http"),
    ] {
        let addr = listen[name].as_str().expect("a listen address");
        advertise.insert(key.into(), format!("{scheme}://{addr}").into());
    }
    listen.insert("proxy".into(), free_tcp().into());
    listen.insert("admin".into(), free_tcp().into());
    listen.insert("raft".into(), free_udp.into());
    config.insert("advertise".into(), advertise.into());
    config.insert(
        "data_dir".into(),
        cluster.data_dir(1).display().to_string().into(),
    );
    let second = cluster.node_dir(1).join("second.toml");
    std::fs::write(&second, config.to_string()).expect("writing the second config");

    let mut command = std::process::Command::new(sluice_e2e::sluice_bin());
    command
        .arg("serve")
        .arg("--config")
        .arg(&second)
        .current_dir(cluster.node_dir(1))
        .env("NO_COLOR", "1");
    let done =
        sluice_e2e::process::run_to_completion(command, cluster.deadline().within(EXIT_BUDGET));
    assert_ne!(done.code(), 0, "{done}");
    assert!(
        done.stderr.contains("in use by another process"),
        "the refusal should say the data dir is in use\n{done}"
    );
    assert!(!done.stderr.contains("corrupt"), "{done}");
    assert!(cluster.admin(1).is_ready(), "the running node is unharmed");
}
