//! Phase 7, relay: an upstream's successful answer in the client's API. A
//! whole answer is read (under `[limits] max_response_bytes`) and converted;
//! a stream goes out event by event ([`RelayBody`]).
//!
//! A relayed stream is never buffered beyond one upstream read: each poll
//! feeds what the upstream sent to the [`StreamRelay`] and hands the events
//! it completed to hyper. Its first events are read before the answer is
//! committed, so a stream that fails that early is tried elsewhere; one
//! that fails later ends with an in-stream error event, never a
//! clean-looking end. The body owns the request's context and finishes it
//! when the stream ends, or when the client goes away (hyper drops the
//! body, which drops the upstream response and so cancels the upstream
//! request).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body::{Body, Frame};
use sluice_providers::{
    convert_response, error_event, stream_relay, ClientRequest, Dialect, Endpoint, Exchange,
    RelayError, StreamRelay, UpstreamBody, UpstreamError, UpstreamResponse,
};

use super::finish::Outcome;
use super::{Answer, RequestCtx};
use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::error::ProxyError;
use crate::metrics::{StreamEnd, StreamFailure};
use crate::worker::Worker;

/// Why a successful answer could not be relayed.
pub(crate) struct Unrelayable {
    pub error: ProxyError,
    /// Whether another deployment may be tried.
    pub elsewhere: bool,
}

impl Unrelayable {
    fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>, elsewhere: bool) -> Self {
        Self {
            error: ProxyError::upstream_failed(cause),
            elsewhere,
        }
    }
}

/// The answer to relay from `response`, an upstream's success to
/// `exchange`: a stream once its first events are in, or the whole answer
/// converted.
pub(crate) async fn answer(
    worker: &Worker,
    ctx: &mut RequestCtx,
    request: &ClientRequest,
    exchange: Exchange,
    response: UpstreamResponse,
) -> Result<Answer, Unrelayable> {
    let created = now_ms() / 1000;
    if exchange.stream {
        let relay = stream_relay(&exchange, &request.model, created);
        let started = Instant::now();
        let started_stream = RelayBody::start(response.body, relay, exchange).await;
        ctx.add_upstream_wait(started.elapsed());
        return started_stream.map(Answer::Stream);
    }
    let read_at = Instant::now();
    let body = response
        .body
        .collect(worker.config.max_response_bytes)
        .await;
    ctx.add_upstream_wait(read_at.elapsed());
    // A broken or unreadable answer is tried elsewhere, whatever broke it.
    let body = body.map_err(|e| Unrelayable::new(e, true))?;
    let (body, usage) = convert_response(&exchange, body, &request.model, created)
        .map_err(|e| Unrelayable::new(e, true))?;
    let counted_by = (exchange.endpoint == Endpoint::CountTokens).then_some("upstream");
    Ok(Answer::Whole {
        body,
        usage,
        counted_by,
    })
}

/// An upstream stream on its way to the client.
pub(crate) struct RelayBody {
    upstream: Option<UpstreamBody>,
    relay: Box<dyn StreamRelay>,
    exchange: Exchange,
    /// Output made before the response was committed (the first upstream
    /// bytes, read while a retry was still possible).
    pending: Option<Bytes>,
    ended: bool,
    failure: Option<StreamFailure>,
    /// The request's context, finished when the stream ends or is dropped.
    ctx: Option<RequestCtx>,
    /// The `relay` span, below the request's: open while the stream is.
    span: Option<tracing::Span>,
}

impl RelayBody {
    /// Reads upstream bytes until the relay has something for the client
    /// (or the upstream fails), so that a failure this early can still be
    /// retried.
    async fn start(
        mut upstream: UpstreamBody,
        mut relay: Box<dyn StreamRelay>,
        exchange: Exchange,
    ) -> Result<Box<Self>, Unrelayable> {
        let mut out = Vec::new();
        loop {
            match upstream.next().await {
                Some(Ok(bytes)) => {
                    relay
                        .feed(&bytes, &mut out)
                        .map_err(|e| Unrelayable::new(e, true))?;
                    if !out.is_empty() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    let elsewhere = !matches!(e, UpstreamError::TotalTimeout { .. });
                    return Err(Unrelayable::new(e, elsewhere));
                }
                None => return Err(Unrelayable::new(RelayError::Truncated, true)),
            }
        }
        Ok(Box::new(RelayBody {
            upstream: Some(upstream),
            relay,
            exchange,
            pending: Some(Bytes::from(out)),
            ended: false,
            failure: None,
            ctx: None,
            span: None,
        }))
    }

