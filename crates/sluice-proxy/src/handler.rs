//! One request, from its head to the start of its answer: dispatch, auth,
//! body, routing with retries and fallbacks, and the answer's head.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use sluice_core::{DataKey, ProviderKind, Route, State};
use sluice_providers::client::{ClientBuildError, ClientOptions};
use sluice_providers::{
    anthropic, convert_response, openai, prepare, stream_relay, ClientRequest, Dialect, Endpoint,
    PrepareError, TokenUsage, UpstreamClient, UpstreamError,
};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;

use crate::body::{ProxyBody, RelayBody, Start};
use crate::breaker::Breakers;
use crate::error::{set_retry_after, ApiError};
use crate::metrics::{InFlight, Metrics, QuotaOutcome};
use crate::quota::{Charge, Outcome};
use crate::targets::{timeouts, Targets};
use crate::usage::{CallUsage, UsageMeter, UsageShard};
use crate::{models, quota, routing, ProxyConfig, StateSource};
use sluice_quota::{Quotas, Reason, Standings};

/// How long a client is told to wait after a gateway-side failure when the
/// upstream said nothing.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Upstream headers passed on with an upstream error: what tells a client
/// when to retry.
const RETRY_HEADERS: [&str; 3] = ["retry-after", "retry-after-ms", "x-should-retry"];
/// Largest upstream error body read.
const MAX_ERROR_BODY: usize = 256 * 1024;

/// What every worker thread of the proxy shares.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    state: Box<dyn StateSource>,
    targets: Targets,
    client_options: ClientOptions,
    pub(crate) metrics: Metrics,
    pub(crate) breakers: Breakers,
    /// Global quotas: `None` enforces none (a proxy outside a cluster).
    pub(crate) quotas: Option<Arc<Quotas>>,
    /// Where finished model calls are added up: `None` meters nothing.
    pub(crate) usage: Option<Arc<UsageMeter>>,
}

/// One worker thread's proxy: the shared parts, and an upstream client
/// (connection pool) of its own, so a request and its upstream connection
/// are served by the same thread.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    clients: Clients,
    /// This worker's shard of the usage meter (`None`: no metering).
    usage_shard: Option<Arc<UsageShard>>,
}

/// One worker's upstream clients: the default one (webpki roots) and one
/// per provider that has an extra CA (`[proxy.upstream_ca]`).
struct Clients {
    default: UpstreamClient,
    with_ca: HashMap<String, UpstreamClient>,
}

impl Clients {
    fn new(config: &ProxyConfig, options: &ClientOptions) -> Result<Self, ClientBuildError> {
        let mut with_ca = HashMap::new();
        for (provider, pem) in &config.upstream_ca {
            let options = ClientOptions {
                extra_ca_pem: Some(pem.clone()),
                ..options.clone()
            };
            with_ca.insert(provider.clone(), UpstreamClient::new(options)?);
        }
        Ok(Self {
            default: UpstreamClient::new(options.clone())?,
            with_ca,
        })
    }

    fn for_provider(&self, provider: &str) -> &UpstreamClient {
        self.with_ca.get(provider).unwrap_or(&self.default)
    }
}

impl std::ops::Deref for Inner {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// A request's quota: where its limits stand (for the headers) and what it
/// reserved (settled when its answer ends).
#[derive(Default)]
struct QuotaCtx {
    standings: Standings,
    /// When the standings were read (the Anthropic reset is an instant).
    at_ms: u64,
    charge: Option<Charge>,
}

/// A model call's answer, before it becomes a response.
enum Answer {
    Whole {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        usage: Option<TokenUsage>,
    },
    Stream(Box<RelayBody>),
}

/// Why an attempt did not produce the answer.
enum Failure {
    /// The upstream answered with an error status.
    Response(ErrorAnswer),
    /// No usable answer: connection, timeout, a broken stream.
    Transport(Broken),
}

/// An upstream's answer with an error status.
struct ErrorAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    kind: ProviderKind,
}

/// Why no usable answer came.
struct Broken {
    timeout: bool,
    message: String,
}

impl Broken {
    fn new(timeout: bool, message: impl Into<String>) -> Self {
        Self {
            timeout,
            message: message.into(),
        }
    }

