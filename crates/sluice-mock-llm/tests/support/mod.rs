//! Shared by the integration tests: a mock on 127.0.0.1:0, a client, and an
//! SSE parser that checks the framing as it goes.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use sluice_mock_llm::{MockConfig, MockHandle, MockServer};

/// Every test body runs under this bound.
pub const BOUND: Duration = Duration::from_secs(10);

pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test exceeded its bound")
}

pub async fn start(config: MockConfig) -> MockHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    MockServer::start(config, addr).await.expect("mock binds")
}

/// `GET url`, answered as `(status, JSON body or null)`.
pub async fn get_json(url: &str) -> (u16, Value) {
    let res = client().get(url).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(BOUND).build().unwrap()
}

pub async fn post(
    mock: &MockHandle,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}{path}", mock.base_url()))
        .json(&body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("request sent")
}

/// One server-sent event: its `event:` name, if any, and its `data:`.
#[derive(Debug)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// Splits a complete SSE body, asserting that every event ends with a blank
/// line and consists only of `event:` and `data:` lines.
pub fn events(body: &str) -> Vec<Event> {
    assert!(
        body.ends_with("\n\n"),
        "body must end with a blank line: {body:?}"
    );
    body.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "one data line per event: {block:?}");
                    data = Some(d.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            Event {
                name,
                data: data.expect("every event has data"),
            }
        })
        .collect()
}
