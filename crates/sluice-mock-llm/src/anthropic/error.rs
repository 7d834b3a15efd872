//! Anthropic's error shape: `{"type":"error","error":{"type","message"}}`.

use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::fault::Fault;

pub(crate) fn render(fault: &Fault) -> Response {
    let (kind, message) = match fault {
        Fault::BadRequest { message, .. } => ("invalid_request_error", message.clone()),
        Fault::MissingKey => (
            "authentication_error",
            "x-api-key header is required".to_owned(),
        ),
        Fault::WrongKey => ("authentication_error", "invalid x-api-key".to_owned()),
        Fault::ModelNotFound { model } => ("not_found_error", format!("model: {model}")),
        Fault::NotFound { message, .. } => ("not_found_error", message.clone()),
        Fault::Injected { status, .. } => {
            let kind = match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                500.. => "api_error",
                _ => "invalid_request_error",
            };
            (kind, format!("sluice-mock-llm: injected {status} failure"))
        }
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let mut response = (fault.status(), Json(body)).into_response();
    for (name, value) in fault.retry_headers().into_iter().flatten() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}
