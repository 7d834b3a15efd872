//! In-process: failover, catch-up by snapshot, joining, promotion, removal,
//! and a stranger with another CA's certificate.

mod support;

use sluice_raft::{Bootstrap, ClusterNode, Consistency, MemberRole, StartError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::*;

async fn has_provider(node: &ClusterNode, name: &str) -> bool {
    node.local_state().provider(name).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_elects_another_and_the_returning_node_catches_up_by_snapshot() {
    let plan = Plan::new(&[1, 2, 3]);
    let mut nodes: BTreeMap<u64, Arc<ClusterNode>> = BTreeMap::new();
    for id in [1, 2, 3] {
        nodes.insert(id, plan.start(id).await);
    }
    let leader = leader_of(&nodes.values().collect::<Vec<_>>()).await;
    write_settled(&nodes[&leader], provider("before")).await;
    nodes.remove(&leader).unwrap().shutdown().await;

    let rest: Vec<_> = nodes.values().cloned().collect();
    let new_leader = leader_of(&rest.iter().collect::<Vec<_>>()).await;
    assert_ne!(new_leader, leader);
    // Enough writes that the log is compacted past what the old leader has.
    for i in 0..60 {
        write_settled(&rest[i % 2], provider(&format!("p{i}"))).await;
    }
    let snapshot_at = nodes[&new_leader].status().await.snapshot_index;
    assert!(
        snapshot_at.is_some_and(|s| s > 20),
        "no compaction: {snapshot_at:?}"
    );

    let back = plan.start(leader).await;
    eventually(Duration::from_secs(20), "old leader to catch up", || {
        let back = back.clone();
        async move { has_provider(&back, "p59").await }
    })
    .await;
    assert!(has_provider(&back, "before").await);
    assert!(
        back.status().await.snapshot_index.is_some(),
        "caught up without a snapshot"
    );
    back.shutdown().await;
    for node in rest {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_is_learner_then_voter_and_a_member_can_be_removed() {
    let mut plan = Plan::new(&[1, 2, 3]);
    plan.addrs.insert(4, free_udp());
    let initial: BTreeMap<_, _> = plan
        .initial()
        .into_iter()
        .filter(|(id, _)| *id != 4)
        .collect();
    let mut nodes = Vec::new();
    for id in [1, 2, 3] {
        nodes.push(
            ClusterNode::start(plan.options(id, Bootstrap::InitialMembers(initial.clone())))
                .await
                .unwrap(),
        );
    }
    write_settled(&nodes[0], provider("seeded")).await;
    let seeds = vec![plan.addrs[&2].to_string()];
    let fourth = ClusterNode::start(plan.options(4, Bootstrap::Join(seeds)))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "node 4 as learner with the data",
        || {
            let fourth = fourth.clone();
            async move {
                let s = fourth.status().await;
                s.members
                    .iter()
                    .any(|m| m.id == 4 && m.role == MemberRole::Learner)
                    && has_provider(&fourth, "seeded").await
            }
        },
    )
    .await;
    assert!(fourth.readiness().ready || fourth.readiness().reason.is_some());

    let status = nodes[2].promote(4).await.unwrap();
    assert!(status
        .members
        .iter()
        .any(|m| m.id == 4 && m.role == MemberRole::Voter));
    let status = fourth.remove(1).await.unwrap();
    assert!(!status.members.iter().any(|m| m.id == 1), "{status:?}");
    assert_eq!(status.members.len(), 3);
    // The cluster without node 1 still takes writes, and node 4 serves reads.
    write_settled(&nodes[1], provider("after-removal")).await;
    assert!(fourth
        .read(Consistency::Linearizable)
        .await
        .unwrap()
        .provider("after-removal")
        .is_some());
    fourth.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_nodes_certificate_is_refused() {
    let plan = Plan::new(&[1, 2, 3]);
    let (nodes, _) = plan.start_all().await;
    write_settled(&nodes[0], provider("before")).await;
    let leader = leader_of(&nodes.iter().collect::<Vec<_>>()).await;
    let removed = (1..=3).find(|id| *id != leader).unwrap();
    let leader_node = &nodes[usize::try_from(leader).unwrap() - 1];
    let status = leader_node.remove(removed).await.unwrap();
    assert!(
        !status.members.iter().any(|m| m.id == removed),
        "{status:?}"
    );
    // The removed node still runs with its certificate, signed by the
    // cluster's CA: the handshake passes, its requests do not.
    // Each node refuses it once it has applied the change (and the leader
    // may move meanwhile): wait for the leader's refusal, by its reason.
    let node = &nodes[usize::try_from(removed).unwrap() - 1];
    let leader_addr = plan.addrs[&leader].to_string();
    eventually(
        Duration::from_secs(10),
        "the leader refuses the removed node",
        || async {
            node.probe_peer(&leader_addr, leader)
                .await
                .is_err_and(|e| e.to_string().contains("no current member"))
        },
    )
    .await;
    // A member is served.
    let member = (1..=3).find(|id| *id != leader && *id != removed).unwrap();
    let member_node = &nodes[usize::try_from(member).unwrap() - 1];
    member_node.probe_peer(&leader_addr, leader).await.unwrap();
    write_settled(leader_node, provider("after")).await;
    let state = leader_node.read(Consistency::Linearizable).await.unwrap();
    assert!(state.provider("after").is_some());
    assert!(state.provider("from-removed").is_none());
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_cas_certificate_cannot_join() {
    let plan = Plan::new(&[1]);
    let node = plan.start(1).await;
    node.write(provider("x")).await.unwrap();

    let stranger_plan = Plan::new(&[9]);
    let options = stranger_plan.options(9, Bootstrap::Join(vec![plan.addrs[&1].to_string()]));
    let stranger = ClusterNode::start(options).await.unwrap();
    // It keeps trying; the cluster never lets it in.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        assert!(!node.status().await.members.iter().any(|m| m.id == 9));
        assert!(stranger.local_state().provider("x").is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stranger.shutdown().await;
    node.shutdown().await;
}

fn hash_tree(dir: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            hash_tree(&entry.path(), out);
        } else {
            out.insert(
                entry.path().display().to_string(),
                std::fs::read(entry.path()).unwrap(),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_refused_and_left_untouched() {
    let plan = Plan::new(&[1]);
    let node = plan.start(1).await;
    for i in 0..15 {
        node.write(provider(&format!("p{i}"))).await.unwrap();
    }
    node.shutdown().await;
    drop(node);

    let data = plan.dir.path().join("node-1");
    let db = data.join("db/db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().take(8192) {
        *b = 0xAB;
    }
    std::fs::write(&db, &bytes).unwrap();
    let mut before = BTreeMap::new();
    hash_tree(&data, &mut before);

    let err = match ClusterNode::start(plan.options(1, Bootstrap::InitialMembers(plan.initial())))
        .await
    {
        Ok(_) => panic!("a damaged store was accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, StartError::DataDir { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("damaged") || message.contains("corrupt"),
        "{message}"
    );
    let mut after = BTreeMap::new();
    hash_tree(&data, &mut after);
    assert!(before == after, "files changed while refusing");
}
