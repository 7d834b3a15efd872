//! Phase 4, admit: the request's estimated cost taken from every quota of
//! its key and key × route (this node's lease pools, `sluice_quota`), or
//! the request refused: 429, or 503 without a quorum under `deny`. The
//! reservation goes into the request's context, which settles it when the
//! answer ends.

use sluice_core::quota::Refill;
use sluice_core::{Route, State};
use sluice_providers::ClientRequest;
use sluice_quota::{Quotas, Reason};
use tracing::Instrument;

use super::RequestCtx;
use crate::clock::now_ms;
use crate::error::ProxyError;
use crate::metrics::QuotaOutcome;
use crate::quota::{self, Charge};
use crate::trace;
use crate::worker::Worker;

/// Admits `request` of key `key_id` on `route` against `quotas`, or says
/// why not. A key without a policy on the route is admitted untouched.
pub(crate) async fn admit(
    worker: &Worker,
    quotas: &Quotas,
    ctx: &mut RequestCtx,
    state: &State,
    key_id: &str,
    route: &Route,
    request: &ClientRequest,
) -> Result<(), ProxyError> {
    let Some(plan) = quotas.plan(state.ledger(), key_id) else {
        return Ok(());
    };
    let route_name = route.name.as_str();
    if !plan.applies_on(route_name) {
        return Ok(());
    }
    let ask = quota::estimate(
        request,
        plan.counts_tokens(route_name),
        &route.pricing,
        worker.config.completion_estimate_tokens,
        plan.completion_estimate(),
    );
    let admitted = quotas
        .admit(&plan, route_name, ask, now_ms, || worker.state.state())
        .instrument(trace::admission_span())
        .await;
    let metrics = &worker.metrics;
    match admitted {
        Ok(admission) => {
            metrics.quota_decision(QuotaOutcome::Admitted);
            if admission.waited {
                metrics.quota_wait(true);
            }
            let charge = Charge::new(admission.reservation, route.pricing, ask);
            ctx.admitted(admission.standings, admission.at_ms, charge, route_name);
            Ok(())
        }
        Err(denial) => {
            if denial.waited {
                metrics.quota_wait(false);
            }
            let outcome = match &*denial.reason {
                Reason::Exhausted { limit, .. } if matches!(limit.refill, Refill::Calendar(_)) => {
                    QuotaOutcome::BudgetSpent
                }
                Reason::Exhausted { .. } => QuotaOutcome::RateLimited,
                Reason::TooLarge { .. } => QuotaOutcome::TooLarge,
                Reason::NoQuorum { .. } => QuotaOutcome::NoQuorum,
            };
            metrics.quota_decision(outcome);
            ctx.refused(*denial.standings, denial.at_ms);
            Err(quota::denial_error(&denial, key_id))
        }
    }
}
