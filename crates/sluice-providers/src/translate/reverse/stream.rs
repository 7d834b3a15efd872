//! OpenAI stream chunks -> Anthropic stream events, one chunk at a time, so
//! the proxy relays each event as soon as its chunk arrives.

use serde_json::{Map, Value};

use super::{anthropic_usage, message_id, reply_stop_reason, ReplyError};
use crate::anthropic::{self, BlockDelta, ContentBlock, DeltaUsage, Role, StreamEvent};
use crate::openai::{self, ToolCallDelta};
use crate::translate::tool_input;
use crate::usage::TokenUsage;

/// The content block being streamed.
#[derive(Debug, Clone)]
enum OpenBlock {
    Text {
        index: u32,
    },
    Tool {
        index: u32,
        /// The OpenAI tool call `index` it streams.
        call: u32,
        /// The arguments so far, checked when the block closes.
        arguments: String,
    },
}

/// OpenAI stream chunks -> Anthropic stream events, one chunk at a time, in
/// the order Anthropic sends them: `message_start`; per block a
/// `content_block_start`, its deltas and its `content_block_stop`;
/// `message_delta`; `message_stop`.
///
/// OpenAI reports usage in a last chunk after the one with `finish_reason`,
/// so `message_delta` (which carries both) waits for that chunk or `[DONE]`.
#[derive(Debug, Clone)]
pub struct ChatToMessagesStream {
    model: String,
    started: bool,
    open: Option<OpenBlock>,
    /// The Anthropic index the next block gets.
    next_index: u32,
    /// The OpenAI tool call indexes that have had a block.
    calls: Vec<u32>,
    finish: Option<openai::FinishReason>,
    refused: bool,
    usage: Option<openai::Usage>,
    /// `message_stop` was sent.
    ended: bool,
}

