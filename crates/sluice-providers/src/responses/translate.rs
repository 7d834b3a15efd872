//! The Responses API served by deployments that do not have it (Anthropic,
//! Gemini, Vertex AI): the request becomes a chat completions request
//! ([`responses_to_chat`]), which the provider then takes as it takes any
//! (translated again to its own API); the answer, whole
//! ([`chat_to_response`]) or streamed ([`ChatToResponses`]), becomes a
//! response object and its typed events.
//!
//! What does not translate, refused with a 400 naming the field:
//! * `previous_response_id`: nothing is stored, so a conversation goes in
//!   `input` (the SDK's and agents' usual way with `store: false`);
//! * tools other than functions (`web_search`, `file_search` …), input
//!   files, item references.
//!
//! Reasoning items in `input` are left out; `store`, `metadata`,
//! `reasoning`, `include`, `truncation` and `user` are dropped. A response
//! made this way is not stored: its id (`resp_` and the upstream's message
//! id) cannot be read back with `GET`.

use serde_json::{json, Map, Value};

use crate::openai::{self, ChatResponse, FinishReason};
use crate::relay::{push_event, RelayError, StreamRelay};
use crate::sse::SseParser;
use crate::translate::TranslateError;
use crate::usage::TokenUsage;

/// Translates a Responses API request body into a chat completions request
/// for `model`.
pub fn responses_to_chat(
    body: &Map<String, Value>,
    model: &str,
) -> Result<openai::ChatRequest, TranslateError> {
    if body
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(TranslateError::unsupported(
            "previous_response_id",
            "this route's deployment does not store responses: send the conversation in `input`",
        ));
    }
    let mut messages: Vec<Value> = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match body.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, &format!("input[{i}]"), &mut messages)?;
            }
        }
        _ => {
            return Err(TranslateError::unsupported(
                "input",
                "must be a string or a non-empty array of input items",
            ))
        }
    }
    let mut chat = Map::new();
    chat.insert("model".into(), json!(model));
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(Value::Array(tools)) = body.get("tools") {
        let mut functions = Vec::new();
        for (i, tool) in tools.iter().enumerate() {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(TranslateError::unsupported(
                    format!("tools[{i}].type"),
                    "only function tools can be sent to this route's deployment",
                ));
            }
            let mut function = json!({"name": tool.get("name").cloned().unwrap_or(Value::Null)});
            for key in ["description", "parameters", "strict"] {
                if let Some(value) = tool.get(key).filter(|v| !v.is_null()) {
                    function[key] = value.clone();
                }
            }
            functions.push(json!({"type": "function", "function": function}));
        }
        if !functions.is_empty() {
            chat.insert("tools".into(), Value::Array(functions));
        }
    }
    match body.get("tool_choice") {
        Some(Value::String(mode)) => {
            chat.insert("tool_choice".into(), json!(mode));
        }
        Some(Value::Object(choice)) if choice.get("type") == Some(&json!("function")) => {
            chat.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": choice.get("name")}}),
            );
        }
        _ => {}
    }
    for (from, to) in [
        ("max_output_tokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ] {
        if let Some(value) = body.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), value.clone());
        }
    }
    if let Some(format) = body.get("text").and_then(|t| t.get("format")) {
        match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut schema =
                    json!({"name": format.get("name").cloned().unwrap_or(json!("output"))});
                for key in ["schema", "strict", "description"] {
                    if let Some(value) = format.get(key) {
                        schema[key] = value.clone();
                    }
                }
                chat.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": schema}),
                );
            }
            Some("json_object") => {
                chat.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    if body.get("stream") == Some(&Value::Bool(true)) {
        chat.insert("stream".into(), json!(true));
        // The completed event carries usage: always asked for.
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    serde_json::from_value(Value::Object(chat)).map_err(|source| TranslateError::InvalidJson {
        path: "input".into(),
        source,
    })
}

/// One input item as chat messages (a function call joins the assistant
/// message before it).
fn input_item(item: &Value, path: &str, messages: &mut Vec<Value>) -> Result<(), TranslateError> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
            if !matches!(role, "user" | "assistant" | "system" | "developer") {
                return Err(TranslateError::unsupported(
                    format!("{path}.role"),
                    "must be user, assistant, system or developer",
                ));
            }
            let content = match item.get("content") {
                Some(Value::String(text)) => json!(text),
                Some(Value::Array(parts)) => {
                    let mut out = Vec::new();
                    for (j, part) in parts.iter().enumerate() {
                        out.push(content_part(part, &format!("{path}.content[{j}]"))?);
                    }
                    // An assistant turn's content is text only.
                    if role == "assistant" {
                        json!(out
                            .iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect::<String>())
                    } else {
                        Value::Array(out)
                    }
                }
                _ => {
                    return Err(TranslateError::unsupported(
                        format!("{path}.content"),
                        "must be a string or an array of content parts",
                    ))
                }
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": item.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": item.get("arguments").cloned().unwrap_or(json!("{}")),
                },
            });
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect(),
                _ => {
                    return Err(TranslateError::unsupported(
                        format!("{path}.output"),
                        "must be a string or text parts",
                    ))
                }
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "content": output,
            }));
        }
        // The model's own reasoning: nothing the other API can take back.
        "reasoning" => {}
        _ => {
            return Err(TranslateError::unsupported(
                format!("{path}.type"),
                "this input item cannot be sent to this route's deployment",
            ))
        }
    }
    Ok(())
}

