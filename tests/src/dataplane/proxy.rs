//! A blocking client for one node's proxy: whole answers as [`Reply`],
//! streamed ones as [`SseStream`].

use super::sse::SseStream;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Per-request timeout of the proxy client: no test waits on a hung proxy.
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

/// A blocking client for one node's proxy, sending a virtual key as
/// `Authorization: Bearer`.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    base: String,
    key: Option<String>,
    http: Client,
}

/// A whole answer. `status` 0: no HTTP answer (then `text` says why).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body parsed as JSON, `Null` when it is not JSON.
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks the OpenAI error shape (`{"error": {"message", "type",
    /// "param", "code"}}`) and returns the error object.
    pub fn openai_error(&self) -> &Value {
        let error = &self.body["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty())
                && error["type"].is_string()
                && error.get("param").is_some()
                && error.get("code").is_some(),
            "status {}: not an OpenAI error body: {}",
            self.status,
            self.text
        );
        error
    }

    /// Checks the Anthropic error shape (`{"type": "error", "error":
    /// {"type", "message"}}`) and returns the error's `type`.
    pub fn anthropic_error_type(&self) -> &str {
        assert_eq!(
            self.body["type"], "error",
            "status {}: not an Anthropic error body: {}",
            self.status, self.text
        );
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "status {}: Anthropic error without a message: {}",
            self.status,
            self.text
        );
        self.body["error"]["type"]
            .as_str()
            .unwrap_or_else(|| panic!("Anthropic error without a type: {}", self.text))
    }
}

impl ProxyClient {
    /// A client for `base` (`http://127.0.0.1:PORT`) sending `key`.
    pub fn new(base: impl Into<String>, key: Option<&str>) -> ProxyClient {
        let http = Client::builder()
            .timeout(PROXY_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("building the HTTP client");
        ProxyClient {
            base: base.into().trim_end_matches('/').to_string(),
            key: key.map(str::to_string),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The same proxy with another key (`None`: no key at all).
    pub fn with_key(&self, key: Option<&str>) -> ProxyClient {
        ProxyClient {
            key: key.map(str::to_string),
            ..self.clone()
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path))
    }

    /// GET with extra headers (e.g. `anthropic-version`).
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(with_headers(self.request(Method::GET, path), headers))
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path).json(body))
    }

    /// POST `body` verbatim as `application/json` (for malformed bodies).
    pub fn post_raw(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.send(
            self.request(Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.into()),
        )
    }

    /// POST `body` as `application/json` with chunked transfer encoding
    /// (no `content-length`).
    pub fn post_chunked(&self, path: &str, body: Vec<u8>) -> Reply {
        let body = reqwest::blocking::Body::new(std::io::Cursor::new(body));
        self.send(
            self.request(Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )
    }

    /// [`ProxyClient::post_raw`] with extra headers.
    pub fn post_raw_with(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let request = self
            .request(Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.into());
        self.send(with_headers(request, headers))
    }

    /// POST with extra headers (e.g. `x-api-key`, `anthropic-version`).
    pub fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.send(with_headers(
            self.request(Method::POST, path).json(body),
            headers,
        ))
    }

    /// POSTs `body` and returns the answer's events as they come. A
    /// connection failure panics.
    pub fn stream(&self, path: &str, body: &Value) -> SseStream {
        self.stream_with(path, body, &[])
    }

    /// [`ProxyClient::stream`] with extra headers.
    pub fn stream_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> SseStream {
        let started = Instant::now();
        let response = with_headers(self.request(Method::POST, path).json(body), headers)
            .send()
            .unwrap_or_else(|e| panic!("POST {}{path}: no answer: {e}", self.base));
        SseStream::new(response, started)
    }

    /// [`ProxyClient::stream`] for callers that count failures: no answer
    /// is an `Err` saying why, not a panic.
    pub fn try_stream(&self, path: &str, body: &Value) -> Result<SseStream, String> {
        let started = Instant::now();
        self.request(Method::POST, path)
            .json(body)
            .send()
            .map(|response| SseStream::new(response, started))
            .map_err(|e| format!("POST {}{path}: no answer: {e}", self.base))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder) -> Reply {
        match request.send() {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let text = response.text().unwrap_or_default();
                let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                Reply {
                    status,
                    headers,
                    body,
                    text,
                }
            }
            Err(e) => Reply {
                status: 0,
                headers: HeaderMap::new(),
                body: Value::Null,
                text: format!("no answer from {}: {e}", self.base),
            },
        }
    }
}

fn with_headers(mut request: RequestBuilder, headers: &[(&str, &str)]) -> RequestBuilder {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}
