//! Phase 2, parse: the body, read under `[limits] max_body_bytes` and the
//! slow-client deadline, and parsed once for the endpoint
//! ([`ClientRequest`]); every deployment tried is prepared from it.

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sluice_providers::{ClientRequest, Endpoint};

use crate::error::ProxyError;
use crate::ProxyConfig;

/// `request`'s body, parsed for `endpoint`. A failure while reading leaves
/// the body unread (the connection cannot carry another request).
pub(crate) async fn request(
    config: &ProxyConfig,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Result<ClientRequest, ProxyError> {
    let (parts, body) = request.into_parts();
    let bytes = read_body(config, &parts.headers, body)
        .await
        .map_err(ProxyError::body_unread)?;
    ClientRequest::parse(endpoint, &bytes, &parts.headers)
        .map_err(|e| ProxyError::invalid_request(e.message, e.param))
}

/// The request body, under the size limit and the slow-client deadline.
async fn read_body(
    config: &ProxyConfig,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Bytes, ProxyError> {
    let limit = config.max_body_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::body_too_large(limit));
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(config.body_read_timeout, collect).await {
        Err(_) => Err(ProxyError::body_timeout(config.body_read_timeout)),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::body_too_large(limit))
        }
        Ok(Err(e)) => Err(ProxyError::body_unreadable(e)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
