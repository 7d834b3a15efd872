//! Answers back to the client, in the API it spoke: whole responses
//! ([`convert_response`]) and streams ([`StreamRelay`]), with the token usage
//! read on the way. Pure: bytes in, bytes out.
//!
//! A stream relay is fed the upstream body as it arrives, split anywhere,
//! and writes complete SSE events for the client as soon as each upstream
//! event completes: nothing is held back longer than one event. It reports
//! a stream that ends before its end marker ([`RelayError::Truncated`]) or
//! carries an error ([`RelayError::Upstream`]); the caller then sends the
//! client an in-stream error ([`error_event`]), never a clean-looking end.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::adapter::{Dialect, Exchange};
use crate::anthropic::StreamEvent;
use crate::openai::{self, ChatChunk};
use crate::provider;
use crate::sse::{SseError, SseEvent, SseParser};
use crate::translate::reverse::ChatToMessagesStream;
use crate::translate::StreamTranslator;
use crate::usage::{AnthropicStreamUsage, TokenUsage};

/// Why an answer cannot be relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The upstream reported an error (`type` and message as it sent them).
    #[error("upstream error `{kind}`: {message}")]
    Upstream { kind: String, message: String },
    /// The upstream body ended before the stream's end marker.
    #[error("the upstream stream ended before it was complete")]
    Truncated,
    /// The upstream sent something that is not its API.
    #[error("the upstream sent an unreadable answer: {0}")]
    Unreadable(String),
}

impl From<SseError> for RelayError {
    fn from(e: SseError) -> Self {
        RelayError::Unreadable(e.to_string())
    }
}

/// Turns one upstream stream into the client's, event by event.
pub trait StreamRelay: Send {
    /// Feeds upstream bytes; appends what they complete to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError>;
    /// The upstream body ended: reports a stream cut before its end
    /// marker. (Every relay sends its closing events when the upstream's
    /// end marker arrives, not at the end of the body.)
    fn finish(&self) -> Result<(), RelayError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(RelayError::Truncated)
        }
    }
    /// Whether the stream's end marker has gone to the client: anything
    /// after it is ignored.
    fn is_done(&self) -> bool;
    /// The usage read so far (final once the stream is done).
    fn usage(&self) -> Option<TokenUsage>;
}

/// The relay for a streamed answer to `exchange`. `model` is the name the
/// client asked for, `created` the Unix time for made-up chunks.
pub fn stream_relay(exchange: &Exchange, model: &str, created: u64) -> Box<dyn StreamRelay> {
    provider::of(exchange.kind).stream_relay(exchange, model, created)
}

/// A whole (non-streamed) successful answer in the client's API, and its
/// usage.
pub fn convert_response(
    exchange: &Exchange,
    body: Bytes,
    model: &str,
    created: u64,
) -> Result<(Bytes, Option<TokenUsage>), RelayError> {
    provider::of(exchange.kind).convert_response(exchange, body, model, created)
}

/// The in-stream error event that ends a failed stream, in `dialect`'s
/// framing: `data: {"error": …}` for OpenAI, `event: error` for Anthropic.
/// `kind` is the error `type` (e.g. `server_error`, `overloaded_error`).
pub fn error_event(dialect: Dialect, kind: &str, message: &str) -> Vec<u8> {
    let event = match dialect {
        Dialect::OpenAi => SseEvent::data(
            serde_json::json!({
                "error": {"message": message, "type": kind, "param": null, "code": null}
            })
            .to_string(),
        ),
        Dialect::Anthropic => SseEvent::named(
            "error",
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
                .to_string(),
        ),
    };
    let mut out = Vec::with_capacity(event.data.len() + 24);
    // JSON from serde_json has no raw line breaks: encoding cannot fail.
    let _ = event.encode_into(&mut out);
    out
}