fn content_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => {
            Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or(json!(""))}))
        }
        Some("input_image") => match part.get("image_url").and_then(Value::as_str) {
            Some(url) => Ok(json!({"type": "image_url", "image_url": {"url": url}})),
            None => Err(TranslateError::unsupported(
                format!("{path}.image_url"),
                "an image must be given by URL (a file id cannot be sent here)",
            )),
        },
        _ => Err(TranslateError::unsupported(
            format!("{path}.type"),
            "only text and images can be sent to this route's deployment",
        )),
    }
}

/// A response's status and why it is incomplete, from a finish reason.
fn status_of(finish: Option<FinishReason>) -> (&'static str, Value) {
    match finish {
        Some(FinishReason::Length) => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(FinishReason::ContentFilter) => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

fn usage_value(usage: Option<TokenUsage>) -> Value {
    let u = usage.unwrap_or_default();
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens(),
    })
}

/// A response object: `status` and `output` as they are.
fn response_object(
    id: &str,
    model: &str,
    created_at: u64,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

/// `resp_` and an upstream id without its own prefixes (`chatcmpl-`
/// the gateway's chat translation put there, Anthropic's `msg_`).
fn response_id(upstream: &str) -> String {
    let core = upstream.strip_prefix("chatcmpl-").unwrap_or(upstream);
    format!("resp_{}", core.strip_prefix("msg_").unwrap_or(core))
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": if status == "completed" {
            json!([{"type": "output_text", "text": text, "annotations": []}])
        } else {
            json!([])
        },
    })
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

/// A whole chat completion as a response object (`model`: the route the
/// client named).
pub fn chat_to_response(chat: &ChatResponse, model: &str, created_at: u64) -> Value {
    let id = response_id(&chat.id);
    let choice = chat.choices.first();
    let mut output = Vec::new();
    if let Some(choice) = choice {
        let text = choice.message.content.as_deref().unwrap_or("");
        if !text.is_empty() {
            output.push(message_item(
                &format!("msg_{}", &id[5..]),
                text,
                "completed",
            ));
        }
        for (k, call) in choice.message.tool_calls.iter().flatten().enumerate() {
            output.push(call_item(
                &format!("fc_{}_{k}", &id[5..]),
                &call.id,
                &call.function.name,
                &call.function.arguments,
                "completed",
            ));
        }
    }
    let (status, incomplete) = status_of(choice.and_then(|c| c.finish_reason));
    let usage = chat.usage.as_ref().map(TokenUsage::from);
    response_object(
        &id,
        model,
        created_at,
        status,
        incomplete,
        output,
        usage_value(usage),
    )
}

