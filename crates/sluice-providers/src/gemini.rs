//! Google's Gemini API (`generateContent`, `streamGenerateContent`,
//! `batchEmbedContents`): its wire types, OpenAI chat and embeddings
//! requests translated to it, and its answers, whole or streamed, back to
//! OpenAI's chat completions. Pure, like the rest of the crate.
//!
//! What does not translate:
//! * `system`/`developer` messages become `systemInstruction`, wherever they
//!   stood, joined by blank lines.
//! * Images must be `data:` URLs (sent as `inlineData`): Gemini fetches no
//!   URL it did not host itself.
//! * `n` above 1 is refused; `logprobs` too. `seed`, penalties,
//!   `response_format` (JSON mode and JSON schema) map to
//!   `generationConfig`; fields with no equivalent (`user`, `metadata`,
//!   `store` …) are dropped.
//! * Tool results go back as `functionResponse` named after the call they
//!   answer: a tool message whose `tool_call_id` no earlier assistant turn
//!   made is refused. Function calls get ids `call_<n>` (Gemini's have none).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::openai::{
    self, ChatChunk, ChatMessage, ChatResponse, Choice, Delta, FinishReason, FunctionCall,
    FunctionCallDelta, MessageContent, ResponseMessage, ToolCall, ToolCallDelta, ToolKind,
};
use crate::relay::{push_event, push_json, RelayError, StreamRelay};
use crate::sse::SseParser;
use crate::translate::{
    inline_user_pieces, one_choice_without_logprobs, text_only, tool_input, TranslateError,
    UserPiece,
};
use crate::usage::TokenUsage;

/// A `generateContent` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateRequest {
    pub contents: Vec<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tools>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub generation_config: Map<String, Value>,
}

/// One turn: `user` or `model` (none for `systemInstruction`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part of a turn; exactly one of its fields is set. Parts of kinds
/// this version does not know (code execution …) read as empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A thought summary (`text` is the model's reasoning, not its answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<GeminiCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<GeminiResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    pub mime_type: String,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeminiCall {
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeminiResult {
    pub name: String,
    pub response: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tools {
    pub function_declarations: Vec<Value>,
}

/// A `generateContent` answer, or one event of a stream.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub response_id: Option<String>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    /// Reasoning tokens: billed as output.
    #[serde(default)]
    pub thoughts_token_count: u64,
}

impl From<UsageMetadata> for TokenUsage {
    fn from(u: UsageMetadata) -> Self {
        TokenUsage {
            prompt_tokens: u.prompt_token_count,
            completion_tokens: u
                .candidates_token_count
                .saturating_add(u.thoughts_token_count),
        }
    }
}

/// Gemini's error body: `{"error": {"code", "message", "status"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorObject {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    /// `google.rpc` details; an `ErrorInfo`'s `reason` says why.
    #[serde(default)]
    pub details: Vec<Value>,
}

impl ErrorObject {
    /// Whether it refuses the API key (`API_KEY_INVALID`).
    pub fn refuses_key(&self) -> bool {
        self.details
            .iter()
            .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
    }
}

