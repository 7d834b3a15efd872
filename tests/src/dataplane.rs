//! The data plane as a client sees it: a real `sluice mock-llm` upstream,
//! providers, routes and keys created through the admin API, and a blocking
//! client for the proxy that reads server-sent events one at a time.
//!
//! ```no_run
//! # use sluice_e2e::dataplane::{DataPlane, GPT};
//! # use sluice_e2e::{json, Cluster};
//! let plane = DataPlane::start(Cluster::builder().fast_elections());
//! let reply = plane.proxy(1).post(
//!     "/v1/chat/completions",
//!     &json!({"model": GPT, "messages": [{"role": "user", "content": "hi"}]}),
//! );
//! assert_eq!(reply.status, 200);
//! ```
//!
//! [`DataPlane::start`] sets up, through node 1's admin API:
//! * provider `mock-openai` (`kind: openai`) and `mock-anthropic`
//!   (`kind: anthropic`), both pointing at the mock's `/v1`;
//! * routes [`GPT`] (`mock-openai`/`mock-gpt`), [`CLAUDE`]
//!   (`mock-anthropic`/`mock-claude`) and [`EMBED`] (`mock-openai`/`mock-embed`);
//! * [`DataPlane::key`], allowed on every route, and
//!   [`DataPlane::restricted_key`], allowed on [`GPT`] only;
//!
//! and waits until every node's proxy serves them. Tests add providers that
//! misbehave by sending `x-mock-*` headers on every request
//! ([`DataPlane::create_provider`]).
//!
//! # Layout
//! * [`mock`]: [`MockLlm`], the `sluice mock-llm` child.
//! * [`proxy`]: [`ProxyClient`] and its [`Reply`].
//! * [`sse`]: [`SseStream`], read event by event, and its [`Transcript`].
//! * [`traffic`]: [`Traffic`], client threads that count every answer
//!   while a test kills, pauses or cuts off nodes.

pub mod mock;
pub mod proxy;
pub mod sse;
pub mod traffic;

pub use mock::{
    MockLlm, AWS_ACCESS_KEY_ID, AWS_REGION, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    AZURE_RESOURCE_KEY, ENTRA_CLIENT_ID, ENTRA_CLIENT_SECRET, ENTRA_TENANT, GOOGLE_SA_EMAIL,
    GOOGLE_SA_PRIVATE_KEY,
};
pub use proxy::{ProxyClient, Reply};
pub use sse::{SseEvent, SseStream, Transcript};
pub use traffic::{Call, Traffic, TrafficReport};

use crate::admin::Admin;
use crate::cluster::{Cluster, ClusterBuilder};
use crate::deadline::Deadline;
use serde_json::{json, Value};
use std::time::Duration;

/// Route on an OpenAI-kind provider, upstream model `mock-gpt`.
pub const GPT: &str = "gpt";
/// Route on an Anthropic-kind provider, upstream model `mock-claude`.
pub const CLAUDE: &str = "claude";
/// Route on an OpenAI-kind provider, upstream model `mock-embed`.
pub const EMBED: &str = "embed";
/// The OpenAI-kind provider every standard route but [`CLAUDE`] uses.
pub const OPENAI_PROVIDER: &str = "mock-openai";
/// The Anthropic-kind provider of [`CLAUDE`].
pub const ANTHROPIC_PROVIDER: &str = "mock-anthropic";

/// How long an admin write may keep meeting an election.
const WRITE_BUDGET: Duration = Duration::from_secs(20);
/// How long every node gets to apply what node 1 wrote.
const APPLY_BUDGET: Duration = Duration::from_secs(15);

/// A started cluster, the mock upstream, and the standard providers, routes
/// and keys (see the module doc).
#[derive(Debug)]
pub struct DataPlane {
    // Declared first: the mock is killed before the cluster removes the
    // directory its log lives in.
    pub mock: MockLlm,
    pub cluster: Cluster,
    /// Allowed on every route.
    pub key: String,
    /// Allowed on [`GPT`] only.
    pub restricted_key: String,
}

