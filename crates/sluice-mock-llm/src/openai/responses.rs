//! The Responses API: `POST /v1/responses` (streaming and not, text or a
//! function call), and `GET`/`DELETE /v1/responses/{id}` for the responses
//! this instance stored (`store` is true unless the request says false).
//! A `previous_response_id` this instance did not store is a 404, as
//! OpenAI answers one made in another account: a gateway must send the
//! follow-up to the upstream that made the first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, now};
use crate::call::{parse, Call};
use crate::fault::Fault;
use crate::reply::{self, Reply, Text, ToolCall};
use crate::server::Mock;
use crate::stats::Endpoint;
use crate::tokens::text_of;
use crate::{body, sse};

/// The most responses an instance keeps (the oldest go first).
const KEPT: usize = 10_000;

/// Stored responses by id, and their order.
#[derive(Default)]
pub(crate) struct Store {
    by_id: HashMap<String, Value>,
    /// Each response's input items, as `input_items` lists them.
    inputs: HashMap<String, Vec<Value>>,
    order: BTreeMap<u64, String>,
}

impl Store {
    fn put(&mut self, seq: u64, response: Value, inputs: Vec<Value>) {
        let id = response["id"].as_str().unwrap_or_default().to_owned();
        self.by_id.insert(id.clone(), response);
        self.inputs.insert(id.clone(), inputs);
        self.order.insert(seq, id);
        while self.by_id.len() > KEPT {
            match self.order.pop_first() {
                Some((_, oldest)) => {
                    self.by_id.remove(&oldest);
                    self.inputs.remove(&oldest);
                }
                None => break,
            }
        }
    }
}

/// The input as the items `input_items` lists, each with an id.
fn input_items(input: &Value, seq: u64) -> Vec<Value> {
    let items = match input {
        Value::String(text) => vec![json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]})],
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if item.get("id").is_none() {
                item["id"] = json!(format!("msg_mock{seq}_{i}"));
            }
            item
        })
        .collect()
}

/// `GET /v1/responses/{id}/input_items`: newest first unless
/// `order=asc`, at most `limit` (default 20).
pub(crate) async fn input_items_list(
    State(mock): State<Arc<Mock>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(mut items) = lock(&mock.responses).inputs.get(&id).cloned() else {
        return error::render(&not_found(&id, None));
    };
    if query.get("order").map(String::as_str) != Some("asc") {
        items.reverse();
    }
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let has_more = items.len() > limit;
    items.truncate(limit);
    Json(json!({
        "object": "list",
        "data": items,
        "first_id": items.first().map(|i| i["id"].clone()),
        "last_id": items.last().map(|i| i["id"].clone()),
        "has_more": has_more,
    }))
    .into_response()
}

pub(crate) type Shared = Arc<Mutex<Store>>;

#[derive(Debug, Deserialize)]
struct ResponsesRequest {
    model: String,
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    store: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Tool {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parameters: Value,
}

pub(crate) async fn create(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match respond(&mock, &headers, &body).await {
        Ok(response) => response,
        Err(fault) => error::render(&fault),
    }
}

pub(crate) async fn get(State(mock): State<Arc<Mock>>, Path(id): Path<String>) -> Response {
    let found = lock(&mock.responses).by_id.get(&id).cloned();
    match found {
        Some(response) => Json(response).into_response(),
        None => error::render(&not_found(&id, None)),
    }
}

pub(crate) async fn delete(State(mock): State<Arc<Mock>>, Path(id): Path<String>) -> Response {
    let removed = lock(&mock.responses).by_id.remove(&id);
    match removed {
        Some(_) => {
            Json(json!({"id": id, "object": "response.deleted", "deleted": true})).into_response()
        }
        None => error::render(&not_found(&id, None)),
    }
}

fn lock(store: &Shared) -> std::sync::MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn not_found(id: &str, param: Option<&str>) -> Fault {
    Fault::NotFound {
        message: format!("Response with id '{id}' not found."),
        param: param.map(str::to_owned),
    }
}

/// The input's messages as (role, text), a string input being one user
/// message; and whether it ends with a function call's output.
fn messages(input: &Value) -> Result<(Vec<(String, String)>, bool), Fault> {
    match input {
        Value::String(text) => Ok((vec![("user".to_owned(), text.clone())], false)),
        Value::Array(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for item in items {
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call_output") => out.push((
                        "tool".to_owned(),
                        text_of(item.get("output").unwrap_or(&Value::Null)),
                    )),
                    Some("function_call") => {}
                    _ => out.push((
                        item.get("role")
                            .and_then(Value::as_str)
                            .unwrap_or("user")
                            .to_owned(),
                        text_of(item.get("content").unwrap_or(&Value::Null)),
                    )),
                }
            }
            let after_tool = items
                .last()
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str)
                == Some("function_call_output");
            Ok((out, after_tool))
        }
        _ => Err(Fault::BadRequest {
            message: "input: must be a string or a non-empty array of input items".into(),
            param: Some("input".into()),
        }),
    }
}

