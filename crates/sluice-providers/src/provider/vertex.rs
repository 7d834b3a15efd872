//! Gemini on Google Cloud's Vertex AI (`kind = "vertex"`): the same
//! `generateContent` API and translations as [`Gemini`], at
//! `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google`,
//! authenticated with a service account's OAuth token (the proxy gets it,
//! [`crate::google`]) instead of an API key.

use bytes::Bytes;
use http::HeaderMap;
use sluice_core::ProviderKind;

use super::gemini::Gemini;
use super::{Provider, Service, UpstreamBody};
use crate::adapter::{
    ClientRequest, Conversion, Dialect, Endpoint, Exchange, PrepareError, Target,
};
use crate::relay::{RelayError, StreamRelay};
use crate::usage::TokenUsage;

pub(super) struct Vertex;

impl Provider for Vertex {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Vertex
    }

    fn dialect(&self) -> Dialect {
        Gemini.dialect()
    }

    fn serves(&self, endpoint: Endpoint) -> Option<Service> {
        match endpoint {
            // Vertex embeds with `:predict`, another API: not yet.
            Endpoint::Embeddings => None,
            _ => Gemini.serves(endpoint),
        }
    }

    fn url(
        &self,
        target: &Target,
        service: Service,
        request: &ClientRequest,
        model: &str,
    ) -> Result<String, PrepareError> {
        Gemini.url(target, service, request, model)
    }

    fn body(
        &self,
        request: &ClientRequest,
        conversion: Conversion,
        model: &str,
        default_max_tokens: u32,
    ) -> Result<UpstreamBody, PrepareError> {
        Gemini.body(request, conversion, model, default_max_tokens)
    }

    fn refuses_credential(&self, status: http::StatusCode, body: &[u8]) -> bool {
        Gemini.refuses_credential(status, body)
    }

    /// Never called with a token source in place; without one (a key
    /// that is not a service account's) there is nothing to send.
    fn authenticate(&self, _key: &str, _headers: &mut HeaderMap) -> Result<(), PrepareError> {
        Err(PrepareError::Target(
            "a vertex provider authenticates with its service account's token".into(),
        ))
    }

    fn stream_relay(&self, exchange: &Exchange, model: &str, created: u64) -> Box<dyn StreamRelay> {
        Gemini.stream_relay(exchange, model, created)
    }

    fn convert_response(
        &self,
        exchange: &Exchange,
        body: Bytes,
        model: &str,
        created: u64,
    ) -> Result<(Bytes, Option<TokenUsage>), RelayError> {
        Gemini.convert_response(exchange, body, model, created)
    }
}
