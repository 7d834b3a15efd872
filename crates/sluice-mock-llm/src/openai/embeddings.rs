//! `POST /v1/embeddings`: deterministic unit vectors derived from a hash of
//! each input, as floats or, with `encoding_format: "base64"` (what the
//! official SDKs ask for by default), as little-endian f32 bytes in base64.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error;
use crate::body;
use crate::call::parse;
use crate::fault::Fault;
use crate::reply;
use crate::server::Mock;
use crate::stats::Endpoint;

#[derive(Debug, Deserialize)]
struct EmbeddingRequest {
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
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
    let call = mock.admit(Endpoint::Embeddings, headers).await?;
    let req: EmbeddingRequest = parse(body)?;
    mock.check_model(&req.model)?;
    let inputs = match req.input {
        Input::One(s) => vec![s],
        Input::Many(v) if v.is_empty() => {
            return Err(Fault::BadRequest {
                message: "input: must not be empty".into(),
                param: Some("input".into()),
            })
        }
        Input::Many(v) => v,
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Fault::BadRequest {
                message: format!("encoding_format: '{other}' is not one of 'float', 'base64'"),
                param: Some("encoding_format".into()),
            })
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = embed(input, mock.config.embedding_dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let prompt_tokens = reply::prompt_tokens(inputs.iter().map(String::as_str));
    let response = json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Ok(body::json(call, &response))
}

/// A unit vector of `dims` floats from an FNV-1a hash of `input`, stretched
/// with splitmix64: the same input always gives the same vector.
pub(crate) fn embed(input: &str, dims: usize) -> Vec<f32> {
    let mut state = input.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let raw: Vec<f32> = (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // Top 24 bits mapped onto [-1, 1).
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return raw;
    }
    raw.into_iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embed("hello", 8);
        assert_eq!(a, embed("hello", 8));
        assert_ne!(a, embed("hello!", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
