//! Quota policies on keys and on key × route, and the live view of their
//! buckets (`/admin/v1/keys/{id}/quota`).
//!
//! The friendly form is `"rpm": N` and `"tpm": N` (a bucket of capacity N
//! refilled at N/60 per second) and `"budget_usd": X` with `"budget_period":
//! "day" | "month"` (X dollars per calendar period, UTC). The general form,
//! `"limits"`, sets capacity and refill per unit. Both may be mixed as long
//! as each unit is set once.

use crate::context::{now_ms, unexpected, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminJson, AdminPath, ReadParams};
use crate::idempotency::Idempotency;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use sluice_core::quota::{
    Bucket, Limit, OnNoQuorum, Period, QuotaPolicy, Refill, Reserve, Scope, Unit, MIN_CAPACITY_MS,
};
use sluice_core::{Applied, Command, State as ClusterState};
use utoipa::ToSchema;

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A quota, in the friendly form, the general form, or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// Requests per minute (bucket of N, refilled at N/60 per second);
    /// `null` removes it.
    #[serde(
        default,
        deserialize_with = "explicit",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub rpm: Option<Option<u64>>,
    /// LLM tokens (prompt + completion) per minute; `null` removes it.
    #[serde(
        default,
        deserialize_with = "explicit",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub tpm: Option<Option<u64>>,
    /// Spend allowed per `budget_period`, in US dollars; `null` removes it.
    #[serde(
        default,
        deserialize_with = "explicit",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub budget_usd: Option<Option<f64>>,
    /// `day` or `month` (UTC calendar periods); default `month`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<PeriodName>,
    /// What a node does when it cannot reach the ledger and its leases are
    /// spent: `deny` (default) or `local_share`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_quorum: Option<NoQuorumName>,
    /// What a request reserves of its tokens and spend before its answer:
    /// `max_tokens` (default: its whole `max_tokens`, never exceeded) or
    /// `estimate` (what the key's recent answers used; the overshoot is
    /// bounded, see the quotas guide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<ReserveName>,
    /// The general form: limits per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<LimitSpec>>,
}

