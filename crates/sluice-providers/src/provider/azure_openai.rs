//! Azure OpenAI (`kind = "azure_openai"`): OpenAI's API at an Azure
//! resource. Bodies, answers and streams are OpenAI's (this module hands
//! them to [`OpenAi`]); what differs is the address and the credential.
//!
//! * The base URL is the resource endpoint,
//!   `https://{resource}.openai.azure.com`.
//! * With `api_version = "v1"`, the v1 API: `/openai/v1/chat/completions`,
//!   the deployment named by `model` as at OpenAI.
//! * With a dated version, the deployment is in the path:
//!   `/openai/deployments/{deployment}/chat/completions?api-version=...`,
//!   and the Responses API (not per deployment) at
//!   `/openai/responses?api-version=...`, from
//!   [`AZURE_RESPONSES_API_VERSION`] on.
//! * The resource key goes in `api-key`; a Microsoft Entra ID token (see
//!   [`crate::entra`]) goes in `Authorization: Bearer`, written by the
//!   adapter from the target's bearer token.

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use sluice_core::provider::{AzureSettings, AZURE_RESPONSES_API_VERSION};
use sluice_core::ProviderKind;

use super::openai::OpenAi;
use super::{path_segment, Provider, Service, UpstreamBody};
use crate::adapter::{
    join, secret, ClientRequest, Conversion, Dialect, Endpoint, Exchange, PrepareError, Target,
};
use crate::relay::{RelayError, StreamRelay};
use crate::usage::TokenUsage;

pub(super) struct AzureOpenAi;

/// The resource key's header.
const API_KEY: HeaderName = HeaderName::from_static("api-key");

/// The target's settings (a target of this kind always has them; a
/// missing one is a provider that cannot be used, not a panic).
fn settings(target: &Target) -> Result<&AzureSettings, PrepareError> {
    target
        .azure
        .as_ref()
        .ok_or_else(|| PrepareError::Target("azure_openai provider without its settings".into()))
}

/// `path` under `/openai` of the resource, with the `api-version` query of
/// a dated version.
fn url(target: &Target, azure: &AzureSettings, path: &str) -> String {
    let mut url = join(&target.base_url, "/openai");
    if azure.is_v1() {
        url.push_str("/v1");
        url.push_str(path);
    } else {
        url.push_str(path);
        url.push_str("?api-version=");
        url.extend(form_urlencoded::byte_serialize(
            azure.api_version.as_bytes(),
        ));
    }
    url
}

/// Whether a dated version has the Responses API (dated versions compare
/// as text: `YYYY-MM-DD` then an optional `-preview`).
fn has_responses(azure: &AzureSettings) -> bool {
    azure.is_v1() || azure.api_version.as_str() >= AZURE_RESPONSES_API_VERSION
}

