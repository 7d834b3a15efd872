//! What every in-process proxy test stands on: a state the test edits, the
//! proxy serving it on a run-time port, the mock provider.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_core::secret::NONCE_LEN;
use sluice_core::{
    Command, DataKey, Deployment, Pricing, Proposal, Provider, ProviderKind, Route, State,
    Timeouts, VirtualKey,
};
use sluice_mock_llm::{MockConfig, MockHandle, MockServer};
use sluice_providers::ClientOptions;
use sluice_proxy::{Metrics, Proxy, ProxyConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub(crate) const KEY: &str = "sk-sluice-0123456789abcdef0123456789abcdef0123456789abcdef";
/// Every test ends well inside this.
pub(crate) const BUDGET: Duration = Duration::from_secs(30);

/// The data key every test proxy opens provider credentials with.
pub(crate) fn data_key() -> DataKey {
    DataKey::from_bytes([7; 32])
}

/// A state the test edits and the proxy reads.
#[derive(Clone, Default)]
pub(crate) struct World {
    pub(crate) state: Arc<RwLock<Arc<State>>>,
    pub(crate) clock: Arc<std::sync::atomic::AtomicU64>,
}

impl World {
    pub(crate) fn apply(&self, command: Command) {
        let at_ms =
            self.clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1_700_000_000_000;
        let mut guard = self.state.write().unwrap();
        let mut next = (**guard).clone();
        next.apply(&Proposal { at_ms, command })
            .expect("command applies");
        *guard = Arc::new(next);
    }

    /// A provider whose upstream credential is `api_key`, sealed as the
    /// admin API seals it.
    pub(crate) fn provider_with_key(
        &self,
        name: &str,
        kind: ProviderKind,
        base_url: &str,
        api_key: &str,
    ) {
        self.provider(name, kind, base_url, &[]);
        let mut provider = self.state.read().unwrap().provider(name).unwrap().clone();
        provider.api_key = Some(data_key().seal(name, api_key, [1; NONCE_LEN]));
        self.apply(Command::UpdateProvider {
            provider,
            keep_api_key: false,
            keep_secret_headers: false,
        });
    }

    /// A provider that sends the secret header `header: value`, sealed as
    /// the admin API seals it.
    pub(crate) fn provider_with_secret_header(
        &self,
        name: &str,
        kind: ProviderKind,
        base_url: &str,
        (header, value): (&str, &str),
    ) {
        self.provider(name, kind, base_url, &[]);
        let mut provider = self.state.read().unwrap().provider(name).unwrap().clone();
        let context = sluice_core::provider::secret_header_context(name, header);
        let sealed = data_key().seal(&context, value, [2; NONCE_LEN]);
        provider.secret_headers.insert(header.to_owned(), sealed);
        self.apply(Command::UpdateProvider {
            provider,
            keep_api_key: false,
            keep_secret_headers: false,
        });
    }

    pub(crate) fn provider(
        &self,
        name: &str,
        kind: ProviderKind,
        base_url: &str,
        headers: &[(&str, &str)],
    ) {
        self.apply(Command::CreateProvider(Provider {
            name: name.into(),
            kind,
            base_url: base_url.into(),
            api_key: None,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            secret_headers: BTreeMap::new(),
            timeouts: Timeouts {
                connect_ms: 1_000,
                first_byte_ms: 5_000,
                total_ms: 20_000,
            },
            azure: None,
            bedrock: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }));
    }

    pub(crate) fn route(&self, name: &str, deployments: &[(&str, &str)], fallbacks: &[&str]) {
        self.apply(Command::CreateRoute(Route {
            name: name.into(),
            deployments: deployments
                .iter()
                .map(|(provider, model)| Deployment {
                    provider: (*provider).into(),
                    model: (*model).into(),
                    weight: 1,
                })
                .collect(),
            fallbacks: fallbacks.iter().map(|f| (*f).to_owned()).collect(),
            pricing: Pricing::default(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }));
    }

    pub(crate) fn key(&self) -> String {
        let key = VirtualKey::new("test".into(), KEY, 0);
        let id = key.id.clone();
        self.apply(Command::CreateKey(key));
        id
    }
}

/// A proxy serving `world` on a run-time port.
pub(crate) struct Listening {
    pub(crate) proxy: Proxy,
    pub(crate) addr: SocketAddr,
    pub(crate) stop: CancellationToken,
    pub(crate) served: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(crate) async fn listen(
    world: &World,
    config: ProxyConfig,
    tls: Option<TlsAcceptor>,
) -> Listening {
    listen_wired(world, config, tls, |proxy| proxy).await
}

/// [`listen`], with the proxy wired by `wire` (quotas, a usage meter)
/// before it serves.
pub(crate) async fn listen_wired(
    world: &World,
    config: ProxyConfig,
    tls: Option<TlsAcceptor>,
    wire: impl FnOnce(Proxy) -> Proxy,
) -> Listening {
    let source = world.clone();
    let proxy = wire(
        Proxy::new(
            config,
            move || source.state.read().unwrap().clone(),
            data_key(),
            ClientOptions::default(),
            Metrics::default(),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let served = tokio::spawn(sluice_proxy::serve(
        listener,
        proxy.clone(),
        tls,
        stop.clone(),
        Duration::from_secs(10),
    ));
    Listening {
        proxy,
        addr,
        stop,
        served,
    }
}

/// A self-signed certificate for `localhost`, written as PEM files.
pub(crate) fn self_signed() -> (
    tempfile::TempDir,
    rcgen::CertifiedKey,
    sluice_proxy::TlsFiles,
) {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let files = sluice_proxy::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, cert.cert.pem()).unwrap();
    std::fs::write(&files.key, cert.key_pair.serialize_pem()).unwrap();
    (dir, cert, files)
}

pub(crate) struct Setup {
    pub(crate) world: World,
    pub(crate) mock: MockHandle,
    pub(crate) proxy: Proxy,
    pub(crate) url: String,
    pub(crate) stop: CancellationToken,
    pub(crate) served: tokio::task::JoinHandle<std::io::Result<()>>,
    pub(crate) http: reqwest::Client,
}

impl Setup {
    pub(crate) async fn start(config: ProxyConfig) -> Setup {
        Self::start_wired(config, |proxy| proxy).await
    }

    /// [`Setup::start`], with the proxy wired by `wire`.
    pub(crate) async fn start_wired(
        config: ProxyConfig,
        wire: impl FnOnce(Proxy) -> Proxy,
    ) -> Setup {
        let mock = MockServer::start(MockConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let world = World::default();
        world.key();
        let l = listen_wired(&world, config, None, wire).await;
        Setup {
            world,
            mock,
            proxy: l.proxy,
            url: format!("http://{}", l.addr),
            stop: l.stop,
            served: l.served,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn mock_v1(&self) -> String {
        format!("{}/v1", self.mock.base_url())
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn chat(&self, model: &str, stream: bool) -> reqwest::Response {
        self.post(
            "/v1/chat/completions",
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "one two three"}]}),
        )
        .await
    }
}

pub(crate) fn config() -> ProxyConfig {
    ProxyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..ProxyConfig::default()
    }
}

/// A port nothing listens on.
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

pub(crate) async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BUDGET, f).await.expect("test budget")
}

pub(crate) fn data_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_owned)
        .collect()
}