/// Translates a chat completions request into a `generateContent` request.
pub fn chat_to_gemini(request: &openai::ChatRequest) -> Result<GenerateRequest, TranslateError> {
    let extra = &request.extra;
    one_choice_without_logprobs(extra)?;
    let mut system: Vec<String> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // Tool call id -> function name, for the results that answer them.
    let mut calls: Vec<(String, String)> = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (role, parts) = match message {
            ChatMessage::System { content, .. } | ChatMessage::Developer { content, .. } => {
                system.push(text_only(content.clone(), &path)?);
                continue;
            }
            ChatMessage::User { content, .. } => ("user", user_parts(content, &path)?),
            ChatMessage::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut parts = Vec::new();
                let text = match content {
                    None => String::new(),
                    Some(content) => text_only(content.clone(), &path)?,
                };
                if !text.is_empty() {
                    parts.push(Part {
                        text: Some(text),
                        ..Part::default()
                    });
                }
                for (k, call) in tool_calls.iter().flatten().enumerate() {
                    let args = tool_input(
                        &call.function.arguments,
                        format!("{path}.tool_calls[{k}].function.arguments"),
                    )?;
                    calls.push((call.id.clone(), call.function.name.clone()));
                    parts.push(Part {
                        function_call: Some(GeminiCall {
                            name: call.function.name.clone(),
                            args,
                        }),
                        ..Part::default()
                    });
                }
                ("model", parts)
            }
            ChatMessage::Tool {
                content,
                tool_call_id,
            } => {
                let name = calls
                    .iter()
                    .find(|(id, _)| id == tool_call_id)
                    .map(|(_, name)| name.clone())
                    .ok_or_else(|| {
                        TranslateError::unsupported(
                            format!("{path}.tool_call_id"),
                            "answers no tool call of an earlier assistant message",
                        )
                    })?;
                let text = text_only(content.clone(), &path)?;
                // A JSON object result goes as it is; anything else wrapped.
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(object)) => Value::Object(object),
                    _ => json!({ "content": text }),
                };
                let part = Part {
                    function_response: Some(GeminiResult { name, response }),
                    ..Part::default()
                };
                ("user", vec![part])
            }
        };
        if parts.is_empty() {
            continue;
        }
        // Gemini wants user and model turns to alternate.
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content {
                role: Some(role.to_owned()),
                parts,
            }),
        }
    }
    if contents.is_empty() {
        return Err(TranslateError::unsupported(
            "messages",
            "at least one user or assistant message is required",
        ));
    }
    Ok(GenerateRequest {
        contents,
        system_instruction: (!system.is_empty()).then(|| Content {
            role: None,
            parts: vec![Part {
                text: Some(system.join("\n\n")),
                ..Part::default()
            }],
        }),
        tools: request.tools.as_ref().map(|tools| {
            vec![Tools {
                function_declarations: tools
                    .iter()
                    .map(|tool| {
                        let mut declaration = json!({"name": tool.function.name});
                        if let Some(description) = &tool.function.description {
                            declaration["description"] = json!(description);
                        }
                        if let Some(parameters) = &tool.function.parameters {
                            declaration["parametersJsonSchema"] = parameters.clone();
                        }
                        declaration
                    })
                    .collect(),
            }]
        }),
        tool_config: request.tool_choice.as_ref().map(tool_config),
        generation_config: generation_config(request)?,
    })
}

fn user_parts(content: &MessageContent, path: &str) -> Result<Vec<Part>, TranslateError> {
    let pieces = inline_user_pieces(
        content,
        path,
        "Gemini deployments take images as data: URLs only",
    )?;
    Ok(pieces
        .into_iter()
        .map(|piece| match piece {
            UserPiece::Text(text) => Part {
                text: Some(text.to_owned()),
                ..Part::default()
            },
            UserPiece::Image { media_type, data } => Part {
                inline_data: Some(Blob {
                    mime_type: media_type,
                    data,
                }),
                ..Part::default()
            },
        })
        .collect())
}

fn tool_config(choice: &openai::ToolChoice) -> Value {
    let (mode, names) = match choice {
        openai::ToolChoice::Mode(openai::ToolChoiceMode::Auto) => ("AUTO", None),
        openai::ToolChoice::Mode(openai::ToolChoiceMode::None) => ("NONE", None),
        openai::ToolChoice::Mode(openai::ToolChoiceMode::Required) => ("ANY", None),
        openai::ToolChoice::Function(named) => ("ANY", Some(vec![named.function.name.clone()])),
    };
    let mut config = json!({"mode": mode});
    if let Some(names) = names {
        config["allowedFunctionNames"] = json!(names);
    }
    json!({ "functionCallingConfig": config })
}

