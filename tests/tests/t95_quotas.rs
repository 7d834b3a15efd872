//! Global quotas on real 3-node clusters: a limit holds across all nodes
//! together (never limit × nodes), with few false rejections, for requests
//! and for tokens of streamed answers, while the leader is killed, and for
//! a node cut off from the others; a budget is charged from real usage and
//! reservations keep a burst of concurrent first requests from all passing;
//! the official SDKs see `RateLimitError` with the rate-limit headers.
//!
//! The bound checked is the ledger's (DESIGN §5): over the run, admitted ≤
//! capacity + rate × T, T from the start of the load (no request of the
//! key came before, and the bucket holds at most its capacity) to the end
//! of the last answer. Every run prints its accuracy line
//! (`ACCURACY …`), the figures of the accuracy table in docs/quotas.md.
//!
//! The SDK test needs the SDK virtualenv (see t90): without it, it is
//! reported `ignored` with a note, except under CI, where it fails (see
//! `sluice_e2e::needs`).

use sluice_e2e::dataplane::{DataPlane, ProxyClient, Reply, GPT};
use sluice_e2e::needs::{sdk_python, Suite};
use sluice_e2e::{json, Cluster, ClusterBuilder, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Short leases so that a cut-off node's run out fast; the default tick.
const CONFIG: &str = r#"
[quotas]
tick_ms = 100
lease_ttl_ms = 1000
"#;

/// One test at a time: each drives a 3-node cluster and 6 clients, and its
/// accuracy is measured, not just asserted: two at once on a 2-core
/// machine would measure the machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn main() -> std::process::ExitCode {
    Suite::new()
        .test(
            "a_request_limit_holds_across_the_cluster",
            a_request_limit_holds_across_the_cluster,
        )
        .test(
            "a_token_limit_holds_for_streamed_answers",
            a_token_limit_holds_for_streamed_answers,
        )
        .test(
            "the_bound_holds_while_the_leader_is_killed",
            the_bound_holds_while_the_leader_is_killed,
        )
        .test(
            "a_cut_off_node_denies_or_spends_its_local_share",
            a_cut_off_node_denies_or_spends_its_local_share,
        )
        .test(
            "a_budget_is_charged_from_usage_and_reservations_bound_a_burst",
            a_budget_is_charged_from_usage_and_reservations_bound_a_burst,
        )
        .test(
            "a_client_that_leaves_mid_stream_is_still_charged",
            a_client_that_leaves_mid_stream_is_still_charged,
        )
        .test(
            "answers_carry_the_rate_limit_headers",
            answers_carry_the_rate_limit_headers,
        )
        .needing(
            "the_official_sdks_see_rate_limit_errors",
            sdk_python(),
            the_official_sdks_see_rate_limit_errors,
        )
        .run()
}

fn start() -> (MutexGuard<'static, ()>, DataPlane) {
    start_with(Cluster::builder())
}

fn start_with(builder: ClusterBuilder) -> (MutexGuard<'static, ()>, DataPlane) {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let builder = builder
        .nodes(3)
        .fast_elections()
        .config_extra(CONFIG)
        .budget(Duration::from_secs(150));
    (turn, DataPlane::start(builder))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A rate limit in the general form: `capacity` units, refilled by
/// `per_second` every second.
fn limit(unit: &str, capacity: u64, per_second: u64) -> Value {
    json!({"unit": unit, "capacity": capacity, "refill_amount": per_second, "refill_every_ms": 1000})
}

fn chat(text: &str, max_tokens: u64) -> Value {
    json!({"model": GPT, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]})
}

/// What the load saw.
#[derive(Debug, Default, Clone)]
struct Tally {
    ok: u64,
    /// 429 `rate_limit_exceeded` / `insufficient_quota`.
    limited: u64,
    /// 503 `quota_unavailable`.
    undecided: u64,
    /// No answer (a killed node) or anything else.
    other: u64,
    /// Tokens the upstream reported on the admitted answers.
    tokens: u64,
    /// Statuses and bodies of unexpected answers (a few).
    odd: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.limited += other.limited;
        self.undecided += other.undecided;
        self.other += other.other;
        self.tokens += other.tokens;
        self.odd.extend(other.odd.iter().take(3).cloned());
    }

    fn count(&mut self, reply: &Reply) {
        match reply.status {
            200 => {
                self.ok += 1;
                self.tokens += usage_tokens(reply);
            }
            429 => self.limited += 1,
            503 if reply.text.contains("quota_unavailable") => self.undecided += 1,
            _ => {
                self.other += 1;
                if self.odd.len() < 3 {
                    self.odd.push(format!("{} {}", reply.status, reply.text));
                }
            }
        }
    }
}