impl DataPlane {
    /// Starts `builder`'s cluster and the mock, then sets up the standard
    /// providers, routes and keys and waits until every node serves them.
    pub fn start(builder: ClusterBuilder) -> DataPlane {
        let cluster = builder.start();
        let mock = MockLlm::start(&cluster.root().join("mock-llm.log"), cluster.deadline());
        let mut plane = DataPlane {
            mock,
            cluster,
            key: String::new(),
            restricted_key: String::new(),
        };
        plane.create_provider(OPENAI_PROVIDER, "openai", json!({}));
        plane.create_provider(ANTHROPIC_PROVIDER, "anthropic", json!({}));
        plane.create_route(GPT, &[(OPENAI_PROVIDER, "mock-gpt", 1)], &[]);
        plane.create_route(CLAUDE, &[(ANTHROPIC_PROVIDER, "mock-claude", 1)], &[]);
        plane.create_route(EMBED, &[(OPENAI_PROVIDER, "mock-embed", 1)], &[]);
        plane.key = plane.create_key("e2e-all", &[]).1;
        plane.restricted_key = plane.create_key("e2e-gpt-only", &[GPT]).1;
        plane.wait_served(&plane.key, &[GPT, CLAUDE, EMBED]);
        plane.wait_served(&plane.restricted_key, &[GPT]);
        plane
    }

    /// Node `id`'s proxy with [`DataPlane::key`].
    pub fn proxy(&self, id: u64) -> ProxyClient {
        ProxyClient::new(self.cluster.proxy_url(id), Some(&self.key))
    }

    /// A provider `name` of `kind` (`openai`, `anthropic`) on the mock,
    /// sending `headers` (a JSON object, e.g. `{"x-mock-status": "500"}`)
    /// with every request.
    pub fn create_provider(&self, name: &str, kind: &str, headers: Value) {
        self.create_provider_at(name, kind, &self.mock.v1(), headers);
    }

    /// A provider `name` of `kind` at `base_url`.
    pub fn create_provider_at(&self, name: &str, kind: &str, base_url: &str, headers: Value) {
        let body = json!({"name": name, "kind": kind, "base_url": base_url, "headers": headers});
        self.write("/admin/v1/providers", &body);
    }

