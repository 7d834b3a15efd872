//! Request extractors whose every rejection is an [`ApiError`].
//!
//! axum's own `Json`, `Path` and `Query` answer bad input with plain text; the
//! admin API promises its JSON error shape for every failure, and field paths
//! for every validation error, so handlers use these instead.

use crate::error::{ApiError, ErrorKind};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;
use sluice_raft::Consistency;
use std::time::Duration;

/// Largest request body the admin API accepts.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// A JSON request body. Requires `Content-Type: application/json`; malformed
/// JSON is a 400, JSON of the wrong shape a 422 naming the field
/// (`deployments[0].weight`), a body over [`BODY_LIMIT_BYTES`] a 413.
#[derive(Debug, Clone)]
pub struct AdminJson<T>(pub T);

impl<S, T> FromRequest<S> for AdminJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::invalid_request(
                "expected a JSON body with `Content-Type: application/json`",
            ));
        }
        let bytes = read_body(req, state, BODY_LIMIT_BYTES).await?;
        parse_json(&bytes).map(AdminJson)
    }
}

/// The whole body of `req`, at most `limit` bytes (a larger one is a 413),
/// within [`body_deadline`] (a slower one is a 408 and the connection is
/// not reused); any other failure to read it is a 400.
pub(crate) async fn read_body<S: Send + Sync>(
    req: Request,
    _state: &S,
    limit: usize,
) -> Result<Bytes, ApiError> {
    read_whole(req.into_body(), limit, body_deadline(limit)).await
}

/// How long a body of up to `limit` bytes may take to arrive: 30 s, plus a
/// second per MiB of the limit (31 s for JSON, under 5 min for a backup),
/// so a client that trickles a body cannot hold a connection for long.
pub(crate) fn body_deadline(limit: usize) -> Duration {
    Duration::from_secs(30 + (limit / (1024 * 1024)) as u64)
}

/// `body`, read whole: at most `limit` bytes, within `deadline`.
pub(crate) async fn read_whole(
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let read = axum::body::to_bytes(body, limit);
    let Ok(read) = tokio::time::timeout(deadline, read).await else {
        return Err(ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                deadline.as_secs()
            ),
        ));
    };
    read.map_err(|e| {
        let e = e.into_inner();
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!("request body is larger than {limit} bytes"),
            )
        } else {
            ApiError::invalid_request(format!("cannot read request body: {e}"))
        }
    })
}

fn is_json_content_type(value: Option<&header::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a whole JSON document into `T`, classifying failures as the admin
/// API reports them.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first: a body that is not JSON at all is a 400, even when its
    // beginning would already fail the shape check.
    let document: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::invalid_request(format!("malformed JSON: {err}")))?;
    serde_path_to_error::deserialize(document).map_err(|err| {
        let path = err.path().to_string();
        json_error(&path, err.into_inner())
    })
}

fn json_error(path: &str, err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::invalid_request(format!("malformed JSON: {err}"))
        }
        Category::Data => {
            let message = strip_position(&err);
            // serde names the unknown or missing field in the message, not in
            // the path; the path is that of the enclosing object.
            let named = quoted_after(&message, "unknown field `")
                .or_else(|| quoted_after(&message, "missing field `"));
            let field = match (path, named) {
                ("." | "", Some(name)) => name.to_string(),
                (parent, Some(name)) if !parent.ends_with(name) => format!("{parent}.{name}"),
                ("." | "", None) => String::new(),
                (path, _) => path.to_string(),
            };
            if field.is_empty() {
                ApiError::new(ErrorKind::Validation, message)
            } else {
                ApiError::validation(field, message)
            }
        }
    }
}

/// serde_json appends " at line L column C" to data errors; the field path
/// says more than the position.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    rest.split('`').next()
}

/// A path parameter (percent-decoded, so a route named `meta-llama/Llama-3`
/// is addressed as `meta-llama%2FLlama-3`).
#[derive(Debug, Clone)]
pub struct AdminPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AdminPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(AdminPath(value)),
            Err(rejection) if rejection.status().is_client_error() => {
                Err(ApiError::invalid_request(format!(
                    "invalid path parameter: {}",
                    rejection.body_text()
                )))
            }
            Err(rejection) => Err(ApiError::internal(rejection.body_text())),
        }
    }
}

/// A query string's pairs, percent-decoded, in order, as given (a query
/// that is not `application/x-www-form-urlencoded` is a 400).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawQuery(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for RawQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| RawQuery(q.0))
            .map_err(|e| {
                ApiError::invalid_request(format!("invalid query string: {}", e.body_text()))
            })
    }
}