/// Total tokens of a whole answer, or of a stream's usage chunk.
fn usage_tokens(reply: &Reply) -> u64 {
    if let Some(total) = reply.body["usage"]["total_tokens"].as_u64() {
        return total;
    }
    reply
        .text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| chunk["usage"]["total_tokens"].as_u64())
        .next_back()
        .unwrap_or_else(|| panic!("an admitted answer without usage: {}", reply.text))
}

/// Sends `body` to every proxy in `urls` from `per_node` threads each, each
/// thread at `rate` requests per second, for `run`; calls `during` on the
/// test thread meanwhile. Returns each proxy's tally (in `urls`' order) and
/// the run's start and end (wall clock, ms): the bucket can hold no more
/// than its capacity when the load starts, and nothing of the key was
/// admitted before.
fn drive(
    urls: &[String],
    secret: &str,
    per_node: usize,
    rate: f64,
    run: Duration,
    body: &Value,
    during: impl FnOnce(&dyn Fn() -> Vec<Tally>),
) -> (Vec<Tally>, (u64, u64)) {
    let tallies: Vec<Arc<Mutex<Tally>>> = urls.iter().map(|_| Arc::default()).collect();
    // Every client is made, and its thread running, before the clock
    // starts: the bound is over the time the load ran.
    let go = Arc::new(Barrier::new(urls.len() * per_node + 1));
    let until = Arc::new(Mutex::new(Instant::now()));
    let mut threads = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        for _ in 0..per_node {
            let client = ProxyClient::new(url.clone(), Some(secret));
            let tally = Arc::clone(&tallies[i]);
            let body = body.clone();
            let every = Duration::from_secs_f64(1.0 / rate);
            let (go, until) = (Arc::clone(&go), Arc::clone(&until));
            threads.push(std::thread::spawn(move || {
                go.wait();
                let until = *until.lock().unwrap();
                let mut next = Instant::now();
                while Instant::now() < until {
                    let reply = client.post("/v1/chat/completions", &body);
                    tally.lock().unwrap().count(&reply);
                    // Load shaping, not synchronisation: an open-loop pace.
                    next += every;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }));
        }
    }
    *until.lock().unwrap() = Instant::now() + run;
    let started = now_ms();
    go.wait();
    let so_far = || tallies.iter().map(|t| t.lock().unwrap().clone()).collect();
    during(&so_far);
    for thread in threads {
        thread.join().expect("load thread");
    }
    let ended = now_ms();
    let tallies = tallies.iter().map(|t| t.lock().unwrap().clone()).collect();
    (tallies, (started, ended))
}

/// Every node's proxy URL, node 1 first.
fn urls(cluster: &Cluster) -> Vec<String> {
    cluster
        .ids()
        .iter()
        .map(|id| cluster.proxy_url(*id))
        .collect()
}

fn total(tallies: &[Tally]) -> Tally {
    let mut sum = Tally::default();
    for t in tallies {
        sum.add(t);
    }
    sum
}

/// `capacity + per_second × T` for T from `from_ms` to `to_ms`: the most
/// the ledger can grant over that interval.
fn bound(capacity: u64, per_second: u64, from_ms: u64, to_ms: u64) -> u64 {
    capacity + per_second * (to_ms - from_ms) / 1000
}

fn report(what: &str, limit: u64, admitted: u64, sum: &Tally) {
    let percent = admitted as f64 * 100.0 / limit as f64;
    println!(
        "ACCURACY {what}: bound {limit}, admitted {admitted} ({percent:.1}%), 429 {}, 503 {}, other {}",
        sum.limited, sum.undecided, sum.other
    );
}

