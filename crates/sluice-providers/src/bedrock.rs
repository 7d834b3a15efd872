//! AWS Bedrock's Converse API (`/model/{id}/converse` and
//! `/model/{id}/converse-stream`): its wire types, OpenAI chat requests
//! translated to it, and its answers back to chat completions, whole or
//! streamed in AWS's binary event-stream framing (decoded with the AWS
//! SDK's own `aws-smithy-eventstream`). Pure, like the rest of the crate.
//!
//! What does not translate:
//! * `system`/`developer` messages become `system` blocks, wherever they
//!   stood.
//! * Images must be `data:` URLs (sent as bytes): Bedrock fetches no URL.
//! * `n` above 1, `logprobs` and a JSON `response_format` are refused with
//!   a 400 naming the field; `tool_choice: "none"` sends no tools (refused
//!   when the conversation already holds tool calls, which Bedrock only
//!   takes with their tools). Fields Converse has no place for (`seed`,
//!   penalties, `user`, `metadata` …) are dropped.
//! * Consecutive messages of one role are merged: Bedrock wants user and
//!   assistant turns to alternate.

use bytes::{Buf, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::openai::{
    self, ChatChunk, ChatMessage, ChatResponse, Choice, Delta, FinishReason, FunctionCall,
    FunctionCallDelta, MessageContent, ResponseMessage, ToolCall, ToolCallDelta, ToolKind,
};
use crate::relay::{push_event, push_json, RelayError, StreamRelay};
use crate::translate::{
    inline_user_pieces, one_choice_without_logprobs, text_only, tool_input, TranslateError,
    UserPiece,
};
use crate::usage::TokenUsage;

/// A Converse request (the model is in the path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<Block>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub inference_config: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
}

/// One turn: `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Vec<Block>,
}

/// One content block; exactly one of its fields is set. Blocks of kinds
/// this version does not know (reasoning, citations, guard content …)
/// read as empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUse {
    pub tool_use_id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

/// A Converse answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    #[serde(default)]
    pub output: Option<Output>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Output {
    #[serde(default)]
    pub message: Option<Message>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    /// Prompt tokens read from or written to the prompt cache: billed as
    /// input, not counted in `input_tokens`.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        TokenUsage {
            prompt_tokens: u
                .input_tokens
                .saturating_add(u.cache_read_input_tokens)
                .saturating_add(u.cache_write_input_tokens),
            completion_tokens: u.output_tokens,
        }
    }
}

/// Bedrock's error body, `{"message": "..."}` (its type is in the
/// `x-amzn-ErrorType` header).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    #[serde(alias = "Message")]
    pub message: String,
}

/// Translates a chat completions request into a Converse request.
pub fn chat_to_converse(request: &openai::ChatRequest) -> Result<ConverseRequest, TranslateError> {
    let extra = &request.extra;
    one_choice_without_logprobs(extra)?;
    match extra
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some(_) => {
            return Err(TranslateError::unsupported(
                "response_format",
                "Bedrock's Converse API has no JSON mode: describe the format in the prompt, \
                 or use a tool",
            ))
        }
    }
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    let mut holds_tools = false;
    for (i, message) in request.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (role, content) = match message {
            ChatMessage::System { content, .. } | ChatMessage::Developer { content, .. } => {
                system.push(text_block(text_only(content.clone(), &path)?));
                continue;
            }
            ChatMessage::User { content, .. } => ("user", user_blocks(content, &path)?),
            ChatMessage::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut blocks = Vec::new();
                let text = match content {
                    None => String::new(),
                    Some(content) => text_only(content.clone(), &path)?,
                };
                if !text.is_empty() {
                    blocks.push(text_block(text));
                }
                for (k, call) in tool_calls.iter().flatten().enumerate() {
                    let input = tool_input(
                        &call.function.arguments,
                        format!("{path}.tool_calls[{k}].function.arguments"),
                    )?;
                    holds_tools = true;
                    blocks.push(Block {
                        tool_use: Some(ToolUse {
                            tool_use_id: call.id.clone(),
                            name: call.function.name.clone(),
                            input,
                        }),
                        ..Block::default()
                    });
                }
                ("assistant", blocks)
            }
            ChatMessage::Tool {
                content,
                tool_call_id,
            } => {
                holds_tools = true;
                let text = text_only(content.clone(), &path)?;
                // A JSON object result goes as JSON; anything else as text.
                let result = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(object)) => json!([{ "json": object }]),
                    _ => json!([{ "text": text }]),
                };
                let block = Block {
                    tool_result: Some(json!({"toolUseId": tool_call_id, "content": result})),
                    ..Block::default()
                };
                ("user", vec![block])
            }
        };
        if content.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(content),
            _ => messages.push(Message {
                role: role.to_owned(),
                content,
            }),
        }
    }
    if messages.is_empty() {
        return Err(TranslateError::unsupported(
            "messages",
            "at least one user or assistant message is required",
        ));
    }
    Ok(ConverseRequest {
        messages,
        system,
        inference_config: inference_config(request),
        tool_config: tool_config(request, holds_tools)?,
    })
}

