//! `GET /v1/models`: the configured models.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::error;
use crate::body;
use crate::server::Mock;
use crate::stats::Endpoint;

pub(crate) async fn handle(State(mock): State<Arc<Mock>>, headers: HeaderMap) -> Response {
    let call = match mock.admit(Endpoint::Models, &headers).await {
        Ok(call) => call,
        Err(fault) => return error::render(&fault),
    };
    let data: Vec<_> = mock
        .config
        .models
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "object": "model",
                "created": mock.config.models_created,
                "owned_by": "sluice-mock-llm",
            })
        })
        .collect();
    body::json(call, &json!({ "object": "list", "data": data }))
}