impl ChatToMessagesStream {
    /// `model` is what the client asked for, reported in `message_start`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: None,
            next_index: 0,
            calls: Vec::new(),
            finish: None,
            refused: false,
            usage: None,
            ended: false,
        }
    }

    /// Translates one chunk. Only choice 0 is read (Sluice never asks for
    /// more); a usage-only chunk after the `finish_reason` ends the message.
    pub fn feed(&mut self, chunk: &openai::ChatChunk) -> Result<Vec<StreamEvent>, ReplyError> {
        if self.ended {
            return Err(ReplyError::AfterEnd);
        }
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            events.push(StreamEvent::MessageStart {
                message: anthropic::MessagesResponse {
                    id: message_id(&chunk.id),
                    role: Role::Assistant,
                    model: self.model.clone(),
                    content: Vec::new(),
                    stop_reason: None,
                    stop_sequence: None,
                    usage: anthropic::Usage::default(),
                },
            });
        }
        for choice in chunk.choices.iter().filter(|choice| choice.index == 0) {
            let delta = &choice.delta;
            if let Some(text) = delta.content.as_deref().filter(|text| !text.is_empty()) {
                self.text(text, &mut events)?;
            }
            if let Some(refusal) = delta.refusal.as_deref().filter(|text| !text.is_empty()) {
                self.refused = true;
                self.text(refusal, &mut events)?;
            }
            for call in delta.tool_calls.iter().flatten() {
                self.tool_call(call, &mut events)?;
            }
            if let Some(finish) = choice.finish_reason {
                self.close_block(&mut events)?;
                self.finish = Some(finish);
            }
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
            if chunk.choices.is_empty() && self.finish.is_some() {
                self.end(&mut events);
            }
        }
        Ok(events)
    }

    /// The upstream's `[DONE]`: the closing events if the usage chunk has not
    /// sent them already. A stream that never said why it finished was cut,
    /// and is an error, never a clean end.
    pub fn finish(&mut self) -> Result<Vec<StreamEvent>, ReplyError> {
        let mut events = Vec::new();
        if !self.ended {
            if self.finish.is_none() {
                return Err(ReplyError::Truncated);
            }
            self.end(&mut events);
        }
        Ok(events)
    }

    /// `message_stop` was sent: the message is complete.
    pub fn is_finished(&self) -> bool {
        self.ended
    }

    /// The usage the upstream reported, if it has yet.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage.as_ref().map(TokenUsage::from)
    }

    fn text(&mut self, text: &str, events: &mut Vec<StreamEvent>) -> Result<(), ReplyError> {
        if self.finish.is_some() {
            return Err(ReplyError::AfterFinish);
        }
        let index = match self.open {
            Some(OpenBlock::Text { index }) => index,
            _ => {
                self.close_block(events)?;
                let index = self.start_block(
                    ContentBlock::Text {
                        text: String::new(),
                    },
                    events,
                );
                self.open = Some(OpenBlock::Text { index });
                index
            }
        };
        events.push(StreamEvent::ContentBlockDelta {
            index,
            delta: BlockDelta::TextDelta {
                text: text.to_owned(),
            },
        });
        Ok(())
    }

    fn tool_call(
        &mut self,
        call: &ToolCallDelta,
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), ReplyError> {
        if self.finish.is_some() {
            return Err(ReplyError::AfterFinish);
        }
        let function = call.function.as_ref();
        let arguments = function
            .and_then(|function| function.arguments.as_deref())
            .unwrap_or("");
        let index = match &mut self.open {
            Some(OpenBlock::Tool {
                index,
                call: open,
                arguments: so_far,
            }) if *open == call.index => {
                so_far.push_str(arguments);
                *index
            }
            _ => {
                if self.calls.contains(&call.index) {
                    return Err(ReplyError::ToolCallResumed { index: call.index });
                }
                let name = function.and_then(|function| function.name.as_ref());
                let (Some(id), Some(name)) = (&call.id, name) else {
                    return Err(ReplyError::ToolCallUnnamed { index: call.index });
                };
                self.close_block(events)?;
                self.calls.push(call.index);
                let index = self.start_block(
                    ContentBlock::ToolUse {
                        id: id.clone(),
                        name: name.clone(),
                        input: Value::Object(Map::new()),
                    },
                    events,
                );
                self.open = Some(OpenBlock::Tool {
                    index,
                    call: call.index,
                    arguments: arguments.to_owned(),
                });
                index
            }
        };
        if !arguments.is_empty() {
            events.push(StreamEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::InputJsonDelta {
                    partial_json: arguments.to_owned(),
                },
            });
        }
        Ok(())
    }

    fn start_block(&mut self, block: ContentBlock, events: &mut Vec<StreamEvent>) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        events.push(StreamEvent::ContentBlockStart {
            index,
            content_block: block,
        });
        index
    }

    /// Closes the open block, if any. A tool call's arguments must be a JSON
    /// object by now, as [`chat_response_to_messages`](super::chat_response_to_messages) requires.
    fn close_block(&mut self, events: &mut Vec<StreamEvent>) -> Result<(), ReplyError> {
        let index = match self.open.take() {
            None => return Ok(()),
            Some(OpenBlock::Text { index }) => index,
            Some(OpenBlock::Tool {
                index,
                call,
                arguments,
            }) => {
                tool_input(&arguments, format!("tool_calls[{call}].function.arguments"))
                    .map_err(ReplyError::ToolInput)?;
                index
            }
        };
        events.push(StreamEvent::ContentBlockStop { index });
        Ok(())
    }

    fn end(&mut self, events: &mut Vec<StreamEvent>) {
        self.ended = true;
        let usage = self.usage.as_ref().map(anthropic_usage);
        events.push(StreamEvent::MessageDelta {
            delta: anthropic::MessageDelta {
                stop_reason: reply_stop_reason(self.finish, self.refused),
                stop_sequence: None,
            },
            usage: DeltaUsage {
                output_tokens: usage.map_or(0, |usage| usage.output_tokens),
                input_tokens: usage.map(|usage| usage.input_tokens),
                cache_creation_input_tokens: None,
                cache_read_input_tokens: usage.and_then(|usage| usage.cache_read_input_tokens),
            },
        });
        events.push(StreamEvent::MessageStop);
    }
}

#[cfg(test)]
mod tests;