fn text_block(text: String) -> Block {
    Block {
        text: Some(text),
        ..Block::default()
    }
}

fn user_blocks(content: &MessageContent, path: &str) -> Result<Vec<Block>, TranslateError> {
    let pieces = inline_user_pieces(
        content,
        path,
        "Bedrock deployments take images as data: URLs only",
    )?;
    pieces
        .into_iter()
        .enumerate()
        .map(|(j, piece)| match piece {
            UserPiece::Text(text) => Ok(text_block(text.to_owned())),
            UserPiece::Image { media_type, data } => {
                let format = media_type.strip_prefix("image/").unwrap_or("");
                if !["png", "jpeg", "gif", "webp"].contains(&format) {
                    return Err(TranslateError::unsupported(
                        format!("{path}.content[{j}].image_url.url"),
                        "Bedrock takes png, jpeg, gif and webp images",
                    ));
                }
                Ok(Block {
                    image: Some(json!({"format": format, "source": {"bytes": data}})),
                    ..Block::default()
                })
            }
        })
        .collect()
}

fn inference_config(request: &openai::ChatRequest) -> Map<String, Value> {
    let mut config = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            config.insert(key.to_owned(), value);
        }
    };
    set(
        "maxTokens",
        request
            .max_completion_tokens
            .or(request.max_tokens)
            .map(Value::from),
    );
    set("temperature", request.temperature.map(Value::from));
    set("topP", request.top_p.map(Value::from));
    set(
        "stopSequences",
        request.stop.as_ref().map(|stop| match stop {
            openai::Stop::One(one) => json!([one]),
            openai::Stop::Many(many) => json!(many),
        }),
    );
    config
}

fn tool_config(
    request: &openai::ChatRequest,
    holds_tools: bool,
) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let choice = match &request.tool_choice {
        None | Some(openai::ToolChoice::Mode(openai::ToolChoiceMode::Auto)) => json!({"auto": {}}),
        Some(openai::ToolChoice::Mode(openai::ToolChoiceMode::Required)) => json!({"any": {}}),
        Some(openai::ToolChoice::Function(named)) => {
            json!({"tool": {"name": named.function.name}})
        }
        Some(openai::ToolChoice::Mode(openai::ToolChoiceMode::None)) if holds_tools => {
            return Err(TranslateError::unsupported(
                "tool_choice",
                "Bedrock cannot be told not to call tools in a conversation that holds tool \
                 calls: use auto",
            ))
        }
        // No tools offered is Bedrock's way of calling none.
        Some(openai::ToolChoice::Mode(openai::ToolChoiceMode::None)) => return Ok(None),
    };
    let specs: Vec<Value> = tools
        .iter()
        .map(|tool| {
            let schema = tool
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let mut spec = json!({"name": tool.function.name, "inputSchema": {"json": schema}});
            if let Some(description) = &tool.function.description {
                spec["description"] = json!(description);
            }
            json!({ "toolSpec": spec })
        })
        .collect();
    Ok(Some(json!({"tools": specs, "toolChoice": choice})))
}

/// An OpenAI finish reason for Bedrock's stop reason.
fn finish_reason(reason: &str, called: bool) -> FinishReason {
    match reason {
        _ if called => FinishReason::ToolCalls,
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        // guardrail_intervened, content_filtered: the answer was withheld.
        _ => FinishReason::ContentFilter,
    }
}

const CHAT_ID: &str = "chatcmpl-bedrock";

