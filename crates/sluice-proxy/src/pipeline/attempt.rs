//! Phase 6, attempt: one call to one deployment, and the verdict on it.
//!
//! The request is prepared for the deployment's provider
//! (`sluice_providers::prepare`: passthrough or translation, the provider
//! key opened from its sealed form and cached per provider version), sent
//! after the plan's wait, and judged:
//!
//! * connect errors, timeouts and broken answers count against the
//!   deployment's breaker and are tried elsewhere while no part of an
//!   answer could have reached anyone;
//! * 429 is tried elsewhere without a verdict for the breaker (busy, not
//!   broken); 401, 403, 404, 408 and 5xx count against it (the deployment
//!   itself is wrong or broken) and are tried elsewhere;
//! * any other 4xx is the client's request at fault: it is the answer;
//! * a success is [relayed](super::relay); a stream is committed to the
//!   client only once its first event is in, so it can still be retried
//!   before that.

use std::time::Instant;

use sluice_core::{Deployment, Provider};
use sluice_providers::{
    prepare, ClientRequest, Dialect, PrepareError, Prepared, UpstreamError, UpstreamResponse,
};
use tracing::Instrument;

use super::plan::{Candidate, Plan};
use super::relay::{self, Unrelayable};
use super::{Answer, RequestCtx};
use crate::error::{ProxyError, UpstreamAnswer};
use crate::metrics::AttemptOutcome;
use crate::targets::{timeouts, TargetError};
use crate::trace;
use crate::worker::Worker;

/// Largest upstream error body read.
const MAX_ERROR_BODY: usize = 256 * 1024;

/// What one attempt came to.
pub(crate) enum Verdict {
    /// The answer, to relay to the client.
    Answered(Answer),
    /// The request's answer is this error: no other attempt may help.
    Failed(ProxyError),
    /// Try the next candidate (the plan has recorded why).
    Next,
}

/// Why a request cannot go to a deployment.
enum Unprepared {
    /// The provider does not serve the endpoint.
    Unsupported,
    /// The request cannot be translated for the provider: the client's
    /// fault, wherever it goes.
    Invalid(ProxyError),
    /// The provider's settings cannot make a request.
    Unusable(TargetError),
}

