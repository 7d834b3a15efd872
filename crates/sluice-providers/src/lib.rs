//! Everything Sluice needs to talk to model providers: the wire formats of
//! the APIs it fronts (OpenAI chat, Anthropic Messages), the translations
//! between them, the provider adapters, and the pooled upstream HTTP client.
//!
//! Only [`client`] touches the network. Everything else is pure: no sockets,
//! no tokio, no clock (timestamps such as a chunk's `created` are arguments),
//! no randomness. The formats and translations are functions or state
//! machines over bytes and values, which is what lets the stream translation
//! be property-tested against arbitrary chunking and fuzzed. The adapters
//! build requests and parse answers; the caller sends them with the client.
//!
//! # Layout
//! * [`body`]: JSON bodies parsed with the field at fault named ([`InvalidBody`]).
//! * [`sse`]: an incremental Server-Sent Events [`SseParser`] (WHATWG rules,
//!   bytes split anywhere, bounded buffering) and the event encoder.
//! * [`openai`]: chat completions request, response, stream chunk, usage and
//!   error object.
//! * [`anthropic`]: Messages request, response, stream events and error object.
//! * [`translate`]: OpenAI chat -> Anthropic Messages ([`chat_to_messages`]),
//!   the response back ([`messages_to_chat_response`]), and the stream back
//!   ([`StreamTranslator`]). Request errors name the field at fault.
//!   [`translate::reverse`] is the opposite direction, Anthropic clients
//!   served from OpenAI-compatible upstreams: [`messages_to_chat`],
//!   [`chat_response_to_messages`] and the stream, [`ChatToMessagesStream`];
//!   an upstream reply it cannot translate is a [`ReplyError`].
//! * [`usage`]: [`TokenUsage`], read from either format, streamed or not.
//! * [`client`]: the one networked part, the pooled upstream
//!   [`UpstreamClient`] (HTTP/1.1 + HTTP/2 over rustls, connect / first-byte /
//!   total timeouts); the modules above stay pure.
//! * [`provider`]: one module per upstream API behind one [`Provider`]
//!   trait: which endpoints it serves and how, its body, headers and
//!   authentication, and its answers back; [`provider::of`] is the one
//!   place a provider kind is matched.
//! * [`gemini`]: Google's Gemini API: chat and embeddings requests
//!   translated to it, its answers and stream back to chat completions.
//! * [`bedrock`]: AWS Bedrock's Converse API: chat requests translated to
//!   it, its answers and its binary event stream back to chat completions;
//!   [`aws`]: the IAM keys it is signed with, and SigV4 signing (the AWS
//!   SDK's signer).
//! * [`entra`], [`google`]: the token requests of Microsoft Entra ID's
//!   client credentials (Azure OpenAI) and of a Google service account's
//!   signed JWT (Vertex AI); [`oauth`]: their answers.
//! * [`adapter`]: a client's request, parsed once ([`ClientRequest`]), made
//!   into the HTTP request one provider understands ([`prepare`]):
//!   passthrough when both speak the same API, translated when not.
//! * [`responses`]: the Responses API's own part of the relay: response
//!   ids that name their provider, its usage and its typed event stream.
//! * [`relay`]: the answer back in the client's API, whole
//!   ([`convert_response`]) or streamed event by event ([`StreamRelay`]),
//!   with usage read on the way and truncated streams reported.

pub mod adapter;
pub mod anthropic;
pub mod aws;
pub mod bedrock;
pub mod body;
pub mod client;
pub mod entra;
pub mod gemini;
pub mod google;
pub mod oauth;
pub mod openai;
pub mod provider;
pub mod relay;
pub mod responses;
pub mod sse;
pub mod translate;
pub mod usage;

pub use adapter::{
    prepare, prepare_stored_response, BearerToken, ClientRequest, Conversion, Dialect, Endpoint,
    Exchange, InvalidRequest, PrepareError, Prepared, RequestSigner, Stored, Target,
};
pub use body::InvalidBody;
pub use client::{
    ClientOptions, Timeouts, UpstreamBody, UpstreamClient, UpstreamError, UpstreamResponse,
};
pub use provider::Provider;
pub use relay::{convert_response, error_event, stream_relay, RelayError, StreamRelay};
pub use sse::{SseError, SseEvent, SseParser};
pub use translate::reverse::{
    chat_response_to_messages, messages_to_chat, ChatToMessagesStream, ReplyError,
};
pub use translate::{
    chat_to_messages, messages_to_chat_response, StreamError, StreamTranslator, TranslateError,
};
pub use usage::{AnthropicStreamUsage, TokenUsage};
