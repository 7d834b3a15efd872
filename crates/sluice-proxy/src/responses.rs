//! `GET` and `DELETE /v1/responses/{id}`, and `GET
//! /v1/responses/{id}/input_items`: a stored response of the Responses
//! API and its input, asked of the provider that made it. Its id names the
//! provider ([`sluice_providers::responses`]), so any node answers for
//! any response, with nothing stored here. A key reads only the responses
//! of providers its routes use; any other id is a 404, as an id the
//! gateway never made is.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::Value;
use sluice_core::{State, VirtualKey};
use sluice_providers::{prepare_stored_response, responses, Dialect, PrepareError, Stored};

use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::error::ProxyError;
use crate::error::UpstreamAnswer;
use crate::pipeline::authenticate;
use crate::targets::timeouts;
use crate::worker::Worker;

/// The largest stored response read back.
const MAX_STORED: usize = 16 * 1024 * 1024;

impl Worker {
    /// `method` (`GET` or `DELETE`) of the stored response `id`, or of
    /// what `stored` names of it.
    pub(crate) async fn stored_response(
        &self,
        method: Method,
        id: &str,
        stored: Stored<'_>,
        headers: &HeaderMap,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let mut state = self.state.state();
        let subject = authenticate::jwt_subject(self, &mut state, headers, now_ms()).await?;
        let key = authenticate::key(&state, headers, subject.as_deref(), now_ms())?;
        let unknown = || ProxyError::unknown_response(id);
        let (provider, upstream_id) = responses::upstream_of(id).ok_or_else(unknown)?;
        let provider = state
            .provider(&provider)
            .filter(|p| reaches(&state, key, &p.name))
            .ok_or_else(unknown)?;
        let resolved = self
            .targets
            .get(provider)
            .map_err(ProxyError::upstream_failed)?;
        resolved
            .ready(self.client_for(&provider.name))
            .await
            .map_err(ProxyError::upstream_failed)?;
        let request = prepare_stored_response(
            provider.kind,
            &resolved.target,
            method,
            &upstream_id,
            stored,
        )
        .map_err(|e| match e {
            // The client's query: its to fix.
            PrepareError::Invalid(e) if e.param.as_deref() == Some("query") => {
                ProxyError::invalid_request(e.message, e.param)
            }
            PrepareError::Unsupported { .. } | PrepareError::Invalid(_) => unknown(),
            PrepareError::Target(message) => ProxyError::upstream_failed(message),
        })?;
        let response = self
            .client_for(&provider.name)
            .send(request, timeouts(provider))
            .await
            .map_err(ProxyError::unanswered)?;
        let (status, upstream_headers) = (response.status, response.headers.clone());
        let body = response
            .body
            .collect(MAX_STORED)
            .await
            .map_err(ProxyError::upstream_failed)?;
        if status == StatusCode::NOT_FOUND {
            return Err(unknown());
        }
        if !status.is_success() {
            let answer = UpstreamAnswer::new(status, &upstream_headers, body, Dialect::OpenAi);
            return Err(ProxyError::upstream_answer(answer));
        }
        let mut object: Value =
            serde_json::from_slice(&body).map_err(ProxyError::upstream_failed)?;
        responses::wrap_id(&mut object, &provider.name);
        let mut out = Response::new(ProxyBody::full(object.to_string()));
        *out.status_mut() = status;
        out.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(out)
    }
}

/// Whether `key` may use a route with a deployment on `provider`.
fn reaches(state: &State, key: &VirtualKey, provider: &str) -> bool {
    state.routes().any(|route| {
        key.allows_route(&route.name) && route.deployments.iter().any(|d| d.provider == provider)
    })
}
