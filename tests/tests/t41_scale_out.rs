//! Scale-out under load, as the runbook's section 2 does it: a learner is
//! added to a 3-node cluster that is serving traffic, put into the
//! balancer's pool once it serves, then drained (out of the pool, its
//! in-flight requests finished) and removed from the cluster, without one
//! failed request.

use sluice_e2e::balancer::Client;
use sluice_e2e::dataplane::{metric_value, GPT};
use sluice_e2e::{json, Balancer, Cluster, DataPlane};
use std::time::Duration;

/// The learner added for the peak.
const LEARNER: u64 = 4;

#[test]
fn a_learner_added_under_load_serves_then_drains_and_leaves_without_a_failed_request() {
    let mut plane = DataPlane::start(
        Cluster::builder()
            .nodes(LEARNER)
            .initial(3)
            .fast_elections(),
    );
    // Streams of ~20 events 50 ms apart: a drain has requests to wait for.
    plane.create_provider("mock-slow", "openai", json!({"x-mock-chunk-ms": "50"}));
    plane.create_route("slow", &[("mock-slow", "mock-gpt", 1)], &[]);
    // A key with a quota that never refuses here: every request, on the
    // learner too, is admitted against its node's lease pools.
    let created = plane.write(
        "/admin/v1/keys",
        &json!({"name": "scale-out", "allowed_routes": [GPT, "slow"],
                "rpm": 1_000_000, "tpm": 1_000_000_000u64}),
    );
    let key = created["key"]
        .as_str()
        .expect("the key's secret")
        .to_string();
    plane.wait_served(&key, &[GPT, "slow"]);

    let pool = (1..=3)
        .map(|id| (id, plane.cluster.proxy_url(id)))
        .collect();
    let plain = Client {
        route: GPT.into(),
        stream: false,
    };
    let stream = Client {
        route: "slow".into(),
        stream: true,
    };
    let balancer = Balancer::start(pool, &key, &[plain.clone(), plain, stream.clone(), stream]);
    wait_answered(&plane.cluster, &balancer, "traffic through nodes 1-3");

    // 1. Start the learner: it joins, catches up and turns ready.
    plane.cluster.start_node(LEARNER);
    plane.cluster.wait_until(
        Duration::from_secs(20),
        format!("node {LEARNER} to be a learner on nodes 1-3"),
        || {
            (1..=3).all(|id| {
                plane.cluster.status(id).is_some_and(|s| {
                    Cluster::role_in(&s, LEARNER).is_some_and(|r| r.eq_ignore_ascii_case("learner"))
                })
            })
        },
    );
    plane.cluster.wait_ready(LEARNER);
    plane.wait_served(&key, &[GPT, "slow"]);
    let first = plane.proxy(LEARNER).with_key(Some(&key)).post(
        "/v1/chat/completions",
        &json!({"model": GPT, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(first.status, 200, "node {LEARNER} serves: {}", first.text);

    // 2. Into the pool: it takes its share of the traffic.
    balancer.add(LEARNER, plane.cluster.proxy_url(LEARNER));
    plane.cluster.wait_until(
        Duration::from_secs(20),
        format!("node {LEARNER} to answer its share, with requests in flight"),
        || balancer.answered(LEARNER) >= 100 && balancer.in_flight(LEARNER) > 0,
    );

    // 3. Drain: out of the pool, then its in-flight requests finish (as
    // the balancer sees them, and as the node's own gauge says).
    balancer.remove(LEARNER);
    let in_flight_at_removal = balancer.in_flight(LEARNER);
    plane.cluster.wait_until(
        Duration::from_secs(15),
        format!("node {LEARNER}'s in-flight requests to finish"),
        || balancer.in_flight(LEARNER) == 0,
    );
    plane.cluster.wait_until(
        Duration::from_secs(5),
        format!("node {LEARNER}'s sluice_proxy_requests_in_flight to be 0"),
        || {
            metric_value(
                &plane.metrics(LEARNER),
                "sluice_proxy_requests_in_flight",
                &[],
            ) == Some(0.0)
        },
    );
    let served = balancer.answered(LEARNER);

    // 4. Remove it from the cluster, then stop it.
    let done = plane
        .cluster
        .cli(1, &["cluster", "remove", &LEARNER.to_string()]);
    assert_eq!(done.code(), 0, "sluice cluster remove {LEARNER}: {done}");
    plane.cluster.wait_until(
        Duration::from_secs(10),
        format!("nodes 1-3 to drop node {LEARNER}"),
        || {
            (1..=3).all(|id| {
                plane
                    .cluster
                    .status(id)
                    .is_some_and(|s| Cluster::member_ids(&s) == [1, 2, 3])
            })
        },
    );
    let exit = plane.cluster.stop(LEARNER);
    assert!(exit.success(), "node {LEARNER} stopped with {exit}");
    wait_answered(
        &plane.cluster,
        &balancer,
        "traffic through nodes 1-3 after the learner left",
    );

    let total = balancer.answered_total();
    let failures = balancer.stop();
    eprintln!(
        "scale-out: {total} answered, node {LEARNER} answered {served} \
         ({in_flight_at_removal} in flight when it left the pool)"
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {failures:#?}",
        failures.len()
    );
}

/// Waits until the balancer has answered 30 more requests.
fn wait_answered(cluster: &Cluster, balancer: &Balancer, what: &str) {
    let from = balancer.answered_total();
    cluster.wait_until(Duration::from_secs(15), what, || {
        balancer.answered_total() >= from + 30
    });
}