/// A whole Converse answer as a chat completion, with its usage.
pub fn converse_to_chat(
    response: &ConverseResponse,
    model: &str,
    created: u64,
) -> Result<(ChatResponse, Option<TokenUsage>), RelayError> {
    let message = response
        .output
        .as_ref()
        .and_then(|o| o.message.as_ref())
        .ok_or_else(|| RelayError::Unreadable("an answer without output.message".into()))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in &message.content {
        if let Some(t) = &block.text {
            text.push_str(t);
        }
        if let Some(call) = &block.tool_use {
            calls.push(ToolCall {
                id: call.tool_use_id.clone(),
                kind: ToolKind::Function,
                function: FunctionCall {
                    name: call.name.clone(),
                    arguments: serde_json::to_string(&call.input).unwrap_or_else(|_| "{}".into()),
                },
            });
        }
    }
    let usage = response.usage.map(TokenUsage::from);
    let reason = response.stop_reason.as_deref().unwrap_or("end_turn");
    let finish = finish_reason(reason, !calls.is_empty());
    Ok((
        ChatResponse {
            id: CHAT_ID.into(),
            object: "chat.completion".into(),
            created,
            model: model.to_owned(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".into(),
                    content: (!text.is_empty() || calls.is_empty()).then_some(text),
                    tool_calls: (!calls.is_empty()).then_some(calls),
                    refusal: None,
                },
                finish_reason: Some(finish),
                logprobs: None,
            }],
            usage: usage.map(openai::Usage::from),
            system_fingerprint: None,
        },
        usage,
    ))
}

/// The largest event-stream message taken (AWS's own limit is 16 MiB; a
/// Converse event is a few hundred bytes): a longer prelude is a broken
/// or hostile stream, refused before anything is buffered for it.
pub const MAX_FRAME: usize = 1 << 20;

/// Reads AWS event-stream messages from bytes split anywhere: each
/// message's prelude and CRCs checked by `aws-smithy-eventstream`, its
/// length bounded by [`MAX_FRAME`] first.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: BytesMut,
}

/// One event-stream message: its `:event-type` (or exception/error type)
/// and its JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Event {
        kind: String,
        payload: bytes::Bytes,
    },
    /// `:message-type` `exception` or `error`: the stream failed upstream.
    Failure {
        kind: String,
        message: String,
    },
}

impl FrameReader {
    /// Appends `bytes`; returns the messages they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, RelayError> {
        use aws_smithy_eventstream::frame::read_message_from;
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while self.buffer.len() >= 4 {
            let total = (&self.buffer[..4]).get_u32() as usize;
            // Prelude (12) + message CRC (4) is the least a message is.
            if !(16..=MAX_FRAME).contains(&total) {
                return Err(RelayError::Unreadable(format!(
                    "event-stream message of {total} bytes (at most {MAX_FRAME})"
                )));
            }
            if self.buffer.len() < total {
                break;
            }
            let raw = self.buffer.split_to(total).freeze();
            let message = read_message_from(raw)
                .map_err(|e| RelayError::Unreadable(format!("event-stream message: {e}")))?;
            frames.push(frame_of(&message));
        }
        Ok(frames)
    }

    /// Whether bytes of an unfinished message are held.
    pub fn holds_partial(&self) -> bool {
        !self.buffer.is_empty()
    }
}

