//! `sluice-mock-llm` plays a model provider: an HTTP server that speaks the
//! OpenAI API (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/models`, the Responses API `/v1/responses` with its stored
//! responses) and the Anthropic Messages API (`/v1/messages`,
//! `/v1/messages/count_tokens`) with the
//! exact wire shapes of the real services, streaming and not, and Azure
//! OpenAI's paths (`/openai/deployments/{deployment}/...?api-version=`,
//! `/openai/v1/...`) with Microsoft Entra ID's token endpoint, Google's
//! Gemini API (`/v1beta/models/{model}:generateContent` …) and Vertex AI's
//! paths with Google's token endpoint, and AWS Bedrock's Converse API
//! (`/model/{modelId}/converse`, `/converse-stream` in binary event-stream
//! frames) with its requests' SigV4 signatures verified.
//!
//! It owns deterministic replies and token counts, pacing (slow headers,
//! latency to first byte, per-chunk pace) and injected failures (error
//! statuses, a connection dropped mid-body), switchable for the whole
//! instance ([`MockHandle::set_behavior`], `PUT /_mock/behavior`) or per
//! request (`x-mock-*` headers, see [`behavior`]), and counts what happened
//! ([`Stats`], `GET /_mock/stats`).
//!
//! It never knows the gateway: it depends on no other Sluice crate, keeps no
//! state between requests besides its counters, never calls out, and never
//! produces randomness — the same request always gets the same reply.
//!
//! # Layout
//! * [`server`]: binding, the router, graceful shutdown, [`MockHandle`].
//! * [`config`]: [`MockConfig`], the models served and the credentials
//!   required ([`MockEntra`], [`MockGoogle`], [`MockAws`]).
//! * [`behavior`]: [`Behavior`] and its per-request header overrides.
//! * [`stats`]: counters by endpoint and the fate of each stream.
//! * `call`: what every API request goes through before its handler answers
//!   (counting, header overrides, slow headers, auth, injected status).
//! * `fault`: the API-neutral errors; each API renders them in its own shape.
//! * `tokens`: the token counting rule.
//! * `reply`: the deterministic reply (text or tool call).
//! * `body`: the paced response body (first-byte delay, chunk pace, drop).
//! * `sse`: server-sent event framing.
//! * `openai`, `anthropic`: one module per API, each with its own errors.
//! * `azure`: Azure OpenAI's paths over the OpenAI handlers, and Entra ID.
//! * `gemini`: Google's Gemini API (`generateContent`, its SSE stream,
//!   `batchEmbedContents`) with its own error shape.
//! * `google`: Vertex AI's paths over the Gemini handlers, and Google's
//!   token endpoint for one service account (its JWTs verified).
//! * `bedrock`: AWS Bedrock's Converse API (`converse`, its event-stream
//!   `converse-stream`) with its own validation and error shape.
//! * `sigv4`: AWS Signature Version 4, verified by the mock's own
//!   implementation (the canonical request rebuilt from the wire).
//! * `oauth`: the tokens the mock's token endpoints issued.
//! * `control`: the `/_mock/*` endpoints.

mod anthropic;
mod azure;
mod bedrock;
pub mod behavior;
mod body;
mod call;
pub mod config;
mod control;
mod fault;
mod gemini;
mod google;
mod oauth;
mod openai;
mod reply;
pub mod server;
mod sigv4;
mod sse;
pub mod stats;
mod tokens;

pub use behavior::Behavior;
pub use config::{MockAws, MockConfig, MockEntra, MockGoogle};
pub use server::{MockHandle, MockServer};
pub use stats::{Endpoint, Stats};
