//! Membership: a node joins as a learner, is promoted, members are removed,
//! leadership is handed over; every member sees each change.

use serde_json::json;
use sluice_e2e::Cluster;
use std::time::Duration;

#[test]
fn fourth_node_joins_as_learner_is_promoted_and_a_member_is_removed() {
    let mut cluster = Cluster::builder()
        .nodes(4)
        .initial(3)
        .fast_elections()
        .start();
    cluster.create_provider(1, "before-join");

    // Node 4's config has `cluster.join`: it asks to be added as a learner.
    cluster.start_node(4);
    cluster.wait_until(
        Duration::from_secs(20),
        "node 4 to be a learner on nodes 1-3",
        || {
            (1..=3).all(|id| {
                cluster
                    .status(id)
                    .is_some_and(|s| Cluster::role_in(&s, 4).as_deref() == Some("learner"))
            })
        },
    );
    cluster.wait_has_providers(4, &["before-join".to_string()], Duration::from_secs(10));

    let (status, body) = cluster.admin(1).post_empty("/admin/v1/cluster/voters/4");
    assert_eq!(status, 200, "promote node 4: {body}");
    cluster.wait_until(
        Duration::from_secs(10),
        "node 4 to be a voter on every node",
        || {
            (1..=4).all(|id| {
                cluster
                    .status(id)
                    .is_some_and(|s| Cluster::role_in(&s, 4).as_deref() == Some("voter"))
            })
        },
    );

    // Remove a follower among the initial three (not the leader: that is
    // another test's story).
    let leader = cluster.leader();
    let removed = (1..=3).find(|&id| id != leader).expect("a follower");
    let (status, body) = cluster
        .admin(4)
        .delete(&format!("/admin/v1/cluster/members/{removed}"));
    assert_eq!(status, 200, "remove node {removed} through node 4: {body}");
    let remaining: Vec<u64> = (1..=4).filter(|&id| id != removed).collect();
    cluster.wait_until(
        Duration::from_secs(10),
        format!("nodes {remaining:?} to drop node {removed}"),
        || {
            remaining.iter().all(|&id| {
                cluster.status(id).is_some_and(|s| {
                    Cluster::member_ids(&s) == remaining
                        && remaining
                            .iter()
                            .all(|&m| Cluster::role_in(&s, m).as_deref() == Some("voter"))
                })
            })
        },
    );
    cluster.stop(removed);

    // The three remaining voters still commit.
    cluster.create_provider(4, "after-remove");
    for &id in &remaining {
        cluster.wait_has_providers(id, &["after-remove".to_string()], Duration::from_secs(10));
    }

    // Who changed the membership, in the audit log of every member.
    let (status, page) = cluster
        .admin(4)
        .get("/admin/v1/audit?target=node%3A&consistency=linearizable");
    assert_eq!(status, 200, "{page}");
    let noted: Vec<(String, String)> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] != "add_learner")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        noted,
        [
            ("promote_voter".to_owned(), "node:4".to_owned()),
            ("remove_member".to_owned(), format!("node:{removed}")),
        ],
        "{page}"
    );
}

#[test]
fn leadership_transfer_moves_the_leader_to_the_named_node() {
    let cluster = Cluster::builder().nodes(3).fast_elections().start();
    let leader = cluster.leader();
    let target = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let (status, body) = cluster
        .admin(target)
        .post("/admin/v1/cluster/leader", &json!({ "to": target }));
    assert!(
        (200..300).contains(&status),
        "transfer to {target}: {status} {body}"
    );
    cluster.wait_until(
        Duration::from_secs(10),
        format!("node {target} to lead"),
        || cluster.leader() == target,
    );
    cluster.create_provider(leader, "after-transfer");
}