    /// 502, or 504 for a timeout.
    fn into_error(self) -> ApiError {
        let (status, code) = if self.timeout {
            (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
        } else {
            (StatusCode::BAD_GATEWAY, "upstream_error")
        };
        ApiError::new(
            status,
            format!("The upstream model API failed: {}", self.message),
        )
        .code(code)
        .retry_after(DEFAULT_RETRY_AFTER)
    }
}

impl Inner {
    pub(crate) fn new(
        config: ProxyConfig,
        state: Box<dyn StateSource>,
        data_key: DataKey,
        client_options: ClientOptions,
        metrics: Metrics,
    ) -> Result<Self, ClientBuildError> {
        let breakers = Breakers::new(
            config.breaker_failures,
            config.breaker_cooldown,
            metrics.clone(),
        );
        let clients = Clients::new(&config, &client_options)?;
        let shared = Shared {
            config,
            state,
            targets: Targets::new(data_key),
            client_options,
            metrics,
            breakers,
            quotas: None,
            usage: None,
        };
        Ok(Self {
            shared: Arc::new(shared),
            clients,
            usage_shard: None,
        })
    }

    /// Enforces `quotas`; only before the proxy is shared with workers.
    pub(crate) fn set_quotas(&mut self, quotas: Arc<Quotas>) -> bool {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => {
                shared.quotas = Some(quotas);
                true
            }
            None => false,
        }
    }

