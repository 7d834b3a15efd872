//! Errors the mock answers with, independent of any API's wire shape.
//! `openai::error` and `anthropic::error` render them.

use axum::http::StatusCode;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Unparsable JSON, a missing or ill-typed field, a bad `x-mock-*` header.
    BadRequest {
        message: String,
        /// The request field at fault, when there is one.
        param: Option<String>,
    },
    /// `require_api_key` is set and the request carries no key.
    MissingKey,
    /// `require_api_key` is set and the request carries another key.
    WrongKey,
    /// The model is not in `MockConfig::models`.
    ModelNotFound { model: String },
    /// A stored object (a response) that is not there.
    NotFound {
        message: String,
        param: Option<String>,
    },
    /// Failure injected by `fail_status` / `x-mock-status`.
    Injected { status: u16, retry_after_ms: u64 },
}

impl Fault {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Fault::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Fault::MissingKey | Fault::WrongKey => StatusCode::UNAUTHORIZED,
            Fault::ModelNotFound { .. } | Fault::NotFound { .. } => StatusCode::NOT_FOUND,
            Fault::Injected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// `retry-after` (seconds, rounded up) and `retry-after-ms`, sent with an
    /// injected 429 or 503 as the real providers do.
    pub(crate) fn retry_headers(&self) -> Option<[(&'static str, String); 2]> {
        match self {
            Fault::Injected {
                status: 429 | 503,
                retry_after_ms,
            } => Some([
                ("retry-after", retry_after_ms.div_ceil(1000).to_string()),
                ("retry-after-ms", retry_after_ms.to_string()),
            ]),
            _ => None,
        }
    }

    /// A body-parsing error, with the JSON path of the offending field.
    pub(crate) fn from_json(err: serde_path_to_error::Error<serde_json::Error>) -> Fault {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Fault::BadRequest {
                message: format!("could not parse the JSON body of the request: {inner}"),
                param: None,
            };
        }
        let param = (path != ".").then_some(path);
        Fault::BadRequest {
            message: match &param {
                Some(p) => format!("{p}: {inner}"),
                None => inner.to_string(),
            },
            param,
        }
    }
}
