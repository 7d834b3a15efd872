use std::sync::Arc;

use http::Version;
use sluice_core::{DataKey, Pricing, Route, State, VirtualKey};
use sluice_providers::client::ClientOptions;
use sluice_providers::Endpoint;

use super::*;
use crate::metrics::{Metrics, StreamFailure};
use crate::usage::UsageMeter;
use crate::worker::Worker;
use crate::ProxyConfig;

/// A worker with a usage meter, and the meter.
fn worker() -> (Arc<Worker>, Arc<UsageMeter>) {
    let mut worker = Worker::new(
        ProxyConfig::default(),
        Box::new(|| Arc::new(State::default())),
        DataKey::from_bytes([7; 32]),
        ClientOptions::default(),
        Metrics::default(),
    )
    .expect("a worker");
    let meter = Arc::new(UsageMeter::new(1));
    assert!(worker.set_usage(Arc::clone(&meter)));
    (Arc::new(worker), meter)
}

/// A context for a call identified as a key's on route `r`.
fn ctx(worker: &Arc<Worker>) -> RequestCtx {
    let mut ctx = RequestCtx::start(
        Arc::clone(worker),
        Endpoint::ChatCompletions,
        Version::HTTP_11,
    );
    let key = VirtualKey::new("k".into(), "sk-sluice-test-0123456789abcdef", 0);
    let route = Route {
        name: "r".into(),
        deployments: Vec::new(),
        fallbacks: Vec::new(),
        pricing: Pricing::default(),
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    ctx.identify(&key, &route);
    ctx.attempting("p", "m");
    ctx
}

/// `(status label, count)` of every `sluice_proxy_requests_total` series,
/// and the in-flight gauge.
fn requests(metrics: &Metrics) -> (Vec<(String, u64)>, String) {
    let text = metrics.encode();
    let series = text
        .lines()
        .filter(|l| l.starts_with("sluice_proxy_requests_total{"))
        .map(|l| {
            let status = l.split("status=\"").nth(1).unwrap_or("").split('"').next();
            let count = l.rsplit(' ').next().and_then(|c| c.parse().ok());
            (status.unwrap_or("").to_owned(), count.unwrap_or(0))
        })
        .collect();
    let in_flight = text
        .lines()
        .find_map(|l| l.strip_prefix("sluice_proxy_requests_in_flight "))
        .unwrap_or("")
        .to_owned();
    (series, in_flight)
}

#[test]
fn every_outcome_settles_metrics_and_usage_once() {
    let usage = Some(TokenUsage {
        prompt_tokens: 3,
        completion_tokens: 4,
    });
    let cases = [
        (
            Outcome::Answered {
                status: StatusCode::OK,
                usage,
            },
            "200",
            false,
        ),
        (
            Outcome::Answered {
                status: StatusCode::TOO_MANY_REQUESTS,
                usage: None,
            },
            "429",
            true,
        ),
        (
            Outcome::Failed {
                status: StatusCode::BAD_GATEWAY,
            },
            "502",
            true,
        ),
        (
            Outcome::Streamed {
                end: StreamEnd::Completed,
                usage,
            },
            "200",
            false,
        ),
        (
            Outcome::Streamed {
                end: StreamEnd::ClientGone,
                usage: None,
            },
            "200",
            false,
        ),
        (
            Outcome::Streamed {
                end: StreamEnd::Failed(StreamFailure::Truncated),
                usage: None,
            },
            "200",
            true,
        ),
        (Outcome::Abandoned, "499", true),
    ];
    for (outcome, status, failed) in cases {
        let (worker, meter) = worker();
        let mut ctx = ctx(&worker);
        if matches!(outcome, Outcome::Streamed { .. }) {
            ctx.first_byte(200);
        }
        ctx.finish(outcome);
        let (series, in_flight) = requests(&worker.metrics);
        assert_eq!(series, [(status.to_owned(), 1)], "{outcome:?}");
        assert_eq!(in_flight, "0", "{outcome:?}");
        let rollups = meter.drain();
        assert_eq!(rollups.len(), 1, "{outcome:?}");
        assert_eq!(rollups[0].totals.requests, 1, "{outcome:?}");
        assert_eq!(rollups[0].totals.errors, u64::from(failed), "{outcome:?}");
        assert_eq!(rollups[0].key.provider, "p");
    }
}

#[test]
fn a_context_dropped_unfinished_is_abandoned_once() {
    let (worker, meter) = worker();
    drop(ctx(&worker));
    assert_eq!(
        requests(&worker.metrics),
        (vec![("499".to_owned(), 1)], "0".to_owned())
    );
    let rollups = meter.drain();
    assert_eq!((rollups.len(), rollups[0].totals.errors), (1, 1));
}

#[test]
fn the_first_settlement_is_the_only_one() {
    let (worker, meter) = worker();
    let mut ctx = ctx(&worker);
    ctx.settle(Outcome::Failed {
        status: StatusCode::SERVICE_UNAVAILABLE,
    });
    ctx.settle(Outcome::Answered {
        status: StatusCode::OK,
        usage: None,
    });
    ctx.finish(Outcome::Abandoned);
    assert_eq!(
        requests(&worker.metrics),
        (vec![("503".to_owned(), 1)], "0".to_owned())
    );
    assert_eq!(meter.drain().len(), 1);
    assert!(meter.drain().is_empty());
}

#[test]
fn an_error_is_answered_and_settled_in_one_step() {
    let (worker, meter) = worker();
    let response = ctx(&worker).respond(Err(ProxyError::unknown_model("nope").body_unread()));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(
        requests(&worker.metrics),
        (vec![("404".to_owned(), 1)], "0".to_owned())
    );
    assert_eq!(meter.drain()[0].totals.errors, 1);
}
