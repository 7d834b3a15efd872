//! The proxy's Prometheus metrics (every family is listed, with its labels,
//! in `docs/observability.md`).
//!
//! Labels stay low-cardinality: the endpoint, the route (only names the
//! cluster defines: an unknown `model` is recorded as `""`), the deployment
//! (`provider/model`, both defined by the cluster), the provider, the status
//! code, a fixed set of outcome and error classes. Never a key, a prompt or
//! a client address.
//!
//! `sluice_proxy_overhead_seconds` is the gateway's own time: the request's
//! time until its answer starts going out, minus the time spent waiting on
//! the upstream (response head and, for streams, the first body bytes). It
//! includes authentication, body reading and parsing, routing, retries'
//! backoff sleeps and the relay of the first bytes.
//!
//! Recording takes no lock shared by all requests: labelled children are
//! looked up in a per-thread map (`local`), then only their atomics are
//! touched. (`local` also keys series by their label values themselves:
//! `prometheus`' vecs confuse label sets that concatenate alike.)
//!
//! # Layout
//! * `in_flight`: [`InFlight`], one request being answered, recorded when
//!   its request context finishes it.
//! * `local`: labelled families, with the per-thread lookup of children.

mod in_flight;
mod local;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub use in_flight::{InFlight, StreamEnd, StreamFailure};
use local::Labelled;

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

/// An integer counter family whose children are looked up per thread.
type LocalCounters = Labelled<IntCounter>;
/// A histogram family whose children are looked up per thread.
type LocalHistograms = Labelled<Histogram>;

/// The proxy's metric families, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

struct Families {
    registry: Registry,
    requests: LocalCounters,
    errors: LocalCounters,
    duration: LocalHistograms,
    overhead: Histogram,
    time_to_first_byte: LocalHistograms,
    time_to_first_token: LocalHistograms,
    upstream_attempts: LocalCounters,
    upstream_errors: LocalCounters,
    tokens: LocalCounters,
    cost: LocalCounters,
    in_flight: IntGauge,
    stream_ends: LocalCounters,
    breaker_state: Labelled<IntGauge>,
    /// `sluice_quota_decisions_total`'s counters, by [`QuotaOutcome`].
    quota_outcomes: [IntCounter; 5],
    /// `sluice_quota_waits_total`'s counters: admitted, refused.
    quota_waits: [IntCounter; 2],
    /// `sluice_listener_connections_refused_total`, by listener.
    connections_refused: IntCounterVec,
    /// `sluice_listener_connections_open`, by listener.
    connections_open: IntGaugeVec,
    /// `sluice_proxy_worker_connections`, by proxy worker thread.
    worker_connections: IntGaugeVec,
}

/// One listener's connection figures (see [`Metrics::listener`]).
#[derive(Clone)]
pub struct ListenerGauges {
    /// Connections refused at accept because the listener was full.
    pub refused: IntCounter,
    /// Connections open now.
    pub open: IntGauge,
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

/// How one upstream call went, as `sluice_proxy_upstream_attempts_total`
/// counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The answer (or the start of the stream) came.
    Ok,
    /// A 4xx other than 429.
    ClientError,
    /// A 429.
    RateLimited,
    /// A 5xx.
    ServerError,
    /// No connection, or it broke before an answer.
    ConnectError,
    Timeout,
    /// The answer's body or stream broke, or could not be read.
    StreamError,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::ClientError => "client_error",
            AttemptOutcome::RateLimited => "rate_limited",
            AttemptOutcome::ServerError => "server_error",
            AttemptOutcome::ConnectError => "connect_error",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::StreamError => "stream_error",
        }
    }

    /// The class `sluice_proxy_upstream_errors_total` counts a failed call
    /// under (`None`: not a failure).
    fn error_class(self) -> Option<&'static str> {
        Some(match self {
            AttemptOutcome::Ok => return None,
            AttemptOutcome::ConnectError => "connect",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::RateLimited => "http_429",
            AttemptOutcome::ServerError => "http_5xx",
            AttemptOutcome::ClientError => "http_4xx",
            AttemptOutcome::StreamError => "stream",
        })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Registry::new())
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> LocalCounters {
    let opts = Opts::new(name, help);
    let family = Labelled::new(name, help, labels, move |labels| {
        IntCounter::with_opts(opts.clone().const_labels(labels))
    })
    .expect("valid metric");
    register(registry, family)
}

