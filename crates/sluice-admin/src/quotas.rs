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
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use sluice_core::quota::{Bucket, Limit, OnNoQuorum, Period, QuotaPolicy, Refill, Scope, Unit};
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
        set(
            unit,
            Some(Limit {
                unit,
                capacity: l.capacity,
                refill,
            }),
        );
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
    };
    policy.validate()?;
    Ok(Some(policy))
}

/// Writes `spec` over the policy `scope` has now.
pub async fn apply(
    ctx: &AdminContext,
    scope: Scope,
    spec: &QuotaSpec,
) -> Result<Option<QuotaPolicy>, ApiError> {
    let state = ctx.read(Default::default()).await?;
    let policy = merge(state.ledger().policy(&scope), spec)?;
    match ctx.write(Command::SetQuota { scope, policy }).await? {
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
    /// `"600 per 60000 ms"` or `"resets every day"`.
    pub refill: String,
    /// Units the ledger can still grant, as of now.
    pub level: u64,
    /// Each node with a lease still within its expiry or recent
    /// admissions.
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
}

/// `GET /admin/v1/keys/{id}/quota`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    pub key_id: String,
    /// `deny` or `local_share`, when the key has a policy.
    pub on_no_quorum: Option<NoQuorumName>,
    pub buckets: Vec<BucketView>,
}

fn view(state: &ClusterState, key_id: &str, now: u64) -> QuotaView {
    let ledger = state.ledger();
    let buckets = ledger
        .buckets_of_key(key_id)
        .map(|(scope, unit, bucket)| bucket_view(scope, unit, bucket, now))
        .collect();
    let on_no_quorum = ledger
        .policy(&Scope::Key {
            key_id: key_id.to_owned(),
        })
        .map(|p| match p.on_no_quorum {
            OnNoQuorum::Deny => NoQuorumName::Deny,
            OnNoQuorum::LocalShare => NoQuorumName::LocalShare,
        });
    QuotaView {
        key_id: key_id.to_owned(),
        on_no_quorum,
        buckets,
    }
}

fn bucket_view(scope: &Scope, unit: Unit, bucket: &Bucket, now: u64) -> BucketView {
    // The level as of now: the stored one is as of the last command.
    let mut live = bucket.clone();
    live.advance(now);
    BucketView {
        scope: match scope {
            Scope::Key { .. } => "key".to_owned(),
            Scope::KeyRoute { route, .. } => format!("route:{route}"),
        },
        unit: unit.as_str().to_owned(),
        capacity: bucket.limit.capacity,
        refill: match bucket.limit.refill {
            Refill::Rate { amount, every_ms } => format!("{amount} per {every_ms} ms"),
            Refill::Calendar(Period::Day) => "resets every day (UTC)".to_owned(),
            Refill::Calendar(Period::Month) => "resets every month (UTC)".to_owned(),
        },
        level: live.level,
        nodes: bucket
            .nodes
            .iter()
            .filter(|(_, n)| n.last_expires_at_ms > now || n.recent_admissions_per_min(now) > 0)
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
            })
            .collect(),
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
    AdminJson(spec): AdminJson<QuotaSpec>,
) -> Result<Json<QuotaView>, ApiError> {
    let state = ctx.read(Default::default()).await?;
    key_scope(&state, &id)?;
    let scope = Scope::KeyRoute {
        key_id: id.clone(),
        route,
    };
    apply(&ctx, scope, &spec)
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
}