    /// Meters usage into `meter`; only before the proxy is shared with
    /// workers.
    pub(crate) fn set_usage(&mut self, meter: Arc<UsageMeter>) -> bool {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => {
                self.usage_shard = Some(meter.claim_shard());
                shared.usage = Some(meter);
                true
            }
            None => false,
        }
    }

    /// Another worker: the same shared parts, a connection pool and a
    /// usage shard of its own.
    pub(crate) fn worker(&self) -> Result<Self, ClientBuildError> {
        Ok(Self {
            shared: Arc::clone(&self.shared),
            clients: Clients::new(&self.shared.config, &self.shared.client_options)?,
            usage_shard: self.shared.usage.as_ref().map(|m| m.claim_shard()),
        })
    }

    pub(crate) async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let request_id = crate::trace::request_id(request.headers());
        let span = crate::trace::request_span(&request, &request_id);
        let mut response = self.dispatch(request).instrument(span.clone()).await;
        span.record("status", response.status().as_u16());
        response.headers_mut().insert("x-request-id", request_id);
        response
    }

    async fn dispatch(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request.uri().path();
        let method = request.method();
        if let Some(endpoint) = Endpoint::from_path(path) {
            if method != Method::POST {
                return method_not_allowed(method, path, endpoint.dialect());
            }
            return self.model_call(endpoint, request).await;
        }
        let dialect = dialect_of(path, request.headers());
        match (method, path) {
            (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, "/readyz") => {
                let (ready, detail) = self.state.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, &detail)
            }
            (&Method::GET, "/metrics") => {
                let mut response = Response::new(ProxyBody::full(self.metrics.encode()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            (&Method::GET, "/v1/models") => self.models(request.headers(), None, dialect),
            (&Method::GET, p) if p.starts_with("/v1/models/") => {
                let id = p["/v1/models/".len()..].to_owned();
                self.models(request.headers(), Some(&id), dialect)
            }
            (_, "/v1/models") => method_not_allowed(method, path, dialect),
            _ => ApiError::unknown_url(method, path).into_response(dialect),
        }
    }

    fn models(
        &self,
        headers: &HeaderMap,
        id: Option<&str>,
        dialect: Dialect,
    ) -> Response<ProxyBody> {
        let state = self.state.state();
        let key = match crate::auth::authenticate(&state, headers, now_ms()) {
            Ok(key) => key,
            Err(e) => return e.into_response(dialect),
        };
        match id {
            None => json_response(StatusCode::OK, &models::list(&state, key, dialect)),
            Some(id) => match models::get(&state, key, id, dialect) {
                Some(model) => json_response(StatusCode::OK, &model),
                None => ApiError::unknown_model(id).into_response(dialect),
            },
        }
    }

    async fn model_call(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let dialect = endpoint.dialect();
        let mut in_flight = self.metrics.start(endpoint.as_str());
        let mut call = self
            .usage_shard
            .as_ref()
            .map(|shard| CallUsage::start(Arc::clone(shard), Instant::now()));
        let http1 = request.version() < http::Version::HTTP_2;
        let mut body_read = false;
        let mut quota = QuotaCtx::default();
        let mut response = match self
            .answer(
                endpoint,
                request,
                &mut in_flight,
                &mut body_read,
                &mut quota,
                &mut call,
            )
            .await
        {
            Ok(Answer::Whole {
                status,
                headers,
                body,
                usage,
            }) => {
                if let Some(charge) = quota.charge.take() {
                    charge.finish(if status.is_success() {
                        Outcome::Answered(usage)
                    } else {
                        Outcome::Failed
                    });
                }
                if let Some(call) = call {
                    call.finish(!status.is_success(), usage);
                }
                in_flight.first_byte(status.as_u16());
                in_flight.finish(status.as_u16(), usage);
                let mut response = Response::new(ProxyBody::full(body));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                response
            }
            Ok(Answer::Stream(body)) => {
                in_flight.first_byte(200);
                let body = body
                    .with_in_flight(in_flight)
                    .with_charge(quota.charge.take())
                    .with_usage(call);
                let mut response = Response::new(ProxyBody::Relay(body));
                let headers = response.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                );
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                // Asks a buffering reverse proxy in front (nginx) to pass
                // events on as they come.
                headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
                response
            }
            Err(error) => {
                if let Some(charge) = quota.charge.take() {
                    charge.finish(Outcome::Failed);
                }
                if let Some(call) = call {
                    call.finish(true, None);
                }
                let status = error.status.as_u16();
                in_flight.first_byte(status);
                in_flight.finish(status, None);
                let mut response = error.into_response(dialect);
                if http1 && !body_read {
                    // The body was left unread (refused before or while
                    // reading it): hyper cannot reuse the connection, so say
                    // so rather than let a keep-alive client find out on its
                    // next request.
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        };
        if !quota.standings.is_empty() {
            quota::headers(
                dialect,
                &quota.standings,
                quota.at_ms,
                response.headers_mut(),
            );
        }
        response
    }

    async fn answer(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
        in_flight: &mut InFlight,
        body_read: &mut bool,
        quota: &mut QuotaCtx,
        call: &mut Option<CallUsage>,
    ) -> Result<Answer, ApiError> {
        let state = self.state.state();
        let key = crate::auth::authenticate(&state, request.headers(), now_ms())?;
        let (parts, body) = request.into_parts();
        let bytes = self.read_body(&parts.headers, body).await?;
        *body_read = true;
        let request = ClientRequest::parse(endpoint, &bytes, &parts.headers)
            .map_err(|e| ApiError::bad_request(e.message, e.param))?;
        let route = state
            .route(&request.model)
            .ok_or_else(|| ApiError::unknown_model(&request.model))?;
        if !key.allows_route(&route.name) {
            return Err(ApiError::model_not_allowed(&request.model));
        }
        in_flight.set_route(route);
        if let Some(call) = call {
            call.identify(&key.id, &route.name, route.pricing);
        }
        if let Some(quotas) = &self.quotas {
            self.admit(quotas, &state, &key.id, route, &request, quota)
                .await?;
        }
        self.forward(&state, &request, route, in_flight, call).await
    }

    /// Takes the request's estimated cost from every quota of its key and
    /// key × route, or refuses it (429, or 503 without a quorum under
    /// `deny`).
    async fn admit(
        &self,
        quotas: &Quotas,
        state: &State,
        key_id: &str,
        route: &Route,
        request: &ClientRequest,
        out: &mut QuotaCtx,
    ) -> Result<(), ApiError> {
        let Some(plan) = quotas.plan(state.ledger(), key_id) else {
            return Ok(());
        };
        let route_name = route.name.as_str();
        if !plan.applies_on(route_name) {
            return Ok(());
        }
        let cost = quota::estimate(
            request,
            plan.counts_tokens(route_name),
            &route.pricing,
            self.config.completion_estimate_tokens,
        );
        let admitted = quotas
            .admit(&plan, route_name, cost, now_ms)
            .instrument(tracing::debug_span!("admission"))
            .await;
        match admitted {
            Ok(admission) => {
                self.metrics.quota_decision(QuotaOutcome::Admitted);
                out.standings = admission.standings;
                out.at_ms = admission.at_ms;
                out.charge = Some(Charge::new(admission.reservation, route.pricing, cost));
                Ok(())
            }
            Err(denial) => {
                let outcome = match &*denial.reason {
                    Reason::Exhausted { limit, .. }
                        if matches!(limit.refill, sluice_core::quota::Refill::Calendar(_)) =>
                    {
                        QuotaOutcome::BudgetSpent
                    }
                    Reason::Exhausted { .. } => QuotaOutcome::RateLimited,
                    Reason::TooLarge { .. } => QuotaOutcome::TooLarge,
                    Reason::NoQuorum { .. } => QuotaOutcome::NoQuorum,
                };
                self.metrics.quota_decision(outcome);
                let error = quota::denial_error(&denial, key_id);
                out.standings = denial.standings;
                out.at_ms = denial.at_ms;
                Err(error)
            }
        }
    }

    /// The request body, under the size limit and the slow-client deadline.
    async fn read_body(&self, headers: &HeaderMap, body: Incoming) -> Result<Bytes, ApiError> {
        let limit = self.config.max_body_bytes;
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::too_large(limit));
        }
        let collect = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.config.body_read_timeout, collect).await {
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "The request body did not arrive within {} s.",
                    self.config.body_read_timeout.as_secs()
                ),
            )),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(ApiError::too_large(limit))
            }
            Ok(Err(e)) => Err(ApiError::bad_request(
                format!("The request body could not be read: {e}"),
                None,
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }

    /// Tries the route's deployments, then its fallbacks', until one
    /// answers.
    async fn forward(
        &self,
        state: &State,
        request: &ClientRequest,
        route: &Route,
        in_flight: &mut InFlight,
        call: &mut Option<CallUsage>,
    ) -> Result<Answer, ApiError> {
        let dialect = request.endpoint.dialect();
        let attempts_per_route = self.config.retries.saturating_add(1);
        let mut last: Option<Failure> = None;
        let mut unsupported = false;
        let mut skipped_open: Vec<(&str, &str)> = Vec::new();
        let mut retries = 0u32;
        let mut previous: Option<(&str, &str)> = None;
        for route in routing::chain(state, route) {
            let weights: Vec<u32> = route.deployments.iter().map(|d| d.weight).collect();
            let order = routing::weighted_order(&weights, &mut rand::thread_rng());
            let mut tried = 0u32;
            for slot in 0..order.len() * attempts_per_route as usize {
                if tried >= attempts_per_route {
                    break;
                }
                let deployment = &route.deployments[order[slot % order.len()]];
                let Some(provider) = state.provider(&deployment.provider) else {
                    continue;
                };
                let this = (provider.name.as_str(), deployment.model.as_str());
                let Some(permit) =
                    self.breakers
                        .acquire(&provider.name, &deployment.model, Instant::now())
                else {
                    if !skipped_open.contains(&this) {
                        skipped_open.push(this);
                    }
                    continue;
                };
                let prepared = match self
                    .targets
                    .get(provider)
                    .map_err(PrepareError::Target)
                    .and_then(|target| {
                        prepare(
                            request,
                            provider.kind,
                            &target,
                            &deployment.model,
                            self.config.anthropic_default_max_tokens,
                        )
                    }) {
                    Ok(prepared) => prepared,
                    Err(PrepareError::Unsupported { .. }) => {
                        unsupported = true;
                        continue;
                    }
                    Err(PrepareError::Invalid(e)) => {
                        return Err(ApiError::bad_request(e.message, e.param))
                    }
                    Err(PrepareError::Target(message)) => {
                        tracing::warn!(provider = %provider.name, %message, "provider cannot be used");
                        permit.failure(Instant::now());
                        last = Some(Failure::Transport(Broken::new(false, message)));
                        tried += 1;
                        continue;
                    }
                };
                if retries > 0 {
                    let mut wait = routing::backoff(
                        retries,
                        self.config.backoff_base,
                        self.config.backoff_max,
                        &mut rand::thread_rng(),
                    );
                    if previous == Some(this) {
                        if let Some(Failure::Response(ErrorAnswer { headers, .. })) = &last {
                            if let Some(asked) = retry_after(headers) {
                                if asked <= self.config.backoff_max {
                                    wait = wait.max(asked);
                                }
                            }
                        }
                    }
                    tokio::time::sleep(wait).await;
                }
                retries += 1;
                tried += 1;
                previous = Some(this);
                if let Some(call) = call {
                    call.set_provider(&provider.name);
                }
                let exchange = prepared.exchange;
                in_flight.set_deployment(&provider.name, &deployment.model);
                let sent_at = Instant::now();
                let sent = self
                    .clients
                    .for_provider(&provider.name)
                    .send(prepared.request, timeouts(provider))
                    .instrument(crate::trace::attempt_span(provider, deployment))
                    .await;
                in_flight.add_upstream_wait(sent_at.elapsed());
                let response = match sent {
                    Ok(response) => response,
                    Err(e) => {
                        let outcome = if e.is_timeout() {
                            "timeout"
                        } else {
                            "connect_error"
                        };
                        self.metrics.upstream_attempt(&provider.name, outcome);
                        tracing::debug!(provider = %provider.name, error = %e, "upstream attempt failed");
                        permit.failure(Instant::now());
                        let broken = Broken::new(e.is_timeout(), e.to_string());
                        let retryable = (e.retry_safe() || !e.received())
                            && !matches!(e, UpstreamError::TotalTimeout { .. });
                        if !retryable {
                            return Err(broken.into_error());
                        }
                        last = Some(Failure::Transport(broken));
                        continue;
                    }
                };
                let status = response.status;
                if status.is_success() {
                    let created = now_ms() / 1000;
                    if exchange.stream {
                        let relay = stream_relay(&exchange, &request.model, created);
                        match RelayBody::start(response.body, relay, exchange).await {
                            Start::Ready(body) => {
                                in_flight.add_upstream_wait(body.upstream_wait());
                                self.metrics.upstream_attempt(&provider.name, "ok");
                                permit.success();
                                return Ok(Answer::Stream(body));
                            }
                            Start::Failed {
                                reason,
                                retryable,
                                upstream_wait,
                            } => {
                                in_flight.add_upstream_wait(upstream_wait);
                                self.metrics
                                    .upstream_attempt(&provider.name, "stream_error");
                                permit.failure(Instant::now());
                                let broken = Broken::new(false, reason);
                                if !retryable {
                                    return Err(broken.into_error());
                                }
                                last = Some(Failure::Transport(broken));
                                continue;
                            }
                        }
                    }
                    let read_at = Instant::now();
                    let body = response.body.collect(self.config.max_response_bytes).await;
                    in_flight.add_upstream_wait(read_at.elapsed());
                    let converted = body.map_err(|e| e.to_string()).and_then(|body| {
                        convert_response(&exchange, &body, &request.model, created)
                            .map_err(|e| e.to_string())
                    });
                    match converted {
                        Ok((body, usage)) => {
                            self.metrics.upstream_attempt(&provider.name, "ok");
                            permit.success();
                            // Room for the rate-limit headers too, so adding
                            // them does not grow the map.
                            let mut headers = HeaderMap::with_capacity(8);
                            headers
                                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                            return Ok(Answer::Whole {
                                status: StatusCode::OK,
                                headers,
                                body,
                                usage,
                            });
                        }
                        Err(message) => {
                            self.metrics
                                .upstream_attempt(&provider.name, "stream_error");
                            permit.failure(Instant::now());
                            last = Some(Failure::Transport(Broken::new(false, message)));
                            continue;
                        }
                    }
                }
                // An error status. Its body is small; read it for the client.
                let answer = ErrorAnswer {
                    status,
                    body: response
                        .body
                        .collect(MAX_ERROR_BODY)
                        .await
                        .unwrap_or_default(),
                    headers: response.headers,
                    kind: provider.kind,
                };
                match status.as_u16() {
                    429 => {
                        self.metrics
                            .upstream_attempt(&provider.name, "rate_limited");
                        // Busy, not broken: no verdict for the breaker.
                        drop(permit);
                    }
                    // The deployment itself is wrong (its credentials, its
                    // model name) or broken: try another.
                    401 | 403 | 404 | 408 | 500..=599 => {
                        let outcome = if status.is_server_error() {
                            "server_error"
                        } else {
                            "client_error"
                        };
                        self.metrics.upstream_attempt(&provider.name, outcome);
                        permit.failure(Instant::now());
                    }
                    _ => {
                        // The client's request is at fault: answer it.
                        self.metrics
                            .upstream_attempt(&provider.name, "client_error");
                        permit.success();
                        return Ok(upstream_error(answer, dialect));
                    }
                }
                last = Some(Failure::Response(answer));
            }
        }
        match last {
            Some(Failure::Response(answer)) => Ok(upstream_error(answer, dialect)),
            Some(Failure::Transport(broken)) => Err(broken.into_error()),
            None if unsupported => Err(ApiError::bad_request(
                format!(
                    "The model `{}` cannot serve {}.",
                    request.model,
                    request.endpoint.as_str()
                ),
                Some("model".into()),
            )),
            None => {
                let after = self
                    .breakers
                    .soonest_retry(&skipped_open, Instant::now())
                    .unwrap_or(DEFAULT_RETRY_AFTER)
                    .max(Duration::from_millis(1));
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Every deployment of `{}` is failing; retry later.",
                        request.model
                    ),
                )
                .code("service_unavailable")
                .retry_after(after))
            }
        }
    }
}

