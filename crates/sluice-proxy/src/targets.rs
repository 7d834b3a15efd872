//! Providers as the adapters need them: base URL, the API key opened from
//! its sealed form, extra headers. Opening is cached per provider version
//! (its `updated_at_ms`) by each worker thread, so the hot path does no
//! decryption and takes no lock another core takes; the clear key lives
//! only in memory, in headers marked sensitive. A provider that
//! authenticates with Microsoft Entra ID or a service account gets its
//! token source ([`crate::tokens`]) with its target; an AWS Bedrock
//! provider its SigV4 signer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::header::{InvalidHeaderName, InvalidHeaderValue};
use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_core::provider::secret_header_context;
use sluice_core::secret::SecretError;
use sluice_core::{DataKey, Provider, ProviderKind};
use sluice_providers::aws::{AwsCredentials, BEDROCK_SERVICE};
use sluice_providers::google::ServiceAccount;
use sluice_providers::oauth::TokenError;
use sluice_providers::{PrepareError, RequestSigner, Target, Timeouts, UpstreamClient};

use crate::tokens::{Grant, TokenSource, Tokens};

/// Why a provider's settings cannot make an upstream request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    /// Its API key or a secret header is sealed under another data key,
    /// or damaged.
    #[error("cannot open the {what} of provider `{provider}`: {source}")]
    Sealed {
        provider: String,
        /// `API key`, or `secret header <name>`.
        what: String,
        #[source]
        source: SecretError,
    },
    #[error("provider `{provider}`: invalid header name")]
    HeaderName {
        provider: String,
        #[source]
        source: InvalidHeaderName,
    },
    #[error("provider `{provider}`: invalid value of header `{name}`")]
    HeaderValue {
        provider: String,
        name: HeaderName,
        #[source]
        source: InvalidHeaderValue,
    },
    /// What the adapter found wrong with it (a bad URL, a key that is not a
    /// header value).
    #[error("{0}")]
    Adapter(String),
    /// Its Microsoft Entra ID token cannot be had.
    #[error("provider `{provider}`: {source}")]
    Token {
        provider: String,
        #[source]
        source: TokenError,
    },
}

/// A provider's target and, for one that authenticates with Entra ID, the
/// token source to make ready before a request is prepared.
#[derive(Clone)]
pub(crate) struct Resolved {
    pub(crate) target: Arc<Target>,
    pub(crate) token: Option<Arc<TokenSource>>,
}

impl Resolved {
    /// Makes the target's token usable (fetched or refreshed if due) with
    /// the provider's `client`.
    pub(crate) async fn ready(&self, client: &UpstreamClient) -> Result<(), TargetError> {
        match &self.token {
            None => Ok(()),
            Some(token) => token
                .ready(client)
                .await
                .map_err(|source| TargetError::Token {
                    provider: self.target.name.to_string(),
                    source,
                }),
        }
    }
}

pub(crate) struct Targets {
    data_key: DataKey,
    /// Token sources, shared with the other workers.
    tokens: Arc<Tokens>,
    cache: RwLock<HashMap<String, (u64, Resolved)>>,
}

impl Targets {
    pub(crate) fn new(data_key: DataKey, tokens: Arc<Tokens>) -> Self {
        Self {
            data_key,
            tokens,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// `provider`'s target, or why it cannot be built (a secret sealed
    /// under another data key, a header that is not valid HTTP).
    pub(crate) fn get(&self, provider: &Provider) -> Result<Resolved, TargetError> {
        if let Some((version, resolved)) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&provider.name)
        {
            if *version == provider.updated_at_ms {
                return Ok(resolved.clone());
            }
        }
        let resolved = self.build(provider)?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                provider.name.clone(),
                (provider.updated_at_ms, resolved.clone()),
            );
        Ok(resolved)
    }

