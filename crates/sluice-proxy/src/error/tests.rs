use std::error::Error as _;

use super::*;

#[test]
fn each_error_says_whose_fault_it_is_and_whether_to_retry() {
    let cases = [
        (
            ProxyError::invalid_request("m", None),
            Fault::Client,
            Retry::Futile,
        ),
        (
            ProxyError::unauthenticated("m"),
            Fault::Client,
            Retry::Futile,
        ),
        (
            ProxyError::rate_limited("m".into(), Unit::Requests, Duration::from_millis(5)),
            Fault::Client,
            Retry::After(Duration::from_millis(5)),
        ),
        (
            ProxyError::over_limit("m".into(), Unit::Tokens),
            Fault::Client,
            Retry::Never { renews_in: None },
        ),
        (
            ProxyError::quota_unavailable("m".into(), Duration::from_millis(5)),
            Fault::Gateway,
            Retry::After(Duration::from_millis(5)),
        ),
        (
            ProxyError::upstream_failed(std::io::Error::other("reset")),
            Fault::Upstream,
            Retry::After(DEFAULT_RETRY_AFTER),
        ),
    ];
    for (error, fault, retry) in cases {
        assert_eq!(error.fault(), fault, "{:?}", error.kind());
        assert_eq!(error.retry(), retry, "{:?}", error.kind());
        assert_eq!(error.connection(), Connection::Reusable);
    }
}

#[test]
fn an_upstream_failure_names_its_provider_and_deployment() {
    let cause = std::io::Error::other("connection refused");
    let error = ProxyError::upstream_failed(cause).at_deployment("dead", "mock-gpt");
    assert_eq!(
        error.to_string(),
        "The upstream model API failed: provider `dead`, deployment `mock-gpt`: connection refused"
    );
    assert!(error.source().is_some(), "the cause is kept");
    let timeout = ProxyError::upstream_timeout(std::io::Error::other("no head in 5s"))
        .at_deployment("slow", "gpt-4o");
    assert!(timeout
        .to_string()
        .contains("provider `slow`, deployment `gpt-4o`"));
}

#[test]
fn an_upstream_failure_keeps_its_cause() {
    let cause = std::io::Error::other("connection reset by peer");
    let error = ProxyError::upstream_failed(cause);
    assert_eq!(error.kind(), ErrorKind::UpstreamFailed);
    assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        error.to_string(),
        "The upstream model API failed: connection reset by peer"
    );
    let source = error.source().expect("the cause is kept");
    assert_eq!(source.to_string(), "connection reset by peer");
}

#[test]
fn kinds_are_payload_free_labels() {
    let error = ProxyError::unknown_model("secret-project-model");
    assert_eq!(error.kind().as_str(), "unknown_model");
    assert!(!format!("{:?}", error.kind()).contains("secret"));
}