fn generation_config(request: &openai::ChatRequest) -> Result<Map<String, Value>, TranslateError> {
    let mut config = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            config.insert(key.to_owned(), value);
        }
    };
    set("temperature", request.temperature.map(Value::from));
    set("topP", request.top_p.map(Value::from));
    set(
        "maxOutputTokens",
        request
            .max_completion_tokens
            .or(request.max_tokens)
            .map(Value::from),
    );
    set(
        "stopSequences",
        request.stop.as_ref().map(|stop| match stop {
            openai::Stop::One(one) => json!([one]),
            openai::Stop::Many(many) => json!(many),
        }),
    );
    for (from, to) in [
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        set(
            to,
            request.extra.get(from).filter(|v| v.is_number()).cloned(),
        );
    }
    if let Some(format) = request.extra.get("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("text") | None => {}
            Some("json_object") => set("responseMimeType", Some(json!("application/json"))),
            Some("json_schema") => {
                let schema = format
                    .get("json_schema")
                    .and_then(|s| s.get("schema"))
                    .cloned()
                    .ok_or_else(|| {
                        TranslateError::unsupported(
                            "response_format.json_schema.schema",
                            "a JSON schema response format needs its schema",
                        )
                    })?;
                set("responseMimeType", Some(json!("application/json")));
                set("responseJsonSchema", Some(schema));
            }
            Some(_) => {
                return Err(TranslateError::unsupported(
                    "response_format.type",
                    "must be text, json_object or json_schema",
                ))
            }
        }
    }
    Ok(config)
}

/// An OpenAI finish reason for Gemini's.
fn finish_reason(reason: &str, called: bool) -> FinishReason {
    match reason {
        _ if called => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        // SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII,
        // IMAGE_SAFETY, LANGUAGE, OTHER …: the answer was withheld.
        _ => FinishReason::ContentFilter,
    }
}

/// A turn's text (thoughts left out) and its function calls, numbered
/// from `first_call`.
fn read_parts(content: Option<&Content>, first_call: usize) -> (String, Vec<ToolCall>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in content.map(|c| c.parts.as_slice()).unwrap_or_default() {
        if let (Some(t), None | Some(false)) = (&part.text, part.thought) {
            text.push_str(t);
        }
        if let Some(call) = &part.function_call {
            calls.push(ToolCall {
                id: format!("call_{}", first_call + calls.len()),
                kind: ToolKind::Function,
                function: FunctionCall {
                    name: call.name.clone(),
                    arguments: serde_json::to_string(&call.args).unwrap_or_else(|_| "{}".into()),
                },
            });
        }
    }
    (text, calls)
}

fn response_id(id: Option<&str>) -> String {
    format!("chatcmpl-{}", id.unwrap_or("gemini"))
}

/// A whole `generateContent` answer as a chat completion, with its usage.
pub fn gemini_to_chat(
    response: &GenerateResponse,
    model: &str,
    created: u64,
) -> Result<(ChatResponse, Option<TokenUsage>), RelayError> {
    let usage = response.usage_metadata.map(TokenUsage::from);
    let choices = match response.candidates.as_slice() {
        // The prompt itself was blocked: no candidate at all.
        [] => match response
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
        {
            Some(_) => vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".into(),
                    content: Some(String::new()),
                    tool_calls: None,
                    refusal: None,
                },
                finish_reason: Some(FinishReason::ContentFilter),
                logprobs: None,
            }],
            None => {
                return Err(RelayError::Unreadable(
                    "an answer without candidates".into(),
                ))
            }
        },
        candidates => candidates
            .iter()
            .enumerate()
            .map(|(i, candidate)| {
                let (text, calls) = read_parts(candidate.content.as_ref(), 0);
                let reason = candidate.finish_reason.as_deref().unwrap_or("STOP");
                let finish = finish_reason(reason, !calls.is_empty());
                Choice {
                    index: candidate.index.unwrap_or(i as u32),
                    message: ResponseMessage {
                        role: "assistant".into(),
                        content: (!text.is_empty() || calls.is_empty()).then_some(text),
                        tool_calls: (!calls.is_empty()).then_some(calls),
                        refusal: None,
                    },
                    finish_reason: Some(finish),
                    logprobs: None,
                }
            })
            .collect(),
    };
    Ok((
        ChatResponse {
            id: response_id(response.response_id.as_deref()),
            object: "chat.completion".into(),
            created,
            model: model.to_owned(),
            choices,
            usage: usage.map(openai::Usage::from),
            system_fingerprint: None,
        },
        usage,
    ))
}

