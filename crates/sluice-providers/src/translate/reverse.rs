//! Anthropic Messages -> OpenAI chat completions, for serving Anthropic
//! clients from OpenAI-compatible deployments: the request one way
//! ([`messages_to_chat`]), the response back ([`chat_response_to_messages`]),
//! and the stream back ([`ChatToMessagesStream`]). The mirror of the parent
//! module.
//!
//! What does not translate:
//! * `system` text blocks are joined by blank lines into one leading
//!   `system` message.
//! * `tool_result` blocks become `tool` messages, placed before the rest of
//!   their user turn. OpenAI tool messages have no error flag, so a result
//!   with `is_error: true` has its text prefixed with [`TOOL_ERROR_PREFIX`]:
//!   the model still learns the call failed.
//! * `thinking` blocks, images outside user turns and tool blocks in the
//!   wrong role are refused, naming the block. Block kinds this crate does not
//!   know (`document` …) are already refused when the body is parsed.
//! * Of the fields kept in `extra`, only `metadata.user_id` is carried (as
//!   `user`); `top_k`, `thinking`, `service_tier` … are dropped.
//! * OpenAI does not say which stop sequence ended a reply, so
//!   `finish_reason: "stop"` is always `end_turn`, never `stop_sequence`.
//!
//! A reply that cannot be translated is the upstream's fault, never the
//! client's: it is a [`ReplyError`], not a [`TranslateError`].

use serde_json::{Map, Value};
use thiserror::Error;

use super::{tool_input, TranslateError};
use crate::anthropic::{self, ContentBlock, ImageSource, Role, StopReason};
use crate::openai::{self, ChatMessage, ContentPart, MessageContent};

pub mod stream;

pub use stream::ChatToMessagesStream;

/// What the text of a `tool_result` with `is_error: true` starts with.
pub const TOOL_ERROR_PREFIX: &str = "Error: ";

/// Why an OpenAI-compatible upstream's reply cannot be given to an Anthropic
/// client. Always the upstream's fault: a 502, or an `error` event ending the
/// client's stream, never a clean-looking end.
#[derive(Debug, Error)]
pub enum ReplyError {
    #[error("upstream answered with no choices")]
    NoChoices,
    /// A tool call's arguments are not a JSON object; the path names them.
    #[error("upstream tool call: {0}")]
    ToolInput(#[source] TranslateError),
    /// The first fragment of a streamed tool call lacked its id or name.
    #[error("upstream started tool call {index} without its id and name")]
    ToolCallUnnamed { index: u32 },
    /// A tool call went on after another content block had started:
    /// Anthropic blocks cannot be reopened.
    #[error("upstream resumed tool call {index} after another content block")]
    ToolCallResumed { index: u32 },
    #[error("upstream sent content after its finish_reason")]
    AfterFinish,
    #[error("upstream sent a chunk after the end of the stream")]
    AfterEnd,
    /// `[DONE]` (or the end of the body) came before any `finish_reason`.
    #[error("upstream stream ended before a finish_reason: it was cut")]
    Truncated,
}

/// Translates a Messages request into a chat completions request for
/// `upstream_model`. A streaming request also asks for the final usage chunk,
/// which [`ChatToMessagesStream`] turns into the closing `message_delta`.
pub fn messages_to_chat(
    request: &anthropic::MessagesRequest,
    upstream_model: &str,
) -> Result<openai::ChatRequest, TranslateError> {
    if request.messages.is_empty() {
        return Err(TranslateError::unsupported(
            "messages",
            "at least one message is required",
        ));
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        let text = match system {
            anthropic::System::Text(text) => text.clone(),
            anthropic::System::Blocks(blocks) => block_texts(blocks, "system")?.join("\n\n"),
        };
        messages.push(ChatMessage::System {
            content: MessageContent::Text(text),
            name: None,
        });
    }
    for (i, message) in request.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        match message.role {
            Role::User => user_messages(&message.content, &path, &mut messages)?,
            Role::Assistant => messages.push(assistant_message(&message.content, &path)?),
        }
    }

    let mut extra = Map::new();
    let (tool_choice, disable_parallel) = match &request.tool_choice {
        Some(choice) => {
            let (choice, disable_parallel) = tool_choice(choice);
            (Some(choice), disable_parallel)
        }
        None => (None, None),
    };
    if let Some(disable) = disable_parallel {
        extra.insert("parallel_tool_calls".to_owned(), Value::Bool(!disable));
    }
    let user = request
        .extra
        .get("metadata")
        .and_then(|metadata| metadata.get("user_id"))
        .filter(|user| user.is_string());
    if let Some(user) = user {
        extra.insert("user".to_owned(), user.clone());
    }
    let mut chat = openai::ChatRequest {
        model: upstream_model.to_owned(),
        messages,
        tools: request.tools.as_ref().map(|tools| {
            tools
                .iter()
                .map(|tool| openai::Tool {
                    kind: openai::ToolKind::Function,
                    function: openai::FunctionDefinition {
                        name: tool.name.clone(),
                        description: tool.description.clone(),
                        parameters: Some(tool.input_schema.clone()),
                        strict: None,
                    },
                })
                .collect()
        }),
        tool_choice,
        stream: request.stream,
        stream_options: None,
        max_tokens: Some(request.max_tokens),
        max_completion_tokens: None,
        temperature: request.temperature,
        top_p: request.top_p,
        stop: request.stop_sequences.clone().map(openai::Stop::Many),
        extra,
    };
    // Anthropic streams always end with usage; OpenAI's only when asked.
    chat.request_stream_usage();
    Ok(chat)
}

