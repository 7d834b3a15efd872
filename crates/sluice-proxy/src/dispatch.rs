//! The proxy's front door: every request gets its id and its span, then
//! goes by method and path to the model-call [pipeline](crate::pipeline)
//! or to one of the small endpoints (health, readiness, metrics, the
//! models list).

use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use serde_json::json;
use sluice_providers::{Dialect, Endpoint, Stored};
use tracing::Instrument;

use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::error::respond::respond;
use crate::error::ProxyError;
use crate::pipeline::authenticate;
use crate::worker::Worker;
use crate::{models, trace};

impl Worker {
    /// Answers one request (the hyper service body).
    pub(crate) async fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let request_id = trace::request_id(request.headers());
        let span = trace::request_span(&request, &request_id);
        let mut response = self.dispatch(request).instrument(span.clone()).await;
        span.record("status", response.status().as_u16());
        response.headers_mut().insert("x-request-id", request_id);
        response
    }

    async fn dispatch(self: &Arc<Self>, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request.uri().path();
        let method = request.method();
        let version = request.version();
        if let Some(endpoint) = Endpoint::from_path(path) {
            if method != Method::POST {
                let error = ProxyError::method_not_allowed(method, path);
                return respond(error, endpoint.dialect(), version);
            }
            // Boxed: a model call's future is kilobytes, and every future
            // that holds it inline (this one, the span's, the service's) is
            // moved whole at each await that creates it; boxed here it is
            // written once, and what wraps it stays small.
            return Box::pin(self.model_call(endpoint, request)).await;
        }
        let dialect = dialect_of(path, request.headers());
        if let Some(rest) = path.strip_prefix("/v1/responses/") {
            let (id, stored) = match rest.strip_suffix("/input_items") {
                Some(id) => (
                    id,
                    Stored::InputItems {
                        query: request.uri().query(),
                    },
                ),
                None => (rest, Stored::Response),
            };
            let allowed =
                method == Method::GET || (method == Method::DELETE && stored == Stored::Response);
            if !allowed {
                return respond(
                    ProxyError::method_not_allowed(method, path),
                    dialect,
                    version,
                );
            }
            let method = method.clone();
            let answer = self.stored_response(method, id, stored, request.headers());
            return match answer.await {
                Ok(response) => response,
                Err(error) => respond(error, dialect, version),
            };
        }
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
            (&Method::GET, "/v1/models") => {
                self.models(request.headers(), None, dialect, version).await
            }
            (&Method::GET, p) if p.starts_with("/v1/models/") => {
                let id = &p["/v1/models/".len()..];
                self.models(request.headers(), Some(id), dialect, version)
                    .await
            }
            (_, "/v1/models") => respond(
                ProxyError::method_not_allowed(method, path),
                dialect,
                version,
            ),
            _ => respond(ProxyError::unknown_url(method, path), dialect, version),
        }
    }

    /// `GET /v1/models` (`id`: `None`) and `GET /v1/models/{id}`.
    async fn models(
        &self,
        headers: &HeaderMap,
        id: Option<&str>,
        dialect: Dialect,
        version: Version,
    ) -> Response<ProxyBody> {
        let mut state = self.state.state();
        let key = match authenticate::jwt_subject(self, &mut state, headers, now_ms())
            .await
            .and_then(|subject| authenticate::key(&state, headers, subject.as_deref(), now_ms()))
        {
            Ok(key) => key,
            Err(e) => return respond(e, dialect, version),
        };
        match id {
            None => json_response(StatusCode::OK, &models::list(&state, key, dialect)),
            Some(id) => match models::get(&state, key, id, dialect) {
                Some(model) => json_response(StatusCode::OK, &model),
                None => respond(ProxyError::unknown_model(id), dialect, version),
            },
        }
    }
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

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
