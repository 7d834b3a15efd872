//! Usage and spend on a real 3-node cluster: the totals the admin API
//! reports equal what the mock upstream reported to the clients, for calls
//! (streamed and not) spread over every node, and still after a node is
//! stopped gracefully (its last calls flushed on the way out) and started
//! again (its new batches counted, none twice).

use sluice_e2e::dataplane::{DataPlane, ProxyClient, OPENAI_PROVIDER};
use sluice_e2e::{json, Cluster, Value};
use std::time::Duration;

/// A short flush interval, but long enough that the calls sent just before
/// a node stops are in no periodic flush: only the shutdown flush sends
/// them.
const CONFIG: &str = r#"
[usage]
flush_interval_ms = 3000
"#;

/// A priced route on the mock's OpenAI-kind provider.
const ROUTE: &str = "priced";
/// USD per million tokens: 2.5 in, 10 out (micro-USD per million: ×10⁶).
const PROMPT_MICRO_PER_MTOK: u64 = 2_500_000;
const COMPLETION_MICRO_PER_MTOK: u64 = 10_000_000;

/// What the clients were told, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Each call's cost rounded up, as the gateway charges it.
    cost_micro_usd: u64,
}

impl Seen {
    fn add(&mut self, usage: &Value) {
        let prompt = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
        let completion = usage["completion_tokens"]
            .as_u64()
            .expect("completion_tokens");
        self.requests += 1;
        self.prompt_tokens += prompt;
        self.completion_tokens += completion;
        self.cost_micro_usd += (prompt * PROMPT_MICRO_PER_MTOK
            + completion * COMPLETION_MICRO_PER_MTOK)
            .div_ceil(1_000_000);
    }

    fn of_report(total: &Value) -> Seen {
        let n = |f: &str| total[f].as_u64().unwrap_or(u64::MAX);
        Seen {
            requests: n("requests"),
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            cost_micro_usd: n("cost_micro_usd"),
        }
    }
}

fn chat(i: usize, stream: bool) -> Value {
    // Different lengths, so different usage per call.
    let text = "count the words of this prompt ".repeat(1 + i % 5);
    let mut body = json!({"model": ROUTE, "messages": [{"role": "user", "content": text}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// `n` calls on `proxy`, every other one streamed; adds what the upstream
/// reported to `seen`.
fn traffic(proxy: &ProxyClient, n: usize, seen: &mut Seen) {
    for i in 0..n {
        if i % 2 == 0 {
            let reply = proxy.post("/v1/chat/completions", &chat(i, false));
            assert_eq!(reply.status, 200, "{}", reply.text);
            seen.add(&reply.body["usage"]);
        } else {
            let stream = proxy.stream("/v1/chat/completions", &chat(i, true));
            assert_eq!(stream.status, 200);
            let transcript = stream.read_to_end();
            assert!(transcript.ends_with_done(), "{}", transcript.dump());
            let usage = transcript
                .chunks()
                .into_iter()
                .rev()
                .find(|c| c["usage"].is_object())
                .unwrap_or_else(|| panic!("no usage chunk: {}", transcript.dump()));
            seen.add(&usage["usage"]);
        }
    }
}

/// The key's totals as node `via` reports them, once they equal `want`
/// (within the budget).
fn wait_totals(plane: &DataPlane, via: u64, key_id: &str, want: Seen, what: &str) {
    let admin = plane.cluster.admin(via);
    let path = format!("/admin/v1/usage?from=-1h&group_by=key&key={key_id}");
    let mut last = Value::Null;
    let result = plane
        .cluster
        .deadline()
        .within(Duration::from_secs(30))
        .poll("", || {
            let (status, report) = admin.get(&path);
            last = report;
            status == 200 && Seen::of_report(&last["total"]) == want
        });
    if result.is_err() {
        plane.cluster.fail(format!(
            "{what}: node {via} never reported {want:?}; last report {last}"
        ));
    }
}

#[test]
fn usage_totals_equal_what_the_upstream_reported_across_nodes_and_a_restart() {
    let builder = Cluster::builder()
        .nodes(3)
        .fast_elections()
        .config_extra(CONFIG)
        .budget(Duration::from_secs(150));
    let mut plane = DataPlane::start(builder);
    plane.write(
        "/admin/v1/routes",
        &json!({
            "name": ROUTE,
            "deployments": [{"provider": OPENAI_PROVIDER, "model": "mock-gpt", "weight": 1}],
            "pricing": {"prompt_usd_per_mtok": 2.5, "completion_usd_per_mtok": 10.0},
        }),
    );
    let (key_id, secret) = plane.create_key("usage", &[ROUTE]);
    plane.wait_served(&secret, &[ROUTE]);
    let proxy = |cluster: &Cluster, id: u64| ProxyClient::new(cluster.proxy_url(id), Some(&secret));

    // Calls spread over all three nodes.
    let mut seen = Seen::default();
    for id in plane.cluster.ids() {
        traffic(&proxy(&plane.cluster, id), 8, &mut seen);
    }
    assert_eq!(seen.requests, 24);
    assert!(seen.cost_micro_usd > 0);
    for id in plane.cluster.ids() {
        wait_totals(&plane, id, &key_id, seen, "after the first calls");
    }
    let (status, by_provider) = plane
        .cluster
        .admin(1)
        .get("/admin/v1/usage?from=-1h&group_by=provider");
    assert_eq!(status, 200, "{by_provider}");
    let groups = by_provider["groups"].as_array().expect("groups");
    let openai = groups
        .iter()
        .find(|g| g["group"] == OPENAI_PROVIDER)
        .unwrap_or_else(|| panic!("no {OPENAI_PROVIDER} group: {by_provider}"));
    assert!(openai["requests"].as_u64() >= Some(24), "{by_provider}");
    assert_eq!(openai["errors"], 0, "{by_provider}");

    // Calls on node 2 right before it stops: only its shutdown flush can
    // send them (the periodic one is seconds away).
    traffic(&proxy(&plane.cluster, 2), 6, &mut seen);
    let exit = plane.cluster.stop(2);
    assert!(exit.success(), "node 2 did not stop cleanly: {exit}");
    traffic(&proxy(&plane.cluster, 1), 4, &mut seen);
    wait_totals(&plane, 1, &key_id, seen, "with node 2 stopped");

    // Back up, with a new life: its batches count from the first.
    plane.cluster.restart(2);
    plane.wait_served(&secret, &[ROUTE]);
    traffic(&proxy(&plane.cluster, 2), 6, &mut seen);
    traffic(&proxy(&plane.cluster, 3), 4, &mut seen);
    assert_eq!(seen.requests, 44);
    for id in plane.cluster.ids() {
        wait_totals(&plane, id, &key_id, seen, "after node 2's restart");
    }

    let (status, spend) = plane
        .cluster
        .admin(3)
        .get(&format!("/admin/v1/keys/{key_id}/spend"));
    assert_eq!(status, 200, "{spend}");
    // Unless the month turned during the test, the spend is all of it.
    assert!(
        spend["spent_micro_usd"].as_u64() <= Some(seen.cost_micro_usd),
        "{spend}"
    );
    assert_eq!(spend["budget_usd"], Value::Null, "{spend}");
}