fn histograms(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> LocalHistograms {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let family = Labelled::new(name, help, labels, move |labels| {
        Histogram::with_opts(opts.clone().const_labels(labels))
    })
    .expect("valid metric");
    register(registry, family)
}

impl Metrics {
    /// The proxy's families, registered into `registry`.
    pub fn new(registry: Registry) -> Self {
        let r = &registry;
        let requests = counters(
            r,
            "sluice_proxy_requests_total",
            "Model API requests answered, by endpoint, route, deployment (provider/model that answered, \"\" if none) and status.",
            &["endpoint", "route", "deployment", "status"],
        );
        let errors = counters(
            r,
            "sluice_proxy_errors_total",
            "Model API requests that failed, by endpoint, route, deployment and class (client_error, rate_limited, client_gone, server_error, stream_failed).",
            &["endpoint", "route", "deployment", "class"],
        );
        let duration = histograms(
            r,
            "sluice_proxy_request_duration_seconds",
            "Time from request to the end of its answer (streams: to the last event).",
            LATENCY_BUCKETS,
            &["endpoint", "route", "deployment"],
        );
        let overhead = register(
            r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "sluice_proxy_overhead_seconds",
                    "The gateway's own time per request: time to the answer's start minus time waiting on the upstream.",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
        );
        let time_to_first_byte = histograms(
            r,
            "sluice_proxy_time_to_first_byte_seconds",
            "Time from request to the first byte of its answer.",
            LATENCY_BUCKETS,
            &["endpoint", "route"],
        );
        let time_to_first_token = histograms(
            r,
            "sluice_proxy_time_to_first_token_seconds",
            "Streams: time from request to the first event relayed to the client.",
            LATENCY_BUCKETS,
            &["endpoint", "route"],
        );
        let upstream_attempts = counters(
            r,
            "sluice_proxy_upstream_attempts_total",
            "Upstream calls, by provider and outcome (ok, client_error, rate_limited, server_error, connect_error, timeout, stream_error).",
            &["provider", "outcome"],
        );
        let upstream_errors = counters(
            r,
            "sluice_proxy_upstream_errors_total",
            "Failed upstream calls, by provider and class (connect, timeout, http_429, http_5xx, http_4xx, stream).",
            &["provider", "class"],
        );
        let tokens = counters(
            r,
            "sluice_proxy_tokens_total",
            "Tokens the upstreams reported, by route and kind (prompt: in, completion: out).",
            &["route", "kind"],
        );
        let cost = counters(
            r,
            "sluice_proxy_cost_micro_usd_total",
            "Cost of answered requests in micro-USD (1e-6 USD), from the route's pricing and the reported usage, by route.",
            &["route"],
        );
        let in_flight = register(
            r,
            IntGauge::new(
                "sluice_proxy_requests_in_flight",
                "Model API requests being answered now.",
            )
            .expect("valid metric"),
        );
        let stream_ends = counters(
            r,
            "sluice_proxy_stream_ends_total",
            "Streamed answers by how they ended (completed, client_gone, or the upstream failure).",
            &["outcome"],
        );
        let breaker_state = {
            let opts = Opts::new(
                "sluice_proxy_breaker_state",
                "Circuit breaker per deployment: 0 closed, 1 open, 2 half-open.",
            );
            let family = Labelled::new(&opts.name, &opts.help, &["provider", "model"], {
                let opts = opts.clone();
                move |labels| IntGauge::with_opts(opts.clone().const_labels(labels))
            })
            .expect("valid metric");
            register(r, family)
        };
        let quota_decisions = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "sluice_quota_decisions_total",
                    "Quota decisions on requests of keys with a policy, by outcome (admitted, rate_limited, budget_spent, too_large, no_quorum).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        let quota_waits = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "sluice_quota_waits_total",
                    "Requests that waited for a quota lease round before their decision, by how it ended (admitted, refused). A request a node's leases and standing reserves could serve at once never waits.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        let connections_refused = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "sluice_listener_connections_refused_total",
                    "Connections closed at accept because the listener already held its max_connections, by listener (proxy, admin).",
                ),
                &["listener"],
            )
            .expect("valid metric"),
        );
        let connections_open = register(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "sluice_listener_connections_open",
                    "Client connections open now, by listener (proxy, admin).",
                ),
                &["listener"],
            )
            .expect("valid metric"),
        );
        let worker_connections = register(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "sluice_proxy_worker_connections",
                    "Client connections open now on the proxy listener, by worker thread (0, 1, …): new connections go to the worker holding the fewest.",
                ),
                &["worker"],
            )
            .expect("valid metric"),
        );
        Self {
            inner: Arc::new(Families {
                registry,
                requests,
                errors,
                duration,
                overhead,
                time_to_first_byte,
                time_to_first_token,
                upstream_attempts,
                upstream_errors,
                tokens,
                cost,
                in_flight,
                stream_ends,
                breaker_state,
                quota_outcomes: QuotaOutcome::ALL
                    .map(|o| quota_decisions.with_label_values(&[o.as_str()])),
                quota_waits: ["admitted", "refused"].map(|o| quota_waits.with_label_values(&[o])),
                connections_refused,
                connections_open,
                worker_connections,
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

    /// Starts timing one request that started at `started`, inside the
    /// current `tracing` span (the request's), where the request's route,
    /// deployment and status are recorded too.
    pub fn start(&self, endpoint: &'static str, started: Instant) -> InFlight {
        self.inner.in_flight.inc();
        InFlight::new(endpoint, started)
    }

    /// Counts one upstream call; a failed one also by its error class.
    pub fn upstream_attempt(&self, provider: &str, outcome: AttemptOutcome) {
        let m = &self.inner;
        m.upstream_attempts
            .with(&[provider, outcome.as_str()], |m| m.inc());
        if let Some(class) = outcome.error_class() {
            m.upstream_errors.with(&[provider, class], |m| m.inc());
        }
    }

    /// Counts one quota decision.
    pub fn quota_decision(&self, outcome: QuotaOutcome) {
        self.inner.quota_outcomes[outcome as usize].inc();
    }

    /// Counts a request that waited for a lease round, and how it ended.
    pub fn quota_wait(&self, admitted: bool) {
        self.inner.quota_waits[usize::from(!admitted)].inc();
    }

    /// The connection figures of the listener called `name`.
    pub fn listener(&self, name: &str) -> ListenerGauges {
        ListenerGauges {
            refused: self.inner.connections_refused.with_label_values(&[name]),
            open: self.inner.connections_open.with_label_values(&[name]),
        }
    }

    /// The open connections gauge of proxy worker `index`.
    pub fn worker_connections(&self, index: usize) -> IntGauge {
        self.inner
            .worker_connections
            .with_label_values(&[&index.to_string()])
    }

    /// Publishes a breaker's state (0 closed, 1 open, 2 half-open).
    pub fn breaker_state(&self, provider: &str, model: &str, state: i64) {
        self.inner
            .breaker_state
            .with(&[provider, model], |m| m.set(state));
    }
}
