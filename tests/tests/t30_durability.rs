//! Durability: acknowledged writes survive kill -9, and a node that missed
//! the compacted part of the log is brought back by snapshot.

use sluice_e2e::admin::provider_body;
use sluice_e2e::Cluster;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Snapshot interval of [`compacting_cluster`].
const SNAPSHOT_EVERY: u64 = 10;

/// Three nodes that snapshot every [`SNAPSHOT_EVERY`] entries and keep no
/// log behind a snapshot.
fn compacting_cluster() -> Cluster {
    Cluster::builder()
        .nodes(3)
        .fast_elections()
        .snapshot_every(SNAPSHOT_EVERY)
        .start()
}

#[test]
fn node_down_while_the_log_was_compacted_catches_up_by_snapshot() {
    let mut cluster = compacting_cluster();
    let mut written = vec!["before-down".to_string()];
    cluster.create_provider(1, &written[0]);
    let down = cluster.follower();
    cluster.wait_has_providers(down, &written, Duration::from_secs(10));
    let seen = cluster
        .status(down)
        .and_then(|s| s["applied_index"].as_u64())
        .expect("applied index");
    cluster.kill9(down);

    let leader = cluster.leader();
    for i in 0..(3 * SNAPSHOT_EVERY + 5) {
        let name = format!("while-down-{i}");
        cluster.create_provider(leader, &name);
        written.push(name);
    }
    // The leader's snapshot (with no log kept behind it) covers entries the
    // down node never saw: replaying the log cannot bring it back.
    let covered = cluster.wait_for(
        Duration::from_secs(10),
        "the leader to snapshot past the down node",
        || {
            cluster
                .status(leader)
                .and_then(|s| s["snapshot_index"].as_u64())
                .filter(|&i| i > seen + SNAPSHOT_EVERY)
        },
    );

    cluster.restart(down);
    cluster.wait_has_providers(down, &written, Duration::from_secs(15));
    let status = cluster.status(down).expect("status of the restarted node");
    assert!(
        status["snapshot_index"].as_u64().is_some_and(|i| i > seen),
        "node {down} (applied {seen} before it went down; leader snapshot at {covered}) should have installed a snapshot: {status}"
    );
}

#[test]
fn acknowledged_writes_survive_kill9_of_the_whole_cluster() {
    let mut cluster = Cluster::builder().nodes(3).fast_elections().start();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let admins: Vec<_> = cluster
            .ids()
            .into_iter()
            .map(|id| cluster.admin(id))
            .collect();
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("w-{i}");
                let (status, _) =
                    admins[i % admins.len()].post("/admin/v1/providers", &provider_body(&name));
                if (200..300).contains(&status) {
                    acked.lock().expect("acked list").push(name);
                }
                i += 1;
            }
            i
        })
    };
    cluster.wait_until(Duration::from_secs(20), "20 acknowledged writes", || {
        acked.lock().expect("acked list").len() >= 20
    });
    // Kill everyone while writes are in flight.
    for id in cluster.ids() {
        cluster.kill9(id);
    }
    stop.store(true, Ordering::SeqCst);
    let attempted = writer.join().expect("writer thread");
    let acked = acked.lock().expect("acked list").clone();
    eprintln!(
        "{} of {attempted} writes acknowledged before the kill",
        acked.len()
    );

    cluster.start_all(&cluster.ids());
    for id in cluster.ids() {
        cluster.wait_has_providers(id, &acked, Duration::from_secs(15));
    }
}

#[test]
fn whole_cluster_stopped_cleanly_comes_back_ready_with_its_data() {
    let mut cluster = Cluster::builder().nodes(3).fast_elections().start();
    let names: Vec<String> = (0..5).map(|i| format!("kept-{i}")).collect();
    for name in &names {
        cluster.create_provider(1, name);
    }
    for id in cluster.ids() {
        cluster.wait_has_providers(id, &names, Duration::from_secs(10));
    }
    for id in cluster.ids() {
        cluster.stop(id);
    }
    // Every node must become ready again on its own, without a write to
    // nudge it (`sluice dev` and orchestrators wait for /readyz first).
    cluster.start_all(&cluster.ids());
    for id in cluster.ids() {
        cluster.wait_has_providers(id, &names, Duration::from_secs(10));
    }
    cluster.create_provider(2, "after-restart");
}

/// The record of a keyed write is part of the state: after it was taken
/// into a snapshot (the log behind it compacted away) and the whole cluster
/// restarted, the write sent again still answers its first result.
#[test]
fn a_keyed_write_sent_again_after_a_snapshot_and_a_full_restart_answers_its_first_result() {
    use sluice_e2e::admin::Method;
    let mut cluster = compacting_cluster();
    let body = provider_body("made-once");
    let (status, first, _) = cluster.admin(1).keyed(
        Method::POST,
        "/admin/v1/providers",
        "t30-made-once",
        Some(&body),
    );
    assert_eq!(status, 201, "{first}");
    let written_at = cluster
        .status(1)
        .and_then(|s| s["applied_index"].as_u64())
        .expect("applied index");
    let leader = cluster.leader();
    for i in 0..(2 * SNAPSHOT_EVERY + 5) {
        cluster.create_provider(leader, &format!("after-{i}"));
    }
    for id in cluster.ids() {
        cluster.wait_for(
            Duration::from_secs(15),
            format!("node {id} to snapshot past index {written_at}"),
            || {
                cluster
                    .status(id)
                    .and_then(|s| s["snapshot_index"].as_u64())
                    .filter(|&i| i > written_at)
            },
        );
    }
    let ids = cluster.ids();
    for &id in &ids {
        cluster.stop(id);
    }
    cluster.start_all(&ids);

    let (status, again, replayed) = cluster.admin(2).keyed(
        Method::POST,
        "/admin/v1/providers",
        "t30-made-once",
        Some(&body),
    );
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first, "the first answer, timestamps and all");
    // Unkeyed, the same create is run again, and refused: the record, not a
    // lenient create, made the retry succeed.
    let (status, conflict) = cluster.admin(2).post("/admin/v1/providers", &body);
    assert_eq!(status, 409, "{conflict}");
}