/// What an OpenAI embeddings request asks for: its texts, the dimensions
/// and whether the vectors go back base64.
struct EmbeddingsAsked<'a> {
    texts: Vec<&'a str>,
    dimensions: Option<u64>,
    base64: bool,
}

fn embeddings_asked(body: &Map<String, Value>) -> Result<EmbeddingsAsked<'_>, TranslateError> {
    let texts: Vec<&str> = match body.get("input") {
        Some(Value::String(text)) => vec![text.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    TranslateError::unsupported(
                        format!("input[{i}]"),
                        "Gemini deployments embed text: each input must be a string (not tokens)",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(TranslateError::unsupported(
                "input",
                "must be a string or a non-empty array of strings",
            ))
        }
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(TranslateError::unsupported(
                "encoding_format",
                "must be float or base64",
            ))
        }
    };
    Ok(EmbeddingsAsked {
        texts,
        dimensions: body.get("dimensions").and_then(Value::as_u64),
        base64,
    })
}

/// An OpenAI embeddings request as a `batchEmbedContents` request for
/// `model`; also whether the client wants base64 vectors.
pub fn embeddings_to_gemini(
    body: &Map<String, Value>,
    model: &str,
) -> Result<(Value, bool), TranslateError> {
    let asked = embeddings_asked(body)?;
    let requests: Vec<Value> = asked
        .texts
        .into_iter()
        .map(|text| {
            let mut request = json!({
                "model": format!("models/{model}"),
                "content": {"parts": [{"text": text}]},
            });
            if let Some(d) = asked.dimensions {
                request["outputDimensionality"] = json!(d);
            }
            request
        })
        .collect();
    Ok((json!({ "requests": requests }), asked.base64))
}

/// An OpenAI embeddings request as Vertex AI's `:predict` request (one
/// instance per text); also whether the client wants base64 vectors.
pub fn embeddings_to_vertex(body: &Map<String, Value>) -> Result<(Value, bool), TranslateError> {
    let asked = embeddings_asked(body)?;
    let instances: Vec<Value> = asked
        .texts
        .into_iter()
        .map(|text| json!({ "content": text }))
        .collect();
    let mut request = json!({ "instances": instances });
    if let Some(d) = asked.dimensions {
        request["parameters"] = json!({ "outputDimensionality": d });
    }
    Ok((request, asked.base64))
}