    /// Replaces provider `name`'s settings (`PUT /admin/v1/providers/{name}`
    /// on node 1, retried while the cluster cannot take writes) and waits
    /// until every node has applied the new `headers`.
    pub fn update_provider(&self, name: &str, kind: &str, base_url: &str, headers: Value) {
        let path = format!("/admin/v1/providers/{name}");
        let body = json!({"kind": kind, "base_url": base_url, "headers": headers});
        let http = self.cluster.http_client(Duration::from_secs(5));
        let url = format!("{}{path}", self.cluster.admin_url(1));
        let mut last = String::new();
        let done = self.cluster.deadline().within(WRITE_BUDGET).poll("", || {
            match http
                .put(&url)
                .bearer_auth(self.cluster.token())
                .json(&body)
                .send()
            {
                Ok(response) if response.status().is_success() => true,
                Ok(response) if response.status().is_server_error() => {
                    last = format!("{}", response.status());
                    false
                }
                Ok(response) => {
                    let status = response.status();
                    panic!(
                        "PUT {path} {body}: {status} {}",
                        response.text().unwrap_or_default()
                    )
                }
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        });
        if done.is_err() {
            self.cluster.fail(format!(
                "PUT {path} {body}: not acknowledged; last answer {last}"
            ));
        }
        for id in self.cluster.ids() {
            let admin = self.cluster.admin(id);
            self.cluster.wait_until(
                APPLY_BUDGET,
                format!("node {id} to apply the update of provider {name}"),
                || {
                    let (status, view) =
                        admin.get(&format!("/admin/v1/providers/{name}?consistency=stale"));
                    status == 200 && view["headers"] == body["headers"]
                },
            );
        }
    }

    /// An `azure_openai` provider `name` on `mock` with `azure` settings,
    /// `credential` (the resource key or the client secret) and `headers`.
    pub fn create_azure_provider(
        &self,
        name: &str,
        mock: &MockLlm,
        azure: Value,
        credential: &str,
        headers: Value,
    ) {
        self.write(
            "/admin/v1/providers",
            &json!({
                "name": name,
                "kind": "azure_openai",
                "base_url": mock.url(),
                "api_key": credential,
                "azure": azure,
                "headers": headers,
            }),
        );
    }

    /// A route `name` over `deployments` (provider, upstream model, weight),
    /// falling back to `fallbacks`.
    pub fn create_route(&self, name: &str, deployments: &[(&str, &str, u32)], fallbacks: &[&str]) {
        let deployments: Vec<Value> = deployments
            .iter()
            .map(|(provider, model, weight)| {
                json!({"provider": provider, "model": model, "weight": weight})
            })
            .collect();
        let body = json!({"name": name, "deployments": deployments, "fallbacks": fallbacks});
        self.write("/admin/v1/routes", &body);
    }

    /// A virtual key allowed on `routes` (every route when empty); returns
    /// its id and its secret.
    pub fn create_key(&self, name: &str, routes: &[&str]) -> (String, String) {
        let body = json!({"name": name, "allowed_routes": routes});
        let created = self.write("/admin/v1/keys", &body);
        let id = created["id"].as_str().expect("created key has an id");
        let secret = created["key"].as_str().expect("created key has its secret");
        (id.to_string(), secret.to_string())
    }

    /// A virtual key on every route with the quota fields of `quota`
    /// (`{"rpm": 5}`, `{"limits": [...]}`, …), once every node serves it
    /// on [`GPT`]; returns its id and its secret.
    pub fn create_key_with(&self, name: &str, quota: Value) -> (String, String) {
        let mut body = json!({"name": name});
        for (k, v) in quota.as_object().expect("quota object") {
            body[k] = v.clone();
        }
        let created = self.write("/admin/v1/keys", &body);
        let id = created["id"].as_str().expect("created key has an id");
        let secret = created["key"].as_str().expect("created key has its secret");
        self.wait_served(secret, &[GPT]);
        (id.to_string(), secret.to_string())
    }

    /// POSTs `body` to `path` on node 1, retrying (within 20 s) while the
    /// cluster cannot take writes (no answer, 5xx). A 409 after a retry
    /// counts as done: the earlier attempt committed. Returns the body.
    pub fn write(&self, path: &str, body: &Value) -> Value {
        write_through(&self.cluster.admin(1), path, body, self.cluster.deadline())
    }

    /// Waits until every running node's proxy lists `routes` to `key` in
    /// `/v1/models` (a planned node not started yet is not waited for).
    pub fn wait_served(&self, key: &str, routes: &[&str]) {
        for id in self.cluster.running_ids() {
            let proxy = ProxyClient::new(self.cluster.proxy_url(id), Some(key));
            let mut last = String::new();
            let served = self.cluster.deadline().within(APPLY_BUDGET).poll("", || {
                let reply = proxy.get("/v1/models");
                last = format!("{} {}", reply.status, reply.text);
                reply.status == 200 && routes.iter().all(|r| model_ids(&reply.body).contains(r))
            });
            if served.is_err() {
                self.cluster.fail(format!(
                    "node {id}'s proxy does not serve {routes:?} within {APPLY_BUDGET:?}; last answer {last}"
                ));
            }
        }
    }

    /// Node `id`'s proxy `/metrics` text.
    pub fn metrics(&self, id: u64) -> String {
        let reply = ProxyClient::new(self.cluster.proxy_url(id), None).get("/metrics");
        assert_eq!(
            reply.status, 200,
            "GET /metrics on node {id}: {}",
            reply.text
        );
        reply.text
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.mock.log_tail());
        }
    }
}

/// The `id`s of a models list (either API's shape).
pub fn model_ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .map(|data| data.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default()
}

/// See [`DataPlane::write`].
pub fn write_through(admin: &Admin, path: &str, body: &Value, deadline: Deadline) -> Value {
    let mut attempts = 0;
    let mut last = (0, Value::Null);
    let done = deadline.within(WRITE_BUDGET).poll("", || {
        attempts += 1;
        last = admin.post(path, body);
        match last.0 {
            200 | 201 => true,
            409 if attempts > 1 => true,
            0 | 500..=599 => false,
            _ => panic!("POST {path} {body}: unexpected answer {last:?}"),
        }
    });
    if done.is_err() {
        panic!(
            "POST {path} {body}: not acknowledged after {attempts} attempts, last answer {last:?}"
        );
    }
    last.1
}

/// The value of the sample of metric `name` whose labels include every one
/// of `labels`, in Prometheus text format.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let matches = labels.iter().all(|(k, v)| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            matches.then(|| value.trim().parse().ok()).flatten()
        })
        .next()
}
