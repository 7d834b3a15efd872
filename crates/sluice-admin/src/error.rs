//! The one place admin errors become HTTP responses.
//!
//! Every failure under `/admin/v1/` (and the unauthenticated endpoints) is
//! rendered as
//!
//! ```json
//! {"error": {"type": "validation_error", "message": "…", "field": "deployments[0].weight"}}
//! ```
//!
//! with the status the `type` implies. Handlers return [`ApiError`]; axum's
//! own rejections never reach a client because the extractors in
//! [`crate::extract`] convert them here first.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_core::ApplyError;
use sluice_raft::ClusterError;
use utoipa::ToSchema;

/// What kind of failure an error is; decides the HTTP status and is the
/// `type` string clients match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the body is not JSON, or not sent as `application/json`.
    InvalidRequest,
    /// 401: no admin token, or one the cluster does not know.
    Unauthorized,
    /// 403: the token's role may not call this endpoint.
    Forbidden,
    /// 404: the named entity or path does not exist.
    NotFound,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 409: the change clashes with what exists.
    Conflict,
    /// 409: a membership change the cluster refused.
    InvalidMembership,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 413: the body is larger than the admin API accepts.
    PayloadTooLarge,
    /// 422: well-formed JSON with a field that is wrong.
    Validation,
    /// 500: this node failed.
    Internal,
    /// 503: no leader could be reached; retry shortly.
    ClusterUnavailable,
    /// 504: the cluster did not answer in time; without an `Idempotency-Key`
    /// the change may or may not have taken effect.
    Timeout,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict | ErrorKind::InvalidMembership => StatusCode::CONFLICT,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::ClusterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `type` string in the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidMembership => "invalid_membership",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Validation => "validation_error",
            ErrorKind::Internal => "internal_error",
            ErrorKind::ClusterUnavailable => "cluster_unavailable",
            ErrorKind::Timeout => "timeout",
        }
    }
}

/// An admin API error: what went wrong, in words an operator can act on, and
/// the request field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// Path of the offending field in the request (`deployments[0].weight`).
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A 422 naming the field at fault.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            kind: ErrorKind::Validation,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// Renames the field of a validation error, for where the API's field name
    /// differs from the stored one (`expires_at` is `expires_at_ms` here).
    pub fn rename_field(mut self, from: &str, to: &str) -> Self {
        if let Some(field) = &mut self.field {
            if field == from {
                *field = to.to_string();
            }
        }
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {field}: {}", self.kind.as_str(), self.message),
            None => write!(f, "{}: {}", self.kind.as_str(), self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<ApplyError> for ApiError {
    fn from(err: ApplyError) -> Self {
        match err {
            ApplyError::Invalid { field, message } => ApiError::validation(field, message),
            ApplyError::NotFound { .. } => ApiError::not_found(err.to_string()),
            ApplyError::Conflict { message } => ApiError::new(ErrorKind::Conflict, message),
            ApplyError::IdempotencyKeyReused { .. } => {
                ApiError::validation(crate::idempotency::HEADER, err.to_string())
            }
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(err: ClusterError) -> Self {
        match err {
            ClusterError::Rejected(apply) => apply.into(),
            ClusterError::Unavailable(_) => {
                ApiError::new(ErrorKind::ClusterUnavailable, err.to_string())
            }
            ClusterError::Timeout(_) => ApiError::new(ErrorKind::Timeout, err.to_string()),
            ClusterError::InvalidMembership(message) => {
                ApiError::new(ErrorKind::InvalidMembership, message)
            }
            ClusterError::Internal(_) => ApiError::internal(err.to_string()),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable kind: `invalid_request`, `unauthorized`, `not_found`,
    /// `method_not_allowed`, `conflict`, `invalid_membership`,
    /// `payload_too_large`, `validation_error`, `internal_error`,
    /// `cluster_unavailable`, `timeout`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
    /// Path of the request field at fault, when one is.
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        if status.is_server_error() {
            tracing::warn!(kind = self.kind.as_str(), message = %self.message, "admin request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.as_str().to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self.kind {
            ErrorKind::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ErrorKind::ClusterUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// Fallback for paths no handler serves.
pub(crate) async fn not_found_fallback() -> ApiError {
    ApiError::not_found("no such admin endpoint")
}

/// Fallback for known paths called with the wrong method.
pub(crate) async fn method_not_allowed_fallback() -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_errors_map_to_status_and_field() {
        let err: ApiError =
            ClusterError::Rejected(ApplyError::invalid("deployments[0].weight", "too big")).into();
        assert_eq!(err.kind.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.field.as_deref(), Some("deployments[0].weight"));
        let err: ApiError = ClusterError::Rejected(ApplyError::not_found("route", "x")).into();
        assert_eq!(err.kind.status(), StatusCode::NOT_FOUND);
        let err: ApiError = ClusterError::Rejected(ApplyError::conflict("dup")).into();
        assert_eq!(err.kind.status(), StatusCode::CONFLICT);
    }

    #[test]
    fn unavailable_carries_retry_after_and_unauthorized_a_challenge() {
        let response =
            ApiError::from(ClusterError::Unavailable("no leader".into())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::unauthorized("missing").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let response = ApiError::from(ClusterError::Timeout("slow".into())).into_response();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn renaming_touches_only_the_named_field() {
        let err =
            ApiError::validation("expires_at", "past").rename_field("expires_at", "expires_at_ms");
        assert_eq!(err.field.as_deref(), Some("expires_at_ms"));
        let err = ApiError::validation("name", "bad").rename_field("expires_at", "expires_at_ms");
        assert_eq!(err.field.as_deref(), Some("name"));
    }
}
