//! `sluice serve`: runs one node until SIGINT or SIGTERM.
//!
//! Start-up order matters: the TCP listeners are bound first (a port in use
//! fails before anything touches the data dir), then the Raft node starts
//! (data dir checks, QUIC, bootstrap or join), then both HTTP servers serve.
//! Shutdown runs the other way: stop accepting, let in-flight requests finish
//! (bounded), then stop Raft and flush the store.

use crate::config::Config;
use anyhow::Context;
use axum::extract::State as AxumState;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sluice_admin::AdminContext;
use sluice_raft::ClusterNode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long in-flight HTTP requests get to finish after a stop signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs a node from a validated config until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let admin_listener = TcpListener::bind(config.listen.admin)
        .await
        .with_context(|| format!("cannot bind the admin listener on {}", config.listen.admin))?;
    let proxy_listener = TcpListener::bind(config.listen.proxy)
        .await
        .with_context(|| format!("cannot bind the proxy listener on {}", config.listen.proxy))?;

    let node = ClusterNode::start(config.node_options())
        .await
        .with_context(|| format!("node {} cannot start", config.node_id))?;

    let stop = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(stop.clone()));

    let admin = sluice_admin::router(AdminContext::new(
        node.clone(),
        config.admin_token_hashes.clone(),
        config.data_key.clone(),
    ));
    let admin_server =
        axum::serve(admin_listener, admin).with_graceful_shutdown(stop.clone().cancelled_owned());
    let proxy_server = axum::serve(proxy_listener, proxy_router(node.clone()))
        .with_graceful_shutdown(stop.clone().cancelled_owned());
    tracing::info!(
        node = config.node_id,
        admin = %config.listen.admin,
        proxy = %config.listen.proxy,
        raft = %config.listen.raft,
        "serving"
    );

    let servers = async { tokio::join!(admin_server, proxy_server) };
    tokio::pin!(servers);
    let served = tokio::select! {
        results = &mut servers => Some(results),
        _ = stop.cancelled() => None,
    };
    let results = match served {
        Some(results) => results,
        // Stop requested: give in-flight requests their deadline.
        None => match tokio::time::timeout(DRAIN_DEADLINE, &mut servers).await {
            Ok(results) => results,
            Err(_) => {
                tracing::warn!(deadline = ?DRAIN_DEADLINE, "requests still in flight at the drain deadline");
                (Ok(()), Ok(()))
            }
        },
    };
    signals.abort();
    tracing::info!("stopping the raft node");
    node.shutdown().await;
    results.0.context("admin listener failed")?;
    results.1.context("proxy listener failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    stop.cancel();
}

/// The proxy listener until the data plane lands: health, readiness, and
/// OpenAI's own answer for any other URL.
fn proxy_router(node: Arc<ClusterNode>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(proxy_ready))
        .fallback(unknown_url)
        .with_state(node)
}

async fn proxy_ready(AxumState(node): AxumState<Arc<ClusterNode>>) -> Response {
    let readiness = node.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

async fn unknown_url(method: Method, uri: Uri) -> Response {
    let body = serde_json::json!({
        "error": {
            "message": format!("Unknown request URL: {method} {}. Please check the URL for typos.", uri.path()),
            "type": "invalid_request_error",
            "param": null,
            "code": "unknown_url",
        }
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
