//! Google's Gemini API: `POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse` and `:batchEmbedContents`, with the
//! same deterministic replies, pacing and injected failures as the other
//! APIs, the key checked in `x-goog-api-key` (or `?key=`), and errors in
//! Gemini's shape: `{"error": {"code", "message", "status"}}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::call::parse;
use crate::fault::Fault;
use crate::openai::embeddings::embed;
use crate::reply::{self, Reply, Text, ToolCall};
use crate::server::Mock;
use crate::stats::Endpoint;
use crate::{body, sse};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest {
    contents: Vec<Content>,
    #[serde(default)]
    system_instruction: Option<Content>,
    #[serde(default)]
    tools: Vec<Tools>,
    #[serde(default)]
    tool_config: Option<Value>,
    #[serde(default)]
    generation_config: GenerationConfig,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(default)]
    role: Option<String>,
    parts: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tools {
    #[serde(default)]
    function_declarations: Vec<Declaration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Declaration {
    name: String,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    parameters_json_schema: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(default)]
    max_output_tokens: Option<u32>,
}

/// `POST /v1beta/models/{model}:{method}`.
pub(crate) async fn handle(
    State(mock): State<Arc<Mock>>,
    Path(target): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Gemini takes its key in `x-goog-api-key` or `?key=`, nowhere else.
    let mut headers = headers;
    for other in ["authorization", "x-api-key", "api-key"] {
        headers.remove(other);
    }
    if let Some(key) = query.get("key").and_then(|k| k.parse().ok()) {
        headers.insert("x-goog-api-key", key);
    }
    serve(&mock, &target, &query, headers, &body).await
}

/// `target` (`{model}:{method}`) answered as the Gemini API does (Vertex
/// AI too, once its token is checked).
pub(crate) async fn serve(
    mock: &Mock,
    target: &str,
    query: &HashMap<String, String>,
    headers: HeaderMap,
    body: &[u8],
) -> Response {
    let Some((model, method)) = target.split_once(':') else {
        return render(&Fault::NotFound {
            message: format!("models/{target} is not a model method"),
            param: None,
        });
    };
    let endpoint = match method {
        "generateContent" => Endpoint::GenerateContent,
        "streamGenerateContent" => Endpoint::StreamGenerateContent,
        "batchEmbedContents" => Endpoint::BatchEmbedContents,
        "predict" => Endpoint::Predict,
        _ => {
            return render(&Fault::NotFound {
                message: format!("method {method} not found"),
                param: None,
            })
        }
    };
    let answered = match endpoint {
        Endpoint::BatchEmbedContents => embed_contents(mock, &headers, model, body).await,
        Endpoint::Predict => predict(mock, &headers, model, body).await,
        _ => generate(mock, endpoint, &headers, model, body, query).await,
    };
    answered.unwrap_or_else(|fault| render(&fault))
}

async fn generate(
    mock: &Mock,
    endpoint: Endpoint,
    headers: &HeaderMap,
    model: &str,
    body: &[u8],
    query: &HashMap<String, String>,
) -> Result<Response, Fault> {
    let call = mock.admit(endpoint, headers).await?;
    let req: GenerateRequest = parse(body)?;
    mock.check_model(model)?;
    if req.contents.is_empty() {
        return Err(Fault::BadRequest {
            message: "contents is not specified".into(),
            param: Some("contents".into()),
        });
    }
    let text_of = |content: &Content| -> String {
        content
            .parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut texts: Vec<String> = req.contents.iter().map(text_of).collect();
    if let Some(system) = &req.system_instruction {
        texts.push(text_of(system));
    }
    let prompt_tokens = reply::prompt_tokens(texts.iter().map(String::as_str));
    let last_user = req
        .contents
        .iter()
        .zip(&texts)
        .rev()
        .find(|(c, t)| c.role.as_deref() != Some("model") && !t.is_empty())
        .map_or("", |(_, t)| t.as_str());
    // A conversation that ends with function results is answered in text.
    let answered = req
        .contents
        .last()
        .is_some_and(|c| c.parts.iter().any(|p| p.get("functionResponse").is_some()));
    let mode = req
        .tool_config
        .as_ref()
        .and_then(|c| c.pointer("/functionCallingConfig/mode"))
        .and_then(Value::as_str);
    let tool = req
        .tools
        .iter()
        .flat_map(|t| &t.function_declarations)
        .next()
        .filter(|_| !answered && mode != Some("NONE"));
    let id = mock.next_id();
    let reply = match tool {
        Some(tool) => Reply::Tool(ToolCall::new(
            String::new(),
            &tool.name,
            tool.parameters_json_schema
                .as_ref()
                .or(tool.parameters.as_ref())
                .unwrap_or(&Value::Null),
            last_user,
        )),
        None => Reply::Text(Text::new(
            model,
            last_user,
            req.generation_config.max_output_tokens,
        )),
    };
    let completion_tokens = reply.completion_tokens();
    let usage = |candidates: u32| {
        json!({
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt_tokens + candidates,
        })
    };
    let finish = match &reply {
        Reply::Text(t) if t.cut => "MAX_TOKENS",
        _ => "STOP",
    };
    let response_id = format!("mock{id}");
    let event = |parts: Value, finish: Option<&str>, candidates: u32| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage(candidates),
            "modelVersion": model,
            "responseId": response_id,
        })
    };
    if endpoint == Endpoint::GenerateContent {
        let parts = match &reply {
            Reply::Text(t) => json!([{"text": t.content()}]),
            Reply::Tool(c) => json!([{"functionCall": {"name": c.name, "args": c.input()}}]),
        };
        return Ok(body::json(
            call,
            &event(parts, Some(finish), completion_tokens),
        ));
    }
    if query.get("alt").map(String::as_str) != Some("sse") {
        return Err(Fault::BadRequest {
            message: "this mock streams only with alt=sse".into(),
            param: Some("alt".into()),
        });
    }
    let mut events = Vec::new();
    match &reply {
        Reply::Text(t) => {
            let last = t.pieces.len().saturating_sub(1);
            for (i, piece) in t.pieces.iter().enumerate() {
                let finish = (i == last).then_some(finish);
                events.push(sse::data(&event(
                    json!([{"text": piece}]),
                    finish,
                    (i + 1) as u32,
                )));
            }
            if t.pieces.is_empty() {
                events.push(sse::data(&event(json!([{"text": ""}]), Some(finish), 0)));
            }
        }
        // Gemini sends a function call whole, in one event.
        Reply::Tool(c) => events.push(sse::data(&event(
            json!([{"functionCall": {"name": c.name, "args": c.input()}}]),
            Some(finish),
            completion_tokens,
        ))),
    }
    Ok(body::event_stream(call, events))
}