fn frame_of(message: &aws_smithy_types::event_stream::Message) -> Frame {
    let header = |name: &str| {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|v| v.as_str().to_owned())
    };
    let payload = message.payload().clone();
    match header(":message-type").as_deref() {
        Some("exception") => Frame::Failure {
            kind: header(":exception-type").unwrap_or_else(|| "exception".into()),
            message: serde_json::from_slice::<ErrorBody>(&payload)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&payload).into_owned()),
        },
        Some("error") => Frame::Failure {
            kind: header(":error-code").unwrap_or_else(|| "error".into()),
            message: header(":error-message").unwrap_or_default(),
        },
        _ => Frame::Event {
            kind: header(":event-type").unwrap_or_default(),
            payload,
        },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u32,
    #[serde(default)]
    start: Option<StartOf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartOf {
    #[serde(default)]
    tool_use: Option<ToolStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u32,
    #[serde(default)]
    delta: DeltaOf,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaOf {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolInput>,
}

#[derive(Deserialize)]
struct ToolInput {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<Usage>,
}

/// A ConverseStream answer to an OpenAI chat client: text and tool-input
/// deltas become chunks as they arrive; `messageStop` gives the finish
/// chunk and `metadata`, which carries the usage and is always last,
/// closes the stream (the usage chunk when the client asked for it, then
/// `[DONE]`). A body that ends before it is a truncated stream.
pub struct ConverseToChat {
    frames: FrameReader,
    model: String,
    created: u64,
    client_wants_usage: bool,
    role_sent: bool,
    /// Content block index -> tool call index, for the blocks that are
    /// tool calls.
    tools: Vec<(u32, u32)>,
    stopped: bool,
    usage: Option<TokenUsage>,
    done: bool,
}

impl ConverseToChat {
    pub fn new(model: &str, created: u64, client_wants_usage: bool) -> Self {
        Self {
            frames: FrameReader::default(),
            model: model.to_owned(),
            created,
            client_wants_usage,
            role_sent: false,
            tools: Vec::new(),
            stopped: false,
            usage: None,
            done: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk::of_choice(CHAT_ID, self.created, &self.model, delta, finish)
    }

    fn send(&mut self, mut delta: Delta, out: &mut Vec<u8>) -> Result<(), RelayError> {
        if !self.role_sent {
            delta.role = Some("assistant".into());
            self.role_sent = true;
        }
        push_json(out, None, &self.chunk(delta, None))
    }

    fn event(&mut self, kind: &str, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        fn read<'a, T: Deserialize<'a>>(kind: &str, payload: &'a [u8]) -> Result<T, RelayError> {
            serde_json::from_slice(payload)
                .map_err(|e| RelayError::Unreadable(format!("{kind} event: {e}")))
        }
        match kind {
            "messageStart" => self.send(Delta::default(), out)?,
            "contentBlockStart" => {
                let start: BlockStart = read(kind, payload)?;
                if let Some(tool) = start.start.and_then(|s| s.tool_use) {
                    let index = self.tools.len() as u32;
                    self.tools.push((start.content_block_index, index));
                    let delta = Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            id: Some(tool.tool_use_id),
                            kind: Some(ToolKind::Function),
                            function: Some(FunctionCallDelta {
                                name: Some(tool.name),
                                arguments: Some(String::new()),
                            }),
                        }]),
                        ..Delta::default()
                    };
                    self.send(delta, out)?;
                }
            }
            "contentBlockDelta" => {
                let block: BlockDelta = read(kind, payload)?;
                if let Some(text) = block.delta.text.filter(|t| !t.is_empty()) {
                    let delta = Delta {
                        content: Some(text),
                        ..Delta::default()
                    };
                    self.send(delta, out)?;
                } else if let Some(input) = block.delta.tool_use {
                    let index = self
                        .tools
                        .iter()
                        .find(|(block_index, _)| *block_index == block.content_block_index)
                        .map(|(_, index)| *index)
                        .ok_or_else(|| {
                            RelayError::Unreadable(
                                "tool input for a block that started no tool call".into(),
                            )
                        })?;
                    let delta = Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            id: None,
                            kind: None,
                            function: Some(FunctionCallDelta {
                                name: None,
                                arguments: Some(input.input),
                            }),
                        }]),
                        ..Delta::default()
                    };
                    self.send(delta, out)?;
                }
                // Reasoning and other block kinds are not the answer.
            }
            "messageStop" => {
                let stop: MessageStop = read(kind, payload)?;
                let reason = stop.stop_reason.as_deref().unwrap_or("end_turn");
                let finish = finish_reason(reason, !self.tools.is_empty());
                let delta = Delta {
                    role: (!self.role_sent).then(|| "assistant".to_owned()),
                    ..Delta::default()
                };
                self.role_sent = true;
                self.stopped = true;
                push_json(out, None, &self.chunk(delta, Some(finish)))?;
            }
            "metadata" => {
                let metadata: Metadata = read(kind, payload)?;
                self.usage = metadata.usage.map(TokenUsage::from);
                if !self.stopped {
                    return Err(RelayError::Unreadable(
                        "the stream's metadata came before its messageStop".into(),
                    ));
                }
                if self.client_wants_usage {
                    let mut chunk = self.chunk(Delta::default(), None);
                    chunk.choices.clear();
                    chunk.usage = Some(self.usage.unwrap_or_default().into());
                    push_json(out, None, &chunk)?;
                }
                push_event(out, None, "[DONE]");
                self.done = true;
            }
            // contentBlockStop, and event types added later.
            _ => {}
        }
        Ok(())
    }
}

impl StreamRelay for ConverseToChat {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        if self.done {
            return Ok(());
        }
        for frame in self.frames.feed(bytes)? {
            if self.done {
                break;
            }
            match frame {
                Frame::Event { kind, payload } => self.event(&kind, &payload, out)?,
                Frame::Failure { kind, message } => {
                    return Err(RelayError::Upstream { kind, message })
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

#[cfg(test)]
pub(crate) mod tests;
