//! AWS Bedrock's Converse API: `POST /model/{modelId}/converse` and
//! `/model/{modelId}/converse-stream`, with the same deterministic replies,
//! pacing and injected failures as the other APIs.
//!
//! * Requests are SigV4-signed for the one identity of
//!   [`MockAws`](crate::config::MockAws), verified by `sigv4` (none is
//!   needed when the mock has no AWS identity).
//! * The request is validated as Bedrock does: a conversation starts with a
//!   user message and alternates roles, tool blocks need a `toolConfig`, and
//!   a user turn answers every `toolUse` of the assistant turn before it.
//! * The stream is `application/vnd.amazon.eventstream`: one binary frame
//!   per event (`messageStart`, `contentBlockStart`, `contentBlockDelta`,
//!   `contentBlockStop`, `messageStop`, `metadata`), one paced chunk each.
//! * Errors are Bedrock's: `{"message"}`, the type in `x-amzn-ErrorType`.
//!
//! Text, for the reply and the token count, is every `text` block, and the
//! `text` and `json` (as JSON text) content of tool results.

use std::sync::Arc;
use std::time::SystemTime;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue, Message as Frame};
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body;
use crate::call::{parse, Call};
use crate::fault::Fault;
use crate::reply::{self, Reply, Text, ToolCall};
use crate::server::Mock;
use crate::sigv4::{self, Refusal};
use crate::stats::Endpoint;

/// The service in a Bedrock signature's credential scope.
const SERVICE: &str = "bedrock";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest {
    // Optional at Bedrock (prompt resources), but a model needs one.
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    system: Vec<SystemBlock>,
    #[serde(default)]
    inference_config: InferenceConfig,
    #[serde(default)]
    tool_config: Option<ToolConfig>,
    /// Must be an object; no model reads it here.
    #[serde(default, rename = "additionalModelRequestFields")]
    _additional_fields: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: Role,
    content: Vec<Block>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    User,
    Assistant,
}

