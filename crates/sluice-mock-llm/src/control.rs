//! The `/_mock/*` control endpoints: read and replace the instance-wide
//! [`Behavior`], read the [`Stats`](crate::Stats). Never authenticated,
//! never counted.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::call::parse;
use crate::fault::Fault;
use crate::server::Mock;
use crate::Behavior;

/// `GET /_mock/stats`
pub(crate) async fn stats(State(mock): State<Arc<Mock>>) -> Response {
    Json(mock.counters.snapshot()).into_response()
}

/// `GET /_mock/behavior`
pub(crate) async fn behavior(State(mock): State<Arc<Mock>>) -> Response {
    Json(Behavior::clone(&mock.behavior.load())).into_response()
}

/// `PUT /_mock/behavior` with a [`Behavior`] as JSON (missing fields take
/// their default); answers with the behaviour now in force.
pub(crate) async fn set_behavior(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    match parse::<Behavior>(&body) {
        Ok(behavior) => {
            mock.behavior.store(Arc::new(behavior.clone()));
            Json(behavior).into_response()
        }
        Err(Fault::BadRequest { message, .. }) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
        }
        Err(other) => other.status().into_response(),
    }
}