/// An output item being streamed.
enum Open {
    Text {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// A chat completions stream (the gateway's own, from another relay) to a
/// Responses API client: `response.created`, each output item opened,
/// filled and closed with its typed events, then `response.completed` (or
/// `response.incomplete`) with the whole response and its usage, once the
/// chat stream's `[DONE]` is in.
pub struct ChatToResponses {
    parser: SseParser,
    model: String,
    created_at: u64,
    id: Option<String>,
    sequence: u64,
    open: Option<Open>,
    /// The chat tool call indexes seen (each is one output item).
    calls: Vec<u32>,
    output: Vec<Value>,
    finish: Option<FinishReason>,
    usage: Option<TokenUsage>,
    done: bool,
}

impl ChatToResponses {
    pub fn new(model: &str, created_at: u64) -> Self {
        Self {
            parser: SseParser::new(),
            model: model.to_owned(),
            created_at,
            id: None,
            sequence: 0,
            open: None,
            calls: Vec::new(),
            output: Vec::new(),
            finish: None,
            usage: None,
            done: false,
        }
    }

    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("resp_gateway")
    }

    fn suffix(&self) -> String {
        self.id()[5..].to_owned()
    }

    fn push(&mut self, out: &mut Vec<u8>, kind: &str, mut value: Value) {
        value["type"] = json!(kind);
        value["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        push_event(out, Some(kind), &value.to_string());
    }

    fn start(&mut self, out: &mut Vec<u8>, upstream_id: &str) {
        self.id = Some(response_id(upstream_id));
        let started = response_object(
            self.id(),
            &self.model,
            self.created_at,
            "in_progress",
            Value::Null,
            Vec::new(),
            Value::Null,
        );
        self.push(out, "response.created", json!({"response": started}));
        self.push(out, "response.in_progress", json!({"response": started}));
    }

    /// Closes the open item, if any, with its done events.
    fn close(&mut self, out: &mut Vec<u8>) {
        let index = self.output.len();
        match self.open.take() {
            None => {}
            Some(Open::Text { id, text }) => {
                let at = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                self.push(out, "response.output_text.done", done);
                let mut part = at;
                part["part"] = json!({"type": "output_text", "text": text, "annotations": []});
                self.push(out, "response.content_part.done", part);
                let item = message_item(&id, &text, "completed");
                self.push(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.output.push(item);
            }
            Some(Open::Call {
                id,
                call_id,
                name,
                arguments,
            }) => {
                self.push(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                );
                let item = call_item(&id, &call_id, &name, &arguments, "completed");
                self.push(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.output.push(item);
            }
        }
    }

    fn text(&mut self, out: &mut Vec<u8>, delta: &str) {
        if !matches!(self.open, Some(Open::Text { .. })) {
            self.close(out);
            let index = self.output.len();
            let id = format!("msg_{}_{index}", self.suffix());
            self.push(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": message_item(&id, "", "in_progress")}),
            );
            self.push(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            self.open = Some(Open::Text {
                id,
                text: String::new(),
            });
        }
        // The open item is the next output index.
        let index = self.output.len();
        let event = match &mut self.open {
            Some(Open::Text { id, text }) => {
                text.push_str(delta);
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "delta": delta, "logprobs": []})
            }
            _ => return,
        };
        self.push(out, "response.output_text.delta", event);
    }

    fn call(&mut self, out: &mut Vec<u8>, call: &openai::ToolCallDelta) {
        if !self.calls.contains(&call.index) {
            self.close(out);
            self.calls.push(call.index);
            let index = self.output.len();
            let id = format!("fc_{}_{index}", self.suffix());
            let call_id = call.id.clone().unwrap_or_else(|| format!("call_{index}"));
            let name = call
                .function
                .as_ref()
                .and_then(|f| f.name.clone())
                .unwrap_or_default();
            let item = call_item(&id, &call_id, &name, "", "in_progress");
            self.push(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.open = Some(Open::Call {
                id,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let fragment = call
            .function
            .as_ref()
            .and_then(|f| f.arguments.as_deref())
            .unwrap_or("");
        let index = self.output.len();
        let event = match &mut self.open {
            Some(Open::Call { id, arguments, .. }) if !fragment.is_empty() => {
                arguments.push_str(fragment);
                json!({"item_id": id, "output_index": index, "delta": fragment})
            }
            _ => return,
        };
        self.push(out, "response.function_call_arguments.delta", event);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.close(out);
        let (status, incomplete) = status_of(self.finish);
        let output = std::mem::take(&mut self.output);
        let response = response_object(
            self.id(),
            &self.model,
            self.created_at,
            status,
            incomplete,
            output,
            usage_value(self.usage),
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.push(out, kind, json!({"response": response}));
        self.done = true;
    }
}

impl StreamRelay for ChatToResponses {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        for event in self.parser.feed(bytes)? {
            if self.done {
                break;
            }
            let data = event.data.trim();
            if data == "[DONE]" {
                if self.id.is_none() {
                    self.start(out, "gateway");
                }
                self.finish(out);
                continue;
            }
            let chunk: openai::ChatChunk = serde_json::from_str(data)
                .map_err(|e| RelayError::Unreadable(format!("stream chunk: {e}")))?;
            if self.id.is_none() {
                self.start(out, &chunk.id);
            }
            if let Some(usage) = &chunk.usage {
                self.usage = Some(TokenUsage::from(usage));
            }
            let Some(choice) = chunk.choices.first() else {
                continue;
            };
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(out, text);
            }
            for call in choice.delta.tool_calls.iter().flatten() {
                self.call(out, call);
            }
            if choice.finish_reason.is_some() {
                self.finish = choice.finish_reason;
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
