//! The Anthropic Messages API, `POST /v1/messages`, streaming and not, with
//! tool use, and `POST /v1/messages/count_tokens`. `anthropic-version` is accepted but not required; `max_tokens`
//! is required, as Anthropic does.

mod error;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::call::{parse, Call};
use crate::fault::Fault;
use crate::reply::{self, Reply, Text, ToolCall};
use crate::server::Mock;
use crate::stats::Endpoint;
use crate::tokens::text_of;
use crate::{body, sse};

#[derive(Debug, Deserialize)]
struct MessagesRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
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
    name: String,
    #[serde(default)]
    input_schema: Value,
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
    let call = mock.admit(Endpoint::Messages, headers).await?;
    let req: MessagesRequest = parse(body)?;
    let max_tokens = match req.max_tokens {
        None => return Err(invalid("max_tokens: Field required")),
        Some(0) => return Err(invalid("max_tokens: must be greater than or equal to 1")),
        Some(n) => n,
    };
    let (texts, prompt_tokens) = prompt(mock, &req)?;
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
            format!("toolu_mock{id}"),
            &tool.name,
            &tool.input_schema,
            last_user,
        )),
        None => Reply::Text(Text::new(&req.model, last_user, Some(max_tokens))),
    };
    let shape = Shape {
        id: format!("msg_mock{id}"),
        model: req.model.clone(),
        input_tokens: prompt_tokens,
    };
    Ok(if req.stream.unwrap_or(false) {
        shape.stream(call, &reply)
    } else {
        shape.complete(call, &reply)
    })
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens by the mock's
/// rule, as `{"input_tokens": N}`; `max_tokens` is not needed.
pub(crate) async fn count_tokens(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let counted = async {
        let call = mock.admit(Endpoint::CountTokens, &headers).await?;
        let req: MessagesRequest = parse(&body)?;
        let (_, input_tokens) = prompt(&mock, &req)?;
        Ok(body::json(call, &json!({"input_tokens": input_tokens})))
    };
    match counted.await {
        Ok(response) => response,
        Err(fault) => error::render(&fault),
    }
}

/// The messages' texts and the prompt's tokens (the system prompt
/// counted), once the request names a served model and has a message.
fn prompt(mock: &Mock, req: &MessagesRequest) -> Result<(Vec<String>, u32), Fault> {
    if req.messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    mock.check_model(&req.model)?;
    let texts: Vec<String> = req.messages.iter().map(|m| text_of(&m.content)).collect();
    let system = req.system.as_ref().map(text_of);
    let tokens = reply::prompt_tokens(system.iter().chain(&texts).map(String::as_str));
    Ok((texts, tokens))
}

fn invalid(message: &str) -> Fault {
    Fault::BadRequest {
        message: message.to_owned(),
        param: None,
    }
}

/// The tool the mock uses, if any: the one `tool_choice` names, else the
/// first; none with `tool_choice: {"type":"none"}` or when the last message
/// carries a tool result.
fn chosen_tool(req: &MessagesRequest) -> Option<&Tool> {
    let tools = req.tools.as_deref().unwrap_or_default();
    let answers_a_tool = req.messages.last().is_some_and(|m| {
        m.content.as_array().is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
    });
    if answers_a_tool {
        return None;
    }
    let choice = req.tool_choice.as_ref();
    match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        Some("none") => None,
        Some("tool") => {
            let name = choice.and_then(|c| c.get("name")).and_then(Value::as_str);
            tools
                .iter()
                .find(|t| Some(t.name.as_str()) == name)
                .or(tools.first())
        }
        _ => tools.first(),
    }
}

fn stop_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::Tool(_) => "tool_use",
        Reply::Text(t) if t.cut => "max_tokens",
        Reply::Text(_) => "end_turn",
    }
}

/// What every object of one response shares.
struct Shape {
    id: String,
    model: String,
    input_tokens: u32,
}

impl Shape {
    fn message(&self, content: Value, stop_reason: Option<&str>, output_tokens: u32) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": output_tokens},
        })
    }

    fn complete(&self, call: Call, reply: &Reply) -> Response {
        let block = match reply {
            Reply::Text(t) => json!({"type": "text", "text": t.content()}),
            Reply::Tool(c) => {
                json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.input()})
            }
        };
        let message = self.message(
            json!([block]),
            Some(stop_reason(reply)),
            reply.completion_tokens(),
        );
        body::json(call, &message)
    }

    fn stream(&self, call: Call, reply: &Reply) -> Response {
        let mut events = Vec::with_capacity(reply.completion_tokens() as usize + 6);
        let start = self.message(json!([]), None, 1);
        events.push(sse::event(
            "message_start",
            &json!({"type": "message_start", "message": start}),
        ));
        let (block, deltas): (Value, Vec<Value>) = match reply {
            Reply::Text(t) => (
                json!({"type": "text", "text": ""}),
                t.pieces
                    .iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            Reply::Tool(c) => (
                json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}}),
                c.fragments
                    .iter()
                    .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
                    .collect(),
            ),
        };
        events.push(sse::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ));
        events.push(sse::event("ping", &json!({"type": "ping"})));
        for delta in deltas {
            events.push(sse::event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            ));
        }
        events.push(sse::event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(sse::event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(reply), "stop_sequence": null},
                "usage": {"output_tokens": reply.completion_tokens()},
            }),
        ));
        events.push(sse::event("message_stop", &json!({"type": "message_stop"})));
        body::event_stream(call, events)
    }
}
