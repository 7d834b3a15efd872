//! Partitions: the nodes talk Raft through the test relay, which can cut one
//! off the network while its process keeps running. A node on the wrong side
//! of a partition loses its say, never the cluster its data; healed, it
//! catches up.

use sluice_e2e::admin::provider_body;
use sluice_e2e::{Cluster, Value};
use std::time::{Duration, Instant};

/// The raft address node `id` has in `status`'s member list.
fn raft_addr_in(status: &Value, id: u64) -> Option<String> {
    status["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"].as_u64() == Some(id))
        .and_then(|m| m["addresses"]["raft_addr"].as_str().map(str::to_string))
}

#[test]
fn isolated_leader_is_replaced_and_catches_up_when_healed() {
    let cluster = Cluster::builder()
        .nodes(3)
        .fast_elections()
        .with_relay()
        .start();
    let before = "before-partition".to_string();
    cluster.create_provider(1, &before);
    for id in cluster.ids() {
        cluster.wait_has_providers(id, std::slice::from_ref(&before), Duration::from_secs(10));
    }
    // Every member is known by its front address: Raft goes through the relay.
    let status = cluster.status(1).expect("status of node 1");
    for id in cluster.ids() {
        let front = cluster.relay().front(id).to_string();
        assert_eq!(raft_addr_in(&status, id), Some(front), "{status}");
    }
    assert!(
        cluster.relay().forwarded() > 0,
        "nothing went through the relay"
    );

    let old = cluster.leader();
    let cut_at = Instant::now();
    cluster.isolate(old);
    let new = cluster.new_leader_other_than(old);
    let elected_after = cut_at.elapsed();
    let majority: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != old).collect();
    let bystander = majority
        .iter()
        .copied()
        .find(|&id| id != new)
        .expect("a third node");

    // The majority side takes writes, forwarded to its new leader.
    let during = "during-partition".to_string();
    cluster.create_provider(bystander, &during);
    let committed = [before.clone(), during.clone()];
    for &id in &majority {
        cluster.wait_has_providers(id, &committed, Duration::from_secs(10));
    }

    // The isolated node says it is not ready, so a load balancer stops
    // sending it traffic…
    cluster.wait_until(
        Duration::from_secs(10),
        format!("isolated node {old} to report not ready"),
        || cluster.admin(old).get("/readyz").0 == 503,
    );
    // …and cannot commit anything: no quorum answers it. (Today it still
    // believes it leads and its write waits for a quorum with no deadline of
    // its own, so the client's time-out ends it.)
    let island_write_started = Instant::now();
    let (status, body) = cluster
        .admin(old)
        .post("/admin/v1/providers", &provider_body("on-the-island"));
    let island_write_took = island_write_started.elapsed();
    // 0: the client gave up; 503: no leader it can reach; 504: its write
    // timed out uncommitted.
    assert!(
        matches!(status, 0 | 503 | 504),
        "write through isolated node {old}: {status} {body}"
    );
    assert!(
        !cluster.admin(old).has_provider(&during),
        "isolated node {old} applied a write made during the partition"
    );

    cluster.heal(old);
    let healed_at = Instant::now();
    cluster.wait_has_providers(old, &committed, Duration::from_secs(15));
    let caught_up_after = healed_at.elapsed();

    // Healed, it is a full member again: a write through it commits everywhere.
    let after = "after-heal".to_string();
    cluster.create_provider(old, &after);
    let all = [before, during, after];
    for id in cluster.ids() {
        cluster.wait_has_providers(id, &all, Duration::from_secs(10));
    }
    // The write the isolated node took was never committed, so it was
    // dropped from its log when it rejoined: no node has it.
    for id in cluster.ids() {
        let names = cluster.admin(id).provider_names().expect("provider list");
        assert!(
            !names.iter().any(|n| n == "on-the-island"),
            "node {id} has the write made on the island: {names:?}"
        );
    }
    eprintln!(
        "leader {old} isolated; node {new} elected after {elected_after:?}; \
         the island's write failed with {status} after {island_write_took:?}; \
         caught up {caught_up_after:?} after the heal; relay forwarded {} and dropped {} datagrams",
        cluster.relay().forwarded(),
        cluster.relay().dropped()
    );
}

#[test]
fn node_joining_through_the_relay_is_known_by_its_front_address() {
    let mut cluster = Cluster::builder()
        .nodes(4)
        .initial(3)
        .fast_elections()
        .with_relay()
        .start();
    cluster.create_provider(1, "before-join");

    // Node 4's `cluster.join` lists the others' front addresses.
    cluster.start_node(4);
    let front = cluster.relay().front(4).to_string();
    cluster.wait_until(
        Duration::from_secs(20),
        "node 4 to be a learner at its front address on nodes 1-3",
        || {
            (1..=3).all(|id| {
                cluster.status(id).is_some_and(|s| {
                    Cluster::role_in(&s, 4).as_deref() == Some("learner")
                        && raft_addr_in(&s, 4).as_deref() == Some(front.as_str())
                })
            })
        },
    );
    cluster.wait_has_providers(4, &["before-join".to_string()], Duration::from_secs(10));

    // Cut off, the learner misses new writes; healed, it gets them.
    cluster.isolate(4);
    cluster.create_provider(1, "while-4-isolated");
    assert!(
        !cluster.admin(4).has_provider("while-4-isolated"),
        "isolated node 4 applied a write made while it was cut off"
    );
    cluster.heal(4);
    cluster.wait_has_providers(
        4,
        &["while-4-isolated".to_string()],
        Duration::from_secs(15),
    );
}
