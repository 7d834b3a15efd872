//! Replication: what any node accepts, every node has.

use sluice_e2e::Cluster;
use std::time::Duration;

#[test]
fn provider_created_through_a_follower_is_readable_on_every_node() {
    let cluster = Cluster::builder().nodes(3).fast_elections().start();
    let follower = cluster.follower();

    // Retried only while the cluster cannot take writes (an election under
    // load); any answer but 201 fails the test.
    cluster.create_provider(follower, "openai-main");

    // Default reads are linearizable: each node must see a write that was
    // acknowledged before the read started, without waiting.
    for id in cluster.ids() {
        let (status, body) = cluster.admin(id).get("/admin/v1/providers/openai-main");
        assert_eq!(status, 200, "linearizable read on node {id}: {body}");
        assert_eq!(body["kind"], "openai", "node {id}: {body}");
        assert_eq!(
            body["base_url"], "http://127.0.0.1:9/v1",
            "node {id}: {body}"
        );
    }
    // And each node has applied it to its own state.
    for id in cluster.ids() {
        cluster.wait_has_providers(id, &["openai-main".to_string()], Duration::from_secs(10));
    }
}

#[test]
fn writes_through_every_node_converge_to_the_same_state_everywhere() {
    let cluster = Cluster::builder().nodes(3).fast_elections().start();
    let names: Vec<String> = (0..9).map(|i| format!("p-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let via = cluster.ids()[i % 3];
        cluster.create_provider(via, name);
    }
    for id in cluster.ids() {
        cluster.wait_has_providers(id, &names, Duration::from_secs(10));
    }
    let lists: Vec<Vec<String>> = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.admin(id).provider_names().expect("provider list"))
        .collect();
    assert!(
        lists.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree: {lists:?}"
    );

    // Every node reports the same leader and the same three voters.
    let leader = cluster.leader();
    cluster.wait_until(
        Duration::from_secs(5),
        "every node to agree on leader and members",
        || {
            cluster.ids().into_iter().all(|id| {
                cluster.status(id).is_some_and(|s| {
                    s["leader_id"].as_u64() == Some(leader)
                        && Cluster::member_ids(&s) == vec![1, 2, 3]
                        && (1..=3).all(|m| Cluster::role_in(&s, m).as_deref() == Some("voter"))
                })
            })
        },
    );
}
