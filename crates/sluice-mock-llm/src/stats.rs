//! What the mock has seen: requests by endpoint and the fate of each stream.
//!
//! Counters are atomics bumped on the request path; every change also ticks a
//! watch channel so tests can wait for a count instead of sleeping
//! ([`MockHandle::wait_for_stats`](crate::MockHandle::wait_for_stats)).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The API endpoints the mock serves, as counted in [`Stats::requests`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Models,
    Messages,
    Responses,
    CountTokens,
    /// Gemini's `generateContent`.
    GenerateContent,
    /// Gemini's `streamGenerateContent`.
    StreamGenerateContent,
    /// Gemini's `batchEmbedContents`.
    BatchEmbedContents,
    /// Vertex AI's `predict` (its embeddings).
    Predict,
    /// Bedrock's `Converse`.
    Converse,
    /// Bedrock's `ConverseStream`.
    ConverseStream,
}

impl Endpoint {
    const ALL: [Endpoint; 13] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Models,
        Endpoint::Messages,
        Endpoint::Responses,
        Endpoint::CountTokens,
        Endpoint::GenerateContent,
        Endpoint::StreamGenerateContent,
        Endpoint::BatchEmbedContents,
        Endpoint::Predict,
        Endpoint::Converse,
        Endpoint::ConverseStream,
    ];

    /// The request path, also the key in [`Stats::requests`].
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Models => "/v1/models",
            Endpoint::Messages => "/v1/messages",
            Endpoint::Responses => "/v1/responses",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
            Endpoint::GenerateContent => "/v1beta/models:generateContent",
            Endpoint::StreamGenerateContent => "/v1beta/models:streamGenerateContent",
            Endpoint::BatchEmbedContents => "/v1beta/models:batchEmbedContents",
            Endpoint::Predict => "/v1/models:predict",
            Endpoint::Converse => "/model/{modelId}/converse",
            Endpoint::ConverseStream => "/model/{modelId}/converse-stream",
        }
    }
}

/// A snapshot of the counters, as served by `GET /_mock/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests received, by endpoint path, whatever their outcome.
    pub requests: BTreeMap<String, u64>,
    /// Streaming responses whose body began.
    pub streams_started: u64,
    /// Streaming responses sent to the end.
    pub streams_completed: u64,
    /// Streaming responses abandoned by the client before their end
    /// (the body was dropped unfinished).
    pub streams_cancelled: u64,
    /// Streaming responses cut on purpose (`drop_after_chunks`).
    pub streams_dropped: u64,
    /// Requests whose response body is not finished yet.
    pub in_flight: u64,
    /// API requests that came by Azure OpenAI's paths (`/openai/...`).
    #[serde(default)]
    pub azure_requests: u64,
    /// API requests that came by Vertex AI's paths.
    #[serde(default)]
    pub vertex_requests: u64,
    /// API requests that came by Bedrock's paths (`/model/...`), whatever
    /// their outcome.
    #[serde(default)]
    pub bedrock_requests: u64,
    /// Access tokens issued (by the Entra ID or Google token endpoint).
    #[serde(default)]
    pub tokens_issued: u64,
    /// Token requests refused (a wrong tenant, client, secret or
    /// signature).
    #[serde(default)]
    pub token_refusals: u64,
    /// API requests refused for their credential (401; 403 for Gemini's
    /// missing key and every SigV4 refusal).
    #[serde(default)]
    pub unauthorized: u64,
    /// Bedrock requests whose SigV4 signature did not verify
    /// (`InvalidSignatureException`: it does not match, it has expired, or
    /// its scope or signed headers are wrong); also counted in
    /// `unauthorized`.
    #[serde(default)]
    pub signature_refusals: u64,
}

impl Stats {
    /// Requests received on one endpoint.
    pub fn requests_to(&self, endpoint: Endpoint) -> u64 {
        self.requests.get(endpoint.path()).copied().unwrap_or(0)
    }
}

/// The live counters, shared by every request.
#[derive(Debug)]
pub(crate) struct Counters {
    requests: [AtomicU64; Endpoint::ALL.len()],
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
    streams_dropped: AtomicU64,
    in_flight: AtomicU64,
    pub(crate) azure_requests: AtomicU64,
    pub(crate) vertex_requests: AtomicU64,
    pub(crate) bedrock_requests: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) token_refusals: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) signature_refusals: AtomicU64,
    changed: watch::Sender<()>,
}

/// How a response body ended, decided when it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Not finished: if it is dropped now, the client went away.
    Open,
    Completed,
    Dropped,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            requests: Default::default(),
            streams_started: AtomicU64::new(0),
            streams_completed: AtomicU64::new(0),
            streams_cancelled: AtomicU64::new(0),
            streams_dropped: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            azure_requests: AtomicU64::new(0),
            vertex_requests: AtomicU64::new(0),
            bedrock_requests: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            token_refusals: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            signature_refusals: AtomicU64::new(0),
            changed: watch::Sender::new(()),
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            requests: Endpoint::ALL
                .iter()
                .map(|e| {
                    (
                        e.path().to_owned(),
                        self.requests[*e as usize].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            streams_started: self.streams_started.load(Ordering::Relaxed),
            streams_completed: self.streams_completed.load(Ordering::Relaxed),
            streams_cancelled: self.streams_cancelled.load(Ordering::Relaxed),
            streams_dropped: self.streams_dropped.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            azure_requests: self.azure_requests.load(Ordering::Relaxed),
            vertex_requests: self.vertex_requests.load(Ordering::Relaxed),
            bedrock_requests: self.bedrock_requests.load(Ordering::Relaxed),
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
            token_refusals: self.token_refusals.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            signature_refusals: self.signature_refusals.load(Ordering::Relaxed),
        }
    }

    /// Adds one to `counter` (one of the plain counts) and tells waiters.
    pub(crate) fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.send_replace(());
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Counts a request and holds it in flight until the guard is dropped.
    pub(crate) fn admit(self: &Arc<Self>, endpoint: Endpoint) -> InFlight {
        self.requests[endpoint as usize].fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.changed.send_replace(());
        InFlight {
            counters: Arc::clone(self),
            stream: false,
            ending: Ending::Open,
        }
    }
}

/// One request in flight; moved into its response body so it lasts as long
/// as the body does. Its drop records how the body ended.
#[derive(Debug)]
pub(crate) struct InFlight {
    counters: Arc<Counters>,
    stream: bool,
    ending: Ending,
}

impl InFlight {
    /// Marks this request as a stream whose body has begun.
    pub(crate) fn start_stream(&mut self) {
        self.stream = true;
        self.counters
            .streams_started
            .fetch_add(1, Ordering::Relaxed);
        self.counters.changed.send_replace(());
    }

    pub(crate) fn end(&mut self, ending: Ending) {
        self.ending = ending;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.counters;
        if self.stream {
            let counter = match self.ending {
                Ending::Open => &c.streams_cancelled,
                Ending::Completed => &c.streams_completed,
                Ending::Dropped => &c.streams_dropped,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.changed.send_replace(());
    }
}