    /// The stream's response (`text/event-stream`); `ctx` is finished when
    /// the stream ends, or when the client goes away.
    pub(crate) fn respond(mut self: Box<Self>, ctx: RequestCtx) -> Response<ProxyBody> {
        self.span = ctx.span().map(crate::trace::relay_span);
        self.ctx = Some(ctx);
        let mut response = Response::new(ProxyBody::Stream(Box::into_pin(self)));
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Asks a buffering reverse proxy in front (nginx) to pass events on
        // as they come.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }

    fn poll_next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(bytes) = self.pending.take() {
            if let Some(ctx) = &mut self.ctx {
                ctx.first_token();
            }
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            let Some(upstream) = self.upstream.as_mut() else {
                self.end(None);
                continue;
            };
            let polled = match upstream.poll_next_unpin(cx) {
                Poll::Pending => {
                    if self.relay.is_done() {
                        // Everything the client needs is out; do not hold
                        // its end for the upstream's last framing bytes.
                        self.end(None);
                        continue;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(polled) => polled,
            };
            let mut out = Vec::new();
            let failed = match polled {
                Some(Ok(bytes)) if self.relay.is_done() => {
                    // Bytes after the end marker are not the client's.
                    drop(bytes);
                    None
                }
                Some(Ok(bytes)) => self.relay.feed(&bytes, &mut out).err().map(describe_relay),
                Some(Err(e)) => Some(describe_upstream(&e)),
                None => match self.relay.finish() {
                    Ok(()) => {
                        self.end(None);
                        None
                    }
                    Err(e) => Some(describe_relay(e)),
                },
            };
            if let Some((failure, kind, message)) = failed {
                let dialect = self.exchange.endpoint.dialect();
                let kind = kind
                    .filter(|_| Dialect::of(self.exchange.kind) == dialect)
                    .unwrap_or_else(|| generic_kind(dialect).to_owned());
                out.extend_from_slice(&error_event(dialect, &kind, &message));
                self.end(Some(failure));
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
    }

    fn end(&mut self, failure: Option<StreamFailure>) {
        self.ended = true;
        self.failure = failure;
        self.upstream = None;
        self.finish();
    }

    /// Finishes the request: completed, failed, or (not ended) left by
    /// its client, with the usage read so far.
    fn finish(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            let end = match (self.ended, self.failure) {
                (false, _) => StreamEnd::ClientGone,
                (true, None) => StreamEnd::Completed,
                (true, Some(failure)) => StreamEnd::Failed(failure),
            };
            ctx.finish(Outcome::Streamed {
                end,
                usage: self.relay.usage(),
            });
        }
        self.span = None;
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut().poll_next_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        self.finish();
    }
}

type Described = (StreamFailure, Option<String>, String);

fn describe_relay(e: RelayError) -> Described {
    match e {
        RelayError::Upstream { kind, message } => (StreamFailure::ErrorEvent, Some(kind), message),
        RelayError::Truncated => (
            StreamFailure::Truncated,
            None,
            "The upstream stream ended before it was complete.".into(),
        ),
        RelayError::Unreadable(reason) => (
            StreamFailure::Unreadable,
            None,
            format!("The upstream sent an unreadable stream: {reason}"),
        ),
    }
}

fn describe_upstream(e: &UpstreamError) -> Described {
    if e.is_timeout() {
        (
            StreamFailure::Timeout,
            None,
            format!("The upstream timed out mid-stream: {e}"),
        )
    } else {
        (
            StreamFailure::Failed,
            None,
            format!("The upstream connection failed mid-stream: {e}"),
        )
    }
}

/// The catch-all error type of a dialect.
fn generic_kind(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => "server_error",
        Dialect::Anthropic => "api_error",
    }
}
