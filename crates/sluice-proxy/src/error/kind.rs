//! [`ErrorKind`]: what went wrong, without any of the request's data, and
//! [`Fault`]: whose fault it is.

use http::StatusCode;

/// Where the fault of an error lies (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something wrong, or more than it may.
    Client,
    /// The gateway itself: its configuration, or a decision it cannot make
    /// now.
    Gateway,
    /// The upstream model API failed or refused.
    Upstream,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Gateway => "gateway",
            Fault::Upstream => "upstream",
        }
    }
}

/// What went wrong: payload-free (no key, model name or message), so it
/// can label a metric or a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400: the body is not what the endpoint takes.
    InvalidRequest,
    /// 401: no key, or one that is unknown, revoked, disabled or expired.
    Unauthenticated,
    /// 403: the key may not use the route.
    ModelNotAllowed,
    /// 404: no route answers to `model`.
    UnknownModel,
    /// 404: the proxy serves no such path.
    UnknownUrl,
    /// 404: no response with that id was made through the gateway for
    /// this key.
    UnknownResponse,
    /// 405: the path does not take the method.
    MethodNotAllowed,
    /// 408: the body came too slowly.
    BodyTimeout,
    /// 413: the body is over the limit.
    BodyTooLarge,
    /// 429: a rate limit is spent for now.
    RateLimited,
    /// 429: a daily or monthly budget is spent.
    BudgetSpent,
    /// 429: the request alone is more than a limit holds.
    OverLimit,
    /// 503: the quota cannot be decided without the ledger.
    QuotaUnavailable,
    /// 503: a token cannot be checked now (its issuer's keys cannot be
    /// fetched), or a new subject's key cannot be written (no quorum).
    AuthUnavailable,
    /// 502: the upstream's answer broke (connection, stream, body).
    UpstreamFailed,
    /// 504: the upstream did not answer in time.
    UpstreamTimeout,
    /// 503: every deployment's breaker is open.
    NoHealthyDeployment,
    /// The upstream's own error answer, passed on (its status, or 502).
    UpstreamAnswer,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::ModelNotAllowed => "model_not_allowed",
            ErrorKind::UnknownModel => "unknown_model",
            ErrorKind::UnknownUrl => "unknown_url",
            ErrorKind::UnknownResponse => "unknown_response",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::BodyTimeout => "body_timeout",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::BudgetSpent => "budget_spent",
            ErrorKind::OverLimit => "over_limit",
            ErrorKind::QuotaUnavailable => "quota_unavailable",
            ErrorKind::AuthUnavailable => "auth_unavailable",
            ErrorKind::UpstreamFailed => "upstream_failed",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::NoHealthyDeployment => "no_healthy_deployment",
            ErrorKind::UpstreamAnswer => "upstream_answer",
        }
    }

    /// The status the client gets (an upstream answer's is its own).
    pub(super) fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::ModelNotAllowed => StatusCode::FORBIDDEN,
            ErrorKind::UnknownModel | ErrorKind::UnknownUrl | ErrorKind::UnknownResponse => {
                StatusCode::NOT_FOUND
            }
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited | ErrorKind::BudgetSpent | ErrorKind::OverLimit => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ErrorKind::QuotaUnavailable
            | ErrorKind::AuthUnavailable
            | ErrorKind::NoHealthyDeployment => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamFailed | ErrorKind::UpstreamAnswer => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whose fault it is (an upstream answer's depends on its status).
    pub(super) fn fault(self) -> Fault {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::Unauthenticated
            | ErrorKind::ModelNotAllowed
            | ErrorKind::UnknownModel
            | ErrorKind::UnknownUrl
            | ErrorKind::UnknownResponse
            | ErrorKind::MethodNotAllowed
            | ErrorKind::BodyTimeout
            | ErrorKind::BodyTooLarge
            | ErrorKind::RateLimited
            | ErrorKind::BudgetSpent
            | ErrorKind::OverLimit => Fault::Client,
            ErrorKind::QuotaUnavailable | ErrorKind::AuthUnavailable => Fault::Gateway,
            ErrorKind::UpstreamFailed
            | ErrorKind::UpstreamTimeout
            | ErrorKind::NoHealthyDeployment
            | ErrorKind::UpstreamAnswer => Fault::Upstream,
        }
    }

    /// OpenAI's `code` for the kind.
    pub(super) fn code(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::Unauthenticated => "invalid_api_key",
            ErrorKind::ModelNotAllowed => "model_not_allowed",
            ErrorKind::UnknownModel => "model_not_found",
            ErrorKind::UnknownUrl => "unknown_url",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::BodyTooLarge => "request_too_large",
            ErrorKind::RateLimited | ErrorKind::OverLimit => "rate_limit_exceeded",
            ErrorKind::BudgetSpent => "insufficient_quota",
            ErrorKind::QuotaUnavailable => "quota_unavailable",
            ErrorKind::AuthUnavailable => "auth_unavailable",
            ErrorKind::UpstreamFailed => "upstream_error",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::NoHealthyDeployment => "service_unavailable",
            ErrorKind::InvalidRequest
            | ErrorKind::BodyTimeout
            | ErrorKind::UpstreamAnswer
            | ErrorKind::UnknownResponse => return None,
        })
    }
}