/// 3 nodes, 12 clients offering 8× the refill rate: the cluster together
/// admits no more than the bucket's bound, and at least 95% of it. (A
/// refused request may first wait up to two lease rounds, which slows
/// these closed-loop clients: hence more of them.)
fn a_request_limit_holds_across_the_cluster() {
    let (_turn, plane) = start();
    let (capacity, per_second) = (60, 30);
    let (id, secret) = plane.create_key_with(
        "rps",
        json!({"limits": [limit("requests", capacity, per_second)]}),
    );
    let (tallies, (from, to)) = drive(
        &urls(&plane.cluster),
        &secret,
        4,
        20.0,
        Duration::from_secs(12),
        &chat("hello there", 4),
        |_| {},
    );
    let sum = total(&tallies);
    let limit = bound(capacity, per_second, from, to);
    report("requests, steady", limit, sum.ok, &sum);
    println!(
        "PER NODE {:?} leader {}",
        tallies
            .iter()
            .map(|t| (t.ok, t.limited))
            .collect::<Vec<_>>(),
        plane.cluster.leader()
    );
    assert!(sum.odd.is_empty(), "unexpected answers: {:?}", sum.odd);
    assert!(sum.ok <= limit, "admitted {} > bound {limit}", sum.ok);
    assert!(
        sum.ok * 100 >= limit * 95,
        "admitted {} < 95% of {limit}",
        sum.ok
    );
    // Offered 8× the refill, the key was held to its bound (above). Excess
    // requests wait for a round before they are refused, which slows these
    // closed-loop clients to about the refill: a run may see no 429 at all.
    // The nodes offered the same load, and each got close to its third:
    // the ledger keeps a node's part of the refill for it until its next
    // round, whenever in the tick that falls (measured 30–36% each; the
    // part taken just after the refill used to go to whichever node came
    // first, 9% for one node in a CI run).
    for (i, t) in tallies.iter().enumerate() {
        assert!(t.ok * 5 >= sum.ok, "node {} starved: {tallies:?}", i + 1);
    }
    // The live view: every node's reported admissions, never more than
    // the clients saw admitted.
    let (status, view) = plane
        .cluster
        .admin(2)
        .get(&format!("/admin/v1/keys/{id}/quota"));
    assert_eq!(status, 200, "{view}");
    let nodes = view["buckets"][0]["nodes"].as_array().expect("nodes");
    let reported: u64 = nodes
        .iter()
        .map(|n| n["admitted_total"].as_u64().unwrap())
        .sum();
    assert_eq!(nodes.len(), 3, "{view}");
    assert!(
        reported <= sum.ok && reported * 10 >= sum.ok * 8,
        "reported {reported} vs admitted {}: {view}",
        sum.ok
    );
}

/// A token limit with streamed answers: the tokens the upstream reported
/// on admitted answers stay within the bound, and reach 95% of it.
fn a_token_limit_holds_for_streamed_answers() {
    let (_turn, plane) = start();
    let (capacity, per_second) = (800, 400);
    let (_, secret) = plane.create_key_with(
        "tps",
        json!({"limits": [limit("tokens", capacity, per_second)]}),
    );
    let mut body = chat(
        "one two three four five six seven eight nine ten eleven twelve",
        8,
    );
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (tallies, (from, to)) = drive(
        &urls(&plane.cluster),
        &secret,
        2,
        10.0,
        Duration::from_secs(15),
        &body,
        |_| {},
    );
    let sum = total(&tallies);
    let limit = bound(capacity, per_second, from, to);
    report("tokens, streamed", limit, sum.tokens, &sum);
    assert!(sum.odd.is_empty(), "unexpected answers: {:?}", sum.odd);
    assert!(sum.tokens <= limit, "tokens {} > bound {limit}", sum.tokens);
    assert!(
        sum.tokens * 100 >= limit * 95,
        "tokens {} < 95% of {limit}",
        sum.tokens
    );
}

