//! Pacing, failure injection, stats and shutdown over real HTTP.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_mock_llm::{Behavior, Endpoint, MockConfig};
use support::{bounded, client, post, start};

/// A streaming chat request whose reply has `words + 4` content chunks.
fn long_chat(words: usize) -> Value {
    let text = vec!["word"; words].join(" ");
    json!({"model": "mock-gpt", "stream": true, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn injected_status_uses_each_api_shape_with_retry_after() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let res = post(&mock, "/v1/chat/completions", long_chat(1), &[("x-mock-status", "503")]).await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["retry-after-ms"], "1000");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");

        let req = json!({"model": "mock-claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        let res = post(&mock, "/v1/messages", req, &[("x-mock-status", "429"), ("x-mock-retry-after-ms", "2500")]).await;
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "3");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");

        let res = post(&mock, "/v1/chat/completions", long_chat(1), &[("x-mock-status", "500")]).await;
        assert_eq!(res.status(), 500);
        assert!(res.headers().get("retry-after").is_none());
    })
    .await;
}

#[tokio::test]
async fn behavior_set_on_the_handle_or_over_http_applies_and_headers_override_it() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        mock.set_behavior(Behavior {
            fail_status: Some(502),
            ..Behavior::default()
        });
        let res = post(&mock, "/v1/chat/completions", long_chat(1), &[]).await;
        assert_eq!(res.status(), 502);
        let res = post(
            &mock,
            "/v1/chat/completions",
            long_chat(1),
            &[("x-mock-status", "0")],
        )
        .await;
        assert_eq!(res.status(), 200);

        let url = format!("{}/_mock/behavior", mock.base_url());
        let res = client()
            .put(&url)
            .json(&json!({"fail_status": null, "chunk_ms": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            mock.behavior(),
            Behavior {
                chunk_ms: 1,
                ..Behavior::default()
            }
        );
        let res = client()
            .put(&url)
            .json(&json!({"chunk_millis": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "unknown fields are refused");
        let res = post(&mock, "/v1/chat/completions", long_chat(1), &[]).await;
        assert_eq!(res.status(), 200);
        let res = post(
            &mock,
            "/v1/chat/completions",
            long_chat(1),
            &[("x-mock-chunk-ms", "soon")],
        )
        .await;
        assert_eq!(res.status(), 400);
    })
    .await;
}

#[tokio::test]
async fn a_stream_dropped_mid_way_reaches_the_client_as_an_error_without_done() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let mut res = post(
            &mock,
            "/v1/chat/completions",
            long_chat(10),
            &[("x-mock-drop-after-chunks", "3")],
        )
        .await;
        assert_eq!(res.status(), 200);
        let mut received = Vec::new();
        let outcome = loop {
            match res.chunk().await {
                Ok(Some(bytes)) => received.extend_from_slice(&bytes),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert!(
            outcome.is_err(),
            "the body must end in an error, not a clean end"
        );
        let text = String::from_utf8(received).unwrap();
        assert_eq!(text.matches("data: ").count(), 3);
        assert!(!text.contains("[DONE]"));
        let stats = mock.wait_for_stats(|s| s.streams_dropped == 1).await;
        assert_eq!(stats.streams_completed, 0);
        assert_eq!(stats.streams_cancelled, 0);
    })
    .await;
}

#[tokio::test]
async fn a_non_streaming_body_dropped_reads_as_truncated() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let req = json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]});
        let res = post(
            &mock,
            "/v1/chat/completions",
            req,
            &[("x-mock-drop-after-chunks", "0")],
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(res.bytes().await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_counted_as_cancelled() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let mut res = post(
            &mock,
            "/v1/chat/completions",
            long_chat(200),
            &[("x-mock-chunk-ms", "5")],
        )
        .await;
        assert!(res.chunk().await.unwrap().is_some());
        drop(res);
        let stats = mock.wait_for_stats(|s| s.streams_cancelled == 1).await;
        assert_eq!(stats.streams_completed, 0);
        assert_eq!(stats.streams_started, 1);
        let stats = mock.wait_for_stats(|s| s.in_flight == 0).await;
        assert_eq!(stats.requests_to(Endpoint::ChatCompletions), 1);
    })
    .await;
}

#[tokio::test]
async fn paced_chunks_arrive_as_they_are_produced() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let chunk = Duration::from_millis(40);
        // 1 role + 6 words + finish + [DONE] = 9 events, so 8 paces.
        let began = Instant::now();
        let mut res = post(
            &mock,
            "/v1/chat/completions",
            long_chat(2),
            &[("x-mock-chunk-ms", "40")],
        )
        .await;
        let mut first = None;
        while let Some(_bytes) = res.chunk().await.unwrap() {
            first.get_or_insert_with(|| began.elapsed());
        }
        let total = began.elapsed();
        let first = first.unwrap();
        assert!(total >= chunk * 8, "the pace is applied: {total:?}");
        assert!(
            first + chunk * 4 < total,
            "first chunk at {first:?} came long before the end at {total:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn slow_headers_and_first_byte_delay_hold_the_response_back() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let began = Instant::now();
        let res = post(
            &mock,
            "/v1/chat/completions",
            long_chat(1),
            &[("x-mock-header-delay-ms", "100")],
        )
        .await;
        assert!(began.elapsed() >= Duration::from_millis(100));
        assert_eq!(res.status(), 200);
        res.text().await.unwrap();

        let req = json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]});
        let began = Instant::now();
        let res = post(
            &mock,
            "/v1/chat/completions",
            req,
            &[("x-mock-first-byte-ms", "100")],
        )
        .await;
        let body: Value = res.json().await.unwrap();
        assert!(began.elapsed() >= Duration::from_millis(100));
        assert_eq!(body["object"], "chat.completion");
    })
    .await;
}

#[tokio::test]
async fn stats_count_requests_by_endpoint_over_http() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        post(&mock, "/v1/chat/completions", long_chat(1), &[])
            .await
            .text()
            .await
            .unwrap();
        post(
            &mock,
            "/v1/embeddings",
            json!({"model": "mock-embed", "input": "x"}),
            &[],
        )
        .await
        .text()
        .await
        .unwrap();
        post(
            &mock,
            "/v1/embeddings",
            json!({"model": "nope", "input": "x"}),
            &[],
        )
        .await
        .text()
        .await
        .unwrap();
        let stats: Value = client()
            .get(format!("{}/_mock/stats", mock.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats["requests"]["/v1/chat/completions"], 1);
        assert_eq!(stats["requests"]["/v1/embeddings"], 2);
        assert_eq!(stats["requests"]["/v1/messages"], 0);
        let local = mock
            .wait_for_stats(|s| s.streams_completed == 1 && s.in_flight == 0)
            .await;
        assert_eq!(local.streams_cancelled, 0);
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish() {
    bounded(async {
        let mock = start(MockConfig::default()).await;
        let mut res = post(
            &mock,
            "/v1/chat/completions",
            long_chat(5),
            &[("x-mock-chunk-ms", "10")],
        )
        .await;
        let mut body = res.chunk().await.unwrap().unwrap().to_vec();
        let reader = async {
            while let Some(bytes) = res.chunk().await.unwrap() {
                body.extend_from_slice(&bytes);
            }
        };
        let addr = mock.addr();
        let (_, stopped) = tokio::join!(reader, mock.shutdown());
        stopped.unwrap();
        assert!(String::from_utf8(body)
            .unwrap()
            .ends_with("data: [DONE]\n\n"));
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    })
    .await;
}
