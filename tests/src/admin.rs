//! A small blocking client for one node's admin API.
//!
//! Every call returns `(status, body)`. The body is the parsed JSON, `Null`
//! when empty, or the raw text as a JSON string when it is not JSON. Status 0
//! means no HTTP response at all (connection refused, timeout: the node is
//! down or stopped), with the error text as the body; polling code can then
//! treat "down" like any other unwanted answer.

use reqwest::blocking::{Client, ClientBuilder, RequestBuilder};
use reqwest::header::HeaderMap;
pub use reqwest::Method;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Per-request timeout: a paused or dead node must not hang a test.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One node's admin API, with (or without) a bearer token.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    token: Option<String>,
    http: Client,
}

/// `builder` trusting, for HTTPS, the CA certificates in the PEM file `ca`
/// alone (a cluster's `ca.pem`: the admin API's certificates are its).
pub fn trusting(builder: ClientBuilder, ca: &Path) -> ClientBuilder {
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("reading {}: {e}", ca.display()));
    let cas = reqwest::Certificate::from_pem_bundle(&pem)
        .unwrap_or_else(|e| panic!("{} is not a PEM certificate: {e}", ca.display()));
    assert!(!cas.is_empty(), "{} holds no certificate", ca.display());
    // Every one: during a CA rotation `ca.pem` holds two.
    cas.into_iter()
        .fold(builder.tls_built_in_root_certs(false), |b, ca| {
            b.add_root_certificate(ca)
        })
}

impl Admin {
    /// A client for `base` (`https://127.0.0.1:1234`) sending `token`,
    /// trusting the CA certificate in `ca` (the cluster's `ca.pem`).
    pub fn new(base: impl Into<String>, token: Option<String>, ca: &Path) -> Admin {
        let http = trusting(Client::builder(), ca)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("building the HTTP client");
        Admin {
            base: base.into().trim_end_matches('/').to_string(),
            token,
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The same node, with another token (`None`: no Authorization header).
    pub fn with_token(&self, token: Option<&str>) -> Admin {
        Admin {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.request(Method::GET, path))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.request(Method::POST, path).json(body))
    }

    /// POST with no body.
    pub fn post_empty(&self, path: &str) -> (u16, Value) {
        self.send(self.request(Method::POST, path))
    }

    /// POST `body` verbatim as `application/json` (for malformed bodies).
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        self.send(
            self.request(Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
        )
    }

    pub fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.request(Method::PATCH, path).json(body))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.request(Method::DELETE, path))
    }

    /// A write sent with `Idempotency-Key: key`; also answers whether the
    /// response says it was made from recorded results
    /// (`Idempotent-Replayed: true`).
    pub fn keyed(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value, bool) {
        let mut request = self.request(method, path).header("Idempotency-Key", key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, body, headers) = self.exchange(request);
        let replayed = headers
            .get("Idempotent-Replayed")
            .is_some_and(|v| v.as_bytes() == b"true");
        (status, body, replayed)
    }

    /// `GET /admin/v1/cluster`: this node's view, or `None` if it did not answer 200.
    pub fn cluster_status(&self) -> Option<Value> {
        match self.get("/admin/v1/cluster") {
            (200, status) => Some(status),
            _ => None,
        }
    }

    /// `GET /readyz` is 200.
    pub fn is_ready(&self) -> bool {
        self.get("/readyz").0 == 200
    }

    /// `GET /healthz` is 200.
    pub fn is_live(&self) -> bool {
        self.get("/healthz").0 == 200
    }

    /// Whether this node has applied provider `name` (a stale, local read).
    pub fn has_provider(&self, name: &str) -> bool {
        self.get(&format!("/admin/v1/providers/{name}?consistency=stale"))
            .0
            == 200
    }

    /// Names of the providers this node has applied (a stale, local read);
    /// `None` if it did not answer.
    pub fn provider_names(&self) -> Option<Vec<String>> {
        let (status, body) = self.get("/admin/v1/providers?consistency=stale");
        if status != 200 {
            return None;
        }
        Some(
            body["providers"]
                .as_array()?
                .iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect(),
        )
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder) -> (u16, Value) {
        let (status, body, _) = self.exchange(request);
        (status, body)
    }

    /// Status, body and headers of the answer to `request`.
    fn exchange(&self, request: RequestBuilder) -> (u16, Value, HeaderMap) {
        match request.send() {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let text = response.text().unwrap_or_default();
                let body = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or(Value::String(text))
                };
                (status, body, headers)
            }
            Err(e) => (
                0,
                Value::String(format!("no response from {}: {e}", self.base)),
                HeaderMap::new(),
            ),
        }
    }
}

/// A provider creation body, `kind: openai`, for tests that only need some write.
pub fn provider_body(name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
    })
}
