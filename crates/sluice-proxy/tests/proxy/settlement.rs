//! Every model call settles its metrics, its usage entry and its quota
//! charge exactly once, however it ends: a whole answer, a stream, an
//! upstream's error passed on, retries that end in an answer, a refusal by
//! a quota, and the two ends no answer announces (a client that leaves
//! mid-stream, a request dropped while it waits for its quota).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use sluice_core::quota::{Limit, OnNoQuorum, QuotaPolicy, Scope, Unit};
use sluice_core::{Command, ProviderKind, VirtualKey};
use sluice_proxy::clock::now_ms;
use sluice_proxy::quota::prompt_tokens;
use sluice_proxy::usage::UsageMeter;
use sluice_quota::{QuotaConfig, Quotas};

use super::support::*;

/// Units of each limit leased to the node's pools.
const LEASE: u64 = 1_000_000;

/// A proxy with quotas and a usage meter, whose key has a requests and a
/// tokens limit.
struct Metered {
    s: Setup,
    quotas: Arc<Quotas>,
    meter: Arc<UsageMeter>,
    scope: Scope,
}

/// `leased`: the pools hold [`LEASE`] units each, else nothing (so an
/// admission waits up to `max_wait_ms` for a lease round that never comes).
/// Route `r` streams slowly (`slow`); route `g` answers at once (`good`).
async fn metered(max_wait_ms: u64, leased: bool) -> Metered {
    let quotas = Arc::new(Quotas::new(QuotaConfig {
        max_wait_ms,
        ..QuotaConfig::default()
    }));
    let meter = Arc::new(UsageMeter::new(1));
    let (q, m) = (Arc::clone(&quotas), Arc::clone(&meter));
    let s = Setup::start_wired(config(), move |proxy| proxy.with_quotas(q).with_usage(m)).await;
    let scope = Scope::Key {
        key_id: VirtualKey::new("test".into(), KEY, 0).id,
    };
    s.world.apply(Command::SetQuota {
        scope: scope.clone(),
        policy: Some(QuotaPolicy {
            limits: vec![
                Limit::per_minute(Unit::Requests, 10 * LEASE),
                Limit::per_minute(Unit::Tokens, 10 * LEASE),
            ],
            on_no_quorum: OnNoQuorum::Deny,
            ..QuotaPolicy::default()
        }),
    });
    if leased {
        for unit in [Unit::Requests, Unit::Tokens] {
            quotas
                .pool(&scope, unit)
                .add_lease(LEASE, now_ms() + 600_000);
        }
    }
    let m = Metered {
        s,
        quotas,
        meter,
        scope,
    };
    m.mock_route("r", "slow", &[("x-mock-chunk-ms", "200")]);
    m.mock_route("g", "good", &[]);
    m
}

impl Metered {
    /// Route `route` to the mock's `mock-gpt` through provider `provider`,
    /// which sends the mock `headers`.
    fn mock_route(&self, route: &str, provider: &str, headers: &[(&str, &str)]) {
        let world = &self.s.world;
        world.provider(provider, ProviderKind::OpenAi, &self.s.mock_v1(), headers);
        world.route(route, &[(provider, "mock-gpt")], &[]);
    }

    /// A chat completion on route `g` (`good`), with `body`'s fields.
    async fn chat_g(&self, mut body: Value) -> reqwest::Response {
        body["model"] = json!("g");
        self.s.post("/v1/chat/completions", body).await
    }

    /// The chat completions the mock was asked for.
    fn upstream_chats(&self) -> u64 {
        self.s
            .mock
            .stats()
            .requests_to(sluice_mock_llm::Endpoint::ChatCompletions)
    }

    /// The proxy's metrics once `done` holds of them.
    async fn metrics_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + BUDGET;
        loop {
            let text = self.s.proxy.metrics().encode();
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "metrics never got there: {text}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn spendable(&self, unit: Unit) -> u64 {
        self.quotas.pool(&self.scope, unit).spendable(now_ms())
    }

    /// The proxy's metrics once the request has ended, with exactly one
    /// `sluice_proxy_requests_total` series, `requests` (its labels and
    /// count), and the usage meter's one entry: (requests, errors,
    /// provider). Nothing settles anything a second time after.
    async fn settled_once(&self, requests: &str) -> (String, (u64, u64, String)) {
        let metrics = self
            .metrics_when(|t| {
                t.contains("sluice_proxy_requests_in_flight 0")
                    && !series(t, "sluice_proxy_requests_total").is_empty()
            })
            .await;
        assert_eq!(
            series(&metrics, "sluice_proxy_requests_total"),
            [requests],
            "{metrics}"
        );
        let rollups = self.meter.drain();
        assert_eq!(rollups.len(), 1, "{rollups:?}");
        let usage = (
            rollups[0].totals.requests,
            rollups[0].totals.errors,
            rollups[0].key.provider.clone(),
        );
        let (requests_left, tokens_left) =
            (self.spendable(Unit::Requests), self.spendable(Unit::Tokens));
        // Nothing settles it later.
        let again = self.s.proxy.metrics().encode();
        assert_eq!(
            series(&again, "sluice_proxy_requests_total"),
            series(&metrics, "sluice_proxy_requests_total")
        );
        assert!(self.meter.drain().is_empty());
        assert_eq!(
            (self.spendable(Unit::Requests), self.spendable(Unit::Tokens)),
            (requests_left, tokens_left)
        );
        (metrics, usage)
    }
}