/// OpenAI's `tool_choice`, and Anthropic's `disable_parallel_tool_use`.
fn tool_choice(choice: &anthropic::ToolChoice) -> (openai::ToolChoice, Option<bool>) {
    use openai::ToolChoiceMode as Mode;
    match choice {
        anthropic::ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (
            openai::ToolChoice::Mode(Mode::Auto),
            *disable_parallel_tool_use,
        ),
        anthropic::ToolChoice::Any {
            disable_parallel_tool_use,
        } => (
            openai::ToolChoice::Mode(Mode::Required),
            *disable_parallel_tool_use,
        ),
        anthropic::ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (
            openai::ToolChoice::Function(openai::NamedToolChoice {
                kind: openai::ToolKind::Function,
                function: openai::FunctionName { name: name.clone() },
            }),
            *disable_parallel_tool_use,
        ),
        anthropic::ToolChoice::None => (openai::ToolChoice::Mode(Mode::None), None),
    }
}

/// A user turn: a `tool` message per `tool_result`, then a `user` message
/// with the rest (none if the turn was only tool results).
fn user_messages(
    content: &anthropic::Content,
    path: &str,
    out: &mut Vec<ChatMessage>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        anthropic::Content::Text(text) => {
            out.push(ChatMessage::User {
                content: MessageContent::Text(text.clone()),
                name: None,
            });
            return Ok(());
        }
        anthropic::Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    let mut results = 0;
    for (j, block) in blocks.iter().enumerate() {
        let block_path = format!("{path}.content[{j}]");
        match block {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                out.push(ChatMessage::Tool {
                    content: tool_result(content.as_ref(), *is_error == Some(true), &block_path)?,
                    tool_call_id: tool_use_id.clone(),
                });
                results += 1;
            }
            ContentBlock::Image { source } => parts.push(ContentPart::ImageUrl {
                image_url: openai::ImageUrl {
                    url: image_url(source),
                    detail: None,
                },
            }),
            other => parts.push(text_part(other, block_path)?),
        }
    }
    if !parts.is_empty() || results == 0 {
        out.push(ChatMessage::User {
            content: parts_content(parts),
            name: None,
        });
    }
    Ok(())
}

fn assistant_message(
    content: &anthropic::Content,
    path: &str,
) -> Result<ChatMessage, TranslateError> {
    let blocks = match content {
        anthropic::Content::Text(text) => {
            return Ok(ChatMessage::Assistant {
                content: Some(MessageContent::Text(text.clone())),
                tool_calls: None,
                name: None,
                refusal: None,
            })
        }
        anthropic::Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlock::ToolUse { id, name, input } => calls.push(openai::ToolCall {
                id: id.clone(),
                kind: openai::ToolKind::Function,
                function: openai::FunctionCall {
                    name: name.clone(),
                    arguments: input.to_string(),
                },
            }),
            other => parts.push(text_part(other, format!("{path}.content[{j}]"))?),
        }
    }
    Ok(ChatMessage::Assistant {
        // OpenAI wants `null`, not `""`, next to tool calls.
        content: (!parts.is_empty() || calls.is_empty()).then(|| parts_content(parts)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        name: None,
        refusal: None,
    })
}

/// A block that must be text where it stands; anything else is refused with
/// the reason it cannot go to an OpenAI-compatible upstream.
fn text_part(block: &ContentBlock, path: String) -> Result<ContentPart, TranslateError> {
    let reason = match block {
        ContentBlock::Text { text } => return Ok(ContentPart::Text { text: text.clone() }),
        ContentBlock::Image { .. } => "OpenAI chat carries images in user messages only",
        ContentBlock::ToolUse { .. } => "tool_use blocks belong to assistant messages",
        ContentBlock::ToolResult { .. } => "tool_result blocks belong to user messages",
        ContentBlock::Thinking { .. } => {
            "thinking blocks cannot be sent to an OpenAI-compatible upstream"
        }
    };
    Err(TranslateError::unsupported(path, reason))
}