#[derive(Debug, Deserialize)]
struct BatchRequest {
    requests: Vec<EmbedRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest {
    model: String,
    content: Content,
    #[serde(default)]
    output_dimensionality: Option<usize>,
}

async fn embed_contents(
    mock: &Mock,
    headers: &HeaderMap,
    model: &str,
    body: &[u8],
) -> Result<Response, Fault> {
    let call = mock.admit(Endpoint::BatchEmbedContents, headers).await?;
    let req: BatchRequest = parse(body)?;
    mock.check_model(model)?;
    let mut embeddings = Vec::with_capacity(req.requests.len());
    for (i, request) in req.requests.iter().enumerate() {
        if request.model != format!("models/{model}") {
            return Err(Fault::BadRequest {
                message: format!(
                    "requests[{i}].model {} does not match models/{model}",
                    request.model
                ),
                param: Some(format!("requests[{i}].model")),
            });
        }
        let text: Vec<&str> = request
            .content
            .parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let dims = request
            .output_dimensionality
            .unwrap_or(mock.config.embedding_dims);
        embeddings.push(json!({"values": embed(&text.join(" "), dims)}));
    }
    Ok(body::json(call, &json!({ "embeddings": embeddings })))
}

#[derive(Debug, Deserialize)]
struct PredictRequest {
    instances: Vec<Instance>,
    #[serde(default)]
    parameters: PredictParameters,
}

/// One text (its `task_type`, when sent, changes nothing here).
#[derive(Debug, Deserialize)]
struct Instance {
    content: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PredictParameters {
    #[serde(default)]
    output_dimensionality: Option<usize>,
}

/// Vertex AI's embeddings: `:predict` with one instance per text, each
/// answered with its vector and its token count.
async fn predict(
    mock: &Mock,
    headers: &HeaderMap,
    model: &str,
    body: &[u8],
) -> Result<Response, Fault> {
    let call = mock.admit(Endpoint::Predict, headers).await?;
    let req: PredictRequest = parse(body)?;
    mock.check_model(model)?;
    if req.instances.is_empty() || req.instances.len() > 250 {
        return Err(Fault::BadRequest {
            message: "instances must hold 1-250 texts".into(),
            param: Some("instances".into()),
        });
    }
    let dims = req
        .parameters
        .output_dimensionality
        .unwrap_or(mock.config.embedding_dims);
    let predictions: Vec<Value> = req
        .instances
        .iter()
        .map(|instance| {
            json!({"embeddings": {
                "values": embed(&instance.content, dims),
                "statistics": {
                    "token_count": reply::prompt_tokens([instance.content.as_str()]),
                    "truncated": false,
                },
            }})
        })
        .collect();
    let characters: usize = req.instances.iter().map(|i| i.content.len()).sum();
    Ok(body::json(
        call,
        &json!({"predictions": predictions, "metadata": {"billableCharacterCount": characters}}),
    ))
}

/// A fault in Gemini's error shape.
pub(crate) fn render(fault: &Fault) -> Response {
    let status = fault.status();
    let (message, kind) = match fault {
        Fault::BadRequest { message, .. } => (message.clone(), "INVALID_ARGUMENT"),
        Fault::MissingKey => (
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.".to_owned(),
            "PERMISSION_DENIED",
        ),
        Fault::WrongKey => (
            "API key not valid. Please pass a valid API key.".to_owned(),
            "INVALID_ARGUMENT",
        ),
        Fault::ModelNotFound { model } => (
            format!("models/{model} is not found for API version v1beta, or is not supported for generateContent."),
            "NOT_FOUND",
        ),
        Fault::NotFound { message, .. } => (message.clone(), "NOT_FOUND"),
        Fault::Injected { status, .. } => (
            format!("sluice-mock-llm: injected {status} failure"),
            match status {
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                500.. => "INTERNAL",
                _ => "INVALID_ARGUMENT",
            },
        ),
    };
    // Google answers a missing key with 403 and a wrong one with 400.
    let status = match fault {
        Fault::MissingKey => axum::http::StatusCode::FORBIDDEN,
        Fault::WrongKey => axum::http::StatusCode::BAD_REQUEST,
        _ => status,
    };
    let mut body = json!({"error": {"code": status.as_u16(), "message": message, "status": kind}});
    if matches!(fault, Fault::WrongKey) {
        body["error"]["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
        }]);
    }
    let mut response = (status, Json(body)).into_response();
    for (name, value) in fault.retry_headers().into_iter().flatten() {
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(axum::http::HeaderName::from_static(name), value);
        }
    }
    response
}