async fn respond(mock: &Mock, headers: &HeaderMap, body: &[u8]) -> Result<Response, Fault> {
    let call = mock.admit(Endpoint::Responses, headers).await?;
    let req: ResponsesRequest = parse(body)?;
    mock.check_model(&req.model)?;
    if let Some(previous) = &req.previous_response_id {
        if !lock(&mock.responses).by_id.contains_key(previous) {
            return Err(not_found(previous, Some("previous_response_id")));
        }
    }
    let (messages, after_tool) = messages(&req.input)?;
    let mut texts: Vec<&str> = messages.iter().map(|(_, t)| t.as_str()).collect();
    if let Some(instructions) = &req.instructions {
        texts.push(instructions);
    }
    let prompt_tokens = reply::prompt_tokens(texts);
    let last_user = messages
        .iter()
        .rev()
        .find(|(role, _)| role == "user")
        .map_or("", |(_, t)| t.as_str());
    let seq = mock.next_id();
    let tool = chosen_tool(&req).filter(|_| !after_tool);
    let reply = match tool {
        Some((name, parameters)) => Reply::Tool(ToolCall::new(
            format!("call_mock{seq}"),
            name,
            parameters,
            last_user,
        )),
        None => Reply::Text(Text::new(&req.model, last_user, req.max_output_tokens)),
    };
    let shape = Shape {
        seq,
        created_at: now(),
        request: &req,
        prompt_tokens,
    };
    let done = shape.response(&reply, true);
    if req.store.unwrap_or(true) {
        lock(&mock.responses).put(seq, done.clone(), input_items(&req.input, seq));
    }
    Ok(if req.stream.unwrap_or(false) {
        shape.stream(call, &reply, done)
    } else {
        body::json(call, &done)
    })
}

/// The function the mock calls: the one `tool_choice` names, else the
/// first; none for `"none"`.
fn chosen_tool(req: &ResponsesRequest) -> Option<(&str, &Value)> {
    let functions: Vec<(&str, &Value)> = req
        .tools
        .iter()
        .flatten()
        .filter(|t| t.kind == "function")
        .filter_map(|t| t.name.as_deref().map(|n| (n, &t.parameters)))
        .collect();
    match &req.tool_choice {
        Some(Value::String(choice)) if choice == "none" => None,
        Some(Value::Object(choice)) => {
            let name = choice.get("name").and_then(Value::as_str);
            functions
                .iter()
                .find(|(n, _)| Some(*n) == name)
                .or(functions.first())
                .copied()
        }
        _ => functions.first().copied(),
    }
}

struct Shape<'a> {
    seq: u64,
    created_at: u64,
    request: &'a ResponsesRequest,
    prompt_tokens: u32,
}

