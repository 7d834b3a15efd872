//! `POST /v1/completions`, the legacy `text_completion` API, streaming and
//! not. One choice per prompt string; `max_tokens` defaults to 16 as in the
//! real API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, now, usage, StreamOptions};
use crate::call::parse;
use crate::fault::Fault;
use crate::reply::{self, Text};
use crate::server::Mock;
use crate::stats::Endpoint;
use crate::{body, sse};

const DEFAULT_MAX_TOKENS: u32 = 16;

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    #[serde(default)]
    prompt: Prompt,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::One("<|endoftext|>".into())
    }
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
    let call = mock.admit(Endpoint::Completions, headers).await?;
    let req: CompletionRequest = parse(body)?;
    mock.check_model(&req.model)?;
    let prompts = match req.prompt {
        Prompt::One(p) => vec![p],
        Prompt::Many(ps) => ps,
    };
    let prompt_tokens = reply::prompt_tokens(prompts.iter().map(String::as_str));
    let max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let replies: Vec<Text> = prompts
        .iter()
        .map(|p| Text::new(&req.model, p, Some(max_tokens)))
        .collect();
    let completion_tokens: u32 = replies.iter().map(|t| t.pieces.len() as u32).sum();
    let id = format!("cmpl-mock{}", mock.next_id());
    let created = now();
    let object = |choices: Value| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": req.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    };
    let finish = |t: &Text| if t.cut { "length" } else { "stop" };

    if !req.stream.unwrap_or(false) {
        let choices: Vec<Value> = replies
            .iter()
            .enumerate()
            .map(|(index, t)| {
                json!({"text": t.content(), "index": index, "logprobs": null, "finish_reason": finish(t)})
            })
            .collect();
        let mut completion = object(Value::Array(choices));
        completion["usage"] = usage(prompt_tokens, completion_tokens);
        return Ok(body::json(call, &completion));
    }

    let include_usage = StreamOptions::include_usage(&req.stream_options);
    let chunk = |index: usize, text: &str, finish_reason: Option<&str>| {
        let mut chunk = object(json!([
            {"text": text, "index": index, "logprobs": null, "finish_reason": finish_reason}
        ]));
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        sse::data(&chunk)
    };
    let mut events = Vec::new();
    for (index, t) in replies.iter().enumerate() {
        for piece in &t.pieces {
            events.push(chunk(index, piece, None));
        }
        events.push(chunk(index, "", Some(finish(t))));
    }
    if include_usage {
        let mut last = object(json!([]));
        last["usage"] = usage(prompt_tokens, completion_tokens);
        events.push(sse::data(&last));
    }
    events.push(sse::done());
    Ok(body::event_stream(call, events))
}
