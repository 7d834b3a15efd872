//! [`Worker`]: one worker thread's proxy. The parts every worker shares
//! ([`Shared`]: settings, state, breakers, metrics, quotas, the usage
//! meter), and what a worker owns alone: its upstream connection pools,
//! its cache of opened provider targets and its shard of the usage meter,
//! so a request and its upstream connection
//! are served by one thread and its bookkeeping touches that thread's
//! memory.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use sluice_core::DataKey;
use sluice_providers::client::{ClientBuildError, ClientOptions};
use sluice_providers::UpstreamClient;
use sluice_quota::Quotas;

use crate::breaker::Breakers;
use crate::jwt::Jwt;
use crate::metrics::Metrics;
use crate::targets::Targets;
use crate::tokens::Tokens;
use crate::usage::{UsageMeter, UsageShard};
use crate::{ProxyConfig, StateSource, SubjectRegistry};

/// What every worker thread of the proxy shares.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) state: Box<dyn StateSource>,
    /// Opens providers' sealed secrets (each worker caches its own).
    data_key: DataKey,
    client_options: ClientOptions,
    pub(crate) metrics: Metrics,
    pub(crate) breakers: Breakers,
    /// Global quotas: `None` enforces none (a proxy outside a cluster).
    pub(crate) quotas: Option<Arc<Quotas>>,
    /// Where finished model calls are added up: `None` meters nothing.
    usage: Option<Arc<UsageMeter>>,
    /// Providers' bearer tokens (Entra ID), one source per provider for
    /// all workers.
    tokens: Arc<Tokens>,
    /// The JWT issuers clients may authenticate with, and their cached
    /// keys (`None`: virtual keys only).
    pub(crate) jwt: Option<Jwt>,
    /// Where a JWT subject's key is made on its first request (`None`: a
    /// proxy outside a cluster, which accepts only subjects that have one).
    pub(crate) subjects: Option<Arc<dyn SubjectRegistry>>,
}

/// One worker thread's proxy: the shared parts, and upstream clients
/// (connection pools), opened provider targets and a usage shard of its
/// own.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    clients: Clients,
    /// Providers as requests need them, cached for this worker only: the
    /// lock it takes on every attempt is never taken on another core.
    pub(crate) targets: Targets,
    /// This worker's shard of the usage meter (`None`: no metering).
    pub(crate) usage_shard: Option<Arc<UsageShard>>,
}

impl Deref for Worker {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// One worker's upstream clients: the default one (webpki roots) and one
/// per provider that has an extra CA (`[proxy.upstream_ca]`).
struct Clients {
    default: UpstreamClient,
    with_ca: HashMap<String, UpstreamClient>,
}

impl Clients {
    fn new(config: &ProxyConfig, options: &ClientOptions) -> Result<Self, ClientBuildError> {
        let mut with_ca = HashMap::new();
        for (provider, pem) in &config.upstream_ca {
            let options = ClientOptions {
                extra_ca_pem: Some(pem.clone()),
                ..options.clone()
            };
            with_ca.insert(provider.clone(), UpstreamClient::new(options)?);
        }
        Ok(Self {
            default: UpstreamClient::new(options.clone())?,
            with_ca,
        })
    }
}

impl Worker {
    pub(crate) fn new(
        config: ProxyConfig,
        state: Box<dyn StateSource>,
        data_key: DataKey,
        client_options: ClientOptions,
        metrics: Metrics,
    ) -> Result<Self, ClientBuildError> {
        let breakers = Breakers::new(
            config.breaker_failures,
            config.breaker_cooldown,
            metrics.clone(),
        );
        let clients = Clients::new(&config, &client_options)?;
        let tokens = Arc::new(Tokens::default());
        let targets = Targets::new(data_key.clone(), Arc::clone(&tokens));
        let shared = Shared {
            tokens,
            jwt: Jwt::new(&config.jwt_issuers),
            subjects: None,
            config,
            state,
            data_key,
            client_options,
            metrics,
            breakers,
            quotas: None,
            usage: None,
        };
        Ok(Self {
            shared: Arc::new(shared),
            clients,
            targets,
            usage_shard: None,
        })
    }

    /// Enforces `quotas`; only before the proxy is shared with workers.
    pub(crate) fn set_quotas(&mut self, quotas: Arc<Quotas>) -> bool {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => {
                shared.quotas = Some(quotas);
                true
            }
            None => false,
        }
    }

    /// Makes JWT subjects' keys through `registry`; only before the proxy
    /// is shared with workers.
    pub(crate) fn set_subjects(&mut self, registry: Arc<dyn SubjectRegistry>) -> bool {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => {
                shared.subjects = Some(registry);
                true
            }
            None => false,
        }
    }

    /// Meters usage into `meter`; only before the proxy is shared with
    /// workers.
    pub(crate) fn set_usage(&mut self, meter: Arc<UsageMeter>) -> bool {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => {
                self.usage_shard = Some(meter.claim_shard());
                shared.usage = Some(meter);
                true
            }
            None => false,
        }
    }

    /// Another worker: the same shared parts, a connection pool, a target
    /// cache and a usage shard of its own.
    pub(crate) fn worker(&self) -> Result<Self, ClientBuildError> {
        Ok(Self {
            shared: Arc::clone(&self.shared),
            clients: Clients::new(&self.shared.config, &self.shared.client_options)?,
            targets: Targets::new(
                self.shared.data_key.clone(),
                Arc::clone(&self.shared.tokens),
            ),
            usage_shard: self.shared.usage.as_ref().map(|m| m.claim_shard()),
        })
    }

    /// The upstream client for `provider`'s deployments.
    /// The client for requests that go to no provider (a JWKS).
    pub(crate) fn default_client(&self) -> &UpstreamClient {
        &self.clients.default
    }

    pub(crate) fn client_for(&self, provider: &str) -> &UpstreamClient {
        self.clients
            .with_ca
            .get(provider)
            .unwrap_or(&self.clients.default)
    }
}
