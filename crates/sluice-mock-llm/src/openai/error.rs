//! OpenAI's error shape: `{"error":{"message","type","param","code"}}`.

use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::fault::Fault;

pub(crate) fn render(fault: &Fault) -> Response {
    let (message, kind, param, code) = match fault {
        Fault::BadRequest { message, param } => {
            (message.clone(), "invalid_request_error", param.clone(), None)
        }
        Fault::MissingKey => (
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).".to_owned(),
            "invalid_request_error",
            None,
            None,
        ),
        Fault::WrongKey => (
            "Incorrect API key provided.".to_owned(),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        Fault::ModelNotFound { model } => (
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ),
        Fault::NotFound { message, param } => (
            message.clone(),
            "invalid_request_error",
            param.clone(),
            None,
        ),
        Fault::Injected { status, .. } => {
            let (kind, code) = match status {
                429 => ("requests", Some("rate_limit_exceeded")),
                500.. => ("server_error", None),
                _ => ("invalid_request_error", None),
            };
            (format!("sluice-mock-llm: injected {status} failure"), kind, None, code)
        }
    };
    let body = json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    });
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
