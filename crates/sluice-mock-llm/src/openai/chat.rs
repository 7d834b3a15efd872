//! `POST /v1/chat/completions`, streaming and not, with tool calls.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, now, usage, StreamOptions};
use crate::call::{parse, Call};
use crate::fault::Fault;
use crate::reply::{self, Reply, Text, ToolCall};
use crate::server::Mock;
use crate::stats::Endpoint;
use crate::tokens::text_of;
use crate::{body, sse};

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Value,
}

#[derive(Debug, Deserialize)]
struct Tool {
    function: Function,
}

#[derive(Debug, Deserialize)]
struct Function {
    name: String,
    #[serde(default)]
    parameters: Value,
}

pub(crate) async fn handle(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match respond(&mock, &headers, &body).await {
        Ok(response) => response,
        Err(fault) => error::render(&fault),
    }
}

async fn respond(mock: &Mock, headers: &HeaderMap, body: &[u8]) -> Result<Response, Fault> {
    let call = mock.admit(Endpoint::ChatCompletions, headers).await?;
    let req: ChatRequest = parse(body)?;
    mock.check_model(&req.model)?;
    if req.messages.is_empty() {
        return Err(Fault::BadRequest {
            message: "messages: must contain at least one message".into(),
            param: Some("messages".into()),
        });
    }
    let texts: Vec<String> = req.messages.iter().map(|m| text_of(&m.content)).collect();
    let prompt_tokens = reply::prompt_tokens(texts.iter().map(String::as_str));
    let last_user = req
        .messages
        .iter()
        .zip(&texts)
        .rev()
        .find(|(m, _)| m.role == "user")
        .map_or("", |(_, t)| t.as_str());
    let id = mock.next_id();
    let reply = match chosen_tool(&req) {
        Some(tool) => Reply::Tool(ToolCall::new(
            format!("call_mock{id}"),
            &tool.name,
            &tool.parameters,
            last_user,
        )),
        None => Reply::Text(Text::new(
            &req.model,
            last_user,
            req.max_completion_tokens.or(req.max_tokens),
        )),
    };
    let shape = Shape {
        id: format!("chatcmpl-mock{id}"),
        created: now(),
        model: req.model.clone(),
        prompt_tokens,
    };
    Ok(if req.stream.unwrap_or(false) {
        let include_usage = StreamOptions::include_usage(&req.stream_options);
        shape.stream(call, &reply, include_usage)
    } else {
        shape.complete(call, &reply)
    })
}

/// The tool the mock calls, if any: the one `tool_choice` names, else the
/// first; none when `tool_choice` is `"none"` or the last message is a tool
/// result.
fn chosen_tool(req: &ChatRequest) -> Option<&Function> {
    let tools = req.tools.as_deref().unwrap_or_default();
    if req.messages.last().is_some_and(|m| m.role == "tool") {
        return None;
    }
    match &req.tool_choice {
        Some(Value::String(choice)) if choice == "none" => None,
        Some(Value::Object(choice)) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            tools
                .iter()
                .map(|t| &t.function)
                .find(|f| Some(f.name.as_str()) == name)
                .or_else(|| tools.first().map(|t| &t.function))
        }
        _ => tools.first().map(|t| &t.function),
    }
}

/// What every object of one response shares.
struct Shape {
    id: String,
    created: u64,
    model: String,
    prompt_tokens: u32,
}

fn finish_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::Tool(_) => "tool_calls",
        Reply::Text(t) if t.cut => "length",
        Reply::Text(_) => "stop",
    }
}

impl Shape {
    fn complete(&self, call: Call, reply: &Reply) -> Response {
        let message = match reply {
            Reply::Text(t) => json!({"role": "assistant", "content": t.content(), "refusal": null}),
            Reply::Tool(c) => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }],
                "refusal": null,
            }),
        };
        let completion = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason(reply),
            }],
            "usage": usage(self.prompt_tokens, reply.completion_tokens()),
            "system_fingerprint": null,
        });
        body::json(call, &completion)
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        sse::data(&chunk)
    }

    fn stream(&self, call: Call, reply: &Reply, include_usage: bool) -> Response {
        let mut events = Vec::with_capacity(reply.completion_tokens() as usize + 4);
        match reply {
            Reply::Text(t) => {
                events.push(self.chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                    include_usage,
                ));
                for piece in &t.pieces {
                    events.push(self.chunk(json!({"content": piece}), None, include_usage));
                }
            }
            Reply::Tool(c) => {
                let opening = json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "index": 0,
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": ""},
                    }],
                    "refusal": null,
                });
                events.push(self.chunk(opening, None, include_usage));
                for fragment in &c.fragments {
                    let delta =
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]});
                    events.push(self.chunk(delta, None, include_usage));
                }
            }
        }
        events.push(self.chunk(json!({}), Some(finish_reason(reply)), include_usage));
        if include_usage {
            events.push(sse::data(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": usage(self.prompt_tokens, reply.completion_tokens()),
            })));
        }
        events.push(sse::done());
        body::event_stream(call, events)
    }
}