/// `data: <data>\n\n`, or `event: <name>\n` first.
pub(crate) fn push_event(out: &mut Vec<u8>, name: Option<&str>, data: &str) {
    let event = SseEvent {
        event: name.map(str::to_owned),
        data: data.to_owned(),
        id: None,
    };
    // Names and data come from parsed SSE, which cannot hold raw line
    // breaks in a name; data line breaks are re-encoded as data lines.
    let _ = event.encode_into(out);
}

pub(crate) fn push_json<T: serde::Serialize>(
    out: &mut Vec<u8>,
    name: Option<&str>,
    value: &T,
) -> Result<(), RelayError> {
    let data = serde_json::to_string(value).map_err(|e| RelayError::Unreadable(e.to_string()))?;
    push_event(out, name, &data);
    Ok(())
}

/// An OpenAI error object sent as a stream event (`{"error": {...}}`).
fn openai_stream_error(data: &str) -> Option<RelayError> {
    let error: openai::ErrorBody = serde_json::from_str(data).ok()?;
    Some(RelayError::Upstream {
        kind: error.error.kind,
        message: error.error.message,
    })
}

/// OpenAI to OpenAI: events go through as sent; usage is read from the
/// usage chunk, which is dropped when only the gateway asked for it.
pub(crate) struct OpenAiPassthrough {
    parser: SseParser,
    hide_usage: bool,
    done: bool,
    usage: Option<TokenUsage>,
}

impl OpenAiPassthrough {
    pub(crate) fn new(hide_usage: bool) -> Self {
        Self {
            parser: SseParser::new(),
            hide_usage,
            done: false,
            usage: None,
        }
    }
}

/// Just enough of a chunk to find usage and errors, skipping the rest.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<openai::Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

impl StreamRelay for OpenAiPassthrough {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        for event in self.parser.feed(bytes)? {
            if self.done {
                break;
            }
            let data = event.data.trim();
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                self.done = true;
                push_event(out, None, "[DONE]");
                continue;
            }
            let peek: Peek = serde_json::from_str(data)
                .map_err(|e| RelayError::Unreadable(format!("stream chunk: {e}")))?;
            if peek.error.is_some() || event.event.as_deref() == Some("error") {
                return Err(openai_stream_error(data).unwrap_or(RelayError::Unreadable(
                    "an error event without an error object".into(),
                )));
            }
            let Some(usage) = peek.usage else {
                push_event(out, event.event.as_deref(), &event.data);
                continue;
            };
            self.usage = Some(TokenUsage::from(&usage));
            if !self.hide_usage {
                push_event(out, event.event.as_deref(), &event.data);
            } else if peek.choices.is_some_and(|c| !c.is_empty()) {
                // Usage on a content chunk (some servers do it): keep the
                // content, drop only the usage.
                let mut value: serde_json::Value = serde_json::from_str(data)
                    .map_err(|e| RelayError::Unreadable(e.to_string()))?;
                if let Some(object) = value.as_object_mut() {
                    object.remove("usage");
                }
                push_json(out, None, &value)?;
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }
}

/// Anthropic to Anthropic: events go through as sent; usage is read from
/// `message_start` and `message_delta`.
#[derive(Default)]
pub(crate) struct AnthropicPassthrough {
    parser: SseParser,
    usage: AnthropicStreamUsage,
    done: bool,
}

impl StreamRelay for AnthropicPassthrough {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        for event in self.parser.feed(bytes)? {
            if self.done {
                break;
            }
            // An event this version does not know goes through unread:
            // Anthropic adds event types and clients must skip unknown ones.
            if let Ok(parsed) = serde_json::from_str::<StreamEvent>(&event.data) {
                match &parsed {
                    StreamEvent::Error { error } => {
                        return Err(RelayError::Upstream {
                            kind: error.kind.clone(),
                            message: error.message.clone(),
                        })
                    }
                    StreamEvent::MessageStop => self.done = true,
                    _ => {}
                }
                self.usage.observe(&parsed);
            }
            push_event(out, event.event.as_deref(), &event.data);
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.usage.total()
    }
}