/// The tokens an answer (or a stream's last usage event) reports.
fn total_tokens(answer: &Value) -> u64 {
    answer["usage"]["total_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("usage in {answer}"))
}

/// The series of `family` in `text` (labels and value), one per line.
fn series<'t>(text: &'t str, family: &str) -> Vec<&'t str> {
    let prefix = format!("{family}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// The request to `route` ended with `status` before any deployment was
/// tried: settled once as an error of `class`, with nothing sent upstream.
/// The metrics after.
async fn ended_before_any_attempt(m: &Metered, route: &str, status: u16, class: &str) -> String {
    let labels = format!(r#"deployment="",endpoint="chat_completions",route="{route}""#);
    let (metrics, usage) = m
        .settled_once(&format!(r#"{labels},status="{status}"}} 1"#))
        .await;
    assert_eq!(
        series(&metrics, "sluice_proxy_errors_total"),
        [format!(r#"class="{class}",{labels}}} 1"#)]
    );
    assert_eq!(usage, (1, 1, String::new()));
    assert_eq!(m.upstream_chats(), 0);
    metrics
}

/// A stream from `route` (the deployment of `provider`) ended as
/// `outcome`: settled once, as a 200 and no error.
async fn stream_ended_once(m: &Metered, route: &str, provider: &str, outcome: &str) {
    let (metrics, usage) = m
        .settled_once(&format!(
            r#"deployment="{provider}/mock-gpt",endpoint="chat_completions",route="{route}",status="200"}} 1"#
        ))
        .await;
    assert_eq!(
        series(&metrics, "sluice_proxy_stream_ends_total"),
        [format!(r#"outcome="{outcome}"}} 1"#)]
    );
    assert!(series(&metrics, "sluice_proxy_errors_total").is_empty());
    assert_eq!(usage, (1, 0, provider.to_owned()));
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_settles_its_quota_usage_and_metrics_once() {
    within(async {
        let m = metered(1_000, true).await;
        let body = json!({
            "model": "r",
            "stream": true,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "one two three"}],
        });
        let r = m.s.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(r.status(), 200);
        let mut stream = r.bytes_stream();
        stream
            .next()
            .await
            .expect("a first event")
            .expect("readable");
        drop(stream);
        m.s.mock
            .wait_for_stats(|st| st.streams_cancelled == 1)
            .await;
        stream_ended_once(&m, "r", "slow", "client_gone").await;

        // The request is spent; its tokens stay charged at the reservation
        // (no usage came before the client left): once, not twice, not
        // refunded.
        assert_eq!(m.spendable(Unit::Requests), LEASE - 1);
        let Value::Object(body) = body else {
            unreachable!()
        };
        let reserved = prompt_tokens(&body) + 50;
        assert_eq!(m.spendable(Unit::Tokens), LEASE - reserved);
    })
    .await;
}

#[tokio::test]
async fn a_request_dropped_while_waiting_for_its_quota_settles_once_uncharged() {
    within(async {
        let m = metered(60_000, false).await;
        let (http, url) = (m.s.http.clone(), format!("{}/v1/chat/completions", m.s.url));
        let request = tokio::spawn(async move {
            http.post(url)
                .bearer_auth(KEY)
                .json(&json!({"model": "r", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
        });
        // Refused by the empty pool, the admission now waits for a round.
        let pool = m.quotas.pool(&m.scope, Unit::Requests);
        let deadline = Instant::now() + BUDGET;
        while !pool.has_demand() {
            assert!(
                Instant::now() < deadline,
                "the request never reached admission"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        request.abort();
        assert!(request.await.is_err(), "the client left before any answer");

        let metrics = ended_before_any_attempt(&m, "r", 499, "client_gone").await;
        assert!(
            series(&metrics, "sluice_quota_decisions_total")
                .iter()
                .all(|s| s.ends_with("} 0")),
            "no decision was made: {metrics}"
        );

        // Nothing was taken, so nothing is owed.
        assert_eq!(pool.available(), 0);
        assert_eq!(m.quotas.pool(&m.scope, Unit::Tokens).available(), 0);
    })
    .await;
}

/// Asks route `route` for a whole answer, which `good` gives: settled
/// once, charged its real usage (not the reservation). The metrics after.
async fn answered_by_good_once(m: &Metered, route: &str) -> String {
    let r = m.s.chat(route, false).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("JSON");
    let (metrics, usage) = m
        .settled_once(&format!(
            r#"deployment="good/mock-gpt",endpoint="chat_completions",route="{route}",status="200"}} 1"#
        ))
        .await;
    assert!(series(&metrics, "sluice_proxy_errors_total").is_empty());
    assert_eq!(usage, (1, 0, "good".to_owned()));
    assert_eq!(m.spendable(Unit::Requests), LEASE - 1);
    assert_eq!(m.spendable(Unit::Tokens), LEASE - total_tokens(&answer));
    metrics
}

#[tokio::test]
async fn a_whole_answer_is_charged_its_usage_once() {
    within(async {
        let m = metered(1_000, true).await;
        answered_by_good_once(&m, "g").await;
    })
    .await;
}

#[tokio::test]
async fn a_stream_that_completes_is_charged_its_usage_once() {
    within(async {
        let m = metered(1_000, true).await;
        let r = m
            .chat_g(json!({
                    "stream": true,
                    "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "one two three"}],
            }))
            .await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("the whole stream");
        let events = data_events(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let last_usage = events
            .iter()
            .rev()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .find(|e| e["usage"].is_object())
            .expect("a usage event");
        stream_ended_once(&m, "g", "good", "completed").await;
        assert_eq!(m.spendable(Unit::Requests), LEASE - 1);
        assert_eq!(m.spendable(Unit::Tokens), LEASE - total_tokens(&last_usage));
    })
    .await;
}

/// Asks route `route` for a whole answer, which fails with `status` (the
/// deployment of `provider` tried last): settled once as an error, charged
/// the request and no tokens. The metrics after.
async fn failed_once(m: &Metered, route: &str, provider: &str, status: u16) -> String {
    let r = m.s.chat(route, false).await;
    assert_eq!(r.status(), status);
    let (metrics, usage) = m
        .settled_once(&format!(
            r#"deployment="{provider}/mock-gpt",endpoint="chat_completions",route="{route}",status="{status}"}} 1"#
        ))
        .await;
    assert_eq!(usage, (1, 1, provider.to_owned()));
    assert_eq!(m.spendable(Unit::Requests), LEASE - 1);
    assert_eq!(m.spendable(Unit::Tokens), LEASE);
    metrics
}

#[tokio::test]
async fn an_upstream_error_passed_on_is_charged_the_request_only_once() {
    within(async {
        let m = metered(1_000, true).await;
        m.mock_route("p", "picky", &[("x-mock-status", "400")]);
        // The client's request is at fault: its answer, not retried.
        let metrics = failed_once(&m, "p", "picky", 400).await;
        assert_eq!(
            series(&metrics, "sluice_proxy_errors_total"),
            [r#"class="client_error",deployment="picky/mock-gpt",endpoint="chat_completions",route="p"} 1"#]
        );
        assert_eq!(m.upstream_chats(), 1);
    })
    .await;
}

#[tokio::test]
async fn retries_that_end_in_an_answer_settle_once() {
    within(async {
        let m = metered(1_000, true).await;
        m.s.world.provider(
            "broken",
            ProviderKind::OpenAi,
            &m.s.mock_v1(),
            &[("x-mock-status", "503")],
        );
        m.s.world
            .route("primary", &[("broken", "mock-gpt")], &["g"]);
        // One request, on the route asked for, answered by the fallback's
        // deployment after three failed attempts: charged once.
        let metrics = answered_by_good_once(&m, "primary").await;
        let mut attempts = series(&metrics, "sluice_proxy_upstream_attempts_total");
        attempts.sort_unstable();
        assert_eq!(
            attempts,
            [
                r#"outcome="ok",provider="good"} 1"#,
                r#"outcome="server_error",provider="broken"} 3"#,
            ],
            "{metrics}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_request_refused_by_its_quota_settles_once_uncharged() {
    within(async {
        let m = metered(1_000, true).await;
        // More tokens than the limit can ever hold.
        let r = m
            .chat_g(json!({
                    "max_tokens": 20 * LEASE,
                    "messages": [{"role": "user", "content": "hi"}],
            }))
            .await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["x-should-retry"], "false");
        let metrics = ended_before_any_attempt(&m, "g", 429, "rate_limited").await;
        assert!(
            series(&metrics, "sluice_quota_decisions_total")
                .iter()
                .any(|s| s.contains(r#"outcome="too_large""#) && s.ends_with("} 1")),
            "{metrics}"
        );
        // Nothing was sent, nothing taken.
        assert_eq!(m.spendable(Unit::Requests), LEASE);
        assert_eq!(m.spendable(Unit::Tokens), LEASE);
    })
    .await;
}

#[tokio::test]
async fn a_request_no_upstream_answers_is_charged_the_request_only_once() {
    within(async {
        let m = metered(1_000, true).await;
        let dead = closed_port().await;
        m.s.world.provider(
            "dead",
            ProviderKind::OpenAi,
            &format!("http://{dead}/v1"),
            &[],
        );
        m.s.world.route("d", &[("dead", "mock-gpt")], &[]);
        let metrics = failed_once(&m, "d", "dead", 502).await;
        assert_eq!(
            series(&metrics, "sluice_proxy_upstream_attempts_total"),
            [r#"outcome="connect_error",provider="dead"} 3"#]
        );
    })
    .await;
}