    fn build(&self, provider: &Provider) -> Result<Resolved, TargetError> {
        let credential =
            match &provider.api_key {
                None => None,
                Some(sealed) => Some(self.data_key.open(&provider.name, sealed).map_err(
                    |source| TargetError::Sealed {
                        provider: provider.name.clone(),
                        what: "API key".into(),
                        source,
                    },
                )?),
            };
        // With Entra ID the credential is the client secret, for Vertex AI
        // a service account key: exchanged for tokens, never sent upstream
        // itself.
        let entra = provider.azure.as_ref().and_then(|a| a.entra.as_ref());
        let mut signer = None;
        let (grant, api_key) = match (provider.kind, entra, credential) {
            (_, Some(entra), Some(secret)) => (
                Some(Grant::Entra {
                    settings: entra.clone(),
                    client_secret: secret,
                }),
                None,
            ),
            (ProviderKind::Vertex, _, Some(key)) => {
                let account = ServiceAccount::parse(key.expose()).map_err(|reason| {
                    TargetError::Adapter(format!(
                        "provider `{}`: its service account key {reason}",
                        provider.name
                    ))
                })?;
                (Some(Grant::ServiceAccount(account)), None)
            }
            // AWS Bedrock: the keys sign every request, never go upstream.
            (ProviderKind::Bedrock, _, Some(keys)) => {
                let credentials = AwsCredentials::parse(keys.expose()).map_err(|reason| {
                    TargetError::Adapter(format!(
                        "provider `{}`: its AWS credentials {reason}",
                        provider.name
                    ))
                })?;
                let region = provider
                    .bedrock
                    .as_ref()
                    .map(|b| b.region.clone())
                    .ok_or_else(|| {
                        TargetError::Adapter(format!(
                            "provider `{}`: a bedrock provider without a region",
                            provider.name
                        ))
                    })?;
                signer = Some(Arc::new(SigV4 {
                    credentials,
                    region,
                }) as Arc<dyn RequestSigner>);
                (None, None)
            }
            (_, _, credential) => (None, credential.map(|c| c.expose().clone())),
        };
        let token = grant.map(|grant| {
            self.tokens
                .source(&provider.name, provider.updated_at_ms, || grant)
        });
        let mut extra_headers = HeaderMap::new();
        for (name, value) in &provider.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|source| {
                TargetError::HeaderName {
                    provider: provider.name.clone(),
                    source,
                }
            })?;
            let value =
                HeaderValue::from_str(value).map_err(|source| TargetError::HeaderValue {
                    provider: provider.name.clone(),
                    name: name.clone(),
                    source,
                })?;
            extra_headers.insert(name, value);
        }
        for (name, sealed) in &provider.secret_headers {
            let clear = self
                .data_key
                .open(&secret_header_context(&provider.name, name), sealed)
                .map_err(|source| TargetError::Sealed {
                    provider: provider.name.clone(),
                    what: format!("secret header {name}"),
                    source,
                })?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|source| {
                TargetError::HeaderName {
                    provider: provider.name.clone(),
                    source,
                }
            })?;
            let mut value = HeaderValue::from_str(clear.expose()).map_err(|source| {
                TargetError::HeaderValue {
                    provider: provider.name.clone(),
                    name: name.clone(),
                    source,
                }
            })?;
            // Never indexed by HPACK, never printed by `Debug`.
            value.set_sensitive(true);
            extra_headers.insert(name, value);
        }
        let target = Target {
            name: provider.name.as_str().into(),
            base_url: provider.base_url.clone(),
            api_key,
            extra_headers,
            azure: provider.azure.as_deref().cloned(),
            bearer: token
                .as_ref()
                .map(|t| Arc::clone(t) as Arc<dyn sluice_providers::BearerToken>),
            signer,
        };
        Ok(Resolved {
            target: Arc::new(target),
            token,
        })
    }
}

/// Signs a Bedrock provider's requests with its IAM keys, for its region,
/// at the proxy's clock's time.
struct SigV4 {
    credentials: AwsCredentials,
    region: String,
}

impl RequestSigner for SigV4 {
    fn sign(&self, request: &mut http::Request<bytes::Bytes>) -> Result<(), PrepareError> {
        sluice_providers::aws::sign(
            request,
            &self.credentials,
            &self.region,
            BEDROCK_SERVICE,
            crate::clock::now(),
        )
    }
}

/// The client's timeouts for `provider`.
pub(crate) fn timeouts(provider: &Provider) -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(provider.timeouts.connect_ms),
        first_byte: Duration::from_millis(provider.timeouts.first_byte_ms),
        total: Duration::from_millis(provider.timeouts.total_ms),
    }
}