/// An Anthropic stream to an OpenAI chat client.
pub(crate) struct AnthropicToChat {
    parser: SseParser,
    translator: StreamTranslator,
    client_wants_usage: bool,
    done: bool,
}

impl AnthropicToChat {
    pub(crate) fn new(created: u64, client_wants_usage: bool) -> Self {
        Self {
            parser: SseParser::new(),
            translator: StreamTranslator::new(created),
            client_wants_usage,
            done: false,
        }
    }
}

impl StreamRelay for AnthropicToChat {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        for event in self.parser.feed(bytes)? {
            if self.done {
                break;
            }
            let chunk = self.translator.translate_sse(&event).map_err(|e| match e {
                crate::StreamError::Upstream(error) => RelayError::Upstream {
                    kind: error.kind,
                    message: error.message,
                },
                other => RelayError::Unreadable(other.to_string()),
            })?;
            if let Some(chunk) = chunk {
                push_json(out, None, &chunk)?;
            }
            if self.translator.is_finished() {
                // OpenAI ends a stream with the usage chunk (when asked
                // for) and `[DONE]`: send both as soon as Anthropic's
                // `message_stop` is in.
                if self.client_wants_usage {
                    if let Some(chunk) = self.translator.usage_chunk() {
                        push_json(out, None, &chunk)?;
                    }
                }
                push_event(out, None, "[DONE]");
                self.done = true;
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.translator.usage()
    }
}

/// Two relays in a row: what the first writes, the second reads (Gemini
/// to chat completions to Anthropic Messages; any provider's chat stream
/// to the Responses API). Usage is the first's.
pub(crate) struct Chain<A, B> {
    first: A,
    second: B,
    between: Vec<u8>,
}

impl<A, B> Chain<A, B> {
    pub(crate) fn new(first: A, second: B) -> Self {
        Self {
            first,
            second,
            between: Vec::new(),
        }
    }
}

impl<A: StreamRelay, B: StreamRelay> StreamRelay for Chain<A, B> {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        self.between.clear();
        self.first.feed(bytes, &mut self.between)?;
        self.second.feed(&self.between, out)
    }

    fn is_done(&self) -> bool {
        self.second.is_done()
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.first.usage()
    }
}

/// An OpenAI chat stream to an Anthropic Messages client.
pub(crate) struct ChatToAnthropic {
    parser: SseParser,
    translator: ChatToMessagesStream,
    done: bool,
}

impl ChatToAnthropic {
    pub(crate) fn new(model: &str) -> Self {
        Self {
            parser: SseParser::new(),
            translator: ChatToMessagesStream::new(model),
            done: false,
        }
    }

    fn push_events(out: &mut Vec<u8>, events: &[StreamEvent]) -> Result<(), RelayError> {
        for event in events {
            push_json(out, Some(event.name()), event)?;
            if matches!(event, StreamEvent::MessageStart { .. }) {
                // Anthropic's own streams carry a `ping` early on; clients
                // written against them may expect one.
                push_json(out, Some("ping"), &StreamEvent::Ping)?;
            }
        }
        Ok(())
    }
}

impl StreamRelay for ChatToAnthropic {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        for event in self.parser.feed(bytes)? {
            if self.done {
                break;
            }
            let data = event.data.trim();
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                let events = self
                    .translator
                    .finish()
                    .map_err(|e| RelayError::Unreadable(e.to_string()))?;
                Self::push_events(out, &events)?;
                self.done = true;
                continue;
            }
            if let Some(error) = openai_stream_error(data) {
                return Err(error);
            }
            let chunk: ChatChunk = serde_json::from_str(data)
                .map_err(|e| RelayError::Unreadable(format!("stream chunk: {e}")))?;
            let events = self
                .translator
                .feed(&chunk)
                .map_err(|e| RelayError::Unreadable(e.to_string()))?;
            Self::push_events(out, &events)?;
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.translator.usage()
    }
}

#[cfg(test)]
mod tests;
