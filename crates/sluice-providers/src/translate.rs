//! OpenAI chat completions <-> Anthropic Messages, for serving OpenAI clients
//! from Anthropic deployments: the request one way ([`chat_to_messages`]), the
//! response back ([`messages_to_chat_response`]), and the stream back
//! ([`StreamTranslator`], in [`stream`]). The opposite direction, Anthropic
//! clients served from OpenAI-compatible deployments, is in [`reverse`].
//!
//! What does not translate:
//! * `system`/`developer` messages are lifted to Anthropic's `system`, wherever
//!   they stood in the conversation, joined by blank lines.
//! * Fields Anthropic has no equivalent for (`seed`, `logprobs`, `user`,
//!   `response_format` …) are dropped; `n` above 1 is refused.
//! * `temperature` is passed as is: Anthropic accepts 0 to 1 and will refuse
//!   more, which the client then sees as Anthropic's 400.

use serde_json::Value;
use thiserror::Error;

use crate::anthropic::{self, ContentBlock, ImageSource, Role};
use crate::openai::{self, ChatMessage, ContentPart, MessageContent};
use crate::usage::TokenUsage;

pub mod reverse;
pub mod stream;

pub use stream::{StreamError, StreamTranslator};

/// Why a chat request cannot be expressed as a Messages request: always the
/// client's fault, so it becomes a 400 whose `param` is [`TranslateError::path`].
#[derive(Debug, Error)]
pub enum TranslateError {
    #[error("`{path}` is not valid JSON: {source}")]
    InvalidJson {
        path: String,
        source: serde_json::Error,
    },
    #[error("`{path}`: {reason}")]
    Unsupported { path: String, reason: &'static str },
}

impl TranslateError {
    /// The request field at fault, e.g. `messages[2].tool_calls[0].function.arguments`.
    pub fn path(&self) -> &str {
        match self {
            Self::InvalidJson { path, .. } | Self::Unsupported { path, .. } => path,
        }
    }

    pub(crate) fn unsupported(path: impl Into<String>, reason: &'static str) -> Self {
        Self::Unsupported {
            path: path.into(),
            reason,
        }
    }
}

/// Translates a chat completions request into a Messages request.
/// `default_max_tokens` is used when the client set neither
/// `max_completion_tokens` nor `max_tokens` (Anthropic requires a value).
pub fn chat_to_messages(
    request: openai::ChatRequest,
    default_max_tokens: u32,
) -> Result<anthropic::MessagesRequest, TranslateError> {
    if let Some(n) = request.extra.get("n").and_then(Value::as_u64) {
        if n > 1 {
            return Err(TranslateError::unsupported(
                "n",
                "Anthropic models return one choice; `n` must be 1",
            ));
        }
    }
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(Role, Vec<ContentBlock>)> = Vec::new();
    for (i, message) in request.messages.into_iter().enumerate() {
        let path = format!("messages[{i}]");
        let (role, blocks) = match message {
            ChatMessage::System { content, .. } | ChatMessage::Developer { content, .. } => {
                system.push(text_only(content, &path)?);
                continue;
            }
            ChatMessage::User { content, .. } => (Role::User, user_blocks(content, &path)?),
            ChatMessage::Assistant {
                content,
                tool_calls,
                ..
            } => (
                Role::Assistant,
                assistant_blocks(content, tool_calls.unwrap_or_default(), &path)?,
            ),
            ChatMessage::Tool {
                content,
                tool_call_id,
            } => (
                Role::User,
                vec![ContentBlock::ToolResult {
                    tool_use_id: tool_call_id,
                    content: Some(anthropic::ToolResultContent::Text(text_only(
                        content, &path,
                    )?)),
                    is_error: None,
                }],
            ),
        };
        // Anthropic wants user and assistant turns to alternate.
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns.is_empty() {
        return Err(TranslateError::unsupported(
            "messages",
            "at least one user or assistant message is required",
        ));
    }
    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            // Anthropic wants a user turn's tool results before anything else.
            blocks.sort_by_key(|block| !matches!(block, ContentBlock::ToolResult { .. }));
            anthropic::Message {
                role,
                content: match blocks.as_mut_slice() {
                    [ContentBlock::Text { text }] => anthropic::Content::Text(std::mem::take(text)),
                    _ => anthropic::Content::Blocks(blocks),
                },
            }
        })
        .collect();