/// An upstream error answer in the client's format: passed on as sent when
/// the upstream speaks the client's API, re-wrapped otherwise. An upstream
/// 401/403/404 is the gateway's misconfiguration, not the client's: 502.
fn upstream_error(answer: ErrorAnswer, dialect: Dialect) -> Answer {
    let ErrorAnswer {
        status,
        headers: upstream_headers,
        body,
        kind,
    } = answer;
    let status_out = match status.as_u16() {
        401 | 403 | 404 => StatusCode::BAD_GATEWAY,
        _ => status,
    };
    let message = error_message(&body);
    let passthrough = Dialect::of(kind) == dialect && status_out == status && message.is_some();
    let mut headers = HeaderMap::new();
    for name in RETRY_HEADERS {
        if let Some(value) = upstream_headers.get(name) {
            headers.insert(name, value.clone());
        }
    }
    let body = if passthrough {
        body
    } else {
        let message = match message {
            Some(message) => format!("The upstream model API answered {status}: {message}"),
            None => format!("The upstream model API answered {status}."),
        };
        ApiError::new(status_out, message).body(dialect)
    };
    let retryable = status_out == StatusCode::TOO_MANY_REQUESTS || status_out.is_server_error();
    if retryable && retry_after(&headers).is_none() {
        set_retry_after(&mut headers, DEFAULT_RETRY_AFTER);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Answer::Whole {
        status: status_out,
        headers,
        body,
        usage: None,
    }
}

/// The message of an error body in either API's format.
fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(e) = serde_json::from_slice::<openai::ErrorBody>(body) {
        return Some(e.error.message);
    }
    serde_json::from_slice::<anthropic::ErrorBody>(body)
        .ok()
        .map(|e| e.error.message)
}