impl Provider for AzureOpenAi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::AzureOpenAi
    }

    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn serves(&self, endpoint: Endpoint) -> Option<Service> {
        OpenAi.serves(endpoint)
    }

    fn url(
        &self,
        target: &Target,
        service: Service,
        _request: &ClientRequest,
        model: &str,
    ) -> Result<String, PrepareError> {
        let azure = settings(target)?;
        if azure.is_v1() {
            return Ok(url(target, azure, service.path));
        }
        if service.path == "/responses" {
            if !has_responses(azure) {
                return Err(PrepareError::Unsupported {
                    kind: ProviderKind::AzureOpenAi,
                    endpoint: Endpoint::Responses,
                });
            }
            return Ok(url(target, azure, service.path));
        }
        // A deployment name goes in the path.
        let model = path_segment(model)?;
        Ok(url(
            target,
            azure,
            &format!("/deployments/{model}{}", service.path),
        ))
    }

    fn stored_response_url(
        &self,
        target: &Target,
        service: Service,
        upstream_id: &str,
        suffix: &str,
    ) -> Result<String, PrepareError> {
        let azure = settings(target)?;
        if !has_responses(azure) {
            return Err(PrepareError::Unsupported {
                kind: ProviderKind::AzureOpenAi,
                endpoint: Endpoint::Responses,
            });
        }
        Ok(url(
            target,
            azure,
            &format!("{}/{upstream_id}{suffix}", service.path),
        ))
    }

    fn body(
        &self,
        request: &ClientRequest,
        conversion: Conversion,
        model: &str,
        default_max_tokens: u32,
    ) -> Result<UpstreamBody, PrepareError> {
        OpenAi.body(request, conversion, model, default_max_tokens)
    }

    fn authenticate(&self, key: &str, headers: &mut HeaderMap) -> Result<(), PrepareError> {
        headers.insert(API_KEY, secret(key)?);
        Ok(())
    }

    fn stream_relay(&self, exchange: &Exchange, model: &str, created: u64) -> Box<dyn StreamRelay> {
        OpenAi.stream_relay(exchange, model, created)
    }

    fn convert_response(
        &self,
        exchange: &Exchange,
        body: Bytes,
        model: &str,
        created: u64,
    ) -> Result<(Bytes, Option<TokenUsage>), RelayError> {
        OpenAi.convert_response(exchange, body, model, created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{prepare, prepare_stored_response, BearerToken};
    use http::Method;
    use std::sync::Arc;

    fn target(api_version: &str) -> Target {
        Target {
            name: "az".into(),
            base_url: "https://contoso.openai.azure.com/".into(),
            api_key: Some("azure-key".into()),
            azure: Some(AzureSettings {
                api_version: api_version.into(),
                entra: None,
            }),
            ..Target::default()
        }
    }

    fn request(endpoint: Endpoint, body: &str) -> ClientRequest {
        ClientRequest::parse(endpoint, body.as_bytes(), &HeaderMap::new()).unwrap()
    }

    fn chat() -> ClientRequest {
        request(
            Endpoint::ChatCompletions,
            r#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#,
        )
    }

    fn prepared_uri(request: &ClientRequest, target: &Target, model: &str) -> String {
        let prepared = prepare(request, ProviderKind::AzureOpenAi, target, model, 1).unwrap();
        prepared.request.uri().to_string()
    }

    #[test]
    fn a_dated_version_names_the_deployment_in_the_path() {
        let t = target("2024-10-21");
        assert_eq!(
            prepared_uri(&chat(), &t, "gpt-4o-prod"),
            "https://contoso.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        let embed = request(Endpoint::Embeddings, r#"{"model":"e","input":"x"}"#);
        assert_eq!(
            prepared_uri(&embed, &t, "embed-small"),
            "https://contoso.openai.azure.com/openai/deployments/embed-small/embeddings?api-version=2024-10-21"
        );
    }

    #[test]
    fn the_v1_api_names_the_deployment_as_the_model() {
        let t = target("v1");
        let prepared = prepare(&chat(), ProviderKind::AzureOpenAi, &t, "gpt-4o-prod", 1).unwrap();
        assert_eq!(
            prepared.request.uri(),
            "https://contoso.openai.azure.com/openai/v1/chat/completions"
        );
        let body: serde_json::Value = serde_json::from_slice(prepared.request.body()).unwrap();
        assert_eq!(body["model"], "gpt-4o-prod");
    }

    #[test]
    fn the_key_goes_in_api_key_and_never_in_authorization() {
        let prepared = prepare(&chat(), ProviderKind::AzureOpenAi, &target("v1"), "d", 1).unwrap();
        let headers = prepared.request.headers();
        assert_eq!(headers["api-key"], "azure-key");
        assert!(headers["api-key"].is_sensitive());
        assert!(headers.get("authorization").is_none());
    }

    struct Fixed;
    impl BearerToken for Fixed {
        fn current(&self) -> Option<Arc<str>> {
            Some("entra-token".into())
        }
    }

    struct Empty;
    impl BearerToken for Empty {
        fn current(&self) -> Option<Arc<str>> {
            None
        }
    }

    #[test]
    fn an_entra_token_replaces_the_key() {
        let mut t = target("v1");
        t.bearer = Some(Arc::new(Fixed));
        let prepared = prepare(&chat(), ProviderKind::AzureOpenAi, &t, "d", 1).unwrap();
        let headers = prepared.request.headers();
        assert_eq!(headers["authorization"], "Bearer entra-token");
        assert!(headers["authorization"].is_sensitive());
        assert!(headers.get("api-key").is_none());
        t.bearer = Some(Arc::new(Empty));
        assert!(matches!(
            prepare(&chat(), ProviderKind::AzureOpenAi, &t, "d", 1),
            Err(PrepareError::Target(_))
        ));
    }

    #[test]
    fn a_deployment_name_that_would_change_the_path_is_refused() {
        for bad in ["a/b", "a?b", "../x", "a b", ""] {
            assert!(
                matches!(
                    prepare(
                        &chat(),
                        ProviderKind::AzureOpenAi,
                        &target("2024-10-21"),
                        bad,
                        1
                    ),
                    Err(PrepareError::Target(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn responses_need_a_version_that_has_them() {
        let responses = request(Endpoint::Responses, r#"{"model":"m","input":"hi"}"#);
        assert!(matches!(
            prepare(
                &responses,
                ProviderKind::AzureOpenAi,
                &target("2024-10-21"),
                "d",
                1
            ),
            Err(PrepareError::Unsupported { .. })
        ));
        assert_eq!(
            prepared_uri(&responses, &target("2025-03-01-preview"), "d"),
            "https://contoso.openai.azure.com/openai/responses?api-version=2025-03-01-preview"
        );
        assert_eq!(
            prepared_uri(&responses, &target("v1"), "d"),
            "https://contoso.openai.azure.com/openai/v1/responses"
        );
        let stored = prepare_stored_response(
            ProviderKind::AzureOpenAi,
            &target("2025-04-01-preview"),
            Method::GET,
            "resp_1",
            crate::adapter::Stored::Response,
        )
        .unwrap();
        assert_eq!(
            stored.uri(),
            "https://contoso.openai.azure.com/openai/responses/resp_1?api-version=2025-04-01-preview"
        );
        assert_eq!(stored.headers()["api-key"], "azure-key");
        let items = prepare_stored_response(
            ProviderKind::AzureOpenAi,
            &target("2025-04-01-preview"),
            Method::GET,
            "resp_1",
            crate::adapter::Stored::InputItems {
                query: Some("limit=1"),
            },
        )
        .unwrap();
        assert_eq!(
            items.uri(),
            "https://contoso.openai.azure.com/openai/responses/resp_1/input_items?api-version=2025-04-01-preview&limit=1"
        );
    }
}