/// The leader is killed mid-run: the bound still holds, and admission
/// resumes under the new leader.
fn the_bound_holds_while_the_leader_is_killed() {
    let (_turn, mut plane) = start();
    let (capacity, per_second) = (60, 30);
    let (_, secret) = plane.create_key_with(
        "failover",
        json!({"limits": [limit("requests", capacity, per_second)]}),
    );
    let leader = plane.cluster.leader();
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    let urls = urls(&plane.cluster);
    let deadline = plane.cluster.deadline().within(Duration::from_secs(10));
    let (tallies, (from, to)) = drive(
        &urls,
        &secret,
        2,
        20.0,
        Duration::from_secs(12),
        &chat("hello there", 4),
        |so_far| {
            // Past the initial burst, into the refill-paced part of the run.
            deadline.wait_until("the load to pass the bucket's capacity", || {
                total(&so_far()).ok >= capacity + 2 * per_second
            });
            plane.cluster.kill9(leader);
        },
    );
    let sum = total(&tallies);
    let limit = bound(capacity, per_second, from, to);
    report("requests, leader killed", limit, sum.ok, &sum);
    assert!(sum.ok <= limit, "admitted {} > bound {limit}", sum.ok);
    let after: u64 = survivors
        .iter()
        .map(|id| tallies[(*id - 1) as usize].ok)
        .sum();
    assert!(
        sum.ok * 100 >= limit * 70,
        "admission did not resume after the failover: {} of {limit} ({after} on the survivors)",
        sum.ok
    );
}

/// A follower cut off from the others (its Raft datagrams dropped by a
/// relay) while two keys with the same limit are under load: under `deny`
/// it spends what it held, then answers 503 and admits nothing until the
/// network heals, and the cluster stays within the exact bound; under
/// `local_share` it keeps admitting, within the documented bound: capacity
/// + rate × T, plus (capacity + rate × T_cut) / N for the cut-off node.
fn a_cut_off_node_denies_or_spends_its_local_share() {
    let (_turn, plane) = start_with(Cluster::builder().with_relay());
    let (capacity, per_second) = (30, 15);
    let deny = plane
        .create_key_with(
            "deny",
            json!({"limits": [limit("requests", capacity, per_second)], "on_no_quorum": "deny"}),
        )
        .1;
    let share = plane.create_key_with(
        "share",
        json!({"limits": [limit("requests", capacity, per_second)], "on_no_quorum": "local_share"}),
    )
    .1;
    let leader = plane.cluster.leader();
    let cut = plane.cluster.follower();
    assert_ne!(cut, leader);
    let urls = urls(&plane.cluster);
    let index = (cut - 1) as usize;
    let deadline = plane.cluster.deadline().within(Duration::from_secs(20));
    let body = chat("hello there", 4);
    let run = Duration::from_secs(12);
    let cut_at = Mutex::new(0u64);
    // (admitted by the cut-off node when it first said 503, and after)
    let mut deny_frozen = (0, 0);
    let ((deny_tallies, deny_span), (share_tallies, share_span)) = std::thread::scope(|s| {
        let shared = s.spawn(|| drive(&urls, &share, 1, 15.0, run, &body, |_| {}));
        let denied = drive(&urls, &deny, 1, 15.0, run, &body, |so_far| {
            deadline.wait_until("the cut-off node to hold leases of both keys", || {
                so_far()[index].ok >= 5
            });
            plane.cluster.isolate(cut);
            *cut_at.lock().unwrap() = now_ms();
            let frozen = deadline.wait_for("the cut-off node to refuse under deny", || {
                let now = so_far();
                (now[index].undecided > 0).then_some(now[index].ok)
            });
            deny_frozen.0 = frozen;
        });
        (denied, shared.join().expect("local_share load"))
    });
    deny_frozen.1 = deny_tallies[index].ok;
    plane.cluster.heal(cut);
    let cut_at = *cut_at.lock().unwrap();

    let sum = total(&deny_tallies);
    let limit = bound(capacity, per_second, deny_span.0, deny_span.1);
    report("requests, node cut off, deny", limit, sum.ok, &sum);
    assert!(sum.odd.is_empty(), "unexpected answers: {:?}", sum.odd);
    assert!(sum.ok <= limit, "deny: admitted {} > bound {limit}", sum.ok);
    assert_eq!(
        deny_frozen.0, deny_frozen.1,
        "deny: the cut-off node admitted after it first refused"
    );

    let sum = total(&share_tallies);
    let exact = bound(capacity, per_second, share_span.0, share_span.1);
    let share_bound = (capacity + per_second * (share_span.1 - cut_at) / 1000) / 3;
    report(
        "requests, node cut off, local_share",
        exact + share_bound,
        sum.ok,
        &sum,
    );
    assert!(sum.odd.is_empty(), "unexpected answers: {:?}", sum.odd);
    assert!(
        sum.ok <= exact + share_bound,
        "local_share: admitted {} > {exact} + {share_bound}",
        sum.ok
    );
    assert_eq!(
        share_tallies[index].undecided, 0,
        "local_share never says 503"
    );
    println!(
        "CUT node {cut}: deny admitted {} in all, local_share {} in all",
        deny_tallies[index].ok, share_tallies[index].ok
    );

    // Healed, the node takes leases again.
    let client = ProxyClient::new(plane.cluster.proxy_url(cut), Some(&deny));
    deadline.wait_until("the healed node to admit again", || {
        client.post("/v1/chat/completions", &body).status == 200
    });
}

