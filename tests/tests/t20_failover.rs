//! Failover: losing the leader costs an election, not the cluster.

use sluice_e2e::Cluster;
use std::time::{Duration, Instant};

#[test]
fn killed_leader_is_replaced_and_catches_up_after_restart() {
    let mut cluster = Cluster::builder().nodes(3).fast_elections().start();
    let mut written = vec!["before-kill".to_string()];
    cluster.create_provider(1, &written[0]);

    let old = cluster.leader();
    let killed_at = Instant::now();
    cluster.kill9(old);
    let new = cluster.new_leader_other_than(old);
    let elected_after = killed_at.elapsed();
    assert_ne!(new, old);

    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != old).collect();
    for i in 0..6 {
        let name = format!("while-{old}-down-{i}");
        cluster.create_provider(survivors[i % 2], &name);
        written.push(name);
    }
    eprintln!(
        "leader {old} killed; node {new} elected after {elected_after:?}; writes committed {:?} after the kill",
        killed_at.elapsed()
    );
    for &id in &survivors {
        cluster.wait_has_providers(id, &written, Duration::from_secs(10));
    }

    cluster.restart(old);
    cluster.wait_has_providers(old, &written, Duration::from_secs(15));
    // It rejoined as a follower of the new term's leader.
    let status = cluster.status(old).expect("status of the restarted node");
    assert_eq!(Cluster::member_ids(&status), vec![1, 2, 3], "{status}");
}

#[test]
fn paused_leader_is_replaced_and_follows_when_resumed() {
    let mut cluster = Cluster::builder().nodes(3).fast_elections().start();
    let old = cluster.leader();
    cluster.pause(old);
    let new = cluster.new_leader_other_than(old);
    cluster.create_provider(new, "during-pause");

    cluster.resume(old);
    cluster.wait_has_providers(old, &["during-pause".to_string()], Duration::from_secs(15));
    let leader = cluster.leader();
    cluster.create_provider(old, "after-resume");
    for id in cluster.ids() {
        cluster.wait_has_providers(id, &["after-resume".to_string()], Duration::from_secs(10));
    }
    eprintln!("paused leader {old}; {new} took over; leader now {leader}");
}

/// A node killed and restarted on the same port: its peers still hold QUIC
/// connections to the dead process. They must notice at once (the new process
/// answers the old connection with a stateless reset), not after the idle
/// timeout: leadership moves to the restarted node and a write forwarded to
/// it succeeds at the first attempt.
#[test]
fn peers_reach_a_restarted_node_at_once() {
    let mut cluster = Cluster::builder().nodes(3).fast_elections().start();
    let old = cluster.leader();
    let others: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != old).collect();
    // Both other nodes forward writes to the leader: they now hold
    // connections to its process.
    for &via in &others {
        cluster.create_provider(via, &format!("via-{via}"));
    }
    cluster.kill9(old);
    let new = cluster.new_leader_other_than(old);
    let bystander = others
        .iter()
        .copied()
        .find(|&id| id != new)
        .expect("a third node");
    cluster.restart(old);

    let (status, body) = cluster.admin(new).post(
        "/admin/v1/cluster/leader",
        &serde_json::json!({ "to": old }),
    );
    assert_eq!(
        status, 200,
        "leadership transfer to the restarted node failed: {body}"
    );
    cluster.wait_until(
        Duration::from_secs(10),
        "the restarted node to lead",
        || {
            cluster
                .status(bystander)
                .is_some_and(|s| s["leader_id"].as_u64() == Some(old))
        },
    );
    let (status, body) = cluster.admin(bystander).post(
        "/admin/v1/providers",
        &sluice_e2e::admin::provider_body("after-restart"),
    );
    assert_eq!(
        status, 201,
        "first write forwarded to the restarted leader: {body}"
    );
}

/// A client that lost the answer to its write when the leader died sends
/// it again, with the same `Idempotency-Key`, to a survivor: it is applied
/// once and answers what the first application did (the same key, with the
/// same secret). The record reaches the restarted old leader too.
#[test]
fn a_keyed_write_sent_again_after_the_leader_died_is_applied_once_with_the_same_answer() {
    use sluice_e2e::admin::Method;
    use sluice_e2e::json;
    let mut cluster = Cluster::builder().nodes(3).fast_elections().start();
    let old = cluster.leader();
    let body = json!({"name": "retried", "rpm": 600});
    let (status, first, replayed) = cluster.admin(old).keyed(
        Method::POST,
        "/admin/v1/keys",
        "t20-create-retried",
        Some(&body),
    );
    assert_eq!(status, 201, "{first}");
    assert!(!replayed);
    assert!(
        first["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("sk-sluice-")),
        "{first}"
    );

    cluster.kill9(old);
    let survivor = cluster
        .ids()
        .into_iter()
        .find(|&id| id != old)
        .expect("a survivor");
    // Sent again until the survivors have a leader (503/504 meanwhile).
    let (again, replayed) = cluster.wait_for(
        Duration::from_secs(15),
        format!("node {survivor} to answer the retried write"),
        || match cluster.admin(survivor).keyed(
            Method::POST,
            "/admin/v1/keys",
            "t20-create-retried",
            Some(&body),
        ) {
            (0 | 503 | 504, _, _) => None,
            (201, again, replayed) => Some((again, replayed)),
            (status, other, _) => cluster.fail(format!("retry answered {status}: {other}")),
        },
    );
    assert!(replayed, "the retry is answered from the record");
    assert_eq!(again, first, "the same key and secret as the first answer");
    let (status, keys) = cluster.admin(survivor).get("/admin/v1/keys");
    assert_eq!(status, 200, "{keys}");
    let named: Vec<_> = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["name"] == "retried")
        .collect();
    assert_eq!(named.len(), 1, "applied once: {keys}");

    // The same key for another request is refused, naming the header.
    let (status, refused, _) = cluster.admin(survivor).keyed(
        Method::POST,
        "/admin/v1/keys",
        "t20-create-retried",
        Some(&json!({"name": "someone-else"})),
    );
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["field"], "Idempotency-Key", "{refused}");

    // The old leader, back, learned the record from the log.
    cluster.restart(old);
    let (status, from_old, replayed) = cluster.admin(old).keyed(
        Method::POST,
        "/admin/v1/keys",
        "t20-create-retried",
        Some(&body),
    );
    assert_eq!((status, replayed), (201, true), "{from_old}");
    assert_eq!(from_old, first);
}
