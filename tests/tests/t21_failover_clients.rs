//! Failover as the applications see it: while a leader dies (or a follower
//! is paused or cut off), the clients of the other nodes' proxies get every
//! answer, streamed or not, and none waits on the dead leader. The leader
//! kills run on a key without a quota (the proxy answers from its node's
//! applied state alone) and on one with a quota far above the traffic (its
//! nodes' standing reserves answer while no lease round can commit); the
//! other cases on the key without a quota.
//!
//! Every count is a condition waited on with a deadline: "node 2 answered
//! 50 more" is something a proxy that blocked on the dead leader would never
//! do. The election settings are the shipped ones.

use sluice_e2e::dataplane::{metric_value, Call, DataPlane, Traffic, TrafficReport, GPT};
use sluice_e2e::{json, Cluster, Value};

/// Leader kills in [`no_proxied_request_fails_on_the_survivors_while_leaders_are_killed`].
const KILLS: usize = 3;
/// Answers each watched node must give after an event before the test
/// moves on.
const AFTER_EACH_EVENT: u64 = 30;

fn term_of(cluster: &Cluster, id: u64) -> u64 {
    let status: Value = cluster
        .status(id)
        .unwrap_or_else(|| cluster.fail(format!("node {id} gives no status")));
    status["term"]
        .as_u64()
        .unwrap_or_else(|| cluster.fail(format!("node {id}'s status has no term: {status}")))
}

/// Every node of `cluster` but `except`.
fn others(cluster: &Cluster, except: u64) -> Vec<u64> {
    cluster
        .ids()
        .into_iter()
        .filter(|&id| id != except)
        .collect()
}

/// Fails the test, listing every failed answer, unless there were none.
fn assert_none_failed(report: &TrafficReport, what: &str) {
    assert!(
        report.failures.is_empty(),
        "{what}: {} of {} answers failed: {:#?}",
        report.failures.len(),
        report.total() + report.failures.len() as u64,
        report.failures
    );
}

