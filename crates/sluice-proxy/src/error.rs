//! The proxy's one error type, [`ProxyError`], in the shape of pingora's
//! `Error`: what went wrong ([`ErrorKind`], payload-free), where the fault
//! lies ([`Fault`]: the client, the gateway or the upstream), whether and
//! when the client may retry ([`Retry`]), what becomes of the client's
//! connection ([`Connection`]), and the error that caused it (`source()`).
//!
//! An error is built where it happens and never logged there; [`respond`]
//! alone turns it into the answer a client sees, in OpenAI's format or, on
//! `/v1/messages` (and for clients that send `anthropic-version`),
//! Anthropic's. An upstream's own error answer is an error too
//! ([`ErrorKind::UpstreamAnswer`]): [`respond`] passes its body on as sent
//! when the upstream speaks the client's API, and re-wraps it otherwise.
//!
//! # Layout
//! * `kind`: [`ErrorKind`] and [`Fault`], with each kind's status and code.
//! * `upstream`: [`UpstreamAnswer`], an upstream's error answer.
//! * `respond`: errors as responses (status, body, retry and connection
//!   headers).

mod kind;
pub(crate) mod respond;
mod upstream;

use std::time::Duration;

use http::StatusCode;
use sluice_core::quota::Unit;

pub use kind::{ErrorKind, Fault};
pub use upstream::UpstreamAnswer;

/// What caused an error, kept for `source()`.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// How long a client is told to wait after a gateway-side or upstream
/// failure when nothing better is known.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whether the client may send the request again, and when: what the
/// answer's `Retry-After`, `retry-after-ms` and `x-should-retry` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The same request fails the same way: no retry headers (the client
    /// goes by the status).
    Futile,
    /// It may succeed after this wait: `Retry-After` (whole seconds,
    /// rounded up) and `retry-after-ms`.
    After(Duration),
    /// Waiting will not help soon although the status invites a retry (a
    /// spent budget, a request larger than a limit): `x-should-retry:
    /// false`, which the official SDKs obey, and when a budget renews, if
    /// it does.
    Never { renews_in: Option<Duration> },
}

/// What becomes of the client's connection after the error's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// It can carry the client's next request.
    Reusable,
    /// The request body was left unread (refused before or while reading
    /// it): hyper cannot reuse an HTTP/1 connection, so the answer says
    /// `Connection: close` rather than let a keep-alive client find out on
    /// its next request.
    BodyUnread,
}

/// A request that failed: see the [module docs](self).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProxyError {
    kind: ErrorKind,
    fault: Fault,
    status: StatusCode,
    retry: Retry,
    connection: Connection,
    /// What the client reads (never a key, never a prompt).
    message: String,
    /// The request field at fault (OpenAI's `param`).
    param: Option<String>,
    /// OpenAI's `type` when it is not the status's usual one: a rate limit
    /// names its unit (`requests`, `tokens`).
    openai_type: Option<&'static str>,
    /// The upstream's own answer, for [`ErrorKind::UpstreamAnswer`].
    upstream: Option<Box<UpstreamAnswer>>,
    #[source]
    cause: Option<Cause>,
}