/// A `tool_result`'s content as a tool message's: text only.
fn tool_result(
    content: Option<&anthropic::ToolResultContent>,
    is_error: bool,
    path: &str,
) -> Result<MessageContent, TranslateError> {
    let mut texts = match content {
        None => Vec::new(),
        Some(anthropic::ToolResultContent::Text(text)) => vec![text.clone()],
        Some(anthropic::ToolResultContent::Blocks(blocks)) => {
            block_texts(blocks, &format!("{path}.content"))?
        }
    };
    if is_error {
        match texts.first_mut() {
            Some(first) => first.insert_str(0, TOOL_ERROR_PREFIX),
            None => texts.push(TOOL_ERROR_PREFIX.trim_end_matches([':', ' ']).to_owned()),
        }
    }
    Ok(parts_content(
        texts
            .into_iter()
            .map(|text| ContentPart::Text { text })
            .collect(),
    ))
}

/// The texts of blocks that may only be text (`system`, tool results).
fn block_texts(blocks: &[ContentBlock], path: &str) -> Result<Vec<String>, TranslateError> {
    blocks
        .iter()
        .enumerate()
        .map(|(k, block)| match block {
            ContentBlock::Text { text } => Ok(text.clone()),
            _ => Err(TranslateError::unsupported(
                format!("{path}[{k}]"),
                "only text blocks are supported here",
            )),
        })
        .collect()
}

/// One text part as a plain string (what every OpenAI-compatible server
/// reads), several parts or images as parts.
fn parts_content(mut parts: Vec<ContentPart>) -> MessageContent {
    match parts.as_mut_slice() {
        [] => MessageContent::Text(String::new()),
        [ContentPart::Text { text }] => MessageContent::Text(std::mem::take(text)),
        _ => MessageContent::Parts(parts),
    }
}

fn image_url(source: &ImageSource) -> String {
    match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url.clone(),
    }
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: openai::FinishReason) -> StopReason {
    use openai::FinishReason as F;
    match finish {
        F::Stop => StopReason::EndTurn,
        F::Length => StopReason::MaxTokens,
        F::ToolCalls | F::FunctionCall => StopReason::ToolUse,
        F::ContentFilter => StopReason::Refusal,
    }
}

/// A reply whose model wrote a `refusal` stopped because it refused, whatever
/// its `finish_reason` (OpenAI says `stop`).
fn reply_stop_reason(finish: Option<openai::FinishReason>, refused: bool) -> Option<StopReason> {
    finish.map(|finish| {
        if refused {
            StopReason::Refusal
        } else {
            stop_reason(finish)
        }
    })
}

/// An Anthropic message id for an upstream completion id.
fn message_id(upstream: &str) -> String {
    if upstream.starts_with("msg_") {
        upstream.to_owned()
    } else {
        format!("msg_{upstream}")
    }
}

/// Anthropic counts cache reads apart from `input_tokens`; OpenAI includes
/// them in `prompt_tokens` and details them in `prompt_tokens_details`. Split
/// so that [`TokenUsage`](crate::TokenUsage) reads the same from either shape.
fn anthropic_usage(usage: &openai::Usage) -> anthropic::Usage {
    let cached = usage
        .extra
        .get("prompt_tokens_details")
        .and_then(|details| details.get("cached_tokens"))
        .and_then(Value::as_u64)
        .map(|cached| cached.min(usage.prompt_tokens));
    anthropic::Usage {
        input_tokens: usage.prompt_tokens - cached.unwrap_or(0),
        output_tokens: usage.completion_tokens,
        cache_creation_input_tokens: None,
        cache_read_input_tokens: cached,
    }
}

/// Translates a chat completions response into a Messages response for a
/// client that asked for `model`. Only the first choice is read.
pub fn chat_response_to_messages(
    response: &openai::ChatResponse,
    model: &str,
) -> Result<anthropic::MessagesResponse, ReplyError> {
    let choice = response.choices.first().ok_or(ReplyError::NoChoices)?;
    let message = &choice.message;
    let refusal = message.refusal.as_deref().unwrap_or("");
    let text = format!("{}{refusal}", message.content.as_deref().unwrap_or(""));
    let mut content = Vec::new();
    // Anthropic never sends an empty text block.
    if !text.is_empty() {
        content.push(ContentBlock::Text { text });
    }
    for (k, call) in message.tool_calls.iter().flatten().enumerate() {
        let input = tool_input(
            &call.function.arguments,
            format!("choices[0].message.tool_calls[{k}].function.arguments"),
        )
        .map_err(ReplyError::ToolInput)?;
        content.push(ContentBlock::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input,
        });
    }
    Ok(anthropic::MessagesResponse {
        id: message_id(&response.id),
        role: Role::Assistant,
        model: model.to_owned(),
        content,
        stop_reason: reply_stop_reason(choice.finish_reason, !refusal.is_empty()),
        stop_sequence: None,
        usage: response
            .usage
            .as_ref()
            .map(anthropic_usage)
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
