//! `GET /admin/v1/usage`: requests, tokens, cost, errors and latency over a
//! time range, grouped by key, route or provider, as JSON or CSV.
//!
//! The totals are the replicated roll-ups (`sluice_core::usage`): each
//! node adds its calls up per minute and flushes them every `[usage]
//! flush_interval_ms`, so the latest calls show up within one interval.
//! The resolution is a minute: a minute partly inside the range counts
//! whole. Errors are split in two: calls the gateway refused before it
//! tried any provider (`refused`: over a quota, no quorum) and calls that
//! failed after one was tried (`upstream_errors`).

pub mod params;

use crate::context::{now_ms, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::RawQuery;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use params::{format_time, Format, GroupName, UsageQuery};
use serde::{Deserialize, Serialize};
use sluice_core::usage::{GroupBy, GroupTotals, UsageFilter};
use std::fmt::Write as _;
use utoipa::ToSchema;

/// Totals of a set of calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageTotals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Cost from the routes' prices, in micro-USD (rounded up per call).
    pub cost_micro_usd: u64,
    /// The same in US dollars.
    pub cost_usd: f64,
    /// Calls answered with an error, or streams that failed:
    /// `refused + upstream_errors`.
    pub errors: u64,
    /// Calls the gateway refused before it tried any provider: over a
    /// quota (429), no quorum to decide one (503), every deployment's
    /// breaker open (503).
    #[serde(default)]
    pub refused: u64,
    /// Calls that failed after a provider was tried: the upstream's error
    /// answers (its own 429s included), timeouts, connection failures,
    /// broken streams, clients gone mid-answer.
    #[serde(default)]
    pub upstream_errors: u64,
    /// Sum of the calls' durations, request to end of answer.
    pub latency_ms_sum: u64,
    /// `latency_ms_sum / requests` (0 without requests).
    pub avg_latency_ms: f64,
}

impl From<&GroupTotals> for UsageTotals {
    fn from(g: &GroupTotals) -> Self {
        let t = &g.totals;
        UsageTotals {
            requests: t.requests,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            total_tokens: t.prompt_tokens.saturating_add(t.completion_tokens),
            cost_micro_usd: t.cost_micro_usd,
            cost_usd: micro_to_usd(t.cost_micro_usd),
            errors: t.errors,
            refused: g.refused,
            upstream_errors: t.errors.saturating_sub(g.refused),
            latency_ms_sum: t.latency_ms_sum,
            avg_latency_ms: if t.requests == 0 {
                0.0
            } else {
                t.latency_ms_sum as f64 / t.requests as f64
            },
        }
    }
}

pub(crate) fn micro_to_usd(micro: u64) -> f64 {
    micro as f64 / 1_000_000.0
}

/// What the provider group `""` holds, in words.
pub const REFUSED_BEFORE_ROUTING: &str = "refused before routing";

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageGroup {
    /// The key id, route name or provider name (`""`: calls refused before
    /// any provider was tried).
    pub group: String,
    /// The group for people: the key's name (by key; `null` once the key
    /// is deleted), or `"refused before routing"` for the provider group
    /// `""`; else `null`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// `GET /admin/v1/usage` as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// Start of the range (RFC 3339, UTC) and in ms since the epoch.
    pub from: String,
    pub from_ms: u64,
    /// End of the range (exclusive).
    pub to: String,
    pub to_ms: u64,
    pub group_by: GroupName,
    /// The `key` and `route` filters, when given.
    pub key: Option<String>,
    pub route: Option<String>,
    /// Groups in name order.
    pub groups: Vec<UsageGroup>,
    /// Every group together.
    pub total: UsageTotals,
}

/// The report over `state` for `query`.
pub fn report(state: &sluice_core::State, query: &UsageQuery) -> UsageReport {
    let filter = UsageFilter {
        key_id: query.key.as_deref(),
        route: query.route.as_deref(),
    };
    let group_by: GroupBy = query.group_by.into();
    let groups = state
        .usage()
        .groups_by(query.from_ms, query.to_ms, group_by, filter);
    let mut total = GroupTotals::default();
    for g in groups.values() {
        total.merge(g);
    }
    let name = |group: &str| match group_by {
        GroupBy::Key => state.key(group).map(|k| k.name.clone()),
        GroupBy::Provider if group.is_empty() => Some(REFUSED_BEFORE_ROUTING.to_owned()),
        _ => None,
    };
    UsageReport {
        from: format_time(query.from_ms),
        from_ms: query.from_ms,
        to: format_time(query.to_ms),
        to_ms: query.to_ms,
        group_by: query.group_by,
        key: query.key.clone(),
        route: query.route.clone(),
        groups: groups
            .iter()
            .map(|(group, g)| UsageGroup {
                group: group.clone(),
                name: name(group),
                totals: g.into(),
            })
            .collect(),
        total: (&total).into(),
    }
}

/// The report as CSV (RFC 4180): a header, then one line per group.
pub fn to_csv(report: &UsageReport) -> String {
    let mut out = String::from(
        "group,requests,prompt_tokens,completion_tokens,total_tokens,cost_micro_usd,cost_usd,errors,latency_ms_sum,avg_latency_ms,refused,upstream_errors,name\r\n",
    );
    for g in &report.groups {
        let t = &g.totals;
        let _ = write!(
            out,
            "{},{},{},{},{},{},{:.6},{},{},{:.1},{},{},{}\r\n",
            csv_field(&g.group),
            t.requests,
            t.prompt_tokens,
            t.completion_tokens,
            t.total_tokens,
            t.cost_micro_usd,
            t.cost_usd,
            t.errors,
            t.latency_ms_sum,
            t.avg_latency_ms,
            t.refused,
            t.upstream_errors,
            csv_field(g.name.as_deref().unwrap_or(""))
        );
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Usage over a time range, grouped by key, route or provider.
#[utoipa::path(get, path = "/admin/v1/usage", tag = "usage",
    params(
        ("from" = Option<String>, Query, description = "Start: RFC 3339, `now`, or relative (`-1h`, `-30m`, `-7d`). Default: 24 hours before `to`."),
        ("to" = Option<String>, Query, description = "End (exclusive), same forms. Default: now."),
        ("group_by" = Option<GroupName>, Query, description = "`key` (default), `route` or `provider`."),
        ("key" = Option<String>, Query, description = "Only this key id."),
        ("route" = Option<String>, Query, description = "Only this route."),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`."),
        ("consistency" = Option<String>, Query, description = "`linearizable` (default) or `stale`."),
    ),
    responses(
        (status = 200, body = UsageReport, description = "JSON, or `text/csv` with `format=csv`"),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_usage(
    State(ctx): State<AdminContext>,
    raw: RawQuery,
) -> Result<Response, ApiError> {
    let query = UsageQuery::parse(&raw, now_ms())?;
    let state = ctx.read(query.consistency).await?;
    let report = report(&state, &query);
    Ok(match query.format {
        Format::Json => Json(report).into_response(),
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&report),
        )
            .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("gpt-4o"), "gpt-4o");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
