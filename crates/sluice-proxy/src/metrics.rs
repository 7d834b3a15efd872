//! The proxy's Prometheus metrics.
//!
//! Labels stay low-cardinality: the endpoint, the route (only names the
//! cluster defines: an unknown `model` is recorded as `""`), the provider,
//! the status code. Never a key, a prompt or a client address.
//!
//! `sluice_proxy_overhead_seconds` is the gateway's own time: the request's
//! time until its answer starts going out, minus the time spent waiting on
//! the upstream (response head and, for streams, the first body bytes). It
//! includes authentication, body reading and parsing, routing, retries'
//! backoff sleeps and the relay of the first bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use sluice_providers::TokenUsage;

/// Latency buckets, in seconds: 1 ms .. 5 min.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];
/// Overhead buckets, in seconds: 10 µs .. 1 s.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 1.0,
];

/// The proxy's metric families, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

struct Families {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    overhead: Histogram,
    time_to_first_byte: HistogramVec,
    upstream_attempts: IntCounterVec,
    tokens: IntCounterVec,
    in_flight: IntGauge,
    stream_ends: IntCounterVec,
    breaker_state: IntGaugeVec,
    /// `sluice_quota_decisions_total`'s counters, by [`QuotaOutcome`].
    quota_outcomes: [IntCounter; 5],
}

/// A quota decision, as `sluice_quota_decisions_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOutcome {
    Admitted,
    RateLimited,
    BudgetSpent,
    TooLarge,
    NoQuorum,
}

impl QuotaOutcome {
    const ALL: [QuotaOutcome; 5] = [
        QuotaOutcome::Admitted,
        QuotaOutcome::RateLimited,
        QuotaOutcome::BudgetSpent,
        QuotaOutcome::TooLarge,
        QuotaOutcome::NoQuorum,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaOutcome::Admitted => "admitted",
            QuotaOutcome::RateLimited => "rate_limited",
            QuotaOutcome::BudgetSpent => "budget_spent",
            QuotaOutcome::TooLarge => "too_large",
            QuotaOutcome::NoQuorum => "no_quorum",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Registry::new())
    }
}

impl Metrics {
    /// The proxy's families, registered into `registry`.
    pub fn new(registry: Registry) -> Self {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        }
        let requests = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "sluice_proxy_requests_total",
                    "Model API requests answered, by endpoint, route and status.",
                ),
                &["endpoint", "route", "status"],
            )
            .expect("valid metric"),
        );
        let duration = reg(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "sluice_proxy_request_duration_seconds",
                    "Time from request to the end of its answer (streams: to the last event).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["endpoint", "route"],
            )
            .expect("valid metric"),
        );
        let overhead = reg(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "sluice_proxy_overhead_seconds",
                    "The gateway's own time per request: time to the answer's start minus time waiting on the upstream.",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
        );
        let time_to_first_byte = reg(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "sluice_proxy_time_to_first_byte_seconds",
                    "Time from request to the first byte of its answer.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["endpoint", "route"],
            )
            .expect("valid metric"),
        );
        let upstream_attempts = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "sluice_proxy_upstream_attempts_total",
                    "Upstream calls, by provider and outcome (ok, client_error, rate_limited, server_error, connect_error, timeout, stream_error).",
                ),
                &["provider", "outcome"],
            )
            .expect("valid metric"),
        );
        let tokens = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "sluice_proxy_tokens_total",
                    "Tokens the upstreams reported, by route and kind (prompt, completion).",
                ),
                &["route", "kind"],
            )
            .expect("valid metric"),
        );
        let in_flight = reg(
            &registry,
            IntGauge::new(
                "sluice_proxy_requests_in_flight",
                "Model API requests being answered now.",
            )
            .expect("valid metric"),
        );
        let stream_ends = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "sluice_proxy_stream_ends_total",
                    "Streamed answers by how they ended (completed, client_gone, or the upstream failure).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        let breaker_state = reg(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "sluice_proxy_breaker_state",
                    "Circuit breaker per deployment: 0 closed, 1 open, 2 half-open.",
                ),
                &["provider", "model"],
            )
            .expect("valid metric"),
        );
        let quota_decisions = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "sluice_quota_decisions_total",
                    "Quota decisions on requests of keys with a policy, by outcome (admitted, rate_limited, budget_spent, too_large, no_quorum).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        Self {
            inner: Arc::new(Families {
                registry,
                requests,
                duration,
                overhead,
                time_to_first_byte,
                upstream_attempts,
                tokens,
                in_flight,
                stream_ends,
                breaker_state,
                quota_outcomes: QuotaOutcome::ALL
                    .map(|o| quota_decisions.with_label_values(&[o.as_str()])),
            }),
        }
    }

    /// The registry holding these families (and whatever else was added).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Everything in the registry, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which the
        // typed families above cannot hold.
        let _ = TextEncoder::new().encode(&self.inner.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Starts timing one request.
    pub fn start(&self, endpoint: &'static str) -> InFlight {
        self.inner.in_flight.inc();
        InFlight {
            metrics: self.clone(),
            endpoint,
            route: String::new(),
            started: Instant::now(),
            upstream_wait: Duration::ZERO,
            status: 0,
            done: false,
        }
    }

    /// Counts one upstream call.
    pub fn upstream_attempt(&self, provider: &str, outcome: &str) {
        self.inner
            .upstream_attempts
            .with_label_values(&[provider, outcome])
            .inc();
    }

    /// Counts one quota decision.
    pub fn quota_decision(&self, outcome: QuotaOutcome) {
        self.inner.quota_outcomes[outcome as usize].inc();
    }

    /// Publishes a breaker's state (0 closed, 1 open, 2 half-open).
    pub fn breaker_state(&self, provider: &str, model: &str, state: i64) {
        self.inner
            .breaker_state
            .with_label_values(&[provider, model])
            .set(state);
    }
}

