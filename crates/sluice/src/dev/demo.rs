//! What `sluice dev` sets up for a demo: the mock model provider, running in
//! this process, and, through the cluster's own admin API, a provider, a
//! route and a demo virtual key on it.
//!
//! Re-running `sluice dev` on the same directory keeps all three: the mock
//! listens on its previous port when it can (the provider's base URL is
//! updated when it cannot), and the demo key is reused while it is usable.

use super::DevState;
use anyhow::{bail, Context};
use rand::RngCore;
use serde_json::{json, Value};
use sluice_admin::idempotency::HEADER as IDEMPOTENCY_KEY;
use sluice_mock_llm::{MockConfig, MockHandle, MockServer};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Name of the provider pointing at the mock.
pub const PROVIDER: &str = "mock";
/// The route clients use: `"model": "mock-gpt"`.
pub const ROUTE: &str = "mock-gpt";
/// Admin writes right after start-up may meet an election: retry this long.
const WRITE_DEADLINE: Duration = Duration::from_secs(20);

/// The running demo.
pub struct Demo {
    pub mock: MockHandle,
    pub api_key: String,
}

/// Starts the mock and makes sure the cluster, reached through any of
/// `admin_urls`, has the provider, the route and a usable demo key (reusing
/// `previous`'s).
pub async fn start(
    client: &reqwest::Client,
    admin_urls: &[String],
    token: &str,
    previous: &DevState,
) -> anyhow::Result<Demo> {
    let mock = start_mock(previous.mock_url.as_deref()).await?;
    let admin = Admin {
        client,
        bases: admin_urls,
        token,
    };
    let base_url = format!("{}/v1", mock.base_url());
    let provider = json!({"name": PROVIDER, "kind": "openai", "base_url": base_url});
    match admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/providers",
            Some(&provider),
        )
        .await?
    {
        (201, _) => {}
        (409, _) => {
            let update = json!({"kind": "openai", "base_url": base_url});
            expect_ok(
                admin
                    .send(
                        reqwest::Method::PUT,
                        &format!("/admin/v1/providers/{PROVIDER}"),
                        Some(&update),
                    )
                    .await?,
                "updating the mock provider",
            )?;
        }
        other => expect_ok(other, "creating the mock provider")?,
    }
    let route = json!({
        "name": ROUTE,
        "deployments": [{"provider": PROVIDER, "model": "mock-gpt", "weight": 1}],
    });
    match admin
        .send(reqwest::Method::POST, "/admin/v1/routes", Some(&route))
        .await?
    {
        (201 | 409, _) => {}
        other => expect_ok(other, "creating the demo route")?,
    }
    let api_key = match &previous.api_key {
        Some(key) if admin.key_is_active(key).await? => key.clone(),
        _ => {
            let body = json!({"name": "dev-demo", "allowed_routes": [ROUTE]});
            let (status, created) = admin
                .send(reqwest::Method::POST, "/admin/v1/keys", Some(&body))
                .await?;
            expect_ok((status, created.clone()), "creating the demo key")?;
            created["key"]
                .as_str()
                .context("the key creation response has no `key`")?
                .to_string()
        }
    };
    Ok(Demo { mock, api_key })
}

/// The mock on its previous port if that is still free, else on a new one.
async fn start_mock(previous_url: Option<&str>) -> anyhow::Result<MockHandle> {
    let previous: Option<SocketAddr> = previous_url
        .and_then(|url| url.strip_prefix("http://"))
        .and_then(|addr| addr.trim_end_matches('/').parse().ok());
    if let Some(addr) = previous {
        if let Ok(mock) = MockServer::start(MockConfig::default(), addr).await {
            return Ok(mock);
        }
    }
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    MockServer::start(MockConfig::default(), any)
        .await
        .context("starting the mock model provider")
}

fn expect_ok((status, body): (u16, Value), what: &str) -> anyhow::Result<()> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        bail!("{what}: the admin API answered {status}: {body}")
    }
}

/// A small admin API client for the demo set-up.
struct Admin<'a> {
    client: &'a reqwest::Client,
    bases: &'a [String],
    token: &'a str,
}

impl Admin<'_> {
    /// Sends a request, retrying on the next node while the cluster is
    /// between leaders (no answer, 503 or 504), and returns the status and
    /// JSON body. A write carries one `Idempotency-Key` over its retries,
    /// so it is applied once.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let key = (method != reqwest::Method::GET).then(|| {
            let mut random = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut random);
            format!("sluice-dev-{}", hex::encode(random))
        });
        for attempt in 0usize.. {
            let base = self.bases[attempt % self.bases.len()].trim_end_matches('/');
            let mut request = self
                .client
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(self.token);
            if let Some(key) = &key {
                request = request.header(IDEMPOTENCY_KEY, key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.json::<Value>().await.unwrap_or(Value::Null);
                    Ok((status, body))
                }
                Err(err) => Err(err),
            };
            let retry = match &outcome {
                Ok((status, _)) => matches!(status, 503 | 504),
                Err(_) => true,
            };
            if !retry || Instant::now() >= deadline {
                return outcome.with_context(|| format!("{method} {base}{path}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        unreachable!("the attempts loop only ends by returning")
    }

    /// Whether `secret` is a key the cluster still accepts.
    async fn key_is_active(&self, secret: &str) -> anyhow::Result<bool> {
        let id = sluice_core::key::key_id(&sluice_core::secret::hash_secret(secret));
        let (status, key) = self
            .send(reqwest::Method::GET, &format!("/admin/v1/keys/{id}"), None)
            .await?;
        Ok(status == 200 && key["status"] == "active")
    }
}
