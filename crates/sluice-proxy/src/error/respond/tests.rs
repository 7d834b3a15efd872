use super::*;
use crate::error::UpstreamAnswer;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sluice_core::quota::Unit;

/// The answer's status, its headers as (name, value) pairs in name order,
/// and its body as JSON.
fn answer(
    error: ProxyError,
    dialect: Dialect,
    version: Version,
) -> (u16, Vec<(String, String)>, Value) {
    let response = respond(error, dialect, version);
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let body = futures::executor::block_on(response.into_body().collect())
        .unwrap()
        .to_bytes();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    out.sort();
    out
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn openai_format_has_all_four_fields() {
    let (status, headers, body) = answer(
        ProxyError::unknown_model("gpt-x"),
        Dialect::OpenAi,
        Version::HTTP_11,
    );
    assert_eq!(status, 404);
    assert_eq!(headers, pairs(&[JSON]));
    assert_eq!(
        body,
        json!({"error": {
            "message": "The model `gpt-x` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }})
    );
}

#[test]
fn anthropic_format_uses_its_types() {
    let cases = [
        (
            ProxyError::invalid_request("m", None),
            400,
            "invalid_request_error",
        ),
        (
            ProxyError::unauthenticated("m"),
            401,
            "authentication_error",
        ),
        (ProxyError::model_not_allowed("r"), 403, "permission_error"),
        (ProxyError::unknown_model("r"), 404, "not_found_error"),
        (ProxyError::body_too_large(1), 413, "request_too_large"),
        (
            ProxyError::rate_limited("m".into(), Unit::Tokens, Duration::from_secs(1)),
            429,
            "rate_limit_error",
        ),
        (
            ProxyError::upstream_failed(std::io::Error::other("reset")),
            502,
            "api_error",
        ),
        (
            ProxyError::no_healthy_deployment("r", Duration::from_secs(1)),
            503,
            "overloaded_error",
        ),
    ];
    for (error, want_status, want_type) in cases {
        let (status, _, body) = answer(error, Dialect::Anthropic, Version::HTTP_11);
        assert_eq!(status, want_status);
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], want_type, "status {status}");
        assert!(body["error"].get("code").is_none());
    }
}

#[test]
fn retry_after_is_sent_in_both_forms() {
    let (status, headers, body) = answer(
        ProxyError::no_healthy_deployment("r", Duration::from_millis(1500)),
        Dialect::OpenAi,
        Version::HTTP_11,
    );
    assert_eq!(status, 503);
    assert_eq!(
        headers,
        pairs(&[JSON, ("retry-after", "2"), ("retry-after-ms", "1500")])
    );
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(
        body["error"]["message"],
        "Every deployment of `r` is failing; retry later."
    );
}

#[test]
fn quota_refusals_say_whether_waiting_helps() {
    let (status, headers, body) = answer(
        ProxyError::rate_limited(
            "slow down".into(),
            Unit::Requests,
            Duration::from_millis(20),
        ),
        Dialect::OpenAi,
        Version::HTTP_11,
    );
    assert_eq!(status, 429);
    assert_eq!(
        headers,
        pairs(&[JSON, ("retry-after", "1"), ("retry-after-ms", "20")])
    );
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    let (status, headers, body) = answer(
        ProxyError::budget_spent("spent".into(), Duration::from_secs(3600)),
        Dialect::OpenAi,
        Version::HTTP_11,
    );
    assert_eq!(status, 429);
    assert_eq!(
        headers,
        pairs(&[
            JSON,
            ("retry-after", "3600"),
            ("retry-after-ms", "3600000"),
            ("x-should-retry", "false"),
        ])
    );
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(body["error"]["code"], "insufficient_quota");

    let (status, headers, body) = answer(
        ProxyError::over_limit("too big".into(), Unit::Tokens),
        Dialect::OpenAi,
        Version::HTTP_11,
    );
    assert_eq!(status, 429);
    assert_eq!(headers, pairs(&[JSON, ("x-should-retry", "false")]));
    assert_eq!(body["error"]["type"], "tokens");

    let (status, headers, body) = answer(
        ProxyError::quota_unavailable("no quorum".into(), Duration::from_millis(250)),
        Dialect::OpenAi,
        Version::HTTP_11,
    );
    assert_eq!(status, 503);
    assert_eq!(
        headers,
        pairs(&[JSON, ("retry-after", "1"), ("retry-after-ms", "250")])
    );
    assert_eq!(body["error"]["code"], "quota_unavailable");
}

#[test]
fn an_unread_body_closes_an_http1_connection_only() {
    let error = || ProxyError::unauthenticated("no key").body_unread();
    let (status, headers, body) = answer(error(), Dialect::OpenAi, Version::HTTP_11);
    assert_eq!(status, 401);
    assert_eq!(headers, pairs(&[JSON, ("connection", "close")]));
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let (_, headers, _) = answer(error(), Dialect::OpenAi, Version::HTTP_2);
    assert_eq!(headers, pairs(&[JSON]));
    let (_, headers, _) = answer(
        ProxyError::unauthenticated("no key"),
        Dialect::OpenAi,
        Version::HTTP_11,
    );
    assert_eq!(headers, pairs(&[JSON]));
}

#[test]
fn gateway_errors_read_as_before() {
    let cases = [
        (
            ProxyError::method_not_allowed(&Method::GET, "/v1/chat/completions"),
            405,
            json!({"error": {"message": "GET is not allowed on /v1/chat/completions.", "type": "invalid_request_error", "param": null, "code": "method_not_allowed"}}),
        ),
        (
            ProxyError::unknown_url(&Method::GET, "/v1/nothing"),
            404,
            json!({"error": {"message": "Unknown request URL: GET /v1/nothing. Please check the URL for typos.", "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
        ),
        (
            ProxyError::body_timeout(Duration::from_secs(60)),
            408,
            json!({"error": {"message": "The request body did not arrive within 60 s.", "type": "invalid_request_error", "param": null, "code": null}}),
        ),
        (
            ProxyError::body_too_large(1024),
            413,
            json!({"error": {"message": "The request body is larger than the limit of 1024 bytes.", "type": "invalid_request_error", "param": null, "code": "request_too_large"}}),
        ),
        (
            ProxyError::model_not_allowed("r"),
            403,
            json!({"error": {"message": "This API key is not allowed to use the model `r`.", "type": "invalid_request_error", "param": "model", "code": "model_not_allowed"}}),
        ),
        (
            ProxyError::cannot_serve("r", "embeddings"),
            400,
            json!({"error": {"message": "The model `r` cannot serve embeddings.", "type": "invalid_request_error", "param": "model", "code": null}}),
        ),
        (
            ProxyError::upstream_timeout(std::io::Error::other("no head in 5s")),
            504,
            json!({"error": {"message": "The upstream model API failed: no head in 5s", "type": "server_error", "param": null, "code": "upstream_timeout"}}),
        ),
    ];
    for (error, want_status, want_body) in cases {
        let retries = error.retry() != Retry::Futile;
        let (status, headers, body) = answer(error, Dialect::OpenAi, Version::HTTP_11);
        assert_eq!((status, body), (want_status, want_body));
        let want_headers = if retries {
            pairs(&[JSON, ("retry-after", "1"), ("retry-after-ms", "1000")])
        } else {
            pairs(&[JSON])
        };
        assert_eq!(headers, want_headers, "{status}");
    }
}

fn upstream(
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: &'static str,
    dialect: Dialect,
) -> ProxyError {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, HeaderValue::from_static(value));
    }
    ProxyError::upstream_answer(UpstreamAnswer::new(
        StatusCode::from_u16(status).unwrap(),
        &map,
        Bytes::from_static(body.as_bytes()),
        dialect,
    ))
}

#[test]
fn upstream_auth_failures_become_bad_gateway() {
    let error = upstream(
        401,
        &[],
        r#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        Dialect::OpenAi,
    );
    assert_eq!(error.fault(), crate::error::Fault::Gateway);
    let (status, headers, body) = answer(error, Dialect::OpenAi, Version::HTTP_11);
    assert_eq!(status, 502);
    assert_eq!(
        headers,
        pairs(&[JSON, ("retry-after", "1"), ("retry-after-ms", "1000")])
    );
    assert_eq!(
        body,
        json!({"error": {"message": "The upstream model API answered 401 Unauthorized: Incorrect API key", "type": "server_error", "param": null, "code": null}})
    );
}

#[test]
fn same_dialect_errors_pass_through_and_others_are_rewrapped() {
    let anthropic_body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#;
    let error = || upstream(400, &[("x-other", "1")], anthropic_body, Dialect::Anthropic);
    assert_eq!(error().fault(), crate::error::Fault::Client);
    let response = respond(error(), Dialect::Anthropic, Version::HTTP_11);
    let body = futures::executor::block_on(response.into_body().collect())
        .unwrap()
        .to_bytes();
    assert_eq!(body, anthropic_body.as_bytes());
    let (status, headers, body) = answer(error(), Dialect::OpenAi, Version::HTTP_11);
    assert_eq!(status, 400);
    assert_eq!(headers, pairs(&[JSON]), "only the retry headers pass");
    assert_eq!(
        body,
        json!({"error": {"message": "The upstream model API answered 400 Bad Request: max_tokens: too big", "type": "invalid_request_error", "param": null, "code": null}})
    );
}

#[test]
fn an_upstream_rate_limit_keeps_its_own_retry_headers() {
    let error = upstream(
        429,
        &[("retry-after-ms", "250"), ("x-should-retry", "true")],
        r#"{"error":{"message":"busy","type":"rate_limit_exceeded","param":null,"code":null}}"#,
        Dialect::OpenAi,
    );
    assert_eq!(error.retry(), Retry::After(Duration::from_millis(250)));
    let (status, headers, body) = answer(error, Dialect::OpenAi, Version::HTTP_11);
    assert_eq!(status, 429);
    assert_eq!(
        headers,
        pairs(&[JSON, ("retry-after-ms", "250"), ("x-should-retry", "true")])
    );
    assert_eq!(body["error"]["message"], "busy");
    // Unreadable: the default wait, in both forms.
    let (_, headers, _) = answer(
        upstream(503, &[("retry-after", "soon")], "oops", Dialect::OpenAi),
        Dialect::Anthropic,
        Version::HTTP_11,
    );
    assert_eq!(
        headers,
        pairs(&[JSON, ("retry-after", "1"), ("retry-after-ms", "1000")])
    );
}
