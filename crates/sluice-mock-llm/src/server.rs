//! Binding, routing and the lifetime of one mock instance.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::routing::{get, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::azure::{self, Op};
use crate::stats::{Counters, Endpoint, Stats};
use crate::{anthropic, bedrock, control, gemini, google, oauth, openai, Behavior, MockConfig};

/// Starts mock upstreams.
pub struct MockServer;

/// State shared by every request of one instance.
pub(crate) struct Mock {
    pub config: MockConfig,
    pub behavior: ArcSwap<Behavior>,
    pub counters: Arc<Counters>,
    /// Numbers response ids (`chatcmpl-mock7`), unique per instance.
    seq: AtomicU64,
    /// The Responses API's stored responses.
    pub responses: openai::responses::Shared,
    /// Tokens its Entra ID and its Google token endpoint issued.
    pub issued: oauth::IssuedTokens,
}

impl Mock {
    pub(crate) fn next_id(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

/// A running mock. Dropping it stops the server without waiting; call
/// [`MockHandle::shutdown`] to wait for in-flight responses to finish.
pub struct MockHandle {
    addr: SocketAddr,
    mock: Arc<Mock>,
    stop: CancellationToken,
    /// The serving task. Owned here: `shutdown` joins it, `Drop` cancels it.
    task: Option<JoinHandle<io::Result<()>>>,
}

impl MockServer {
    /// Binds `addr` (use port 0 for a free port) and serves until the handle
    /// is shut down or dropped. Must be called inside a tokio runtime.
    pub async fn start(config: MockConfig, addr: SocketAddr) -> io::Result<MockHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mock = Arc::new(Mock {
            behavior: ArcSwap::from_pointee(config.behavior.clone()),
            config,
            counters: Arc::new(Counters::new()),
            seq: AtomicU64::new(1),
            responses: Default::default(),
            issued: Default::default(),
        });
        let stop = CancellationToken::new();
        let app = router(Arc::clone(&mock));
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        });
        Ok(MockHandle {
            addr,
            mock,
            stop,
            task: Some(task),
        })
    }
}

fn router(mock: Arc<Mock>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat::handle))
        .route("/v1/completions", post(openai::completions::handle))
        .route("/v1/embeddings", post(openai::embeddings::handle))
        .route("/v1/models", get(openai::models::handle))
        .route("/v1/messages", post(anthropic::handle))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/responses", post(openai::responses::create))
        .route(
            "/v1/responses/{id}/input_items",
            get(openai::responses::input_items_list),
        )
        .route(
            "/v1/responses/{id}",
            get(openai::responses::get).delete(openai::responses::delete),
        )
        .merge(azure_routes())
        .route("/v1beta/models/{target}", post(gemini::handle))
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/google/models/{target}",
            post(google::vertex),
        )
        .route("/token", post(google::token))
        .route(
            "/model/{model_id}/converse",
            post(|s, p, u, m, h, b| bedrock::handle(Endpoint::Converse, s, p, u, m, h, b)),
        )
        .route(
            "/model/{model_id}/converse-stream",
            post(|s, p, u, m, h, b| bedrock::handle(Endpoint::ConverseStream, s, p, u, m, h, b)),
        )
        .route(
            "/_mock/behavior",
            put(control::set_behavior).get(control::behavior),
        )
        .route("/_mock/stats", get(control::stats))
        .with_state(mock)
}

/// Azure OpenAI's paths and Entra ID's token endpoint.
fn azure_routes() -> Router<Arc<Mock>> {
    let mut router = Router::new();
    for (path, op) in [
        ("chat/completions", Op::Chat),
        ("completions", Op::Completions),
        ("embeddings", Op::Embeddings),
    ] {
        router = router
            .route(
                &format!("/openai/deployments/{{deployment}}/{path}"),
                post(move |s, p, q, h, b| azure::deployment(op, s, p, q, h, b)),
            )
            .route(
                &format!("/openai/v1/{path}"),
                post(move |s, h, b| azure::v1(op, s, h, b)),
            );
    }
    router
        .route("/openai/responses", post(azure::dated_responses))
        .route(
            "/openai/v1/responses",
            post(|s, h, b| azure::v1(Op::Responses, s, h, b)),
        )
        .route(
            "/openai/responses/{id}",
            get(azure::stored).delete(azure::stored),
        )
        .route(
            "/openai/v1/responses/{id}",
            get(azure::stored).delete(azure::stored),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(azure::token))
}

impl MockHandle {
    /// The bound address (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL a client or a provider config points at
    /// (OpenAI SDKs want `{base_url}/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.mock.counters.snapshot()
    }

    /// Waits until `done` holds for the counters and returns them. Never
    /// times out by itself: wrap it in `tokio::time::timeout`.
    pub async fn wait_for_stats(&self, mut done: impl FnMut(&Stats) -> bool) -> Stats {
        let mut changed = self.mock.counters.subscribe();
        loop {
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            if changed.changed().await.is_err() {
                return self.stats();
            }
        }
    }

    /// The instance-wide behaviour now.
    pub fn behavior(&self) -> Behavior {
        Behavior::clone(&self.mock.behavior.load())
    }

    /// Replaces the instance-wide behaviour; requests already admitted keep
    /// the one they started with.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.mock.behavior.store(Arc::new(behavior));
    }

    /// Stops accepting connections, lets in-flight responses finish, and
    /// returns once the server is gone.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