impl ProxyError {
    /// An error of `kind` with its usual status, fault and retry verdict.
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            fault: kind.fault(),
            status: kind.status(),
            retry: Retry::Futile,
            connection: Connection::Reusable,
            message: message.into(),
            param: None,
            openai_type: None,
            upstream: None,
            cause: None,
        }
    }

    fn with_param(mut self, param: Option<String>) -> Self {
        self.param = param;
        self
    }

    fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    fn with_cause(mut self, cause: impl Into<Cause>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// The request body was left unread when this happened: see
    /// [`Connection::BodyUnread`].
    pub fn body_unread(mut self) -> Self {
        self.connection = Connection::BodyUnread;
        self
    }

    /// 400: the body is not what the endpoint takes; `param` names the
    /// field at fault.
    pub fn invalid_request(message: impl Into<String>, param: Option<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// 400: the body could not be read to its end.
    pub fn body_unreadable(cause: impl Into<Cause>) -> Self {
        let cause = cause.into();
        Self::new(
            ErrorKind::InvalidRequest,
            format!("The request body could not be read: {cause}"),
        )
        .with_cause(cause)
    }

    /// 400: no deployment of `model` serves `endpoint` (embeddings on an
    /// Anthropic-only route).
    pub fn cannot_serve(model: &str, endpoint: &str) -> Self {
        Self::invalid_request(
            format!("The model `{model}` cannot serve {endpoint}."),
            Some("model".into()),
        )
    }

    /// 401: no key, or one that is unknown, revoked, disabled or expired.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }

    /// 403: a route the key may not use.
    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            ErrorKind::ModelNotAllowed,
            format!("This API key is not allowed to use the model `{model}`."),
        )
        .with_param(Some("model".into()))
    }

    /// 404: a `model` no route answers to.
    pub fn unknown_model(model: &str) -> Self {
        Self::new(
            ErrorKind::UnknownModel,
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_param(Some("model".into()))
    }

    /// 404: a stored response that was not made through the gateway, or
    /// not for this key's routes.
    pub fn unknown_response(id: &str) -> Self {
        Self::new(
            ErrorKind::UnknownResponse,
            format!("Response with id '{id}' not found."),
        )
        .with_param(Some("response_id".into()))
    }

    /// 404: a path the proxy does not serve.
    pub fn unknown_url(method: &http::Method, path: &str) -> Self {
        Self::new(
            ErrorKind::UnknownUrl,
            format!("Unknown request URL: {method} {path}. Please check the URL for typos."),
        )
    }

    /// 405: a method the path does not take.
    pub fn method_not_allowed(method: &http::Method, path: &str) -> Self {
        Self::new(
            ErrorKind::MethodNotAllowed,
            format!("{method} is not allowed on {path}."),
        )
    }

    /// 408: the body did not arrive within `timeout`.
    pub fn body_timeout(timeout: Duration) -> Self {
        Self::new(
            ErrorKind::BodyTimeout,
            format!(
                "The request body did not arrive within {} s.",
                timeout.as_secs()
            ),
        )
    }

    /// 413: a body over `limit` bytes.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::BodyTooLarge,
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    /// 429: a rate limit in `unit` is spent; it has room again `after`.
    pub fn rate_limited(message: String, unit: Unit, after: Duration) -> Self {
        let mut error = Self::new(ErrorKind::RateLimited, message).with_retry(Retry::After(after));
        error.openai_type = Some(unit.as_str());
        error
    }

    /// 429 (`insufficient_quota`): a calendar budget is spent until it
    /// renews in `renews_in`.
    pub fn budget_spent(message: String, renews_in: Duration) -> Self {
        let mut error = Self::new(ErrorKind::BudgetSpent, message).with_retry(Retry::Never {
            renews_in: Some(renews_in),
        });
        error.openai_type = Some("insufficient_quota");
        error
    }

    /// 429: the request alone needs more than a limit in `unit` can ever
    /// hold.
    pub fn over_limit(message: String, unit: Unit) -> Self {
        let mut error =
            Self::new(ErrorKind::OverLimit, message).with_retry(Retry::Never { renews_in: None });
        error.openai_type = Some(unit.as_str());
        error
    }

    /// 503: the quota cannot be decided without the ledger.
    pub fn quota_unavailable(message: String, after: Duration) -> Self {
        Self::new(ErrorKind::QuotaUnavailable, message).with_retry(Retry::After(after))
    }

    /// 503: a token cannot be checked, or its subject's key made, now.
    pub fn auth_unavailable(message: String, after: Duration) -> Self {
        Self::new(ErrorKind::AuthUnavailable, message).with_retry(Retry::After(after))
    }

    /// 502: no usable answer came from the upstream (a connection, a
    /// stream or an answer that broke), for `cause`.
    pub fn upstream_failed(cause: impl Into<Cause>) -> Self {
        Self::upstream_broken(ErrorKind::UpstreamFailed, cause.into())
    }

    /// 504: the upstream did not answer in time.
    pub fn upstream_timeout(cause: impl Into<Cause>) -> Self {
        Self::upstream_broken(ErrorKind::UpstreamTimeout, cause.into())
    }

    /// A call that got no answer: 504 when `error` is a timeout, else 502.
    pub fn unanswered(error: sluice_providers::UpstreamError) -> Self {
        if error.is_timeout() {
            Self::upstream_timeout(error)
        } else {
            Self::upstream_failed(error)
        }
    }

    /// Names the provider and deployment whose upstream failed or timed
    /// out in the message the client reads (`... failed: provider
    /// \`openai\`, deployment \`gpt-4o\`: cannot connect ...`): where to
    /// look. Other errors are left as they are.
    pub fn at_deployment(mut self, provider: &str, model: &str) -> Self {
        if matches!(
            self.kind,
            ErrorKind::UpstreamFailed | ErrorKind::UpstreamTimeout
        ) {
            if let Some(cause) = &self.cause {
                self.message = format!(
                    "The upstream model API failed: provider `{provider}`, deployment `{model}`: {cause}"
                );
            }
        }
        self
    }

    fn upstream_broken(kind: ErrorKind, cause: Cause) -> Self {
        Self::new(kind, format!("The upstream model API failed: {cause}"))
            .with_retry(Retry::After(DEFAULT_RETRY_AFTER))
            .with_cause(cause)
    }

    /// 503: every deployment of `model` is failing (their breakers are
    /// open); the first may be tried again `after`.
    pub fn no_healthy_deployment(model: &str, after: Duration) -> Self {
        Self::new(
            ErrorKind::NoHealthyDeployment,
            format!("Every deployment of `{model}` is failing; retry later."),
        )
        .with_retry(Retry::After(after))
    }

    /// The upstream's own error answer, to be passed on: an upstream
    /// 401/403/404 is the gateway's misconfiguration, not the client's,
    /// and becomes a 502; a 429 or 5xx may be retried when the upstream
    /// says (or after [`DEFAULT_RETRY_AFTER`]).
    pub fn upstream_answer(answer: UpstreamAnswer) -> Self {
        let status = answer.status_out();
        let message = match answer.message() {
            Some(message) => format!(
                "The upstream model API answered {}: {message}",
                answer.status
            ),
            None => format!("The upstream model API answered {}.", answer.status),
        };
        let retry = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Retry::After(answer.retry_after().unwrap_or(DEFAULT_RETRY_AFTER))
        } else {
            Retry::Futile
        };
        let mut error = Self::new(ErrorKind::UpstreamAnswer, message).with_retry(retry);
        error.status = status;
        error.fault = answer.fault();
        error.upstream = Some(Box::new(answer));
        error
    }

    /// What went wrong, without any of the request's data: the label
    /// metrics and logs use.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Where the fault lies.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Whether and when the client may retry.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// What becomes of the client's connection.
    pub fn connection(&self) -> Connection {
        self.connection
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What the client reads.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The upstream's own answer, for [`ErrorKind::UpstreamAnswer`].
    pub fn upstream(&self) -> Option<&UpstreamAnswer> {
        self.upstream.as_deref()
    }
}

#[cfg(test)]
mod tests;