/// The query string of admin reads: `?consistency=linearizable|stale`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// `linearizable` (default): confirmed with a quorum, sees every write
    /// acknowledged before the read started. `stale`: whatever this node has
    /// applied, answered without a cluster round trip.
    #[param(inline)]
    pub consistency: Option<ReadConsistency>,
}

/// How fresh an admin read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ReadConsistency {
    #[default]
    Linearizable,
    Stale,
}

impl ReadParams {
    pub fn consistency(&self) -> Consistency {
        match self.consistency.unwrap_or_default() {
            ReadConsistency::Linearizable => Consistency::Linearizable,
            ReadConsistency::Stale => Consistency::Stale,
        }
    }
}

impl ReadParams {
    /// Parses `consistency=linearizable|stale`; any other parameter or value
    /// is a 422 naming it.
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut params = ReadParams::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (name, value) {
                ("consistency", "linearizable") => {
                    params.consistency = Some(ReadConsistency::Linearizable)
                }
                ("consistency", "stale") => params.consistency = Some(ReadConsistency::Stale),
                ("consistency", _) => {
                    return Err(ApiError::validation(
                        "consistency",
                        "must be `linearizable` or `stale`",
                    ))
                }
                (name, _) => {
                    return Err(ApiError::validation(
                        name,
                        "unknown query parameter (expected `consistency`)",
                    ))
                }
            }
        }
        Ok(params)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReadParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        ReadParams::parse(parts.uri.query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::StreamExt;

    /// A body that sends `first` and then nothing, never ending.
    fn trickle(first: &'static [u8]) -> axum::body::Body {
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(first))])
            .chain(futures::stream::pending());
        axum::body::Body::from_stream(chunks)
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_a_408_by_its_deadline() {
        let deadline = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let err = read_whole(trickle(b"{\"name\":"), 1024, deadline)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RequestTimeout, "{err:?}");
        assert_eq!(err.kind.status(), axum::http::StatusCode::REQUEST_TIMEOUT);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Too large is still a 413, and a whole body is read.
        let err = read_whole(axum::body::Body::from(vec![b'x'; 2048]), 1024, deadline)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PayloadTooLarge);
        let ok = read_whole(axum::body::Body::from("{}"), 1024, deadline)
            .await
            .unwrap();
        assert_eq!(&ok[..], b"{}");
    }

    #[test]
    fn body_deadlines_grow_with_the_limit() {
        assert_eq!(body_deadline(BODY_LIMIT_BYTES), Duration::from_secs(31));
        let backup = body_deadline(crate::backup::BACKUP_LIMIT_BYTES);
        assert!(backup > Duration::from_secs(60) && backup < Duration::from_secs(300));
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        deployments: Vec<Dep>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Dep {
        weight: u32,
    }

    fn err(json: &str) -> ApiError {
        parse_json::<Body>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn malformed_json_is_invalid_request() {
        assert_eq!(err("{\"name\":").kind, ErrorKind::InvalidRequest);
        assert_eq!(err("not json").kind, ErrorKind::InvalidRequest);
        assert_eq!(
            err("{\"name\":\"a\",\"deployments\":[]} x").kind,
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn wrong_types_name_the_field_path() {
        let e = err(r#"{"name":"a","deployments":[{"weight":"heavy"}]}"#);
        assert_eq!(e.kind, ErrorKind::Validation);
        assert_eq!(e.field.as_deref(), Some("deployments[0].weight"));
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = err(r#"{"name":"a","deployments":[],"colour":1}"#);
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Validation, Some("colour"))
        );
        let e = err(r#"{"name":"a","deployments":[{"weight":1,"extra":2}]}"#);
        assert_eq!(e.field.as_deref(), Some("deployments[0].extra"));
        let e = err(r#"{"deployments":[]}"#);
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = err(r#"{"name":"a","deployments":[{}]}"#);
        assert_eq!(e.field.as_deref(), Some("deployments[0].weight"));
        assert!(!e.message.contains("line"), "{}", e.message);
    }

    #[test]
    fn read_params() {
        assert_eq!(
            ReadParams::parse(None).unwrap().consistency(),
            Consistency::Linearizable
        );
        assert_eq!(
            ReadParams::parse(Some("consistency=stale"))
                .unwrap()
                .consistency(),
            Consistency::Stale
        );
        assert_eq!(
            ReadParams::parse(Some("consistency=linearizable"))
                .unwrap()
                .consistency(),
            Consistency::Linearizable
        );
        let err = ReadParams::parse(Some("consistency=weird")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("consistency"));
        let err = ReadParams::parse(Some("limit=5")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("limit"));
    }

    #[test]
    fn content_types() {
        let ok = |v: &'static str| is_json_content_type(Some(&header::HeaderValue::from_static(v)));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!is_json_content_type(None));
    }
}