/// A budget: 50 concurrent first requests when the budget has room for 5
/// reservations do not all pass; spend, charged from real usage, stops at
/// the allowance; the refusal is `insufficient_quota` and says not to retry.
fn a_budget_is_charged_from_usage_and_reservations_bound_a_burst() {
    let (_turn, plane) = start();
    // $100 per million tokens either way: 100 µUSD a token.
    let priced = json!({
        "name": "priced",
        "deployments": [{"provider": "mock-openai", "model": "mock-gpt", "weight": 1}],
        "pricing": {"prompt_usd_per_mtok": 100.0, "completion_usd_per_mtok": 100.0},
    });
    plane.write("/admin/v1/routes", &priced);
    let request = json!({
        "model": "priced", "max_tokens": 5,
        "messages": [{"role": "user", "content": "alpha beta gamma delta"}],
    });
    // The mock charges 1 + 4 prompt tokens and 5 completion tokens: 1 000
    // µUSD. The gateway reserves more (tiktoken's count with OpenAI's
    // overhead, plus max_tokens): measured below from a first answer.
    let budget_micro = 8_000;
    let (id, secret) = plane.create_key_with(
        "budget",
        json!({"budget_usd": budget_micro as f64 / 1e6, "budget_period": "day"}),
    );
    plane.wait_served(&secret, &["priced"]);
    let cost = |reply: &Reply| -> u64 { usage_tokens(reply) * 100 };

    // 50 at once, spread over the three nodes.
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let client = ProxyClient::new(plane.cluster.proxy_url(1 + i % 3), Some(&secret));
                let request = request.clone();
                s.spawn(move || client.post("/v1/chat/completions", &request))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let admitted: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let mut spent: u64 = admitted.iter().map(|r| cost(r)).sum();
    assert!(
        replies.iter().all(|r| r.status == 200 || r.status == 429),
        "{:?}",
        replies
            .iter()
            .map(|r| (r.status, &r.text))
            .collect::<Vec<_>>()
    );
    println!(
        "BUDGET burst of 50: {} admitted, {spent} µUSD charged",
        admitted.len()
    );
    assert!(
        admitted.len() <= (budget_micro / 1_000) as usize,
        "{} of 50 admitted: more than the budget pays for",
        admitted.len()
    );
    assert!(spent <= budget_micro);

    // Then one at a time until the budget refuses on every node, past a
    // lease's life (leftovers held by other nodes come back to the ledger).
    let mut refused_since: Option<Instant> = None;
    let mut last_refusal = None;
    let mut i = 0u64;
    plane
        .cluster
        .wait_until(Duration::from_secs(30), "the budget to be spent", || {
            i += 1;
            let client = ProxyClient::new(plane.cluster.proxy_url(1 + i % 3), Some(&secret));
            let reply = client.post("/v1/chat/completions", &request);
            match reply.status {
                200 => {
                    spent += cost(&reply);
                    refused_since = None;
                    false
                }
                429 => {
                    let since = *refused_since.get_or_insert_with(Instant::now);
                    last_refusal = Some(reply);
                    since.elapsed() > Duration::from_millis(1_500)
                }
                _ => panic!("{} {}", reply.status, reply.text),
            }
        });
    let refusal = last_refusal.expect("a refusal");
    let error = refusal.openai_error();
    assert_eq!(error["code"], "insufficient_quota", "{}", refusal.text);
    assert_eq!(error["type"], "insufficient_quota");
    assert_eq!(refusal.header("x-should-retry"), Some("false"));
    assert!(refusal.header("retry-after").is_some());
    println!("BUDGET spent {spent} of {budget_micro} µUSD");
    assert!(spent <= budget_micro, "spent {spent} > {budget_micro}");
    // Less than one request's reservation is left unspent.
    assert!(
        spent + 2_000 >= budget_micro,
        "spend stopped at {spent}, far below {budget_micro}"
    );
    // The ledger agrees: what is left is what was not charged.
    let (status, view) = plane
        .cluster
        .admin(1)
        .get(&format!("/admin/v1/keys/{id}/quota"));
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["buckets"][0]["unit"], "micro_usd", "{view}");
}