impl QuotaSpec {
    /// Whether the body says anything about quotas.
    pub fn is_empty(&self) -> bool {
        *self == QuotaSpec::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeriodName {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoQuorumName {
    Deny,
    LocalShare,
}

impl From<OnNoQuorum> for NoQuorumName {
    fn from(n: OnNoQuorum) -> Self {
        match n {
            OnNoQuorum::Deny => NoQuorumName::Deny,
            OnNoQuorum::LocalShare => NoQuorumName::LocalShare,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReserveName {
    MaxTokens,
    Estimate,
}

impl From<Reserve> for ReserveName {
    fn from(r: Reserve) -> Self {
        match r {
            Reserve::MaxTokens => ReserveName::MaxTokens,
            Reserve::Estimate => ReserveName::Estimate,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitName {
    Requests,
    Tokens,
    MicroUsd,
}

impl From<UnitName> for Unit {
    fn from(u: UnitName) -> Unit {
        match u {
            UnitName::Requests => Unit::Requests,
            UnitName::Tokens => Unit::Tokens,
            UnitName::MicroUsd => Unit::MicroUsd,
        }
    }
}

/// One limit in the general form: either a rate (`refill_amount` every
/// `refill_every_ms`) or a calendar `period`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub unit: UnitName,
    pub capacity: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill_amount: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill_every_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<PeriodName>,
}

fn period(p: PeriodName) -> Period {
    match p {
        PeriodName::Day => Period::Day,
        PeriodName::Month => Period::Month,
    }
}

/// `spec` applied over `current` (`None`: no policy yet): units the spec
/// names are set or (with `null`) removed, the others kept. `None` when no
/// limit is left.
pub fn merge(
    current: Option<&QuotaPolicy>,
    spec: &QuotaSpec,
) -> Result<Option<QuotaPolicy>, ApiError> {
    let mut limits: Vec<Limit> = current.map(|p| p.limits.clone()).unwrap_or_default();
    let mut on_no_quorum = current.map(|p| p.on_no_quorum).unwrap_or_default();
    let reserve = match spec.reserve {
        Some(ReserveName::MaxTokens) => Reserve::MaxTokens,
        Some(ReserveName::Estimate) => Reserve::Estimate,
        None => current.map(|p| p.reserve).unwrap_or_default(),
    };
    let mut set = |unit: Unit, limit: Option<Limit>| {
        limits.retain(|l| l.unit != unit);
        limits.extend(limit);
    };
    let positive = |field: &str, n: u64| {
        if n == 0 {
            Err(ApiError::validation(
                field,
                "must be > 0 (null removes the limit)",
            ))
        } else {
            Ok(n)
        }
    };
    if let Some(rpm) = spec.rpm {
        let limit = rpm
            .map(|n| positive("rpm", n).map(|n| Limit::per_minute(Unit::Requests, n)))
            .transpose()?;
        set(Unit::Requests, limit);
    }
    if let Some(tpm) = spec.tpm {
        let limit = tpm
            .map(|n| positive("tpm", n).map(|n| Limit::per_minute(Unit::Tokens, n)))
            .transpose()?;
        set(Unit::Tokens, limit);
    }
    if let Some(budget) = spec.budget_usd {
        let limit = match budget {
            None => None,
            Some(usd) if !(usd.is_finite() && usd > 0.0 && usd <= 1e9) => {
                return Err(ApiError::validation(
                    "budget_usd",
                    "must be a positive number of dollars (at most 1e9)",
                ))
            }
            Some(usd) => Some(Limit {
                unit: Unit::MicroUsd,
                capacity: (usd * 1_000_000.0).round() as u64,
                refill: Refill::Calendar(period(spec.budget_period.unwrap_or(PeriodName::Month))),
            }),
        };
        set(Unit::MicroUsd, limit);
    } else if spec.budget_period.is_some() {
        return Err(ApiError::validation(
            "budget_period",
            "is only meaningful with budget_usd",
        ));
    }
    for (i, l) in spec.limits.iter().flatten().enumerate() {
        let field = format!("limits[{i}]");
        let refill = match (l.refill_amount, l.refill_every_ms, l.period) {
            (Some(amount), Some(every_ms), None) => Refill::Rate { amount, every_ms },
            (None, None, Some(p)) => Refill::Calendar(period(p)),
            _ => {
                return Err(ApiError::validation(
                    field,
                    "give refill_amount and refill_every_ms, or period",
                ))
            }
        };
        let unit = Unit::from(l.unit);
        let named = match unit {
            Unit::Requests => spec.rpm.is_some(),
            Unit::Tokens => spec.tpm.is_some(),
            Unit::MicroUsd => spec.budget_usd.is_some(),
        };
        if named
            || spec
                .limits
                .iter()
                .flatten()
                .take(i)
                .any(|o| o.unit == l.unit)
        {
            return Err(ApiError::validation(
                format!("{field}.unit"),
                "this unit is set twice",
            ));
        }
        let limit = Limit {
            unit,
            capacity: l.capacity,
            refill,
        };
        let least = limit.least_capacity();
        if l.capacity < least {
            return Err(ApiError::validation(
                format!("{field}.capacity"),
                format!(
                    "must hold at least {MIN_CAPACITY_MS} ms of the refill ({least}): \
                     the cluster moves units in lease rounds, and a smaller bucket \
                     would refuse requests under its rate"
                ),
            ));
        }
        set(unit, Some(limit));
    }
    if let Some(n) = spec.on_no_quorum {
        on_no_quorum = match n {
            NoQuorumName::Deny => OnNoQuorum::Deny,
            NoQuorumName::LocalShare => OnNoQuorum::LocalShare,
        };
    }
    limits.sort_by_key(|l| l.unit);
    if limits.is_empty() {
        return Ok(None);
    }
    let policy = QuotaPolicy {
        limits,
        on_no_quorum,
        reserve,
    };
    policy.validate()?;
    Ok(Some(policy))
}

/// Writes `spec` over the policy `scope` has now.
pub async fn apply(
    ctx: &AdminContext,
    idempotency: &Idempotency,
    scope: Scope,
    spec: &QuotaSpec,
) -> Result<Option<QuotaPolicy>, ApiError> {
    let state = ctx.read(Default::default()).await?;
    let policy = merge(state.ledger().policy(&scope), spec)?;
    match ctx
        .write(idempotency, Command::SetQuota { scope, policy })
        .await?
    {
        Applied::Quota(policy) => Ok(policy),
        other => Err(unexpected(&other)),
    }
}

/// One bucket as the live view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BucketView {
    /// `key` or `route:<name>`.
    pub scope: String,
    #[schema(value_type = String)]
    pub unit: String,
    pub capacity: u64,
    /// The limit in words: `"600 requests a minute"`, `"$25.00 a month
    /// (UTC)"`, `"800 tokens, refilled 400 every 1s"`.
    pub limit: String,
    /// How it refills: `"600 a minute"`, `"400 every 1s"`, `"resets every
    /// month (UTC)"`.
    pub refill: String,
    /// Units the ledger can still grant, as of now.
    pub level: u64,
    /// Units the nodes hold unspent (leases, standing reserves, requests in
    /// flight), as they last reported: with `level`, what is left.
    pub held: u64,
    /// What is left of the limit (`level + held`), in words (`"540"`,
    /// `"$24.10"`).
    pub remaining: String,
    /// Each node with a lease still within its expiry, recent admissions
    /// or units held.
    pub nodes: Vec<NodeLeaseView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeLeaseView {
    pub node: u64,
    /// The latest grant to this node, if still within its expiry (else 0).
    pub last_grant: u64,
    /// When that grant stops being spendable (ms since the epoch).
    pub expires_at_ms: u64,
    /// The node's latest stated demand.
    pub demand: u64,
    /// Units this node admitted recently, per minute (from its latest
    /// reports; 0 when it has not reported for a few seconds).
    pub admitted_per_min: u64,
    /// Units this node has admitted over its life, as last reported.
    pub admitted_total: u64,
    /// Units the node holds unspent (lease, reserve, requests in flight),
    /// as it last reported (plus grants, less returns, since).
    pub holding: u64,
    /// The standing reserve's part of `holding`: what the node spends
    /// without a lease round (after idle, in a burst, in an election).
    pub standing: u64,
}

/// `GET /admin/v1/keys/{id}/quota`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    pub key_id: String,
    /// `deny` or `local_share`, when the key has a policy.
    pub on_no_quorum: Option<NoQuorumName>,
    /// `max_tokens` or `estimate`, when the key has a policy.
    pub reserve: Option<ReserveName>,
    pub buckets: Vec<BucketView>,
}

fn view(state: &ClusterState, key_id: &str, now: u64) -> QuotaView {
    let ledger = state.ledger();
    let buckets = ledger
        .buckets_of_key(key_id)
        .map(|(scope, unit, bucket)| bucket_view(scope, unit, bucket, now))
        .collect();
    let policy = ledger.policy(&Scope::Key {
        key_id: key_id.to_owned(),
    });
    let on_no_quorum = policy.map(|p| match p.on_no_quorum {
        OnNoQuorum::Deny => NoQuorumName::Deny,
        OnNoQuorum::LocalShare => NoQuorumName::LocalShare,
    });
    QuotaView {
        key_id: key_id.to_owned(),
        on_no_quorum,
        reserve: policy.map(|p| p.reserve.into()),
        buckets,
    }
}

fn bucket_view(scope: &Scope, unit: Unit, bucket: &Bucket, now: u64) -> BucketView {
    // The level as of now: the stored one is as of the last command.
    let level = bucket.level_at(now);
    let held = bucket.held();
    BucketView {
        scope: match scope {
            Scope::Key { .. } => "key".to_owned(),
            Scope::KeyRoute { route, .. } => format!("route:{route}"),
        },
        unit: unit.as_str().to_owned(),
        capacity: bucket.limit.capacity,
        limit: describe_limit(&bucket.limit),
        refill: describe_refill(&bucket.limit),
        level,
        held,
        remaining: amount(unit, level.saturating_add(held).min(bucket.limit.capacity)),
        nodes: bucket
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.last_expires_at_ms > now || n.recent_admissions_per_min(now) > 0 || n.holding > 0
            })
            .map(|(node, n)| NodeLeaseView {
                node: *node,
                last_grant: if n.last_expires_at_ms > now {
                    n.last_grant
                } else {
                    0
                },
                expires_at_ms: n.last_expires_at_ms,
                demand: n.demand,
                admitted_per_min: n.recent_admissions_per_min(now),
                admitted_total: n.admitted_total,
                holding: n.holding,
                standing: n.standing,
            })
            .collect(),
    }
}

/// `n` units of `unit` in words: dollars for spend.
fn amount(unit: Unit, n: u64) -> String {
    match unit {
        Unit::MicroUsd => format!("${}.{:02}", n / 1_000_000, n % 1_000_000 / 10_000),
        _ => n.to_string(),
    }
}

/// A span of milliseconds in words: `1s`, `250ms`, `1m30s`.
fn span(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms >= 60_000 => format!("{}m{}s", ms / 60_000, (ms % 60_000) as f64 / 1000.0),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

fn describe_refill(limit: &Limit) -> String {
    match limit.refill {
        Refill::Rate {
            amount: n,
            every_ms: 60_000,
        } => format!("{} a minute", amount(limit.unit, n)),
        Refill::Rate {
            amount: n,
            every_ms,
        } => {
            format!("{} every {}", amount(limit.unit, n), span(every_ms))
        }
        Refill::Calendar(Period::Day) => "resets every day (UTC)".to_owned(),
        Refill::Calendar(Period::Month) => "resets every month (UTC)".to_owned(),
    }
}

/// A limit in words: `"600 requests a minute"`, `"$25.00 a month (UTC)"`.
pub fn describe_limit(limit: &Limit) -> String {
    let noun = match limit.unit {
        Unit::Requests => " requests",
        Unit::Tokens => " tokens",
        Unit::MicroUsd => "",
    };
    let capacity = amount(limit.unit, limit.capacity);
    match limit.refill {
        Refill::Rate {
            amount: n,
            every_ms,
        } if every_ms == 60_000 && n == limit.capacity => {
            format!("{capacity}{noun} a minute")
        }
        Refill::Rate { .. } => format!("{capacity}{noun}, refilled {}", describe_refill(limit)),
        Refill::Calendar(Period::Day) => format!("{capacity}{noun} a day (UTC)"),
        Refill::Calendar(Period::Month) => format!("{capacity}{noun} a month (UTC)"),
    }
}

fn key_scope(state: &ClusterState, id: &str) -> Result<Scope, ApiError> {
    if state.key(id).is_none() {
        return Err(ApiError::not_found(format!("key {id:?} not found")));
    }
    Ok(Scope::Key {
        key_id: id.to_owned(),
    })
}

/// A key's quota: its buckets, their levels and the nodes' leases.
#[utoipa::path(get, path = "/admin/v1/keys/{id}/quota", tag = "keys",
    params(("id" = String, Path, description = "key id"), ReadParams),
    responses(
        (status = 200, body = QuotaView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_quota(
    State(ctx): State<AdminContext>,
    AdminPath(id): AdminPath<String>,
    params: ReadParams,
) -> Result<Json<QuotaView>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    key_scope(&state, &id)?;
    Ok(Json(view(&state, &id, now_ms())))
}

/// Sets a key's quota on one route (the same fields as on the key; `{}`
/// with every limit `null` removes it).
#[utoipa::path(put, path = "/admin/v1/keys/{id}/routes/{route}/quota", tag = "keys",
    params(("id" = String, Path, description = "key id"), ("route" = String, Path, description = "route name")),
    request_body = QuotaSpec,
    responses(
        (status = 200, body = QuotaView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn set_route_quota(
    State(ctx): State<AdminContext>,
    AdminPath((id, route)): AdminPath<(String, String)>,
    idempotency: Idempotency,
    AdminJson(spec): AdminJson<QuotaSpec>,
) -> Result<Json<QuotaView>, ApiError> {
    let state = ctx.read(Default::default()).await?;
    key_scope(&state, &id)?;
    let scope = Scope::KeyRoute {
        key_id: id.clone(),
        route,
    };
    apply(&ctx, &idempotency, scope, &spec)
        .await
        .map_err(|e| e.rename_field("scope.route", "route"))?;
    let state = ctx.read(Default::default()).await?;
    Ok(Json(view(&state, &id, now_ms())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> QuotaSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn friendly_fields_become_limits_and_null_removes_one() {
        let p = merge(
            None,
            &spec(r#"{"rpm": 600, "tpm": 100000, "budget_usd": 25.5}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.limits.len(), 3);
        assert_eq!(p.limits[0], Limit::per_minute(Unit::Requests, 600));
        assert_eq!(p.limits[1], Limit::per_minute(Unit::Tokens, 100_000));
        assert_eq!(p.limits[2].capacity, 25_500_000);
        assert_eq!(p.limits[2].refill, Refill::Calendar(Period::Month));
        let p2 = merge(
            Some(&p),
            &spec(r#"{"tpm": null, "on_no_quorum": "local_share"}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p2.limits.len(), 2);
        assert_eq!(p2.on_no_quorum, OnNoQuorum::LocalShare);
        let none = merge(Some(&p2), &spec(r#"{"rpm": null, "budget_usd": null}"#)).unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn the_general_form_and_its_errors_name_the_field() {
        let p = merge(
            None,
            &spec(r#"{"limits": [{"unit": "tokens", "capacity": 1000, "refill_amount": 10, "refill_every_ms": 1000},
                                 {"unit": "micro_usd", "capacity": 5, "period": "day"}]}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.limits.len(), 2);
        let field = |json: &str| merge(None, &spec(json)).unwrap_err().field;
        assert_eq!(field(r#"{"rpm": 0}"#).as_deref(), Some("rpm"));
        assert_eq!(
            field(r#"{"budget_usd": -1}"#).as_deref(),
            Some("budget_usd")
        );
        assert_eq!(
            field(r#"{"budget_period": "day"}"#).as_deref(),
            Some("budget_period")
        );
        assert_eq!(
            field(
                r#"{"rpm": 5, "limits": [{"unit": "requests", "capacity": 1, "period": "day"}]}"#
            )
            .as_deref(),
            Some("limits[0].unit")
        );
        assert_eq!(
            field(r#"{"limits": [{"unit": "tokens", "capacity": 1}]}"#).as_deref(),
            Some("limits[0]")
        );
        assert!(serde_json::from_str::<QuotaSpec>(r#"{"rpn": 5}"#).is_err());
    }

    /// A rate limit must hold a second of its refill; one unit of a slow
    /// refill is enough, and a budget has no least.
    #[test]
    fn a_rate_limit_holds_a_second_of_its_refill() {
        let general = |capacity: u64, amount: u64, every_ms: u64| {
            spec(&format!(
                r#"{{"limits": [{{"unit": "requests", "capacity": {capacity}, "refill_amount": {amount}, "refill_every_ms": {every_ms}}}]}}"#
            ))
        };
        let refused = merge(None, &general(3, 14, 4000)).unwrap_err();
        assert_eq!(refused.field.as_deref(), Some("limits[0].capacity"));
        assert!(refused.message.contains("(4)"), "{}", refused.message);
        assert!(merge(None, &general(4, 14, 4000)).unwrap().is_some());
        assert!(merge(None, &general(1, 1, 10_000)).unwrap().is_some());
        assert!(merge(None, &general(10, 10, 1000)).unwrap().is_some());
        assert!(merge(None, &general(9, 10, 1000)).is_err());
        let budget = spec(r#"{"limits": [{"unit": "micro_usd", "capacity": 1, "period": "day"}]}"#);
        assert!(merge(None, &budget).unwrap().is_some());
        // A policy made before the check still takes unrelated changes.
        let tiny = QuotaPolicy {
            limits: vec![Limit {
                unit: Unit::Requests,
                capacity: 1,
                refill: Refill::Rate {
                    amount: 14,
                    every_ms: 4000,
                },
            }],
            ..QuotaPolicy::default()
        };
        assert!(merge(Some(&tiny), &spec(r#"{"tpm": 1000}"#)).is_ok());
    }

    #[test]
    fn limits_read_as_words() {
        let p = merge(
            None,
            &spec(r#"{"rpm": 600, "budget_usd": 25, "reserve": "estimate",
                      "limits": [{"unit": "tokens", "capacity": 800, "refill_amount": 400, "refill_every_ms": 1000}]}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.reserve, Reserve::Estimate);
        let words: Vec<String> = p.limits.iter().map(describe_limit).collect();
        assert_eq!(
            words,
            [
                "600 requests a minute",
                "800 tokens, refilled 400 every 1s",
                "$25.00 a month (UTC)"
            ]
        );
        assert_eq!(amount(Unit::MicroUsd, 24_105_000), "$24.10");
        assert_eq!(span(90_000), "1m30s");
        // Unchanged by a spec that does not name it.
        let kept = merge(Some(&p), &spec(r#"{"rpm": 60}"#)).unwrap().unwrap();
        assert_eq!(kept.reserve, Reserve::Estimate);
    }
}
