//! The OpenAI-compatible adapter and the upstream client together, against
//! the mock: auth, the non-streaming answer, and a stream decoded chunk by
//! chunk with the usage chunk the adapter asked for.

use std::time::Duration;

use futures::StreamExt;
use http::StatusCode;
use sluice_mock_llm::{MockConfig, MockServer};
use sluice_providers::openai::ChatRequest;
use sluice_providers::{
    Adapter, ClientOptions, OpenAiAdapter, StreamItem, Target, Timeouts, UpstreamClient,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    first_byte: Duration::from_secs(5),
    total: Duration::from_secs(8),
};

fn chat(stream: bool) -> ChatRequest {
    serde_json::from_value(serde_json::json!({
        "model": "mock-gpt",
        "messages": [{"role": "user", "content": "say something"}],
        "stream": stream,
    }))
    .expect("valid request")
}

async fn run(
    stream: bool,
    key: Option<&str>,
) -> Result<
    (
        StatusCode,
        Vec<StreamItem>,
        Option<sluice_providers::openai::ChatResponse>,
    ),
    Box<dyn std::error::Error>,
> {
    let config = MockConfig {
        require_api_key: Some("sk-upstream".into()),
        ..MockConfig::default()
    };
    let mock = MockServer::start(config, "127.0.0.1:0".parse()?).await?;
    let client = UpstreamClient::new(ClientOptions::default())?;
    let target = Target {
        base_url: format!("{}/v1", mock.base_url()),
        api_key: key.map(str::to_owned),
        ..Target::default()
    };
    let prepared = OpenAiAdapter.chat_request(&target, &chat(stream))?;
    let response = client.send(prepared.request, TIMEOUTS).await?;
    let status = response.status;
    if !status.is_success() || !stream {
        let body = response.body.collect(1 << 20).await?;
        let parsed = if status.is_success() {
            Some(OpenAiAdapter.parse_chat_response(&body)?)
        } else {
            None
        };
        return Ok((status, Vec::new(), parsed));
    }
    let mut decoder = OpenAiAdapter.chat_stream(0);
    let mut items = Vec::new();
    let mut body = response.body;
    while let Some(frame) = body.next().await {
        items.extend(decoder.feed(&frame?)?);
    }
    assert!(decoder.finished(), "the stream reached [DONE]");
    Ok((status, items, None))
}

#[tokio::test]
async fn non_streaming_chat_through_the_adapter() -> TestResult {
    let (status, _, response) =
        tokio::time::timeout(Duration::from_secs(10), run(false, Some("sk-upstream"))).await??;
    assert_eq!(status, StatusCode::OK);
    let response = response.expect("parsed");
    assert_eq!(response.model, "mock-gpt");
    assert!(response.usage.is_some());
    Ok(())
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_the_upstream() -> TestResult {
    let (status, _, _) =
        tokio::time::timeout(Duration::from_secs(10), run(false, Some("sk-wrong"))).await??;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn streaming_chat_through_the_adapter_carries_usage() -> TestResult {
    let (status, items, _) =
        tokio::time::timeout(Duration::from_secs(10), run(true, Some("sk-upstream"))).await??;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items.last(), Some(&StreamItem::Done));
    let chunks: Vec<_> = items
        .iter()
        .filter_map(|item| match item {
            StreamItem::Chunk(chunk) => Some(chunk),
            StreamItem::Done => None,
        })
        .collect();
    assert!(chunks
        .iter()
        .any(|c| c.choices.iter().any(|ch| ch.delta.content.is_some())));
    // Asked for by the adapter: the final usage chunk, with no choices.
    let usage = chunks.iter().rev().find_map(|c| c.usage.as_ref());
    assert!(usage.is_some_and(|u| u.completion_tokens > 0), "{chunks:?}");
    Ok(())
}
