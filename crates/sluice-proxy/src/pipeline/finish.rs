//! Phase 8, finish: the response, and the request's bookkeeping settled in
//! one place, once, whatever the [`Outcome`]:
//!
//! | outcome | quota charge | usage entry | metrics |
//! |---|---|---|---|
//! | [`Answered`](Outcome::Answered) 2xx | its usage (the standings are read again after) | its usage | status, tokens, cost |
//! | [`Answered`](Outcome::Answered) error passed on | the request, no tokens (read again after) | an error | status |
//! | [`Failed`](Outcome::Failed) | the request, no tokens | an error | status |
//! | [`Streamed`](Outcome::Streamed) | the usage read (none: the estimate stays) | the usage read; an error if the upstream failed | stream end, tokens, cost |
//! | [`Abandoned`](Outcome::Abandoned) | the estimate stays charged | an error | 499 |
//!
//! A request whose future is dropped before its answer started (the client
//! went away, the connection broke) is abandoned by `Drop`; a stream
//! dropped before its end is finished by its body as `client_gone`.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use sluice_providers::TokenUsage;

use super::context::Trackers;
use super::{Answer, RequestCtx};
use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::error::respond::respond;
use crate::error::{ErrorKind, ProxyError};
use crate::metrics::StreamEnd;
use crate::quota::{self, Settlement};

/// How a request ended, for its bookkeeping.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// The upstream's whole answer went out with `status`: a success, or
    /// its error passed on.
    Answered {
        status: StatusCode,
        usage: Option<TokenUsage>,
    },
    /// The gateway answered `status` itself, with no upstream answer (a
    /// refusal, or upstreams that failed).
    Failed { status: StatusCode },
    /// A streamed answer ended.
    Streamed {
        end: StreamEnd,
        usage: Option<TokenUsage>,
    },
    /// The client went away before the answer started.
    Abandoned,
}

impl RequestCtx {
    /// The response to `answer`, with the rate-limit headers. A whole
    /// answer or an error finishes the request here; a stream finishes it
    /// when it ends.
    pub(crate) fn respond(mut self, answer: Result<Answer, ProxyError>) -> Response<ProxyBody> {
        let dialect = self.endpoint.dialect();
        let (mut response, quota) = match answer {
            Ok(Answer::Whole {
                body,
                usage,
                counted_by,
            }) => {
                self.settle(Outcome::Answered {
                    status: StatusCode::OK,
                    usage,
                });
                let mut response = whole(body);
                if let Some(counted_by) = counted_by {
                    response
                        .headers_mut()
                        .insert("x-sluice-token-count", HeaderValue::from_static(counted_by));
                }
                (response, self.quota)
            }
            Ok(Answer::Stream(relay)) => {
                self.first_byte(StatusCode::OK.as_u16());
                let quota = self.quota;
                (relay.respond(self), quota)
            }
            Err(error) => {
                let status = error.status();
                tracing::debug!(
                    kind = error.kind().as_str(),
                    fault = error.fault().as_str(),
                    status = status.as_u16(),
                    "request failed"
                );
                self.settle(if error.kind() == ErrorKind::UpstreamAnswer {
                    Outcome::Answered {
                        status,
                        usage: None,
                    }
                } else {
                    Outcome::Failed { status }
                });
                (respond(error, dialect, self.version), self.quota)
            }
        };
        if !quota.standings.is_empty() {
            quota::headers(
                dialect,
                &quota.standings,
                quota.at_ms,
                response.headers_mut(),
            );
        }
        response
    }

    /// Finishes the request with `outcome`.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.settle(outcome);
    }

    /// Settles the quota charge, the usage entry and the metrics with
    /// `outcome`; a no-op once they are settled.
    fn settle(&mut self, outcome: Outcome) {
        let Some(Trackers {
            metrics,
            usage: call,
            charge,
        }) = self.open.take()
        else {
            return;
        };
        let worker = &*self.worker;
        let shard = worker.usage_shard.as_deref();
        let record_usage = |failed: bool, tokens: Option<TokenUsage>| {
            if let (Some(call), Some(shard)) = (call, shard) {
                call.finish(shard, failed, tokens, now_ms());
            }
        };
        match outcome {
            Outcome::Answered { status, usage } => {
                let ok = status.is_success();
                if let Some(charge) = charge {
                    let plan = charge.plan().cloned();
                    charge.finish(if ok {
                        Settlement::Answered(usage)
                    } else {
                        Settlement::Failed
                    });
                    // What is left after its real usage rather than its
                    // reservation.
                    if let (Some(plan), Some(route), Some(quotas)) =
                        (plan, self.charged_route.as_deref(), &worker.quotas)
                    {
                        let at_ms = now_ms();
                        let state = worker.state.state();
                        self.quota.standings =
                            quotas.standings(&plan, route, at_ms, state.ledger());
                        self.quota.at_ms = at_ms;
                    }
                }
                record_usage(!ok, usage);
                let mut metrics = metrics;
                metrics.first_byte(&worker.metrics, status.as_u16());
                metrics.finish(&worker.metrics, status.as_u16(), usage);
            }
            Outcome::Failed { status } => {
                if let Some(charge) = charge {
                    charge.finish(Settlement::Failed);
                }
                record_usage(true, None);
                let mut metrics = metrics;
                metrics.first_byte(&worker.metrics, status.as_u16());
                metrics.finish(&worker.metrics, status.as_u16(), None);
            }
            Outcome::Streamed { end, usage } => {
                if let Some(charge) = charge {
                    charge.finish(Settlement::Answered(usage));
                }
                record_usage(matches!(end, StreamEnd::Failed(_)), usage);
                metrics.finish_stream(&worker.metrics, end, usage);
            }
            Outcome::Abandoned => {
                // Unsettled, a reservation stays charged in full: the
                // upstream may have done the work.
                drop(charge);
                record_usage(true, None);
                metrics.abandon(&worker.metrics);
            }
        }
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        self.settle(Outcome::Abandoned);
    }
}

/// A whole answer's response: JSON, with room for the rate-limit headers so
/// adding them does not grow the map.
fn whole(body: Bytes) -> Response<ProxyBody> {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut response = Response::new(ProxyBody::full(body));
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests;