    let parallel = request
        .extra
        .get("parallel_tool_calls")
        .and_then(Value::as_bool);
    Ok(anthropic::MessagesRequest {
        model: request.model,
        messages,
        max_tokens: request
            .max_completion_tokens
            .or(request.max_tokens)
            .unwrap_or(default_max_tokens),
        system: (!system.is_empty()).then(|| anthropic::System::Text(system.join("\n\n"))),
        stop_sequences: request.stop.map(|stop| match stop {
            openai::Stop::One(one) => vec![one],
            openai::Stop::Many(many) => many,
        }),
        temperature: request.temperature,
        top_p: request.top_p,
        stream: request.stream,
        tools: request.tools.map(|tools| {
            tools
                .into_iter()
                .map(|tool| anthropic::Tool {
                    name: tool.function.name,
                    description: tool.function.description,
                    input_schema: tool
                        .function
                        .parameters
                        .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                })
                .collect()
        }),
        tool_choice: request
            .tool_choice
            .map(|choice| tool_choice(choice, parallel)),
        extra: serde_json::Map::new(),
    })
}

fn tool_choice(choice: openai::ToolChoice, parallel: Option<bool>) -> anthropic::ToolChoice {
    let disable_parallel_tool_use = parallel.map(|parallel| !parallel);
    match choice {
        openai::ToolChoice::Mode(openai::ToolChoiceMode::Auto) => anthropic::ToolChoice::Auto {
            disable_parallel_tool_use,
        },
        openai::ToolChoice::Mode(openai::ToolChoiceMode::None) => anthropic::ToolChoice::None,
        openai::ToolChoice::Mode(openai::ToolChoiceMode::Required) => anthropic::ToolChoice::Any {
            disable_parallel_tool_use,
        },
        openai::ToolChoice::Function(named) => anthropic::ToolChoice::Tool {
            name: named.function.name,
            disable_parallel_tool_use,
        },
    }
}

/// Refuses what a provider returning one choice without log probabilities
/// (Gemini, Bedrock) cannot honour: `n` above 1, `logprobs`.
pub(crate) fn one_choice_without_logprobs(
    extra: &serde_json::Map<String, Value>,
) -> Result<(), TranslateError> {
    if extra
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return Err(TranslateError::unsupported(
            "n",
            "this deployment returns one choice; `n` must be 1",
        ));
    }
    if extra.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(TranslateError::unsupported(
            "logprobs",
            "this deployment does not return log probabilities",
        ));
    }
    Ok(())
}

/// One piece of a user message, for an API that takes images only inline.
pub(crate) enum UserPiece<'a> {
    Text(&'a str),
    Image { media_type: String, data: String },
}

/// A user message's pieces in order: text, and `data:` images decoded to
/// their media type and base64 data. An image by URL is refused with
/// `url_refused` (the API fetches none); a refusal part too.
pub(crate) fn inline_user_pieces<'a>(
    content: &'a MessageContent,
    path: &str,
    url_refused: &'static str,
) -> Result<Vec<UserPiece<'a>>, TranslateError> {
    let parts = match content {
        MessageContent::Text(text) => return Ok(vec![UserPiece::Text(text)]),
        MessageContent::Parts(parts) => parts,
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, part)| {
            let part_path = format!("{path}.content[{j}]");
            match part {
                ContentPart::Text { text } => Ok(UserPiece::Text(text)),
                ContentPart::ImageUrl { image_url } => {
                    match image_source(image_url.url.clone(), &part_path)? {
                        ImageSource::Base64 { media_type, data } => {
                            Ok(UserPiece::Image { media_type, data })
                        }
                        ImageSource::Url { .. } => Err(TranslateError::unsupported(
                            format!("{part_path}.image_url.url"),
                            url_refused,
                        )),
                    }
                }
                ContentPart::Refusal { .. } => Err(TranslateError::unsupported(
                    part_path,
                    "refusal parts belong to assistant messages",
                )),
            }
        })
        .collect()
}

/// Content that may only be text (system, tool results): parts are joined.
pub(crate) fn text_only(content: MessageContent, path: &str) -> Result<String, TranslateError> {
    match content {
        MessageContent::Text(text) => Ok(text),
        MessageContent::Parts(parts) => parts
            .into_iter()
            .enumerate()
            .map(|(j, part)| match part {
                ContentPart::Text { text } => Ok(text),
                _ => Err(TranslateError::unsupported(
                    format!("{path}.content[{j}]"),
                    "only text parts are supported here",
                )),
            })
            .collect(),
    }
}