#[derive(Deserialize)]
struct BatchEmbeddings {
    #[serde(default)]
    embeddings: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct Predictions {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
struct Prediction {
    embeddings: PredictedEmbedding,
}

#[derive(Deserialize)]
struct PredictedEmbedding {
    values: Vec<f32>,
    #[serde(default)]
    statistics: Option<EmbeddingStatistics>,
}

#[derive(Deserialize)]
struct EmbeddingStatistics {
    #[serde(default)]
    token_count: u64,
}

/// OpenAI's embeddings list of `vectors`, their prompt tokens `tokens`.
fn embeddings_list(vectors: Vec<Vec<f32>>, model: &str, base64: bool, tokens: u64) -> Value {
    use base64::Engine as _;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, values)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(values)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

/// A `batchEmbedContents` answer as OpenAI's embeddings list. Gemini
/// counts no tokens here: usage is zero.
pub fn gemini_embeddings_to_openai(
    body: &[u8],
    model: &str,
    base64: bool,
) -> Result<Value, RelayError> {
    let answer: BatchEmbeddings =
        serde_json::from_slice(body).map_err(|e| RelayError::Unreadable(e.to_string()))?;
    let vectors = answer.embeddings.into_iter().map(|e| e.values).collect();
    Ok(embeddings_list(vectors, model, base64, 0))
}

/// A Vertex AI `:predict` answer as OpenAI's embeddings list, with its
/// usage: the token counts Vertex reports for each text.
pub fn vertex_embeddings_to_openai(
    body: &[u8],
    model: &str,
    base64: bool,
) -> Result<(Value, TokenUsage), RelayError> {
    let answer: Predictions =
        serde_json::from_slice(body).map_err(|e| RelayError::Unreadable(e.to_string()))?;
    let tokens = answer
        .predictions
        .iter()
        .filter_map(|p| p.embeddings.statistics.as_ref())
        .map(|s| s.token_count)
        .sum();
    let vectors = answer
        .predictions
        .into_iter()
        .map(|p| p.embeddings.values)
        .collect();
    let usage = TokenUsage {
        prompt_tokens: tokens,
        completion_tokens: 0,
    };
    Ok((embeddings_list(vectors, model, base64, tokens), usage))
}

/// A `streamGenerateContent?alt=sse` stream to an OpenAI chat client:
/// each Gemini event becomes a chunk as it arrives; the event with a
/// finish reason closes the stream (the finish chunk, the usage chunk
/// when the client asked for it, `[DONE]`). A body that ends before a
/// finish reason is a truncated stream.
pub struct GeminiToChat {
    parser: SseParser,
    model: String,
    created: u64,
    client_wants_usage: bool,
    id: Option<String>,
    role_sent: bool,
    calls: usize,
    usage: Option<TokenUsage>,
    done: bool,
}

impl GeminiToChat {
    pub fn new(model: &str, created: u64, client_wants_usage: bool) -> Self {
        Self {
            parser: SseParser::new(),
            model: model.to_owned(),
            created,
            client_wants_usage,
            id: None,
            role_sent: false,
            calls: 0,
            usage: None,
            done: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk::of_choice(
            &response_id(self.id.as_deref()),
            self.created,
            &self.model,
            delta,
            finish,
        )
    }

    fn event(&mut self, data: &str, out: &mut Vec<u8>) -> Result<(), RelayError> {
        if let Ok(error) = serde_json::from_str::<ErrorBody>(data) {
            return Err(RelayError::Upstream {
                kind: error.error.status,
                message: error.error.message,
            });
        }
        let event: GenerateResponse = serde_json::from_str(data)
            .map_err(|e| RelayError::Unreadable(format!("stream event: {e}")))?;
        if self.id.is_none() {
            self.id = event.response_id.clone();
        }
        if let Some(usage) = event.usage_metadata {
            self.usage = Some(usage.into());
        }
        let candidate = event.candidates.first();
        let (text, calls) = read_parts(candidate.and_then(|c| c.content.as_ref()), self.calls);
        let mut delta = Delta::default();
        if !self.role_sent {
            delta.role = Some("assistant".into());
        }
        if !text.is_empty() {
            delta.content = Some(text);
        }
        if !calls.is_empty() {
            delta.tool_calls = Some(
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(k, call)| ToolCallDelta {
                        index: (self.calls + k) as u32,
                        id: Some(call.id),
                        kind: Some(ToolKind::Function),
                        function: Some(FunctionCallDelta {
                            name: Some(call.function.name),
                            arguments: Some(call.function.arguments),
                        }),
                    })
                    .collect(),
            );
        }
        self.calls += delta.tool_calls.as_ref().map_or(0, Vec::len);
        if delta != Delta::default() {
            self.role_sent = true;
            push_json(out, None, &self.chunk(delta, None))?;
        }
        let reason = match (
            candidate.and_then(|c| c.finish_reason.as_deref()),
            &event.prompt_feedback,
        ) {
            (Some(reason), _) => Some(finish_reason(reason, self.calls > 0)),
            // The prompt was blocked: no candidate will come.
            (
                None,
                Some(PromptFeedback {
                    block_reason: Some(_),
                }),
            ) => Some(FinishReason::ContentFilter),
            _ => None,
        };
        if let Some(reason) = reason {
            let delta = Delta {
                role: (!self.role_sent).then(|| "assistant".to_owned()),
                ..Delta::default()
            };
            push_json(out, None, &self.chunk(delta, Some(reason)))?;
            if self.client_wants_usage {
                let mut chunk = self.chunk(Delta::default(), None);
                chunk.choices.clear();
                chunk.usage = Some(self.usage.unwrap_or_default().into());
                push_json(out, None, &chunk)?;
            }
            push_event(out, None, "[DONE]");
            self.done = true;
        }
        Ok(())
    }
}

impl StreamRelay for GeminiToChat {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        for event in self.parser.feed(bytes)? {
            if self.done {
                break;
            }
            let data = event.data.trim();
            if !data.is_empty() {
                self.event(data, out)?;
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
mod tests;
