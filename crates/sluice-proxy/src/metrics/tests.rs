use std::time::Instant;

use super::*;
use sluice_core::{Pricing, Route};
use sluice_providers::TokenUsage;

fn route(name: &str) -> Route {
    Route {
        name: name.into(),
        deployments: Vec::new(),
        fallbacks: Vec::new(),
        pricing: Pricing {
            prompt_micro_usd_per_mtok: 2_000_000,
            completion_micro_usd_per_mtok: 8_000_000,
        },
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

#[test]
fn a_request_is_counted_once_with_its_tokens_and_cost() {
    let metrics = Metrics::default();
    let mut req = metrics.start("chat_completions", Instant::now());
    req.set_route(&route("gpt"));
    req.set_deployment("openai", "gpt-4o");
    req.first_byte(&metrics, 200);
    req.finish(
        &metrics,
        200,
        Some(TokenUsage {
            prompt_tokens: 3,
            completion_tokens: 5,
        }),
    );
    let text = metrics.encode();
    assert!(text.contains(
        r#"sluice_proxy_requests_total{deployment="openai/gpt-4o",endpoint="chat_completions",route="gpt",status="200"} 1"#
    ), "{text}");
    assert!(text.contains(r#"sluice_proxy_tokens_total{kind="completion",route="gpt"} 5"#));
    // 3 * 2 + 5 * 8 = 46 micro-USD.
    assert!(text.contains(r#"sluice_proxy_cost_micro_usd_total{route="gpt"} 46"#));
    assert!(text.contains("sluice_proxy_requests_in_flight 0"));
    assert!(text.contains("sluice_proxy_overhead_seconds_count 1"));
    assert!(!text.contains("sluice_proxy_errors_total{"), "{text}");
}

#[test]
fn an_abandoned_request_counts_as_client_closed() {
    let metrics = Metrics::default();
    metrics
        .start("embeddings", Instant::now())
        .abandon(&metrics);
    let text = metrics.encode();
    assert!(text.contains(
        r#"sluice_proxy_requests_total{deployment="",endpoint="embeddings",route="",status="499"} 1"#
    ));
    assert!(text.contains(
        r#"sluice_proxy_errors_total{class="client_gone",deployment="",endpoint="embeddings",route=""} 1"#
    ));
}

#[test]
fn errors_are_counted_by_class() {
    let metrics = Metrics::default();
    for status in [401, 429, 502, 503] {
        metrics
            .start("chat_completions", Instant::now())
            .finish(&metrics, status, None);
    }
    let mut stream = metrics.start("chat_completions", Instant::now());
    stream.first_byte(&metrics, 200);
    stream.first_token(&metrics);
    stream.first_token(&metrics);
    stream.finish_stream(&metrics, StreamEnd::Failed(StreamFailure::Truncated), None);
    let text = metrics.encode();
    let count = |class: &str| {
        let series = format!(
            r#"sluice_proxy_errors_total{{class="{class}",deployment="",endpoint="chat_completions",route=""}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map(|v| v.to_string())
    };
    assert_eq!(count("client_error").as_deref(), Some("1"));
    assert_eq!(count("rate_limited").as_deref(), Some("1"));
    assert_eq!(count("server_error").as_deref(), Some("2"));
    assert_eq!(count("stream_failed").as_deref(), Some("1"));
    assert!(text.contains(
        r#"sluice_proxy_time_to_first_token_seconds_count{endpoint="chat_completions",route=""} 1"#
    ));
}

#[test]
fn failed_upstream_attempts_are_counted_by_class() {
    let metrics = Metrics::default();
    for outcome in [
        AttemptOutcome::Ok,
        AttemptOutcome::Timeout,
        AttemptOutcome::ServerError,
        AttemptOutcome::ServerError,
        AttemptOutcome::RateLimited,
    ] {
        metrics.upstream_attempt("p", outcome);
    }
    let text = metrics.encode();
    assert!(text.contains(r#"sluice_proxy_upstream_errors_total{class="http_5xx",provider="p"} 2"#));
    assert!(text.contains(r#"sluice_proxy_upstream_errors_total{class="timeout",provider="p"} 1"#));
    assert!(text.contains(r#"sluice_proxy_upstream_errors_total{class="http_429",provider="p"} 1"#));
    assert!(text.contains(r#"sluice_proxy_upstream_attempts_total{outcome="ok",provider="p"} 1"#));
}