fn user_blocks(content: MessageContent, path: &str) -> Result<Vec<ContentBlock>, TranslateError> {
    match content {
        MessageContent::Text(text) => Ok(vec![ContentBlock::Text { text }]),
        MessageContent::Parts(parts) => parts
            .into_iter()
            .enumerate()
            .map(|(j, part)| {
                let part_path = format!("{path}.content[{j}]");
                match part {
                    ContentPart::Text { text } => Ok(ContentBlock::Text { text }),
                    ContentPart::ImageUrl { image_url } => Ok(ContentBlock::Image {
                        source: image_source(image_url.url, &part_path)?,
                    }),
                    ContentPart::Refusal { .. } => Err(TranslateError::unsupported(
                        part_path,
                        "refusal parts belong to assistant messages",
                    )),
                }
            })
            .collect(),
    }
}

fn assistant_blocks(
    content: Option<MessageContent>,
    tool_calls: Vec<openai::ToolCall>,
    path: &str,
) -> Result<Vec<ContentBlock>, TranslateError> {
    let mut blocks = Vec::with_capacity(1 + tool_calls.len());
    let text = match content {
        None => String::new(),
        Some(MessageContent::Text(text)) => text,
        Some(MessageContent::Parts(parts)) => parts
            .into_iter()
            .map(|part| match part {
                ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => Ok(text),
                ContentPart::ImageUrl { .. } => Err(TranslateError::unsupported(
                    format!("{path}.content"),
                    "assistant messages cannot carry images",
                )),
            })
            .collect::<Result<String, _>>()?,
    };
    // Anthropic refuses empty text blocks; SDKs send `""` next to tool calls.
    if !text.is_empty() {
        blocks.push(ContentBlock::Text { text });
    }
    for (k, call) in tool_calls.into_iter().enumerate() {
        let input = tool_input(
            &call.function.arguments,
            format!("{path}.tool_calls[{k}].function.arguments"),
        )?;
        blocks.push(ContentBlock::ToolUse {
            id: call.id,
            name: call.function.name,
            input,
        });
    }
    Ok(blocks)
}

/// A tool call's `arguments` text as the JSON object a `tool_use` block's
/// `input` must be; `path` names the arguments in errors.
pub(crate) fn tool_input(arguments: &str, path: String) -> Result<Value, TranslateError> {
    let arguments = arguments.trim();
    // Models call argument-less functions with "" as often as with "{}".
    let input = if arguments.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(arguments).map_err(|source| TranslateError::InvalidJson {
            path: path.clone(),
            source,
        })?
    };
    if !input.is_object() {
        return Err(TranslateError::unsupported(
            path,
            "tool call arguments must be a JSON object",
        ));
    }
    Ok(input)
}

pub(crate) fn image_source(url: String, path: &str) -> Result<ImageSource, TranslateError> {
    let url_path = format!("{path}.image_url.url");
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(TranslateError::unsupported(url_path, "malformed data: URL"));
        };
        let Some(media_type) = meta.strip_suffix(";base64") else {
            return Err(TranslateError::unsupported(
                url_path,
                "data: URLs must be base64-encoded",
            ));
        };
        return Ok(ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url { url });
    }
    Err(TranslateError::unsupported(
        url_path,
        "images must be http(s) or data: URLs",
    ))
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop: anthropic::StopReason) -> openai::FinishReason {
    use anthropic::StopReason as S;
    use openai::FinishReason as F;
    match stop {
        S::EndTurn | S::StopSequence | S::PauseTurn => F::Stop,
        S::MaxTokens => F::Length,
        S::ToolUse => F::ToolCalls,
        S::Refusal => F::ContentFilter,
    }
}

/// Translates a Messages response into a chat completions response. `created`
/// is the Unix time to stamp it with (this crate reads no clock).
pub fn messages_to_chat_response(
    response: anthropic::MessagesResponse,
    created: u64,
) -> openai::ChatResponse {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in response.content {
        match block {
            ContentBlock::Text { text: part } => text.push_str(&part),
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(openai::ToolCall {
                id,
                kind: openai::ToolKind::Function,
                function: openai::FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            _ => {}
        }
    }
    let has_tools = !tool_calls.is_empty();
    openai::ChatResponse {
        id: response.id,
        object: "chat.completion".to_owned(),
        created,
        model: response.model,
        choices: vec![openai::Choice {
            index: 0,
            message: openai::ResponseMessage {
                role: "assistant".to_owned(),
                // OpenAI sends `null` content on a turn that is only tool calls.
                content: (!text.is_empty() || !has_tools).then_some(text),
                tool_calls: has_tools.then_some(tool_calls),
                refusal: None,
            },
            finish_reason: response.stop_reason.map(finish_reason),
            logprobs: None,
        }],
        usage: Some(TokenUsage::from(&response.usage).to_openai()),
        system_fingerprint: None,
    }
}

#[cfg(test)]
mod tests;
