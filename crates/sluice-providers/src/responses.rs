//! The OpenAI Responses API (`/v1/responses`) as the gateway carries it:
//! passed through to OpenAI-kind providers, with two things of its own.
//!
//! * **Response ids name their provider.** A response lives at the upstream
//!   that made it: a follow-up (`previous_response_id`) or a `GET` must go
//!   back there, whichever node it reaches, and a route may spread its
//!   calls over several accounts. So the id a client sees is the upstream's
//!   wrapped with the provider's name ([`client_id`]: `resp_` and an
//!   opaque, URL-safe token), and the gateway unwraps it on the way back
//!   ([`upstream_of`]). Nothing is stored: any node reads any id, for as
//!   long as the upstream keeps the response. An id the gateway did not
//!   wrap goes upstream as it is.
//! * **Usage** is the response's `usage` (`input_tokens`, `output_tokens`),
//!   in the whole answer or in the stream's last event
//!   (`response.completed`, `response.incomplete`, `response.failed`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::relay::{push_json, RelayError, StreamRelay};
use crate::sse::SseParser;
use crate::usage::TokenUsage;

/// What starts every id the gateway wraps (after `resp_`).
const WRAPPED: &str = "sl1";

/// The id a client sees for the response `upstream_id` of `provider`.
pub fn client_id(provider: &str, upstream_id: &str) -> String {
    let inner = format!("{provider}\n{upstream_id}");
    format!("resp_{WRAPPED}{}", URL_SAFE_NO_PAD.encode(inner))
}

/// The provider and the upstream's id inside a client id, if the gateway
/// wrapped it.
pub fn upstream_of(client_id: &str) -> Option<(String, String)> {
    let token = client_id.strip_prefix("resp_")?.strip_prefix(WRAPPED)?;
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (provider, upstream) = text.split_once('\n')?;
    (!provider.is_empty() && !upstream.is_empty())
        .then(|| (provider.to_owned(), upstream.to_owned()))
}

/// Wraps the `id` of a response object (`{"id": "resp_…", "object":
/// "response", …}`), or of a deletion's answer.
pub fn wrap_id(object: &mut Value, provider: &str) {
    if let Some(Value::String(id)) = object.get_mut("id") {
        *id = client_id(provider, id);
    }
}

/// The usage of a response object.
pub fn usage_of(response: &Value) -> Option<TokenUsage> {
    #[derive(Deserialize)]
    struct Counts {
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
    }
    let counts = Counts::deserialize(response.get("usage")?).ok()?;
    Some(TokenUsage {
        prompt_tokens: counts.input_tokens,
        completion_tokens: counts.output_tokens,
    })
}

/// A whole answer: its response id wrapped, and its usage.
pub fn convert(body: &[u8], provider: &str) -> Result<(Vec<u8>, Option<TokenUsage>), RelayError> {
    let mut response: Value =
        serde_json::from_slice(body).map_err(|e| RelayError::Unreadable(e.to_string()))?;
    wrap_id(&mut response, provider);
    let usage = usage_of(&response);
    let bytes = serde_json::to_vec(&response).map_err(|e| RelayError::Unreadable(e.to_string()))?;
    Ok((bytes, usage))
}

/// A Responses stream to a Responses client: every event as sent, but the
/// response id wrapped in the events that carry the response object; usage
/// from the last one. The stream is done at `response.completed`,
/// `response.incomplete` or `response.failed`; an `error` event is the
/// upstream's error.
pub struct ResponsesPassthrough {
    parser: SseParser,
    provider: String,
    done: bool,
    usage: Option<TokenUsage>,
}

impl ResponsesPassthrough {
    pub fn new(provider: &str) -> Self {
        Self {
            parser: SseParser::new(),
            provider: provider.to_owned(),
            done: false,
            usage: None,
        }
    }
}

/// Just enough of an event to route it.
#[derive(Deserialize)]
struct Peek {
    #[serde(rename = "type", default)]
    kind: String,
}

impl StreamRelay for ResponsesPassthrough {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        for event in self.parser.feed(bytes)? {
            if self.done {
                break;
            }
            let kind = match event.event.as_deref() {
                Some(kind) => kind.to_owned(),
                None => serde_json::from_str::<Peek>(&event.data)
                    .map(|p| p.kind)
                    .unwrap_or_default(),
            };
            match kind.as_str() {
                "error" => {
                    let error: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    let field = |name: &str| {
                        error
                            .get(name)
                            .or_else(|| error.get("error").and_then(|e| e.get(name)))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    };
                    return Err(RelayError::Upstream {
                        kind: field("code")
                            .or_else(|| field("type").filter(|t| t != "error"))
                            .unwrap_or_else(|| "server_error".to_owned()),
                        message: field("message")
                            .unwrap_or_else(|| "the upstream stream failed".to_owned()),
                    });
                }
                "response.created"
                | "response.in_progress"
                | "response.queued"
                | "response.completed"
                | "response.incomplete"
                | "response.failed" => {
                    let mut value: Value = serde_json::from_str(&event.data)
                        .map_err(|e| RelayError::Unreadable(e.to_string()))?;
                    if let Some(response) = value.get_mut("response") {
                        wrap_id(response, &self.provider);
                        if kind != "response.created"
                            && kind != "response.in_progress"
                            && kind != "response.queued"
                        {
                            self.usage = usage_of(response);
                            self.done = true;
                        }
                    }
                    push_json(out, event.event.as_deref(), &value)?;
                }
                _ => {
                    let _ = event.encode_into(out);
                }
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

pub mod translate;

#[cfg(test)]
mod tests;
