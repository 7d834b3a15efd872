//! The wire formats of the model APIs Sluice fronts, and the translations
//! between them: what a provider adapter needs that does not touch a socket.
//!
//! This crate is pure: no networking, no tokio, no clock (timestamps such as a
//! chunk's `created` are arguments), no randomness. Everything here is a
//! function or a state machine over bytes and values, which is what lets the
//! stream translation be property-tested against arbitrary chunking and
//! fuzzed. The pooled upstream HTTP client and the adapters' HTTP side (base
//! URL, auth and extra headers, timeouts) are not here yet; they will sit on
//! top of these types.
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
//! * [`usage`]: [`TokenUsage`], read from either format, streamed or not.

pub mod anthropic;
pub mod body;
pub mod openai;
pub mod sse;
pub mod translate;
pub mod usage;

pub use body::InvalidBody;
pub use sse::{SseError, SseEvent, SseParser};
pub use translate::{
    chat_to_messages, messages_to_chat_response, StreamError, StreamTranslator, TranslateError,
};
pub use usage::{AnthropicStreamUsage, TokenUsage};
