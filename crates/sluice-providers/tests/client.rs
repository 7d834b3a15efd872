//! The upstream client against the in-process mock: plain and streamed
//! chat, each timeout, connect failures and connection reuse.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use sluice_mock_llm::{Endpoint, MockConfig, MockHandle, MockServer};
use sluice_providers::openai::{ChatChunk, ChatResponse};
use sluice_providers::{ClientOptions, SseParser, Timeouts, UpstreamClient, UpstreamError};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Every test is bounded by this, whatever the client does.
const TEST_LIMIT: Duration = Duration::from_secs(10);

const GENEROUS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    first_byte: Duration::from_secs(5),
    total: Duration::from_secs(8),
};

async fn mock() -> Result<MockHandle, Box<dyn std::error::Error>> {
    Ok(MockServer::start(MockConfig::default(), "127.0.0.1:0".parse()?).await?)
}

fn client() -> UpstreamClient {
    UpstreamClient::new(ClientOptions::default()).expect("client builds")
}

fn chat(mock: &MockHandle, stream: bool, headers: &[(&str, &str)]) -> Request<Bytes> {
    let body = serde_json::json!({
        "model": "mock-gpt",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": stream,
    });
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/v1/chat/completions", mock.base_url()))
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Bytes::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

async fn bounded<F: std::future::Future<Output = TestResult>>(f: F) -> TestResult {
    tokio::time::timeout(TEST_LIMIT, f).await?
}

#[tokio::test]
async fn non_streaming_chat_round_trips() -> TestResult {
    bounded(async {
        let mock = mock().await?;
        let client = client();
        let response = client.send(chat(&mock, false, &[]), GENEROUS).await?;
        assert_eq!(response.status, StatusCode::OK);
        let body = response.body.collect(1 << 20).await?;
        let chat: ChatResponse = serde_json::from_slice(&body)?;
        assert_eq!(chat.model, "mock-gpt");
        assert_eq!(chat.choices.len(), 1);
        assert!(chat.usage.is_some_and(|u| u.completion_tokens > 0));
        assert_eq!(mock.stats().requests_to(Endpoint::ChatCompletions), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn streaming_chat_is_read_frame_by_frame() -> TestResult {
    bounded(async {
        let mock = mock().await?;
        let client = client();
        // Paced so each event arrives in its own frame.
        let response = client
            .send(chat(&mock, true, &[("x-mock-chunk-ms", "20")]), GENEROUS)
            .await?;
        assert_eq!(response.status, StatusCode::OK);
        let content_type = response.headers.get("content-type").unwrap().to_str()?;
        assert!(content_type.starts_with("text/event-stream"));
        let mut body = response.body;
        let mut parser = SseParser::new();
        let mut frames = 0;
        let mut chunks = Vec::new();
        let mut done = false;
        while let Some(frame) = body.next().await {
            let frame = frame?;
            frames += 1;
            for event in parser.feed(&frame)? {
                if event.data == "[DONE]" {
                    done = true;
                } else {
                    chunks.push(serde_json::from_str::<ChatChunk>(&event.data)?);
                }
            }
        }
        assert!(done, "the stream ends with [DONE]");
        assert!(frames > 1, "events arrive as separate frames, got {frames}");
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.model == "mock-gpt"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn slow_headers_are_a_retry_safe_first_byte_timeout() -> TestResult {
    bounded(async {
        let mock = mock().await?;
        let client = client();
        let timeouts = Timeouts {
            first_byte: Duration::from_millis(200),
            ..GENEROUS
        };
        let err = client
            .send(
                chat(&mock, false, &[("x-mock-header-delay-ms", "5000")]),
                timeouts,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, UpstreamError::FirstByteTimeout(d) if d == Duration::from_millis(200)),
            "{err:?}"
        );
        assert!(err.retry_safe());
        assert!(err.is_timeout());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn total_timeout_before_the_head_is_reported_as_total() -> TestResult {
    bounded(async {
        let mock = mock().await?;
        let client = client();
        let timeouts = Timeouts {
            first_byte: Duration::from_secs(5),
            total: Duration::from_millis(200),
            ..GENEROUS
        };
        let err = client
            .send(
                chat(&mock, false, &[("x-mock-header-delay-ms", "5000")]),
                timeouts,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                UpstreamError::TotalTimeout {
                    received: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.retry_safe());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn total_timeout_cuts_a_paced_stream() -> TestResult {
    bounded(async {
        let mock = mock().await?;
        let client = client();
        let timeouts = Timeouts {
            total: Duration::from_millis(600),
            ..GENEROUS
        };
        // 300 ms between events: the head and the first events come in time,
        // the whole stream cannot.
        let response = client
            .send(chat(&mock, true, &[("x-mock-chunk-ms", "300")]), timeouts)
            .await?;
        assert_eq!(response.status, StatusCode::OK);
        let mut body = response.body;
        let mut received = 0;
        let err = loop {
            match body.next().await {
                Some(Ok(frame)) => received += frame.len(),
                Some(Err(err)) => break err,
                None => panic!("the stream ended cleanly instead of timing out"),
            }
        };
        assert!(
            received > 0,
            "some of the stream arrived before the deadline"
        );
        assert!(
            matches!(err, UpstreamError::TotalTimeout { received: true, .. }),
            "{err:?}"
        );
        assert!(!err.retry_safe());
        assert!(
            body.next().await.is_none(),
            "the stream ends after the error"
        );
        // The abandoned stream is seen as cancelled by the upstream.
        let stats = mock.wait_for_stats(|s| s.streams_cancelled == 1).await;
        assert_eq!(stats.streams_completed, 0);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_closed_port_is_a_retry_safe_connect_error() -> TestResult {
    bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        drop(listener);
        let client = client();
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}/v1/chat/completions"))
            .body(Bytes::from_static(b"{}"))?;
        let err = client.send(request, GENEROUS).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Connect { .. }), "{err:?}");
        assert!(err.retry_safe());
        assert!(!err.received());
        assert_eq!(client.connections_opened(), 0);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() -> TestResult {
    bounded(async {
        let mock = mock().await?;
        let client = client();
        for _ in 0..2 {
            let response = client.send(chat(&mock, false, &[]), GENEROUS).await?;
            assert_eq!(response.status, StatusCode::OK);
            response.body.collect(1 << 20).await?;
        }
        let stream = client.send(chat(&mock, true, &[]), GENEROUS).await?;
        // Many frames, gathered whole and in order.
        let events = stream.body.collect(1 << 20).await?;
        let events = std::str::from_utf8(&events)?;
        assert!(events.starts_with("data: {"), "{events}");
        assert!(events.ends_with("data: [DONE]\n\n"), "{events}");
        assert!(events.matches("data: ").count() > 2, "{events}");
        assert_eq!(mock.stats().requests_to(Endpoint::ChatCompletions), 3);
        assert_eq!(client.connections_opened(), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn collect_refuses_an_oversized_body() -> TestResult {
    bounded(async {
        let mock = mock().await?;
        let client = client();
        let response = client.send(chat(&mock, false, &[]), GENEROUS).await?;
        let err = response.body.collect(8).await.unwrap_err();
        assert!(matches!(err, UpstreamError::BodyTooLarge(8)), "{err:?}");
        Ok(())
    })
    .await
}
