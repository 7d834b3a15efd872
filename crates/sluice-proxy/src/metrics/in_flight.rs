//! [`InFlight`]: one request being answered.

use std::time::{Duration, Instant};

use sluice_core::{Pricing, Route};
use sluice_providers::TokenUsage;
use tracing::Span;

use super::Metrics;

/// How a streamed answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    Completed,
    /// The client went away before the end.
    ClientGone,
    /// The upstream failed mid-stream; the client got an error event.
    Failed(StreamFailure),
}

/// How an upstream stream failed after its answer had started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFailure {
    /// The upstream sent an error event.
    ErrorEvent,
    /// It ended before its end marker.
    Truncated,
    /// It sent something that is not its API.
    Unreadable,
    /// It timed out.
    Timeout,
    /// Its connection failed.
    Failed,
}

impl StreamFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamFailure::ErrorEvent => "upstream_error_event",
            StreamFailure::Truncated => "upstream_truncated",
            StreamFailure::Unreadable => "upstream_unreadable",
            StreamFailure::Timeout => "upstream_timeout",
            StreamFailure::Failed => "upstream_failed",
        }
    }
}

/// One request being answered. Records itself when finished (the request
/// context finishes it exactly once: a request whose client went away
/// before its answer is [abandoned](InFlight::abandon), status 499).
///
/// It also fills in the request's `tracing` span (the one current when it
/// was started): `endpoint`, `route`, `deployment` and `status`.
pub struct InFlight {
    endpoint: &'static str,
    route: String,
    /// `provider/model` of the deployment last tried.
    deployment: String,
    pricing: Pricing,
    started: Instant,
    upstream_wait: Duration,
    status: u16,
    first_token: bool,
    /// Set when a stream failed after it started: the status stays 200.
    stream_failed: bool,
    span: Span,
}

impl InFlight {
    pub(super) fn new(endpoint: &'static str, started: Instant) -> Self {
        let span = Span::current();
        span.record("endpoint", endpoint);
        Self {
            endpoint,
            route: String::new(),
            deployment: String::new(),
            pricing: Pricing::default(),
            started,
            upstream_wait: Duration::ZERO,
            status: 0,
            first_token: false,
            stream_failed: false,
            span,
        }
    }

    /// The route the request resolved to (its pricing prices the usage).
    pub fn set_route(&mut self, route: &Route) {
        route.name.clone_into(&mut self.route);
        self.pricing = route.pricing;
        self.span.record("route", route.name.as_str());
    }

    /// The deployment an upstream attempt goes to; the last one set is the
    /// one that answered.
    pub fn set_deployment(&mut self, provider: &str, model: &str) {
        self.deployment.clear();
        self.deployment.push_str(provider);
        self.deployment.push('/');
        self.deployment.push_str(model);
        self.span.record("deployment", self.deployment.as_str());
    }

    /// The request's span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Adds time spent waiting on an upstream.
    pub fn add_upstream_wait(&mut self, wait: Duration) {
        self.upstream_wait += wait;
    }

    /// The answer starts going out now with `status`: records the time to
    /// first byte and the gateway's overhead.
    pub fn first_byte(&mut self, metrics: &Metrics, status: u16) {
        self.status = status;
        let elapsed = self.started.elapsed();
        let m = &metrics.inner;
        m.time_to_first_byte
            .with(&[self.endpoint, &self.route], |m| {
                m.observe(elapsed.as_secs_f64())
            });
        m.overhead
            .observe(elapsed.saturating_sub(self.upstream_wait).as_secs_f64());
    }

    /// A stream's first event goes to the client now (recorded once).
    pub fn first_token(&mut self, metrics: &Metrics) {
        if std::mem::replace(&mut self.first_token, true) {
            return;
        }
        metrics
            .inner
            .time_to_first_token
            .with(&[self.endpoint, &self.route], |m| {
                m.observe(self.started.elapsed().as_secs_f64())
            });
    }

    /// A whole answer has gone out.
    pub fn finish(mut self, metrics: &Metrics, status: u16, usage: Option<TokenUsage>) {
        self.status = status;
        self.record(metrics, usage);
    }

    /// A streamed answer ended.
    pub fn finish_stream(mut self, metrics: &Metrics, end: StreamEnd, usage: Option<TokenUsage>) {
        let outcome = match end {
            StreamEnd::Completed => "completed",
            StreamEnd::ClientGone => "client_gone",
            StreamEnd::Failed(failure) => {
                self.stream_failed = true;
                failure.as_str()
            }
        };
        self.span.record("stream_end", outcome);
        metrics.inner.stream_ends.with(&[outcome], |m| m.inc());
        self.record(metrics, usage);
    }

    /// The client went away before the answer started: counted with
    /// status 499.
    pub fn abandon(self, metrics: &Metrics) {
        self.record(metrics, None);
    }

    fn record(self, metrics: &Metrics, usage: Option<TokenUsage>) {
        let m = &metrics.inner;
        m.in_flight.dec();
        let status = if self.status == 0 { 499 } else { self.status };
        self.span.record("status", status);
        let owned;
        let status_label = match STATUS_DIGITS.binary_search_by_key(&status, |(code, _)| *code) {
            Ok(i) => STATUS_DIGITS[i].1,
            Err(_) => {
                owned = status.to_string();
                owned.as_str()
            }
        };
        let (endpoint, route, deployment) = (self.endpoint, &*self.route, &*self.deployment);
        m.requests
            .with(&[endpoint, route, deployment, status_label], |m| m.inc());
        if let Some(class) = error_class(status, self.stream_failed) {
            m.errors
                .with(&[endpoint, route, deployment, class], |m| m.inc());
        }
        m.duration.with(&[endpoint, route, deployment], |m| {
            m.observe(self.started.elapsed().as_secs_f64())
        });
        if let Some(usage) = usage {
            m.tokens
                .with(&[route, "prompt"], |m| m.inc_by(usage.prompt_tokens));
            m.tokens.with(&[route, "completion"], |m| {
                m.inc_by(usage.completion_tokens)
            });
            m.cost.with(&[route], |m| {
                m.inc_by(
                    self.pricing
                        .cost_micro_usd(usage.prompt_tokens, usage.completion_tokens),
                )
            });
        }
    }
}

/// The `sluice_proxy_errors_total` class of an answer (`None`: no error).
fn error_class(status: u16, stream_failed: bool) -> Option<&'static str> {
    Some(match status {
        _ if stream_failed => "stream_failed",
        429 => "rate_limited",
        499 => "client_gone",
        400..=498 => "client_error",
        500.. => "server_error",
        _ => return None,
    })
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