/// `sluice_raft_election_attempts_total{outcome}` of node `id`.
fn election_attempts(plane: &DataPlane, id: u64, outcome: &str) -> f64 {
    metric_value(
        &plane.metrics(id),
        "sluice_raft_election_attempts_total",
        &[("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

/// A key under a quota that this traffic stays far below: its secret.
fn key_with_quota(plane: &DataPlane) -> String {
    let created = plane.write(
        "/admin/v1/keys",
        &json!({"name": "under-a-quota", "rpm": 10_000_000u64, "tpm": 1_000_000_000u64}),
    );
    let secret = created["key"]
        .as_str()
        .unwrap_or_else(|| plane.cluster.fail(format!("no secret in {created}")))
        .to_owned();
    plane.wait_served(&secret, &[GPT]);
    secret
}

#[test]
fn no_proxied_request_fails_on_the_survivors_while_leaders_are_killed() {
    let mut plane = DataPlane::start(Cluster::builder().nodes(3));
    let quota_key = key_with_quota(&plane);
    let mut total = 0;
    for round in 0..KILLS {
        let old = plane.cluster.leader();
        let survivors: Vec<u64> = others(&plane.cluster, old);
        let calls = [Call::Chat, Call::ChatStream];
        let traffic = [
            (
                "no quota",
                Traffic::start(&plane.cluster, &plane.key, &survivors, &calls),
            ),
            (
                "quota",
                Traffic::start(&plane.cluster, &quota_key, &survivors, &calls),
            ),
        ];
        for (_, traffic) in &traffic {
            for &id in &survivors {
                traffic.wait_answered(&plane.cluster, id, AFTER_EACH_EVENT);
            }
        }
        plane.cluster.kill9(old);
        let at_kill: Vec<Vec<u64>> = traffic
            .iter()
            .map(|(_, t)| survivors.iter().map(|&id| t.answered(id)).collect())
            .collect();
        let new = plane.cluster.new_leader_other_than(old);
        // The cluster takes writes again…
        plane
            .cluster
            .create_provider(survivors[0], &format!("after-kill-{round}"));
        // …and the proxies never stopped answering.
        for ((_, traffic), at_kill) in traffic.iter().zip(&at_kill) {
            for (&id, &seen) in survivors.iter().zip(at_kill) {
                traffic.wait_answered(&plane.cluster, id, seen + AFTER_EACH_EVENT);
            }
        }
        for (key, traffic) in traffic {
            let report = traffic.stop();
            assert_none_failed(
                &report,
                &format!("round {round}, key with {key}: leader {old} killed, node {new} elected"),
            );
            total += report.total();
            eprintln!(
                "round {round}: killed leader {old}, node {new} took over; key with {key}: answers {:?}, 0 failed",
                report.answered
            );
        }
        plane.cluster.restart(old);
    }
    eprintln!("{KILLS} leader kills, {total} proxied answers on the survivors, 0 failed");
}

/// The strongest case of "none waits on the dead leader": the leader is
/// dead and the only other peer paused, so the node left has no leader and
/// no quorum for as long as the test likes. Its clients keep being
/// answered; it does not bump its term (a majority never agreed the leader
/// was gone), and it says it is not ready so load balancers can move away.
#[test]
fn a_node_without_leader_or_quorum_keeps_answering_its_clients() {
    let mut plane = DataPlane::start(Cluster::builder().nodes(3));
    let old = plane.cluster.leader();
    let followers: Vec<u64> = others(&plane.cluster, old);
    let (alone, paused) = (followers[0], followers[1]);
    let traffic = Traffic::start(
        &plane.cluster,
        &plane.key,
        &[alone],
        &[Call::Chat, Call::ChatStream],
    );
    traffic.wait_answered(&plane.cluster, alone, AFTER_EACH_EVENT);
    let term = term_of(&plane.cluster, alone);
    let refused_before = election_attempts(&plane, alone, "no_majority");

    plane.cluster.pause(paused);
    plane.cluster.kill9(old);
    let at_kill = traffic.answered(alone);
    // Its election timer runs out, it finds no majority, and it keeps
    // serving all the while.
    plane.cluster.wait_until(
        std::time::Duration::from_secs(15),
        format!("node {alone} to try for an election and find no majority"),
        || election_attempts(&plane, alone, "no_majority") > refused_before,
    );
    plane.cluster.wait_until(
        std::time::Duration::from_secs(15),
        format!("node {alone} to report not ready without a leader"),
        || plane.cluster.admin(alone).get("/readyz").0 == 503,
    );
    traffic.wait_answered(&plane.cluster, alone, at_kill + 3 * AFTER_EACH_EVENT);
    assert_eq!(
        term_of(&plane.cluster, alone),
        term,
        "node {alone} bumped its term without a majority"
    );

    plane.cluster.resume(paused);
    let new = plane.cluster.new_leader_other_than(old);
    let at_resume = traffic.answered(alone);
    traffic.wait_answered(&plane.cluster, alone, at_resume + AFTER_EACH_EVENT);
    let report = traffic.stop();
    assert_none_failed(&report, &format!("node {alone}, alone"));
    eprintln!(
        "leader {old} killed and node {paused} paused: node {alone} answered {} requests, 0 failed; node {new} leads after the resume",
        report.total()
    );
}

/// A follower paused, then cut off, then healed: the other nodes' clients
/// see nothing, and the leader stays the leader throughout. The follower
/// that missed heartbeats asks before it campaigns, and the others, still
/// hearing their leader, say no; so it never bumps the term that would
/// unseat the leader when it comes back.
#[test]
fn a_paused_or_cut_off_follower_disturbs_neither_clients_nor_the_leader() {
    let mut plane = DataPlane::start(Cluster::builder().nodes(3).with_relay());
    let leader = plane.cluster.leader();
    let follower = plane.cluster.follower();
    let others: Vec<u64> = others(&plane.cluster, follower);
    let term = term_of(&plane.cluster, leader);
    let traffic = Traffic::start(
        &plane.cluster,
        &plane.key,
        &others,
        &[Call::Chat, Call::ChatStream],
    );
    let more = |traffic: &Traffic, plane: &DataPlane| {
        let seen: Vec<u64> = others.iter().map(|&id| traffic.answered(id)).collect();
        for (&id, &seen) in others.iter().zip(&seen) {
            traffic.wait_answered(&plane.cluster, id, seen + AFTER_EACH_EVENT);
        }
    };
    more(&traffic, &plane);

    let attempts_before = election_attempts(&plane, follower, "no_majority");
    plane.cluster.pause(follower);
    more(&traffic, &plane);
    plane.cluster.resume(follower);
    more(&traffic, &plane);

    plane.cluster.isolate(follower);
    // The cut-off follower's timer runs out and the others refuse it.
    plane.cluster.wait_until(
        std::time::Duration::from_secs(15),
        format!("cut-off node {follower} to try for an election"),
        || election_attempts(&plane, follower, "no_majority") > attempts_before,
    );
    more(&traffic, &plane);
    plane.cluster.heal(follower);
    plane.cluster.create_provider(follower, "after-heal");
    plane.cluster.wait_has_providers(
        follower,
        &["after-heal".to_string()],
        std::time::Duration::from_secs(15),
    );
    more(&traffic, &plane);

    assert_eq!(
        plane.cluster.leader(),
        leader,
        "the leader changed though it never stopped"
    );
    for id in plane.cluster.ids() {
        assert_eq!(
            term_of(&plane.cluster, id),
            term,
            "node {id}'s term moved: an election happened"
        );
    }
    let report = traffic.stop();
    assert_none_failed(&report, &format!("follower {follower} paused and cut off"));
    eprintln!(
        "follower {follower} paused, cut off and healed; leader {leader} kept term {term}; answers {:?}, 0 failed",
        report.answered
    );
}
