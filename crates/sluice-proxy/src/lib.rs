//! Sluice's data plane: the OpenAI- and Anthropic-compatible proxy every
//! node serves.
//!
//! A model call is a pipeline of phases (authenticate, parse, route,
//! admit, plan the attempts, attempt, relay, finish) over one per-request
//! context that settles the request's metrics, usage entry and quota
//! charge exactly once, even when the client leaves. Every error is a
//! [`ProxyError`] that says whose fault it is and whether the client may
//! retry, and is turned into an OpenAI or Anthropic answer in one module
//! ([`error`]).
//!
//! The proxy reads state through [`StateSource`] and never writes it: the
//! data plane keeps working on a node cut off from the Raft leader.
//!
//! # Layout
//! * `server`: the listener (HTTP/1.1 and HTTP/2, TLS, limits, graceful
//!   drain), one event loop per worker thread.
//! * `worker`: one worker thread's proxy: the shared parts, its own
//!   upstream connection pools and usage shard.
//! * `dispatch`: a request's id and span, then the model-call pipeline or
//!   the small endpoints (health, readiness, metrics, `/v1/models`).
//! * `pipeline`: a model call, one file per phase, over its context.
//! * [`error`]: [`ProxyError`], and `error::respond`, where every error
//!   answer is built.
//! * [`body`]: the response bodies, whole or streamed.
//! * [`routing`]: weighted order, backoff and fallback chains;
//!   [`breaker`]: a circuit breaker per deployment; `targets`: providers'
//!   settings opened for the adapters, cached per version.
//! * [`quota`]: the request's estimate, its charge, and the rate-limit
//!   headers; [`usage`]: the node's usage meter, sharded per worker.
//! * [`metrics`]: the Prometheus families; [`trace`]: the request id and
//!   spans; `models`: the models list; [`clock`]: the wall clock.

pub mod body;
pub mod breaker;
pub mod clock;
mod dispatch;
pub mod error;
pub mod jwt;
pub mod metrics;
mod models;
pub(crate) mod pipeline;
pub mod quota;
mod responses;
pub mod routing;
pub mod server;
mod targets;
mod tokens;
pub mod trace;
pub mod usage;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::{DataKey, State};
use sluice_providers::client::{ClientBuildError, ClientOptions};

pub use error::ProxyError;
pub use jwt::JwtIssuer;
pub use metrics::Metrics;
pub use server::{serve, serve_with, ConnectionLimits, Listening, TlsFiles};

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

/// Where the proxy has a JWT subject's key made, the first time the
/// subject's token is seen: a node proposes `RegisterSubject` through the
/// Raft log, and answers once this node has applied it.
pub trait SubjectRegistry: Send + Sync + 'static {
    /// Makes (or finds) `subject`'s key; `Err` says why it could not be
    /// written now (no quorum), or why the cluster refused it.
    fn register(
        &self,
        subject: sluice_core::KeySubject,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), RegisterError>> + Send + '_>>;
}

/// Why a subject's key was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The cluster could not be reached or did not commit in time.
    #[error("{0}")]
    Unavailable(String),
    /// The cluster refused it (its template does not exist, say).
    #[error("{0}")]
    Refused(String),
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
    /// A connection's first request must arrive within this of accept
    /// (TLS handshake and protocol sniff included).
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Most header fields in an HTTP/1 request head.
    pub max_headers: usize,
    /// Most open client connections on the listener; more are closed at
    /// accept.
    pub max_connections: usize,
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
    /// Identity providers whose JWTs clients may authenticate with,
    /// besides virtual keys.
    pub jwt_issuers: Vec<JwtIssuer>,
    /// Whether clients may authenticate with virtual keys; `false` (with
    /// `jwt_issuers`) takes tokens only.
    pub accept_virtual_keys: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: ConnectionLimits::default().header_read_timeout,
            first_request_timeout: ConnectionLimits::default().first_request_timeout,
            idle_timeout: ConnectionLimits::default().idle_timeout,
            max_headers: ConnectionLimits::default().max_headers,
            max_connections: ConnectionLimits::default().max_connections,
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
            jwt_issuers: Vec::new(),
            accept_virtual_keys: true,
        }
    }
}

impl ProxyConfig {
    /// The listener's connection limits.
    pub fn connections(&self) -> ConnectionLimits {
        ConnectionLimits {
            first_request_timeout: self.first_request_timeout,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_connections: self.max_connections,
        }
    }
}

/// One node's proxy: shared by every connection.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<worker::Worker>,
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
            inner: Arc::new(worker::Worker::new(
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

    /// Makes JWT subjects' keys through `registry` (the node's Raft log).
    /// Call before [`Proxy::worker`].
    ///
    /// # Panics
    /// If workers were already made from this proxy.
    pub fn with_subjects(mut self, registry: Arc<dyn SubjectRegistry>) -> Self {
        let set = Arc::get_mut(&mut self.inner).is_some_and(|inner| inner.set_subjects(registry));
        assert!(
            set,
            "Proxy::with_subjects must be called before Proxy::worker"
        );
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