/// Tries `request` on `candidate`.
pub(crate) async fn attempt<'s>(
    worker: &Worker,
    ctx: &mut RequestCtx,
    request: &ClientRequest,
    plan: &mut Plan<'s>,
    candidate: Candidate<'s>,
) -> Verdict {
    let (provider, deployment) = (candidate.provider, candidate.deployment);
    let prepared = match prepare_for(worker, request, provider, deployment).await {
        Ok(prepared) => prepared,
        Err(Unprepared::Unsupported) => {
            plan.unsupported();
            return Verdict::Next;
        }
        Err(Unprepared::Invalid(error)) => return Verdict::Failed(error),
        Err(Unprepared::Unusable(error)) => {
            tracing::warn!(provider = %provider.name, message = %error, "provider cannot be used");
            candidate.permit.failure(Instant::now());
            plan.unusable(
                ProxyError::upstream_failed(error).at_deployment(&provider.name, &deployment.model),
            );
            return Verdict::Next;
        }
    };
    if let Some(wait) = plan.send(&candidate) {
        tokio::time::sleep(wait).await;
    }
    ctx.attempting(&provider.name, &deployment.model);
    let exchange = prepared.exchange;
    let sent_at = Instant::now();
    let sent = worker
        .client_for(&provider.name)
        .send(prepared.request, timeouts(provider))
        .instrument(trace::attempt_span(provider, deployment))
        .await;
    ctx.add_upstream_wait(sent_at.elapsed());
    let permit = candidate.permit;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            let outcome = if e.is_timeout() {
                AttemptOutcome::Timeout
            } else {
                AttemptOutcome::ConnectError
            };
            worker.metrics.upstream_attempt(&provider.name, outcome);
            tracing::debug!(provider = %provider.name, error = %e, "upstream attempt failed");
            permit.failure(Instant::now());
            // Tried elsewhere while it is safe (no answer had begun),
            // unless the request's whole deadline is spent.
            let elsewhere = (e.retry_safe() || !e.received())
                && !matches!(e, UpstreamError::TotalTimeout { .. });
            let error = ProxyError::unanswered(e).at_deployment(&provider.name, &deployment.model);
            return retry_elsewhere(plan, error, elsewhere);
        }
    };
    if response.status.is_success() {
        return match relay::answer(worker, ctx, request, exchange, response).await {
            Ok(answer) => {
                worker
                    .metrics
                    .upstream_attempt(&provider.name, AttemptOutcome::Ok);
                permit.success();
                Verdict::Answered(answer)
            }
            Err(Unrelayable { error, elsewhere }) => {
                worker
                    .metrics
                    .upstream_attempt(&provider.name, AttemptOutcome::StreamError);
                permit.failure(Instant::now());
                let error = error.at_deployment(&provider.name, &deployment.model);
                retry_elsewhere(plan, error, elsewhere)
            }
        };
    }
    let answer = error_answer(response, provider).await;
    // A follow-up of a response the upstream no longer has: the client's
    // to know, not a broken deployment.
    let status = if answer.names_a_missing_response() {
        400
    } else {
        answer.status.as_u16()
    };
    let error = ProxyError::upstream_answer(answer);
    match status {
        429 => {
            worker
                .metrics
                .upstream_attempt(&provider.name, AttemptOutcome::RateLimited);
            // Busy, not broken: no verdict for the breaker.
            drop(permit);
        }
        // The deployment itself is wrong (its credentials, its model
        // name) or broken: try another.
        401 | 403 | 404 | 408 | 500..=599 => {
            let outcome = if status >= 500 {
                AttemptOutcome::ServerError
            } else {
                AttemptOutcome::ClientError
            };
            worker.metrics.upstream_attempt(&provider.name, outcome);
            permit.failure(Instant::now());
        }
        _ => {
            // The client's request is at fault: answer it.
            worker
                .metrics
                .upstream_attempt(&provider.name, AttemptOutcome::ClientError);
            permit.success();
            return Verdict::Failed(error);
        }
    }
    plan.failed(error);
    Verdict::Next
}

/// `error` ends the request, unless it may be tried `elsewhere`.
fn retry_elsewhere(plan: &mut Plan<'_>, error: ProxyError, elsewhere: bool) -> Verdict {
    if !elsewhere {
        return Verdict::Failed(error);
    }
    plan.failed(error);
    Verdict::Next
}

/// `request` as `deployment` of `provider` takes it (its token made
/// ready first, for a provider that has one).
async fn prepare_for(
    worker: &Worker,
    request: &ClientRequest,
    provider: &Provider,
    deployment: &Deployment,
) -> Result<Prepared, Unprepared> {
    let resolved = worker.targets.get(provider).map_err(Unprepared::Unusable)?;
    resolved
        .ready(worker.client_for(&provider.name))
        .await
        .map_err(Unprepared::Unusable)?;
    prepare(
        request,
        provider.kind,
        &resolved.target,
        &deployment.model,
        worker.config.anthropic_default_max_tokens,
    )
    .map_err(|e| match e {
        PrepareError::Unsupported { .. } => Unprepared::Unsupported,
        PrepareError::Invalid(e) => {
            Unprepared::Invalid(ProxyError::invalid_request(e.message, e.param))
        }
        PrepareError::Target(message) => Unprepared::Unusable(TargetError::Adapter(message)),
    })
}

/// An upstream's answer with an error status, its (small) body read for
/// the client. A refused credential said with another status (Gemini's
/// 400) is read as the 401 it means: the deployment's key is wrong.
async fn error_answer(response: UpstreamResponse, provider: &Provider) -> UpstreamAnswer {
    let body = response
        .body
        .collect(MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let status = if sluice_providers::provider::of(provider.kind)
        .refuses_credential(response.status, &body)
    {
        http::StatusCode::UNAUTHORIZED
    } else {
        response.status
    };
    UpstreamAnswer::new(status, &response.headers, body, Dialect::of(provider.kind))
}