/// How a streamed answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    Completed,
    /// The client went away before the end.
    ClientGone,
    /// The upstream failed mid-stream; the client got an error event.
    Failed(&'static str),
}

/// One request being answered; records itself when finished or dropped
/// (a dropped request whose client went away is counted with status 499).
pub struct InFlight {
    metrics: Metrics,
    endpoint: &'static str,
    route: String,
    started: Instant,
    upstream_wait: Duration,
    status: u16,
    done: bool,
}

impl InFlight {
    /// The route the request resolved to.
    pub fn set_route(&mut self, route: &str) {
        route.clone_into(&mut self.route);
    }

    /// Adds time spent waiting on an upstream.
    pub fn add_upstream_wait(&mut self, wait: Duration) {
        self.upstream_wait += wait;
    }

    /// The answer starts going out now with `status`: records the time to
    /// first byte and the gateway's overhead.
    pub fn first_byte(&mut self, status: u16) {
        self.status = status;
        let elapsed = self.started.elapsed();
        let m = &self.metrics.inner;
        m.time_to_first_byte
            .with_label_values(&[self.endpoint, &self.route])
            .observe(elapsed.as_secs_f64());
        m.overhead
            .observe(elapsed.saturating_sub(self.upstream_wait).as_secs_f64());
    }

    /// A whole answer has gone out.
    pub fn finish(mut self, status: u16, usage: Option<TokenUsage>) {
        self.status = status;
        self.record(usage);
    }

    /// A streamed answer ended.
    pub fn finish_stream(mut self, end: StreamEnd, usage: Option<TokenUsage>) {
        let outcome = match end {
            StreamEnd::Completed => "completed",
            StreamEnd::ClientGone => "client_gone",
            StreamEnd::Failed(reason) => reason,
        };
        self.metrics
            .inner
            .stream_ends
            .with_label_values(&[outcome])
            .inc();
        self.record(usage);
    }

    fn record(&mut self, usage: Option<TokenUsage>) {
        if self.done {
            return;
        }
        self.done = true;
        let m = &self.metrics.inner;
        m.in_flight.dec();
        let status = if self.status == 0 { 499 } else { self.status };
        let owned;
        let status_label = match STATUS_DIGITS.binary_search_by_key(&status, |(code, _)| *code) {
            Ok(i) => STATUS_DIGITS[i].1,
            Err(_) => {
                owned = status.to_string();
                owned.as_str()
            }
        };
        m.requests
            .with_label_values(&[self.endpoint, &self.route, status_label])
            .inc();
        m.duration
            .with_label_values(&[self.endpoint, &self.route])
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(usage) = usage {
            m.tokens
                .with_label_values(&[&self.route, "prompt"])
                .inc_by(usage.prompt_tokens);
            m.tokens
                .with_label_values(&[&self.route, "completion"])
                .inc_by(usage.completion_tokens);
        }
    }
}

/// The usual statuses as labels, so recording them allocates nothing.
const STATUS_DIGITS: &[(u16, &str)] = &[
    (200, "200"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (408, "408"),
    (409, "409"),
    (413, "413"),
    (422, "422"),
    (429, "429"),
    (499, "499"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
    (529, "529"),
];

impl Drop for InFlight {
    fn drop(&mut self) {
        self.record(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_counted_once_with_its_tokens() {
        let metrics = Metrics::default();
        let mut req = metrics.start("chat_completions");
        req.set_route("gpt");
        req.first_byte(200);
        req.finish(
            200,
            Some(TokenUsage {
                prompt_tokens: 3,
                completion_tokens: 5,
            }),
        );
        let text = metrics.encode();
        assert!(text.contains(
            r#"sluice_proxy_requests_total{endpoint="chat_completions",route="gpt",status="200"} 1"#
        ));
        assert!(text.contains(r#"sluice_proxy_tokens_total{kind="completion",route="gpt"} 5"#));
        assert!(text.contains("sluice_proxy_requests_in_flight 0"));
        assert!(text.contains("sluice_proxy_overhead_seconds_count 1"));
    }

    #[test]
    fn a_dropped_request_counts_as_client_closed() {
        let metrics = Metrics::default();
        drop(metrics.start("embeddings"));
        assert!(metrics.encode().contains(
            r#"sluice_proxy_requests_total{endpoint="embeddings",route="",status="499"} 1"#
        ));
    }
}
