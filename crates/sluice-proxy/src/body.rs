//! Response bodies: a whole one, or an upstream stream relayed event by
//! event ([`RelayBody`]).
//!
//! A relayed stream is never buffered beyond one upstream read: each poll
//! feeds what the upstream sent to the [`StreamRelay`] and hands the events
//! it completed to hyper. When the client goes away hyper drops the body,
//! which drops the upstream response and so cancels the upstream request.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body::{Body, Frame, SizeHint};
use sluice_providers::{
    error_event, Dialect, Exchange, RelayError, StreamRelay, TokenUsage, UpstreamBody,
    UpstreamError,
};

use crate::metrics::{InFlight, StreamEnd};
use crate::quota::{Charge, Outcome};
use crate::usage::CallUsage;

/// Every response body the proxy sends.
pub enum ProxyBody {
    Full(Option<Bytes>),
    Relay(Box<RelayBody>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }

    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Relay(relay) => relay.poll_next_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Relay(relay) => relay.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Relay(_) => SizeHint::default(),
        }
    }
}

/// An upstream stream on its way to the client.
pub struct RelayBody {
    upstream: Option<UpstreamBody>,
    relay: Box<dyn StreamRelay>,
    exchange: Exchange,
    /// Output made before the response was committed (the first upstream
    /// bytes, read while a retry was still possible).
    pending: Option<Bytes>,
    ended: bool,
    failure: Option<&'static str>,
    /// Time spent waiting on the upstream body.
    upstream_wait: Duration,
    waiting_since: Option<Instant>,
    in_flight: Option<InFlight>,
    /// The `relay` span, below the request's: open while the stream is.
    span: Option<tracing::Span>,
    /// The request's quota reservation, settled by the stream's usage.
    charge: Option<Charge>,
    /// The call's usage entry, recorded with the stream's usage.
    call: Option<CallUsage>,
}

/// What [`RelayBody::start`] found in the first upstream bytes.
pub enum Start {
    /// The stream is healthy so far: send it.
    Ready(Box<RelayBody>),
    /// It failed before anything reached the client: the caller may retry.
    Failed {
        reason: String,
        retryable: bool,
        upstream_wait: Duration,
    },
}

impl RelayBody {
    /// Reads upstream bytes until the relay has something for the client
    /// (or the upstream fails), so that a failure this early can still be
    /// retried.
    pub async fn start(
        mut upstream: UpstreamBody,
        mut relay: Box<dyn StreamRelay>,
        exchange: Exchange,
    ) -> Start {
        let started = Instant::now();
        let mut out = Vec::new();
        loop {
            match upstream.next().await {
                Some(Ok(bytes)) => {
                    if let Err(e) = relay.feed(&bytes, &mut out) {
                        return Start::Failed {
                            reason: e.to_string(),
                            retryable: true,
                            upstream_wait: started.elapsed(),
                        };
                    }
                    if !out.is_empty() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    return Start::Failed {
                        reason: e.to_string(),
                        retryable: !matches!(e, UpstreamError::TotalTimeout { .. }),
                        upstream_wait: started.elapsed(),
                    }
                }
                None => {
                    return Start::Failed {
                        reason: RelayError::Truncated.to_string(),
                        retryable: true,
                        upstream_wait: started.elapsed(),
                    }
                }
            }
        }
        Start::Ready(Box::new(RelayBody {
            upstream: Some(upstream),
            relay,
            exchange,
            pending: Some(Bytes::from(out)),
            ended: false,
            failure: None,
            upstream_wait: started.elapsed(),
            waiting_since: None,
            in_flight: None,
            span: None,
            charge: None,
            call: None,
        }))
    }

    /// Records the request's end into `in_flight` when the body ends or is
    /// dropped.
    pub fn with_in_flight(mut self: Box<Self>, in_flight: InFlight) -> Box<Self> {
        self.span = Some(crate::trace::relay_span(in_flight.span()));
        self.in_flight = Some(in_flight);
        self
    }

    /// Settles `charge` with the stream's usage when the body ends or is
    /// dropped (a client that leaves keeps the estimate charged).
    pub fn with_charge(mut self: Box<Self>, charge: Option<Charge>) -> Box<Self> {
        self.charge = charge;
        self
    }

    /// Records the call's usage into `call` when the body ends or is
    /// dropped (a failed stream counts as an error; a client that left
    /// does not, and its usage is what was read before it left).
    pub fn with_usage(mut self: Box<Self>, call: Option<CallUsage>) -> Box<Self> {
        self.call = call;
        self
    }

    /// Time spent waiting on the upstream body so far.
    pub fn upstream_wait(&self) -> Duration {
        self.upstream_wait
    }

    fn poll_next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(bytes) = self.pending.take() {
            if let Some(in_flight) = &mut self.in_flight {
                in_flight.first_token();
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
            let polled = upstream.poll_next_unpin(cx);
            let now = Instant::now();
            let polled = match polled {
                Poll::Pending => {
                    if self.relay.is_done() {
                        // Everything the client needs is out; do not hold
                        // its end for the upstream's last framing bytes.
                        self.end(None);
                        continue;
                    }
                    self.waiting_since.get_or_insert(now);
                    return Poll::Pending;
                }
                Poll::Ready(polled) => polled,
            };
            if let Some(since) = self.waiting_since.take() {
                self.upstream_wait += now - since;
            }
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

    fn end(&mut self, failure: Option<&'static str>) {
        self.ended = true;
        self.failure = failure;
        self.upstream = None;
        self.record();
    }

    fn record(&mut self) {
        if let Some(charge) = self.charge.take() {
            charge.finish(Outcome::Answered(self.relay.usage()));
        }
        if let Some(call) = self.call.take() {
            call.finish(self.failure.is_some(), self.relay.usage());
        }
        if let Some(in_flight) = self.in_flight.take() {
            let end = match (self.ended, self.failure) {
                (false, _) => StreamEnd::ClientGone,
                (true, None) => StreamEnd::Completed,
                (true, Some(reason)) => StreamEnd::Failed(reason),
            };
            in_flight.finish_stream(end, self.relay.usage());
        }
        self.span = None;
    }

    /// Usage the relay has read so far.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.relay.usage()
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        self.record();
    }
}

type Described = (&'static str, Option<String>, String);

fn describe_relay(e: RelayError) -> Described {
    match e {
        RelayError::Upstream { kind, message } => ("upstream_error_event", Some(kind), message),
        RelayError::Truncated => (
            "upstream_truncated",
            None,
            "The upstream stream ended before it was complete.".into(),
        ),
        RelayError::Unreadable(reason) => (
            "upstream_unreadable",
            None,
            format!("The upstream sent an unreadable stream: {reason}"),
        ),
    }
}

fn describe_upstream(e: &UpstreamError) -> Described {
    if e.is_timeout() {
        (
            "upstream_timeout",
            None,
            format!("The upstream timed out mid-stream: {e}"),
        )
    } else {
        (
            "upstream_failed",
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
