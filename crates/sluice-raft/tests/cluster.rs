//! In-process cluster tests: real nodes, one process.

mod support;

use sluice_raft::{ClusterError, Consistency, MemberRole};
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_a_follower_is_readable_on_every_node() {
    let plan = Plan::new(&[1, 2, 3]);
    let (nodes, leader) = plan.start_all().await;
    let follower = nodes.iter().find(|n| n.node_id() != leader).unwrap();

    // (A write caught by a change of leader on a loaded machine is retried:
    // this test is about forwarding, not about ambiguous writes.)
    write_settled(follower, provider("openai")).await;
    // Read-your-write on the follower that took it, linearizable everywhere.
    let stored = follower.local_state().provider("openai").cloned();
    assert!(
        stored.is_some_and(|p| p.created_at_ms > 0),
        "stamped by the leader"
    );
    for node in &nodes {
        let state = node.read(Consistency::Linearizable).await.unwrap();
        assert!(
            state.provider("openai").is_some(),
            "node {} misses the write",
            node.node_id()
        );
    }
    // A refused command comes back as such and changes nothing.
    let err = follower.write(provider("openai")).await.unwrap_err();
    assert!(matches!(err, ClusterError::Rejected(_)), "{err:?}");

    // (Leadership may have moved on a loaded machine; some node leads.)
    let status = nodes[0].status().await;
    assert!(status.leader_id.is_some());
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.role == MemberRole::Voter));
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_can_be_transferred() {
    let plan = Plan::new(&[1, 2, 3]);
    let (nodes, leader) = plan.start_all().await;
    let target = nodes
        .iter()
        .map(|n| n.node_id())
        .find(|id| *id != leader)
        .unwrap();
    let status = nodes[0].transfer_leader(target).await.unwrap();
    let _ = status;
    eventually(Duration::from_secs(10), "new leader everywhere", || {
        let nodes = &nodes;
        async move {
            for n in nodes {
                if n.status().await.leader_id != Some(target) {
                    return false;
                }
            }
            true
        }
    })
    .await;
    nodes[0].write(provider("after-transfer")).await.unwrap();
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_is_not_ready_but_keeps_replicating() {
    let plan = Plan::new(&[1, 2, 3]);
    let (nodes, leader) = plan.start_all().await;
    let stopping = nodes.iter().find(|n| n.node_id() != leader).unwrap();
    eventually(Duration::from_secs(10), "node ready", || async {
        stopping.readiness().ready
    })
    .await;

    stopping.begin_stopping();
    let readiness = stopping.readiness();
    assert!(!readiness.ready);
    assert_eq!(readiness.reason.as_deref(), Some("shutting down"));
    // Until it shuts down it stays a member that applies and forwards.
    write_settled(stopping, provider("during-the-delay")).await;
    assert!(stopping
        .local_state()
        .provider("during-the-delay")
        .is_some());
    assert!(!stopping.readiness().ready, "stopping is for good");
    for node in &nodes {
        node.shutdown().await;
    }
}