impl Shape<'_> {
    fn item_id(&self, reply: &Reply) -> String {
        match reply {
            Reply::Text(_) => format!("msg_mock{}", self.seq),
            Reply::Tool(_) => format!("fc_mock{}", self.seq),
        }
    }

    /// The output item, complete or (`done` false) as it starts.
    fn item(&self, reply: &Reply, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match reply {
            Reply::Text(t) => json!({
                "type": "message",
                "id": self.item_id(reply),
                "status": status,
                "role": "assistant",
                "content": if done {
                    json!([{"type": "output_text", "text": t.content(), "annotations": []}])
                } else {
                    json!([])
                },
            }),
            Reply::Tool(c) => json!({
                "type": "function_call",
                "id": self.item_id(reply),
                "call_id": c.id,
                "name": c.name,
                "arguments": if done { c.arguments.as_str() } else { "" },
                "status": status,
            }),
        }
    }

    /// The response object: complete, or (`done` false) as it starts.
    fn response(&self, reply: &Reply, done: bool) -> Value {
        let cut = matches!(reply, Reply::Text(t) if t.cut);
        let status = match (done, cut) {
            (false, _) => "in_progress",
            (true, true) => "incomplete",
            (true, false) => "completed",
        };
        let completion = reply.completion_tokens();
        json!({
            "id": format!("resp_mock{}", self.seq),
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": if done && cut { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "instructions": self.request.instructions,
            "max_output_tokens": self.request.max_output_tokens,
            "model": self.request.model,
            "output": if done { json!([self.item(reply, true)]) } else { json!([]) },
            "parallel_tool_calls": true,
            "previous_response_id": self.request.previous_response_id,
            "reasoning": {"effort": null, "summary": null},
            "store": self.request.store.unwrap_or(true),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": self.request.tool_choice.clone().unwrap_or(json!("auto")),
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": if done {
                json!({
                    "input_tokens": self.prompt_tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": completion,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": self.prompt_tokens + completion,
                })
            } else {
                Value::Null
            },
            "user": null,
            "metadata": {},
        })
    }

    fn stream(&self, call: Call, reply: &Reply, done: Value) -> Response {
        let mut events = Vec::with_capacity(reply.completion_tokens() as usize + 10);
        let mut seq = 0u64;
        let mut push = |kind: &str, mut value: Value| {
            value["type"] = json!(kind);
            value["sequence_number"] = json!(seq);
            seq += 1;
            events.push(sse::event(kind, &value));
        };
        let started = self.response(reply, false);
        push("response.created", json!({"response": started}));
        push("response.in_progress", json!({"response": started}));
        let item_id = self.item_id(reply);
        push(
            "response.output_item.added",
            json!({"output_index": 0, "item": self.item(reply, false)}),
        );
        match reply {
            Reply::Text(t) => {
                let part =
                    |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
                let at = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
                let with = |extra: Value| {
                    let mut v = at.clone();
                    for (k, x) in extra.as_object().into_iter().flatten() {
                        v[k] = x.clone();
                    }
                    v
                };
                push(
                    "response.content_part.added",
                    with(json!({"part": part("")})),
                );
                for piece in &t.pieces {
                    push(
                        "response.output_text.delta",
                        with(json!({"delta": piece, "logprobs": []})),
                    );
                }
                let text = t.content();
                push(
                    "response.output_text.done",
                    with(json!({"text": text, "logprobs": []})),
                );
                push(
                    "response.content_part.done",
                    with(json!({"part": part(&text)})),
                );
            }
            Reply::Tool(c) => {
                for fragment in &c.fragments {
                    push(
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": 0, "delta": fragment}),
                    );
                }
                push(
                    "response.function_call_arguments.done",
                    json!({"item_id": item_id, "output_index": 0, "arguments": c.arguments}),
                );
            }
        }
        push(
            "response.output_item.done",
            json!({"output_index": 0, "item": self.item(reply, true)}),
        );
        let end = if done["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        push(end, json!({"response": done}));
        body::event_stream(call, events)
    }
}
