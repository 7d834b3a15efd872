//! `GET /admin/v1/keys/{id}/spend`: what a key spent in its current budget
//! period, against its budget.
//!
//! The budget is the key's own `budget_usd` (a micro-USD limit refilled
//! each calendar day or month, UTC). Without one the period is the current
//! month and `budget_usd` is `null`. The spend is the replicated usage
//! roll-ups' cost (it lags the traffic by up to a flush interval); what a
//! request may still spend is decided by the quota ledger
//! (`/admin/v1/keys/{id}/quota`), which also holds in-flight reservations.

use crate::context::{now_ms, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminPath, ReadParams};
use crate::quotas::PeriodName;
use crate::usage::params::format_time;
use crate::usage::{micro_to_usd, UsageTotals};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_core::quota::{next_period_start, period_start, Period, Refill, Scope, Unit};
use sluice_core::State as ClusterState;
use utoipa::ToSchema;

/// `GET /admin/v1/keys/{id}/spend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpendView {
    pub key_id: String,
    /// The budget's period (`month` when the key has no budget).
    pub period: PeriodName,
    /// Start (inclusive) and end (exclusive) of the current period, UTC.
    pub period_start: String,
    pub period_start_ms: u64,
    pub period_end: String,
    pub period_end_ms: u64,
    /// Spent this period, from the usage roll-ups.
    pub spent_micro_usd: u64,
    pub spent_usd: f64,
    /// The budget, when the key has one.
    pub budget_micro_usd: Option<u64>,
    pub budget_usd: Option<f64>,
    /// Budget minus spent (never below 0), when the key has a budget.
    pub remaining_usd: Option<f64>,
    /// The period's usage in full.
    pub usage: UsageTotals,
}

/// The key's spend as of `now`.
pub fn view(state: &ClusterState, key_id: &str, now: u64) -> SpendView {
    let scope = Scope::Key {
        key_id: key_id.to_owned(),
    };
    let budget = state.ledger().policy(&scope).and_then(|policy| {
        policy.limits.iter().find_map(|l| match (l.unit, l.refill) {
            (Unit::MicroUsd, Refill::Calendar(period)) => Some((l.capacity, period)),
            _ => None,
        })
    });
    let period = budget.map_or(Period::Month, |(_, p)| p);
    let start = period_start(period, now);
    let usage = state.usage().key_since(key_id, start);
    let totals = usage.totals;
    let end = next_period_start(period, now);
    SpendView {
        key_id: key_id.to_owned(),
        period: match period {
            Period::Day => PeriodName::Day,
            Period::Month => PeriodName::Month,
        },
        period_start: format_time(start),
        period_start_ms: start,
        period_end: format_time(end),
        period_end_ms: end,
        spent_micro_usd: totals.cost_micro_usd,
        spent_usd: micro_to_usd(totals.cost_micro_usd),
        budget_micro_usd: budget.map(|(b, _)| b),
        budget_usd: budget.map(|(b, _)| micro_to_usd(b)),
        remaining_usd: budget.map(|(b, _)| micro_to_usd(b.saturating_sub(totals.cost_micro_usd))),
        usage: (&usage).into(),
    }
}

/// A key's spend in its current budget period.
#[utoipa::path(get, path = "/admin/v1/keys/{id}/spend", tag = "keys",
    params(("id" = String, Path, description = "key id"), ReadParams),
    responses(
        (status = 200, body = SpendView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_spend(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    params: ReadParams,
) -> Result<Json<SpendView>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    if state.key(&id).is_none() {
        return Err(ApiError::not_found(format!("key {id:?} not found")));
    }
    Ok(Json(view(&state, &id, now_ms())))
}