/// A client that leaves mid-stream is charged the reservation (what the
/// upstream could have produced, up to `max_tokens`), not refunded; a
/// whole answer is charged its usage. Read from `remaining`, exact here: a
/// bucket that practically does not refill, one node.
fn a_client_that_leaves_mid_stream_is_still_charged() {
    let (_turn, plane) = start();
    let capacity = 100_000;
    let (id, secret) = plane.create_key_with(
        "leaver",
        json!({"limits": [{"unit": "tokens", "capacity": capacity, "refill_amount": 1, "refill_every_ms": 3_600_000}]}),
    );
    // A provider whose streams send an event every 200 ms: the client is
    // surely gone before the end.
    plane.create_provider("slow-mock", "openai", json!({"x-mock-chunk-ms": "200"}));
    plane.create_route("slow", &[("slow-mock", "mock-gpt", 1)], &[]);
    plane.wait_served(&secret, &["slow"]);
    // Every node has filled its standing reserve (a unit each here): the
    // ledger's level moves only with this test's requests from now on.
    plane.cluster.wait_until(
        Duration::from_secs(10),
        "every node's standing reserve",
        || {
            let (_, view) = plane
                .cluster
                .admin(1)
                .get(&format!("/admin/v1/keys/{id}/quota"));
            view["buckets"][0]["nodes"].as_array().is_some_and(|nodes| {
                nodes.len() == 3 && nodes.iter().all(|n| n["standing"].as_u64() >= Some(1))
            })
        },
    );
    let proxy = ProxyClient::new(plane.cluster.proxy_url(1), Some(&secret));
    let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    let mut body = chat(&words.join(" "), 50);
    body["model"] = json!("slow");
    let remaining = |headers: &reqwest::header::HeaderMap| -> u64 {
        headers["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    body["stream"] = json!(true);
    let mut stream = proxy.stream("/v1/chat/completions", &body);
    assert_eq!(stream.status, 200);
    let estimate = capacity - remaining(&stream.headers);
    assert!(estimate > 50, "prompt + max_tokens: {estimate}");
    stream.next_event().expect("first event").expect("an event");
    drop(stream);
    let gone = || {
        sluice_e2e::dataplane::metric_value(
            &plane.metrics(1),
            "sluice_proxy_stream_ends_total",
            &[("outcome", "client_gone")],
        )
        .unwrap_or(0.0)
    };
    plane.cluster.wait_until(
        Duration::from_secs(10),
        "the proxy to see the client go",
        || gone() >= 1.0,
    );
    body["stream"] = json!(false);
    body["model"] = json!(GPT);
    let whole = proxy.post("/v1/chat/completions", &body);
    assert_eq!(whole.status, 200, "{}", whole.text);
    let used = whole.body["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used < estimate, "the mock's count is below the estimate");
    // A whole answer's headers are read once it is settled: what is left
    // after its real usage, not after its reservation.
    assert_eq!(
        remaining(&whole.headers),
        capacity - estimate - used,
        "the stream kept its estimate; the whole answer was charged its usage ({used})"
    );
    let next = proxy.post("/v1/chat/completions", &body);
    let used_next = next.body["usage"]["total_tokens"].as_u64().unwrap();
    assert_eq!(
        remaining(&next.headers),
        capacity - estimate - used - used_next
    );
}

/// OpenAI's and Anthropic's headers on admitted answers and on refusals.
fn answers_carry_the_rate_limit_headers() {
    let (_turn, plane) = start();
    let (_, secret) = plane.create_key_with("rpm", json!({"rpm": 3, "tpm": 100000}));
    let proxy = ProxyClient::new(plane.cluster.proxy_url(2), Some(&secret));
    let first = proxy.post("/v1/chat/completions", &chat("hi", 4));
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(first.header("x-ratelimit-limit-tokens"), Some("100000"));
    let remaining: u64 = first
        .header("x-ratelimit-remaining-requests")
        .and_then(|v| v.parse().ok())
        .expect("remaining-requests");
    assert!(remaining < 3);
    assert!(first.header("x-ratelimit-reset-requests").is_some());
    let mut refusal = None;
    for _ in 0..5 {
        let reply = proxy.post("/v1/chat/completions", &chat("hi", 4));
        if reply.status == 429 {
            refusal = Some(reply);
            break;
        }
    }
    let refusal = refusal.expect("a 429 within 6 requests of an rpm of 3");
    let error = refusal.openai_error();
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "requests");
    assert_eq!(refusal.header("x-ratelimit-remaining-requests"), Some("0"));
    let retry_ms: u64 = refusal
        .header("retry-after-ms")
        .and_then(|v| v.parse().ok())
        .expect("retry-after-ms");
    assert!(
        (1..=21_000).contains(&retry_ms),
        "one request refills in 20 s: {retry_ms}"
    );
    let anthropic = proxy.post_with(
        "/v1/messages",
        &chat("hi", 4),
        &[("anthropic-version", "2023-06-01")],
    );
    assert_eq!(anthropic.status, 429, "{}", anthropic.text);
    assert_eq!(anthropic.anthropic_error_type(), "rate_limit_error");
    assert_eq!(
        anthropic.header("anthropic-ratelimit-requests-limit"),
        Some("3")
    );
    assert!(anthropic
        .header("anthropic-ratelimit-requests-reset")
        .is_some_and(|v| v.ends_with('Z')));
}

/// The official OpenAI and Anthropic SDKs see a refusal as their
/// `RateLimitError`, with the rate-limit headers.
fn the_official_sdks_see_rate_limit_errors(python: PathBuf) {
    let (_turn, plane) = start();
    let (_, sdk_key) = plane.create_key_with("sdk", json!({"rpm": 2}));
    let output = Command::new(python)
        .arg("-c")
        .arg(SDK_SCRIPT)
        .env("SLUICE_URL", plane.cluster.proxy_url(3))
        .env("SLUICE_KEY", &sdk_key)
        .env("SLUICE_MODEL", GPT)
        .output()
        .expect("running the SDK script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("SDK OK"), "{stdout}\n{stderr}");
}

const SDK_SCRIPT: &str = r#"
import os, anthropic, openai
url, key, model = os.environ["SLUICE_URL"], os.environ["SLUICE_KEY"], os.environ["SLUICE_MODEL"]
client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
raw = client.chat.completions.with_raw_response.create(
    model=model, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
assert raw.headers["x-ratelimit-limit-requests"] == "2", dict(raw.headers)
assert int(raw.headers["x-ratelimit-remaining-requests"]) <= 1, dict(raw.headers)
raw.parse()
seen = None
for _ in range(4):
    try:
        client.chat.completions.create(model=model, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError as e:
        seen = e
        break
assert seen is not None, "no RateLimitError"
h = seen.response.headers
for name in ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
             "x-ratelimit-reset-requests", "retry-after", "retry-after-ms"]:
    assert name in h, (name, dict(h))
assert h["x-ratelimit-remaining-requests"] == "0", dict(h)
assert seen.code == "rate_limit_exceeded", seen.body
ac = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
try:
    ac.messages.create(model=model, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("Anthropic SDK: no RateLimitError")
except anthropic.RateLimitError as e:
    assert e.response.headers["anthropic-ratelimit-requests-limit"] == "2", dict(e.response.headers)
    assert e.body["error"]["type"] == "rate_limit_error", e.body
print("SDK OK")
"#;
