//! `sluice serve`: runs one node until SIGINT or SIGTERM.
//!
//! Start-up order matters: the TCP listeners are bound first (a port in use
//! fails before anything touches the data dir), then the Raft node starts
//! (data dir checks, QUIC, bootstrap or join), then both HTTP servers serve.
//! Shutdown runs the other way: on SIGTERM `/readyz` turns 503 while the node
//! serves on for `[proxy] shutdown_delay_ms` (load balancers take it out),
//! then it stops accepting, lets in-flight requests finish (bounded), returns
//! quota leases, flushes the usage of those last requests, then stops Raft and
//! flushes the store. A second signal skips what is left of the delay.
//!
//! # Layout
//! * `files`: the open-file limit, raised to its hard limit at start.
//! * `usage`: the periodic flush of the proxy's usage meter through the
//!   Raft log, and the leader's compaction of old roll-ups.

mod files;
mod usage;

use crate::config::Config;
use anyhow::Context;
use sluice_admin::AdminContext;
use sluice_core::quota::{Grant, Return, Want};
use sluice_core::{Applied, Command};
use sluice_quota::{LedgerClient, Quotas, Reply, Unreachable};
use sluice_raft::{ClusterError, ClusterNode, MemberRole};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use usage::UsageFlusher;

/// Runs a node from a validated config until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    files::raise_open_file_limit(
        (config.proxy.max_connections + config.admin_connections.max_connections) as u64,
    );
    let admin_listener = TcpListener::bind(config.listen.admin)
        .await
        .with_context(|| format!("cannot bind the admin listener on {}", config.listen.admin))?;
    let proxy_listener = TcpListener::bind(config.listen.proxy)
        .await
        .with_context(|| format!("cannot bind the proxy listener on {}", config.listen.proxy))?;

    let node = ClusterNode::start(config.node_options())
        .await
        .with_context(|| format!("node {} cannot start", config.node_id))?;
    // Not ready until the tokenizer of the quotas' estimates is loaded
    // (before that a request would reserve a coarse count: its bytes).
    node.set_warming_up(true);
    let warmed = node.clone();
    tokio::task::spawn_blocking(move || {
        sluice_proxy::quota::warm_up();
        warmed.set_warming_up(false);
    });

    // `signalled`: the first SIGTERM/SIGINT; `stop`: stop accepting.
    let (signalled, stop) = (CancellationToken::new(), CancellationToken::new());
    let signals = tokio::spawn(stop_on_signal(signalled.clone(), stop.clone()));

    let metrics = sluice_proxy::Metrics::default();
    metrics
        .registry()
        .register(Box::new(node.metrics_collector()))
        .context("registering the Raft metrics")?;
    // Scrapers read the same families on the admin listener (where
    // operators point Prometheus) as on the proxy listener.
    let scraped = metrics.clone();
    let admin_gauges = metrics.listener("admin");
    let admin = sluice_admin::router(
        AdminContext::new(
            node.clone(),
            config.admin_token_hashes.clone(),
            config.data_key.clone(),
        )
        .with_certificates(crate::config::certificate_expiries(&config.tls)),
    )
    .route(
        "/metrics",
        axum::routing::get(move || {
            let scraped = scraped.clone();
            async move {
                // The Raft figures include the store's size on disk (file
                // metadata): read off the async workers.
                let text = tokio::task::spawn_blocking(move || scraped.encode())
                    .await
                    .unwrap_or_default();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    let admin_tls = match &config.admin_tls {
        Some(files) => Some(
            files
                .acceptor()
                .map_err(|e| anyhow::anyhow!("admin TLS: {e}"))?,
        ),
        None => {
            if !config.listen.admin.ip().is_loopback() {
                tracing::warn!(
                    admin = %config.listen.admin,
                    "the admin API is served over plain HTTP on an address others can reach \
                     ([admin] plain_http = true): its token and every secret written through \
                     it cross the network in clear"
                );
            }
            None
        }
    };
    let admin_server = sluice_proxy::serve_with(
        admin_listener,
        move |mut request: axum::http::Request<_>, peer| {
            use tower_service::Service;
            // The caller's address, for the audit log.
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let answer = admin.clone().call(request);
            async move { answer.await.unwrap_or_else(|never| match never {}) }
        },
        sluice_proxy::Listening::new("admin", config.admin_connections, admin_gauges)
            .with_tls(admin_tls),
        stop.clone(),
        config.shutdown.drain,
    );
    let quotas = Arc::new(Quotas::new(sluice_quota::QuotaConfig {
        node_id: config.node_id,
        // Later than any run of this node before: its reports of what it
        // holds outrank any of a previous run still in flight.
        incarnation: now_ms(),
        ..config.quotas
    }));
    let ledger = RaftLedger {
        node: node.clone(),
        // A round that cannot commit within a lease's life is a failed one.
        timeout: Duration::from_millis(config.quotas.lease_ttl_ms / 2),
    };
    let rounds = tokio::spawn(lease_rounds(Arc::clone(&quotas), ledger.clone()));
    // One shard per worker thread, and one for the proxy they are made from.
    let meter = Arc::new(sluice_proxy::usage::UsageMeter::new(
        config.proxy.threads + 1,
    ));
    let flushes_stop = CancellationToken::new();
    let flushes = tokio::spawn(
        UsageFlusher::new(
            Arc::clone(&meter),
            node.clone(),
            config.usage.retention_ms(),
            config.usage.minute_retention_ms(),
            config.audit_retention_days.saturating_mul(86_400_000),
        )
        .run(config.usage.flush_interval, flushes_stop.clone()),
    );
    let proxy = sluice_proxy::Proxy::new(
        config.proxy.clone(),
        NodeState(node.clone()),
        config.data_key.clone(),
        sluice_providers::ClientOptions::default(),
        metrics,
    )
    .context("cannot build the upstream HTTP client")?
    .with_quotas(Arc::clone(&quotas))
    .with_subjects(Arc::new(RaftSubjects { node: node.clone() }))
    .with_usage(meter);
    let tls = match &config.proxy_tls {
        Some(files) => Some(
            files
                .acceptor()
                .map_err(|e| anyhow::anyhow!("proxy TLS: {e}"))?,
        ),
        None => None,
    };
    let drain = config.shutdown.drain;
    let proxy_server = sluice_proxy::serve(proxy_listener, proxy, tls, stop.clone(), drain);
    tracing::info!(
        node = config.node_id,
        admin = %config.listen.admin,
        proxy = %config.listen.proxy,
        raft = %config.listen.raft,
        "serving"
    );

    let servers = async { tokio::join!(admin_server, proxy_server) };
    tokio::pin!(servers);
    let mut served = tokio::select! {
        results = &mut servers => Some(results),
        _ = signalled.cancelled() => None,
    };
    if served.is_none() {
        // Out of rotation first, still serving: a load balancer that
        // health-checks `/readyz` stops sending before the listeners close,
        // so no request meets a refused or reset connection.
        node.begin_stopping();
        let delay = config.shutdown.delay;
        if !delay.is_zero() {
            tracing::info!(
                ?delay,
                "not ready any more; serving on until load balancers notice"
            );
        }
        served = tokio::select! {
            results = &mut servers => Some(results),
            _ = tokio::time::sleep(delay) => None,
            _ = stop.cancelled() => None,
        };
    }
    let results = match served {
        Some(results) => results,
        // Stop accepting and give in-flight requests their deadline. The
        // proxy drains on its own; the admin API gets the same deadline.
        None => {
            stop.cancel();
            match tokio::time::timeout(drain + Duration::from_secs(1), &mut servers).await {
                Ok(results) => results,
                Err(_) => {
                    tracing::warn!(deadline = ?drain, "requests still in flight at the drain deadline");
                    (Ok(()), Ok(()))
                }
            }
        }
    };
    signals.abort();
    rounds.abort();
    // Nothing is in flight any more: what this node holds goes back to the
    // ledger instead of waiting out its refill.
    let returned = quotas.release(&ledger).await;
    tracing::info!(units = returned, "quota leases returned");
    // The requests that just drained are in the meter: one last flush.
    flushes_stop.cancel();
    match flushes.await {
        Ok(mut flusher) => {
            let flushed = tokio::time::timeout(SHUTDOWN_FLUSH, flusher.flush()).await;
            if flushed != Ok(true) || flusher.has_pending() {
                tracing::warn!(
                    "usage of the last requests could not be replicated before stopping"
                );
            } else {
                tracing::info!("usage flushed");
            }
        }
        Err(e) => tracing::error!(error = %e, "the usage flusher failed"),
    }
    tracing::info!("stopping the raft node");
    node.shutdown().await;
    results.0.context("admin listener failed")?;
    results.1.context("proxy listener failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// How long the last usage flush may take at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// Cancels `signalled` on the first SIGTERM or SIGINT and `stop` on the
/// second (skipping the rest of the shutdown delay).
async fn stop_on_signal(signalled: CancellationToken, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
        return;
    };
    for (token, what) in [(signalled, "shutting down"), (stop, "stopping now")] {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: {what}"),
            _ = int.recv() => tracing::info!("SIGINT: {what}"),
        }
        token.cancel();
    }
}

/// What the proxy reads from this node: its latest applied state and its
/// readiness.
struct NodeState(Arc<ClusterNode>);

impl sluice_proxy::StateSource for NodeState {
    fn state(&self) -> Arc<sluice_core::State> {
        self.0.local_state()
    }

    fn readiness(&self) -> (bool, serde_json::Value) {
        let readiness = self.0.readiness();
        let ready = readiness.ready;
        (
            ready,
            serde_json::to_value(readiness).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// The quota ledger reached through the Raft log: each round is one
/// `GrantLeases` (and one `ReturnLeases`) proposed through the leader and
/// applied here before its grants are spent.
#[derive(Clone)]
struct RaftLedger {
    node: Arc<ClusterNode>,
    timeout: Duration,
}

impl RaftLedger {
    async fn write(&self, command: Command) -> Result<Applied, Unreachable> {
        bounded_write(&self.node, self.timeout, command)
            .await
            .map_err(|e| Unreachable(e.to_string()))
    }
}

/// `command` written through the Raft log and applied here, or the error,
/// within `timeout`.
async fn bounded_write(
    node: &ClusterNode,
    timeout: Duration,
    command: Command,
) -> Result<Applied, ClusterError> {
    match tokio::time::timeout(timeout, node.write(command)).await {
        Ok(written) => written,
        Err(_) => Err(ClusterError::Timeout(format!(
            "no commit within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// JWT subjects' keys, made through the Raft log (`RegisterSubject`) on a
/// subject's first request, and applied here before it goes on.
struct RaftSubjects {
    node: Arc<ClusterNode>,
}

/// How long a subject's first request waits for its key to commit.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

impl sluice_proxy::SubjectRegistry for RaftSubjects {
    fn register(
        &self,
        subject: sluice_core::KeySubject,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), sluice_proxy::RegisterError>> + Send + '_>,
    > {
        Box::pin(async move {
            use sluice_proxy::RegisterError;
            let command = Command::RegisterSubject(subject);
            match bounded_write(&self.node, REGISTER_TIMEOUT, command).await {
                Ok(_) => Ok(()),
                Err(ClusterError::Rejected(refusal)) => {
                    Err(RegisterError::Refused(refusal.to_string()))
                }
                Err(e) => Err(RegisterError::Unavailable(e.to_string())),
            }
        })
    }
}

impl LedgerClient for RaftLedger {
    fn grant(&self, wants: Vec<Want>, ttl_ms: u64) -> Reply<'_, Vec<Grant>> {
        Box::pin(async move {
            let command = Command::GrantLeases {
                node: self.node.node_id(),
                ttl_ms,
                wants,
            };
            match self.write(command).await? {
                Applied::Leases(grants) => Ok(grants),
                other => Err(Unreachable(format!(
                    "unexpected answer to GrantLeases: {other:?}"
                ))),
            }
        })
    }

    fn give_back(&self, batch: u64, returns: Vec<Return>) -> Reply<'_, ()> {
        Box::pin(async move {
            let command = Command::ReturnLeases {
                node: self.node.node_id(),
                batch,
                returns,
            };
            self.write(command).await.map(drop)
        })
    }
}

/// Runs the node's lease rounds, and keeps the voter count (the `N` of a
/// `local_share`) and the member count (the `N` the standing reserves are
/// split between) current.
async fn lease_rounds(quotas: Arc<Quotas>, ledger: RaftLedger) {
    let members = {
        let quotas = Arc::clone(&quotas);
        let node = ledger.node.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let status = node.status().await;
                let voters = status
                    .members
                    .iter()
                    .filter(|m| m.role == MemberRole::Voter)
                    .count();
                quotas.set_voters(voters as u64);
                quotas.set_nodes(status.members.len() as u64);
            }
        }
    };
    let node = ledger.node.clone();
    tokio::join!(members, quotas.run(&ledger, now_ms, || node.local_state()));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
