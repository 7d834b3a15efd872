//! Sluice's data plane: the OpenAI- and Anthropic-compatible proxy every
//! node serves.
//!
//! A request goes through, in order:
//! 1. [`auth`]: the virtual key (`Authorization: Bearer` or `x-api-key`) is
//!    looked up by hash in this node's copy of the replicated state, so a
//!    revocation applied here is refused here at once;
//! 2. the body, read under a size limit and a slow-client deadline, parsed
//!    once ([`sluice_providers::ClientRequest`]);
//! 3. [`routing`]: the route named by `model`, its deployments in weighted
//!    random order, skipping those whose [`breaker`] is open, retried with
//!    jittered backoff on connect errors, 429 and 5xx, then the route's
//!    fallbacks. An attempt counts as failed until the upstream's first body
//!    bytes are in, so even a stream is retried while nothing has reached
//!    the client;
//! 4. [`body`]: the answer relayed in the client's API, streams event by
//!    event; a stream that fails after its first byte ends with an in-stream
//!    error event, never a clean-looking end;
//! 5. [`metrics`]: counts, latency and the gateway's own overhead, errors,
//!    tokens and cost; [`trace`]: the request id and the request's spans;
//!    [`usage`]: the call added into the node's usage meter (per minute,
//!    key, route and provider), which the binary replicates in batches.
//!
//! The proxy reads state through [`StateSource`] and never writes it: the
//! data plane keeps working on a node cut off from the Raft leader.

pub mod auth;
pub mod body;
pub mod breaker;
pub mod error;
mod handler;
pub mod metrics;
mod models;
pub mod quota;
pub mod routing;
pub mod server;
mod targets;
pub mod trace;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::{DataKey, State};
use sluice_providers::client::{ClientBuildError, ClientOptions};

pub use error::ApiError;
pub use metrics::Metrics;
pub use server::{serve, TlsFiles};

/// Where the proxy reads the replicated state from: the node's latest
/// applied state, without a round trip.
pub trait StateSource: Send + Sync + 'static {
    fn state(&self) -> Arc<State>;

    /// Whether this node should get traffic (`/readyz`), and why.
    fn readiness(&self) -> (bool, serde_json::Value) {
        (true, serde_json::json!({"ready": true}))
    }
}

impl<F> StateSource for F
where
    F: Fn() -> Arc<State> + Send + Sync + 'static,
{
    fn state(&self) -> Arc<State> {
        self()
    }
}

/// The proxy's settings (`[proxy]` and `[limits]` in the node config).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// A client must send its request head within this.
    pub header_read_timeout: Duration,
    /// A client must send its whole body within this.
    pub body_read_timeout: Duration,
    /// Largest non-streamed upstream answer.
    pub max_response_bytes: usize,
    /// Worker threads serving the listener, each with its own event loop
    /// and upstream connection pool (a request never changes threads).
    pub threads: usize,
    /// Retries on one route after the first attempt (so `retries + 1`
    /// attempts), before its fallbacks.
    pub retries: u32,
    /// Backoff before retry `n` is random in `[0, min(max, base * 2^n)]`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive failures that open a deployment's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker stays open before a probe is let through.
    pub breaker_cooldown: Duration,
    /// Extra CA certificates (PEM) trusted for one provider's upstream, by
    /// provider name, besides the webpki roots: for providers behind a
    /// private CA (an internal vLLM, a corporate proxy).
    pub upstream_ca: BTreeMap<String, Vec<u8>>,
    /// `max_tokens` sent to Anthropic when an OpenAI client set none
    /// (Anthropic requires one).
    pub anthropic_default_max_tokens: u32,
    /// Completion tokens a quota reserves for a request that sets no
    /// `max_tokens` (settled against the real usage at the end).
    pub completion_estimate_tokens: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_response_bytes: 64 * 1024 * 1024,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            retries: 2,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            upstream_ca: BTreeMap::new(),
            anthropic_default_max_tokens: 4096,
            completion_estimate_tokens: 1024,
        }
    }
}

/// One node's proxy: shared by every connection.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<handler::Inner>,
}

impl Proxy {
    /// A proxy reading state from `state`, opening provider secrets with
    /// `data_key`, sending upstream with clients built from
    /// `client_options` (one per worker thread).
    pub fn new(
        config: ProxyConfig,
        state: impl StateSource,
        data_key: DataKey,
        client_options: ClientOptions,
        metrics: Metrics,
    ) -> Result<Self, ClientBuildError> {
        Ok(Self {
            inner: Arc::new(handler::Inner::new(
                config,
                Box::new(state),
                data_key,
                client_options,
                metrics,
            )?),
        })
    }

    /// Enforces the cluster's global quotas through `quotas` (the node's
    /// lease pools). Call before [`Proxy::worker`].
    ///
    /// # Panics
    /// If workers were already made from this proxy.
    pub fn with_quotas(mut self, quotas: Arc<sluice_quota::Quotas>) -> Self {
        let set = Arc::get_mut(&mut self.inner).is_some_and(|inner| inner.set_quotas(quotas));
        assert!(
            set,
            "Proxy::with_quotas must be called before Proxy::worker"
        );
        // Loading the tokenizer takes a moment: not on a request's time.
        std::thread::spawn(quota::warm_up);
        self
    }

    /// Adds every finished model call into `meter`. Call before
    /// [`Proxy::worker`]: each worker takes a shard of its own.
    ///
    /// # Panics
    /// If workers were already made from this proxy.
    pub fn with_usage(mut self, meter: Arc<usage::UsageMeter>) -> Self {
        let set = Arc::get_mut(&mut self.inner).is_some_and(|inner| inner.set_usage(meter));
        assert!(set, "Proxy::with_usage must be called before Proxy::worker");
        self
    }

    /// A proxy for another worker thread: shared state, breakers and
    /// metrics; its own upstream connection pool.
    pub fn worker(&self) -> Result<Self, ClientBuildError> {
        Ok(Self {
            inner: Arc::new(self.inner.worker()?),
        })
    }

    /// The proxy's settings.
    pub fn config(&self) -> &ProxyConfig {
        &self.inner.config
    }

    /// The metrics this proxy records into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The circuit breakers, by deployment.
    pub fn breakers(&self) -> &breaker::Breakers {
        &self.inner.breakers
    }

    /// Handles one request (the hyper service body).
    pub async fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<body::ProxyBody> {
        self.inner.handle(request).await
    }
}