/// The wait an upstream asked for, from `retry-after-ms` or `Retry-After`
/// (seconds; an HTTP date is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if let Some(ms) = read("retry-after-ms").filter(|v| v.is_finite() && *v >= 0.0) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    read("retry-after")
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The error format for a path that is not a model endpoint: Anthropic's
/// for its paths and for clients that send `anthropic-version`.
fn dialect_of(path: &str, headers: &HeaderMap) -> Dialect {
    if path.starts_with("/v1/messages") || headers.contains_key("anthropic-version") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

fn method_not_allowed(method: &Method, path: &str, dialect: Dialect) -> Response<ProxyBody> {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}."),
    )
    .code("method_not_allowed")
    .into_response(dialect)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        h.insert("retry-after-ms", HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }

    #[test]
    fn upstream_auth_failures_become_bad_gateway() {
        let body = Bytes::from_static(
            br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        );
        let answer = upstream_error(
            ErrorAnswer {
                status: StatusCode::UNAUTHORIZED,
                headers: HeaderMap::new(),
                body,
                kind: ProviderKind::OpenAi,
            },
            Dialect::OpenAi,
        );
        let Answer::Whole {
            status,
            body,
            headers,
            ..
        } = answer
        else {
            panic!("whole answer")
        };
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "server_error");
        assert!(headers.contains_key("retry-after-ms"));
    }

    #[test]
    fn same_dialect_errors_pass_through_and_others_are_rewrapped() {
        let anthropic_body = Bytes::from_static(
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#,
        );
        let failure = || ErrorAnswer {
            status: StatusCode::BAD_REQUEST,
            headers: HeaderMap::new(),
            body: anthropic_body.clone(),
            kind: ProviderKind::Anthropic,
        };
        let Answer::Whole { body, .. } = upstream_error(failure(), Dialect::Anthropic) else {
            panic!()
        };
        assert_eq!(body, anthropic_body);
        let Answer::Whole { status, body, .. } = upstream_error(failure(), Dialect::OpenAi) else {
            panic!()
        };
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens: too big"));
    }
}