/// A content block: an object with exactly one of these keys. Those the
/// mock does not read are only checked to be there.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Block {
    Text(String),
    ToolUse(ToolUse),
    ToolResult(ToolResult),
    Image(IgnoredAny),
    Document(IgnoredAny),
    Video(IgnoredAny),
    CachePoint(IgnoredAny),
    GuardContent(IgnoredAny),
    ReasoningContent(IgnoredAny),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: String,
    #[serde(rename = "name")]
    _name: String,
    #[serde(rename = "input")]
    _input: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult {
    tool_use_id: String,
    content: Vec<ResultBlock>,
    #[serde(default, rename = "status")]
    _status: Option<ResultStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum ResultBlock {
    Text(String),
    Json(Value),
    Image(IgnoredAny),
    Document(IgnoredAny),
    Video(IgnoredAny),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ResultStatus {
    Success,
    Error,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum SystemBlock {
    Text(String),
    CachePoint(IgnoredAny),
    GuardContent(IgnoredAny),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig {
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default, rename = "stopSequences")]
    _stop_sequences: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    tools: Vec<Tool>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Tool {
    ToolSpec(ToolSpec),
    CachePoint(IgnoredAny),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec {
    name: String,
    #[serde(default, rename = "description")]
    _description: Option<String>,
    input_schema: InputSchema,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum InputSchema {
    Json(Value),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum ToolChoice {
    Auto(IgnoredAny),
    Any(IgnoredAny),
    Tool(NamedTool),
}

#[derive(Debug, Deserialize)]
struct NamedTool {
    name: String,
}

/// Why Bedrock refuses a request: a [`Fault`] every API knows, or a SigV4
/// refusal only AWS has.
#[derive(Debug)]
enum Refused {
    Fault(Fault),
    Signature(Refusal),
}

impl From<Fault> for Refused {
    fn from(fault: Fault) -> Self {
        Refused::Fault(fault)
    }
}

/// `POST /model/{modelId}/converse` ([`Endpoint::Converse`]) or
/// `/converse-stream` ([`Endpoint::ConverseStream`]).
pub(crate) async fn handle(
    endpoint: Endpoint,
    State(mock): State<Arc<Mock>>,
    Path(model): Path<String>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    mock.counters.bump(&mock.counters.bedrock_requests);
    // The signature covers the path as sent, not axum's decoded `model`.
    let signed = sigv4::Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers: &headers,
        authority: uri.authority().map(Authority::as_str),
        body: &body,
    };
    respond(&mock, endpoint, &model, &signed)
        .await
        .unwrap_or_else(|refused| render(&refused))
}

/// The request's SigV4 signature, when the mock has an AWS identity.
fn check_signature(mock: &Mock, req: &sigv4::Request<'_>) -> Result<(), Refused> {
    let Some(aws) = &mock.config.aws else {
        return Ok(());
    };
    sigv4::verify(aws, SERVICE, req, SystemTime::now()).map_err(|refusal| {
        if refusal.kind == sigv4::Kind::InvalidSignature {
            mock.counters.bump(&mock.counters.signature_refusals);
        }
        Refused::Signature(refusal)
    })
}

async fn respond(
    mock: &Mock,
    endpoint: Endpoint,
    model: &str,
    signed: &sigv4::Request<'_>,
) -> Result<Response, Refused> {
    let call = mock
        .admit_as(endpoint, signed.headers, || check_signature(mock, signed))
        .await?;
    let req: ConverseRequest = parse(signed.body)?;
    mock.check_model(model)?;
    validate(&req)?;
    let texts: Vec<String> = req.messages.iter().map(text_of).collect();
    let system: Vec<&str> = req
        .system
        .iter()
        .filter_map(|b| match b {
            SystemBlock::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let system = (!system.is_empty()).then(|| system.join(" "));
    let input_tokens = reply::prompt_tokens(system.iter().chain(&texts).map(String::as_str));
    let last_user = req
        .messages
        .iter()
        .zip(&texts)
        .rev()
        .find(|(m, _)| m.role == Role::User);
    let answers_a_tool =
        last_user.is_some_and(|(m, _)| m.content.iter().any(|b| matches!(b, Block::ToolResult(_))));
    let last_user = last_user.map_or("", |(_, t)| t.as_str());
    let id = mock.next_id();
    let reply = match chosen_tool(&req).filter(|_| !answers_a_tool) {
        Some(tool) => {
            let InputSchema::Json(schema) = &tool.input_schema;
            Reply::Tool(ToolCall::new(
                format!("tooluse_mock{id}"),
                &tool.name,
                schema,
                last_user,
            ))
        }
        None => Reply::Text(Text::new(model, last_user, req.inference_config.max_tokens)),
    };
    let usage = usage(input_tokens, reply.completion_tokens());
    let mut response = match endpoint {
        Endpoint::ConverseStream => stream(call, &reply, usage),
        _ => complete(call, &reply, usage),
    };
    // Bedrock names every answer; the mock's ids count up per instance.
    if let Ok(value) = HeaderValue::from_str(&format!("00000000-0000-4000-8000-{id:012x}")) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    Ok(response)
}

/// Bedrock's checks of a conversation, each with its message.
fn validate(req: &ConverseRequest) -> Result<(), Fault> {
    let invalid = |message: String| Fault::BadRequest {
        message,
        param: None,
    };
    if req.messages.first().map(|m| m.role) != Some(Role::User) {
        return Err(invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into()));
    }
    if req.messages.windows(2).any(|w| w[0].role == w[1].role) {
        return Err(invalid("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into()));
    }
    if let Some(i) = req.messages.iter().position(|m| m.content.is_empty()) {
        return Err(invalid(format!("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again.")));
    }
    let tool_blocks = req
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|b| matches!(b, Block::ToolUse(_) | Block::ToolResult(_)));
    if tool_blocks && req.tool_config.is_none() {
        return Err(invalid(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
                .into(),
        ));
    }
    // Each user turn answers exactly the tool uses of the turn before it.
    for (i, message) in req.messages.iter().enumerate() {
        if message.role != Role::User {
            continue;
        }
        let uses = match i.checked_sub(1) {
            Some(before) => tool_ids(&req.messages[before], |b| match b {
                Block::ToolUse(u) => Some(&u.tool_use_id),
                _ => None,
            }),
            None => Vec::new(),
        };
        let results = tool_ids(message, |b| match b {
            Block::ToolResult(r) => Some(&r.tool_use_id),
            _ => None,
        });
        if uses != results {
            return Err(invalid(format!(
                "Expected toolResult blocks at messages.{i}.content for the following Ids: {}, but found: {}",
                uses.join(", "),
                results.join(", "),
            )));
        }
    }
    if req.tool_config.as_ref().is_some_and(|c| c.tools.is_empty()) {
        return Err(invalid("1 validation error detected: Value '[]' at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1".into()));
    }
    let config = &req.inference_config;
    let bounds = [
        ("maxTokens", config.max_tokens.map(f64::from), 1.0, f64::MAX),
        ("temperature", config.temperature, 0.0, 1.0),
        ("topP", config.top_p, 0.0, 1.0),
    ];
    for (name, value, min, max) in bounds {
        let Some(value) = value else { continue };
        let constraint = if value < min {
            format!("greater than or equal to {min}")
        } else if value > max {
            format!("less than or equal to {max}")
        } else {
            continue;
        };
        return Err(invalid(format!("1 validation error detected: Value '{value}' at 'inferenceConfig.{name}' failed to satisfy constraint: Member must have value {constraint}")));
    }
    Ok(())
}

/// The tool use ids `pick` finds in `message`, sorted.
fn tool_ids<'a>(
    message: &'a Message,
    pick: impl Fn(&'a Block) -> Option<&'a String>,
) -> Vec<&'a str> {
    let mut ids: Vec<&str> = message
        .content
        .iter()
        .filter_map(pick)
        .map(String::as_str)
        .collect();
    ids.sort_unstable();
    ids
}

/// A message's text: its `text` blocks and its tool results' content.
fn text_of(message: &Message) -> String {
    let mut parts = Vec::new();
    for block in &message.content {
        match block {
            Block::Text(t) => parts.push(t.clone()),
            Block::ToolResult(r) => {
                for part in &r.content {
                    match part {
                        ResultBlock::Text(t) => parts.push(t.clone()),
                        ResultBlock::Json(v) => parts.push(v.to_string()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    parts.join(" ")
}

/// The tool the mock calls, when tools are offered: the one
/// `toolChoice.tool` names, else the first.
fn chosen_tool(req: &ConverseRequest) -> Option<&ToolSpec> {
    let config = req.tool_config.as_ref()?;
    let mut specs = config.tools.iter().filter_map(|t| match t {
        Tool::ToolSpec(spec) => Some(spec),
        Tool::CachePoint(_) => None,
    });
    let named = match &config.tool_choice {
        Some(ToolChoice::Tool(NamedTool { name })) => specs.clone().find(|s| &s.name == name),
        _ => None,
    };
    named.or_else(|| specs.next())
}

fn stop_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::Tool(_) => "tool_use",
        Reply::Text(t) if t.cut => "max_tokens",
        Reply::Text(_) => "end_turn",
    }
}

fn usage(input_tokens: u32, output_tokens: u32) -> Value {
    json!({
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    })
}

/// The `Converse` answer.
fn complete(call: Call, reply: &Reply, usage: Value) -> Response {
    let block = match reply {
        Reply::Text(t) => json!({"text": t.content()}),
        Reply::Tool(c) => {
            json!({"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.input()}})
        }
    };
    body::json(
        call,
        &json!({
            "output": {"message": {"role": "assistant", "content": [block]}},
            "stopReason": stop_reason(reply),
            "usage": usage,
            "metrics": {"latencyMs": 0},
        }),
    )
}

/// The `ConverseStream` answer, one frame per event.
fn stream(call: Call, reply: &Reply, usage: Value) -> Response {
    let mut frames = vec![frame("messageStart", &json!({"role": "assistant"}))];
    let delta = |delta: Value| {
        frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": delta}),
        )
    };
    match reply {
        Reply::Text(t) => frames.extend(t.pieces.iter().map(|p| delta(json!({"text": p})))),
        Reply::Tool(c) => {
            frames.push(frame(
                "contentBlockStart",
                &json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": c.id, "name": c.name}}}),
            ));
            // Bedrock streams the input as JSON text in pieces; two here.
            let mut half = c.arguments.len() / 2;
            while !c.arguments.is_char_boundary(half) {
                half += 1;
            }
            let (first, second) = c.arguments.split_at(half);
            for piece in [first, second] {
                frames.push(delta(json!({"toolUse": {"input": piece}})));
            }
        }
    }
    frames.push(frame("contentBlockStop", &json!({"contentBlockIndex": 0})));
    frames.push(frame(
        "messageStop",
        &json!({"stopReason": stop_reason(reply)}),
    ));
    frames.push(frame(
        "metadata",
        &json!({"usage": usage, "metrics": {"latencyMs": 0}}),
    ));
    body::stream(call, "application/vnd.amazon.eventstream", frames)
}

/// One event-stream message: the event's JSON with its type in headers.
fn frame(event_type: &str, payload: &Value) -> Bytes {
    let message = Frame::new(serde_json::to_vec(payload).unwrap_or_default())
        .add_header(Header::new(
            ":event-type",
            FrameValue::String(event_type.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            FrameValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            FrameValue::String("event".into()),
        ));
    let mut out = Vec::new();
    // Writing fails only for a frame over 16 MiB; the mock's are small.
    match write_message_to(&message, &mut out) {
        Ok(()) => Bytes::from(out),
        Err(_) => Bytes::new(),
    }
}

/// A refusal in Bedrock's error shape: `{"message"}`, with
/// `x-amzn-ErrorType: TYPE:http://internal.amazon.com/coral/com.amazon.bedrock/`.
fn render(refused: &Refused) -> Response {
    let denied = |r: &Refusal| {
        (
            StatusCode::FORBIDDEN,
            r.kind.error_type(),
            r.message.clone(),
        )
    };
    let (status, kind, message) = match refused {
        Refused::Signature(refusal) => denied(refusal),
        Refused::Fault(fault) => match fault {
            Fault::BadRequest { message, .. } => (
                StatusCode::BAD_REQUEST,
                "ValidationException",
                message.clone(),
            ),
            Fault::MissingKey => denied(&Refusal::missing()),
            Fault::WrongKey => denied(&Refusal::unrecognized()),
            Fault::ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "Could not resolve the foundation model from the provided model identifier."
                    .to_owned(),
            ),
            Fault::NotFound { message, .. } => (
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                message.clone(),
            ),
            Fault::Injected { status, .. } => {
                let (kind, message) = match status {
                    429 => (
                        "ThrottlingException",
                        "Too many requests, please wait before trying again.".to_owned(),
                    ),
                    403 => ("AccessDeniedException", injected(*status)),
                    404 => ("ResourceNotFoundException", injected(*status)),
                    503 => ("ServiceUnavailableException", injected(*status)),
                    500.. => ("InternalServerException", injected(*status)),
                    _ => ("ValidationException", injected(*status)),
                };
                (fault.status(), kind, message)
            }
        },
    };
    let mut response = (status, Json(json!({ "message": message }))).into_response();
    let headers = response.headers_mut();
    let error_type = format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/");
    if let Ok(value) = HeaderValue::from_str(&error_type) {
        headers.insert("x-amzn-errortype", value);
    }
    if let Refused::Fault(fault) = refused {
        for (name, value) in fault.retry_headers().into_iter().flatten() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    response
}

fn injected(status: u16) -> String {
    format!("sluice-mock-llm: injected {status} failure")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    fn request(body: Value) -> Result<ConverseRequest, Fault> {
        let req: ConverseRequest = parse(body.to_string().as_bytes())?;
        validate(&req)?;
        Ok(req)
    }

    fn message_of(result: Result<ConverseRequest, Fault>) -> String {
        match result {
            Err(Fault::BadRequest { message, .. }) => message,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": [{"text": text}]})
    }

    fn assistant(text: &str) -> Value {
        json!({"role": "assistant", "content": [{"text": text}]})
    }

    #[test]
    fn a_conversation_starts_with_the_user_and_alternates() {
        assert!(request(json!({"messages": [user("a"), assistant("b"), user("c")]})).is_ok());
        for messages in [json!([]), json!([assistant("a")])] {
            assert!(message_of(request(json!({ "messages": messages })))
                .starts_with("A conversation must start with a user message."));
        }
        assert!(
            message_of(request(json!({"messages": [user("a"), user("b")]})))
                .starts_with("A conversation must alternate between user and assistant roles")
        );
        assert!(message_of(request(
            json!({"messages": [{"role": "user", "content": []}]})
        ))
        .contains("messages.0 is empty"));
    }

    #[test]
    fn bad_fields_are_named() {
        let message = message_of(request(
            json!({"messages": [{"role": "user", "content": [{"sound": "x"}]}]}),
        ));
        assert!(message.starts_with("messages[0].content[0]"), "{message}");
        let message = message_of(request(
            json!({"messages": [{"role": "system", "content": [{"text": "x"}]}]}),
        ));
        assert!(message.starts_with("messages[0].role"), "{message}");
        let message = message_of(request(
            json!({"messages": [user("a")], "inferenceConfig": {"maxTokens": 0}}),
        ));
        assert!(message.contains("'inferenceConfig.maxTokens'"), "{message}");
        let message = message_of(request(
            json!({"messages": [user("a")], "inferenceConfig": {"temperature": 1.5}}),
        ));
        assert!(message.contains("less than or equal to 1"), "{message}");
    }

    #[test]
    fn tool_blocks_need_a_tool_config_and_results_answer_uses() {
        let tool_use =
            json!({"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}});
        let result = |id: &str| json!({"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"json": {"temp": 22}}], "status": "success"}}]});
        let config =
            json!({"tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {}}}}]});
        let messages =
            json!([user("Paris?"), {"role": "assistant", "content": [tool_use]}, result("t1")]);
        assert!(message_of(request(json!({ "messages": messages })))
            .starts_with("The toolConfig field must be defined"));
        let req = request(json!({"messages": messages, "toolConfig": config})).unwrap();
        assert_eq!(text_of(&req.messages[2]), r#"{"temp":22}"#);
        let wrong =
            json!([user("Paris?"), {"role": "assistant", "content": [tool_use]}, result("t2")]);
        assert!(
            message_of(request(json!({"messages": wrong, "toolConfig": config})))
                .contains("messages.2.content for the following Ids: t1, but found: t2")
        );
        let unasked = json!([user("Paris?"), assistant("ok"), result("t1")]);
        assert!(
            message_of(request(json!({"messages": unasked, "toolConfig": config})))
                .contains("messages.2.content")
        );
    }

    #[test]
    fn tool_choice_names_the_tool_called() {
        let tools = json!([
            {"toolSpec": {"name": "a", "inputSchema": {"json": {}}}},
            {"cachePoint": {"type": "default"}},
            {"toolSpec": {"name": "b", "inputSchema": {"json": {}}}}
        ]);
        let chosen = |choice: Value| {
            let req = request(json!({"messages": [user("x")], "toolConfig": {"tools": tools, "toolChoice": choice}})).unwrap();
            chosen_tool(&req).map(|t| t.name.clone())
        };
        assert_eq!(chosen(json!({"auto": {}})).as_deref(), Some("a"));
        assert_eq!(chosen(json!({"any": {}})).as_deref(), Some("a"));
        assert_eq!(chosen(json!({"tool": {"name": "b"}})).as_deref(), Some("b"));
    }

    #[test]
    fn frames_read_back_with_their_headers_and_payload() {
        let bytes = frame("contentBlockDelta", &json!({"contentBlockIndex": 0}));
        let message = read_message_from(&bytes[..]).unwrap();
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        assert_eq!(header(":event-type").as_deref(), Some("contentBlockDelta"));
        assert_eq!(header(":content-type").as_deref(), Some("application/json"));
        assert_eq!(header(":message-type").as_deref(), Some("event"));
        let payload: Value = serde_json::from_slice(message.payload()).unwrap();
        assert_eq!(payload, json!({"contentBlockIndex": 0}));
    }

    #[test]
    fn faults_render_as_bedrock_errors() {
        let cases = [
            (
                Refused::Fault(Fault::Injected {
                    status: 429,
                    retry_after_ms: 1500,
                }),
                429,
                "ThrottlingException",
            ),
            (
                Refused::Fault(Fault::ModelNotFound { model: "m".into() }),
                404,
                "ResourceNotFoundException",
            ),
            (
                Refused::Signature(Refusal::missing()),
                403,
                "MissingAuthenticationTokenException",
            ),
            (
                Refused::Fault(Fault::Injected {
                    status: 502,
                    retry_after_ms: 0,
                }),
                502,
                "InternalServerException",
            ),
        ];
        for (refused, status, kind) in cases {
            let response = render(&refused);
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()["x-amzn-errortype"],
                format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/").as_str()
            );
        }
        let throttled = render(&Refused::Fault(Fault::Injected {
            status: 429,
            retry_after_ms: 1500,
        }));
        assert_eq!(throttled.headers()["retry-after"], "2");
    }
}
