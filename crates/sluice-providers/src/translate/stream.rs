//! Anthropic stream events -> OpenAI `chat.completion.chunk`s, one event at a
//! time, so the proxy relays each chunk as soon as its event arrives.

use thiserror::Error;

use crate::anthropic::{self, BlockDelta, ContentBlock, StreamEvent};
use crate::openai::{self, ChatChunk, Delta, FunctionCallDelta, ToolCallDelta};
use crate::sse::SseEvent;
use crate::usage::{AnthropicStreamUsage, TokenUsage};

/// Why the stream cannot continue. Every variant ends the client's stream
/// with an in-stream error, never a clean-looking end.
#[derive(Debug, Error)]
pub enum StreamError {
    /// Anthropic sent an `error` event (`overloaded_error` mid-stream …).
    #[error("upstream error `{}`: {}", .0.kind, .0.message)]
    Upstream(anthropic::ErrorObject),
    /// An event's `data` is not a stream event we know.
    #[error("upstream sent an unreadable `{event}` event: {source}")]
    Unreadable {
        event: String,
        source: serde_json::Error,
    },
    /// Content arrived before `message_start`.
    #[error("upstream sent `{event}` before `message_start`")]
    NotStarted { event: &'static str },
    /// A tool argument fragment for a block that was not opened as `tool_use`.
    #[error("upstream sent tool input for content block {index}, which is not a tool_use block")]
    NotAToolBlock { index: u32 },
}

/// The state of one translated stream: which Anthropic content blocks are
/// tool calls (and their OpenAI `index`), and the usage so far.
#[derive(Debug, Clone)]
pub struct StreamTranslator {
    created: u64,
    id: String,
    model: String,
    started: bool,
    stopped: bool,
    /// (Anthropic content block index, OpenAI tool call index).
    tool_blocks: Vec<(u32, u32)>,
    usage: AnthropicStreamUsage,
}

impl StreamTranslator {
    /// `created` is the Unix time stamped on every chunk.
    pub fn new(created: u64) -> Self {
        Self {
            created,
            id: String::new(),
            model: String::new(),
            started: false,
            stopped: false,
            tool_blocks: Vec::new(),
            usage: AnthropicStreamUsage::default(),
        }
    }

    /// Translates one event; most produce a chunk, `ping`, block stops and
    /// `message_stop` produce none.
    pub fn translate(&mut self, event: &StreamEvent) -> Result<Option<ChatChunk>, StreamError> {
        self.usage.observe(event);
        let delta = match event {
            StreamEvent::MessageStart { message } => {
                self.started = true;
                self.id.clone_from(&message.id);
                self.model.clone_from(&message.model);
                return Ok(Some(self.chunk(
                    Delta {
                        role: Some("assistant".to_owned()),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    None,
                )));
            }
            StreamEvent::Ping | StreamEvent::ContentBlockStop { .. } => return Ok(None),
            StreamEvent::MessageStop => {
                self.stopped = true;
                return Ok(None);
            }
            StreamEvent::Error { error } => return Err(StreamError::Upstream(error.clone())),
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                self.require_started("content_block_start")?;
                match content_block {
                    ContentBlock::Text { text } if !text.is_empty() => text_delta(text),
                    ContentBlock::ToolUse { id, name, .. } => {
                        let tool_index = self.tool_blocks.len() as u32;
                        self.tool_blocks.push((*index, tool_index));
                        tool_delta(ToolCallDelta {
                            index: tool_index,
                            id: Some(id.clone()),
                            kind: Some(openai::ToolKind::Function),
                            function: Some(FunctionCallDelta {
                                name: Some(name.clone()),
                                arguments: Some(String::new()),
                            }),
                        })
                    }
                    _ => return Ok(None),
                }
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                self.require_started("content_block_delta")?;
                match delta {
                    BlockDelta::TextDelta { text } => text_delta(text),
                    BlockDelta::InputJsonDelta { partial_json } => {
                        let tool_index = self
                            .tool_blocks
                            .iter()
                            .find(|(block, _)| block == index)
                            .map(|(_, tool)| *tool)
                            .ok_or(StreamError::NotAToolBlock { index: *index })?;
                        tool_delta(ToolCallDelta {
                            index: tool_index,
                            function: Some(FunctionCallDelta {
                                name: None,
                                arguments: Some(partial_json.clone()),
                            }),
                            ..ToolCallDelta::default()
                        })
                    }
                    BlockDelta::ThinkingDelta { .. } | BlockDelta::SignatureDelta { .. } => {
                        return Ok(None)
                    }
                }
            }
            StreamEvent::MessageDelta { delta, .. } => {
                self.require_started("message_delta")?;
                let Some(stop) = delta.stop_reason else {
                    return Ok(None);
                };
                return Ok(Some(
                    self.chunk(Delta::default(), Some(super::finish_reason(stop))),
                ));
            }
        };
        Ok(Some(self.chunk(delta, None)))
    }

    /// Parses one SSE event of an Anthropic stream, then [`Self::translate`]s it.
    pub fn translate_sse(&mut self, event: &SseEvent) -> Result<Option<ChatChunk>, StreamError> {
        let parsed = serde_json::from_str::<StreamEvent>(&event.data).map_err(|source| {
            StreamError::Unreadable {
                event: event.event.clone().unwrap_or_default(),
                source,
            }
        })?;
        self.translate(&parsed)
    }

    /// `message_stop` was seen: the stream ended normally. A stream that ends
    /// before this was cut and must be reported to the client as an error.
    pub fn is_finished(&self) -> bool {
        self.stopped
    }

    /// The usage so far (final once [`Self::is_finished`]).
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage.total()
    }

    /// The final chunk OpenAI sends when `stream_options.include_usage` is
    /// set: empty `choices`, the usage. `None` before `message_start`.
    pub fn usage_chunk(&self) -> Option<ChatChunk> {
        let usage = self.usage()?;
        let mut chunk = self.chunk(Delta::default(), None);
        chunk.choices.clear();
        chunk.usage = Some(usage.to_openai());
        Some(chunk)
    }

    fn require_started(&self, event: &'static str) -> Result<(), StreamError> {
        if self.started {
            Ok(())
        } else {
            Err(StreamError::NotStarted { event })
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<openai::FinishReason>) -> ChatChunk {
        ChatChunk::of_choice(&self.id, self.created, &self.model, delta, finish_reason)
    }
}

fn text_delta(text: &str) -> Delta {
    Delta {
        content: Some(text.to_owned()),
        ..Delta::default()
    }
}

fn tool_delta(call: ToolCallDelta) -> Delta {
    Delta {
        tool_calls: Some(vec![call]),
        ..Delta::default()
    }
}

#[cfg(test)]
mod tests;
