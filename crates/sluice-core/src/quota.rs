//! The global quota ledger (DESIGN §5): token buckets per scope and unit,
//! from which nodes take **leases** they spend locally.
//!
//! Every change goes through the Raft log and [`Ledger`]'s methods run inside
//! `State::apply`, so every node computes the same levels. Time is the
//! leader's stamp on each command; a stamp older than a bucket's clock (a new
//! leader whose clock is behind) refills nothing and never runs a bucket
//! backwards.
//!
//! The bound, by construction: a grant never exceeds the bucket's level, the
//! level never exceeds the capacity, and it rises only by refill or by a
//! node returning lease it held. So over any interval of length `T`,
//! `granted − returned ≤ capacity + rate · T`, summed over every node and
//! across leader changes, because every grant and return is in the log.
//!
//! The ledger never takes a lease back: a lease's expiry tells its node when
//! to stop spending it; only the node returns what it did not spend. A lease
//! whose node died is capacity lost until the bucket refills: safe, never
//! spent twice.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ApplyError;

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// Requests admitted.
    Requests,
    /// LLM tokens, prompt plus completion.
    Tokens,
    /// Spend, in micro-USD, from the route's prices.
    MicroUsd,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
            Unit::MicroUsd => "micro_usd",
        }
    }
}

/// Who a bucket limits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Everything a virtual key does.
    Key { key_id: String },
    /// What a key does on one route.
    KeyRoute { key_id: String, route: String },
}

impl Scope {
    /// The key this scope belongs to.
    pub fn key_id(&self) -> &str {
        match self {
            Scope::Key { key_id } | Scope::KeyRoute { key_id, .. } => key_id,
        }
    }
}

/// A calendar period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Period {
    Day,
    Month,
}

/// How a bucket fills back up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refill {
    /// `amount` units every `every_ms` milliseconds, continuously (a token
    /// bucket: `rpm = N` is capacity N refilled by N every 60 000 ms).
    Rate { amount: u64, every_ms: u64 },
    /// Back to full capacity at the start of each calendar period (a
    /// budget): what was not spent does not carry over.
    Calendar(Period),
}

/// One limit: a bucket of `capacity` units with its refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub unit: Unit,
    pub capacity: u64,
    pub refill: Refill,
}

impl Limit {
    /// `n` per minute: capacity `n`, refilled at `n / 60` per second.
    pub fn per_minute(unit: Unit, n: u64) -> Self {
        Limit {
            unit,
            capacity: n,
            refill: Refill::Rate {
                amount: n,
                every_ms: 60_000,
            },
        }
    }

    /// Milliseconds until `units` more units have refilled, from `now_ms`:
    /// at the rate, or at the start of the next period for a budget.
    pub fn refill_ms(&self, units: u64, now_ms: u64) -> u64 {
        if units == 0 {
            return 0;
        }
        match self.refill {
            Refill::Rate { amount, every_ms } => {
                let ms =
                    (u128::from(units) * u128::from(every_ms)).div_ceil(u128::from(amount.max(1)));
                u64::try_from(ms).unwrap_or(u64::MAX)
            }
            Refill::Calendar(period) => next_period_start(period, now_ms).saturating_sub(now_ms),
        }
    }

    /// Units refilled over `elapsed_ms` (whole units; a budget refills
    /// nothing within its period).
    pub fn refilled(&self, elapsed_ms: u64) -> u64 {
        match self.refill {
            Refill::Rate { amount, every_ms } => {
                let units =
                    u128::from(elapsed_ms) * u128::from(amount) / u128::from(every_ms.max(1));
                u64::try_from(units).unwrap_or(u64::MAX)
            }
            Refill::Calendar(_) => 0,
        }
    }

    /// This limit's `1/n` share: capacity and rate divided by `n` (at least
    /// one unit of capacity).
    pub fn share(&self, n: u64) -> Limit {
        let n = n.max(1);
        Limit {
            unit: self.unit,
            capacity: (self.capacity / n).max(1),
            refill: match self.refill {
                Refill::Rate { amount, every_ms } => Refill::Rate {
                    amount,
                    every_ms: every_ms.saturating_mul(n),
                },
                calendar @ Refill::Calendar(_) => calendar,
            },
        }
    }

    fn validate(&self, field: &str) -> Result<(), ApplyError> {
        if self.capacity == 0 {
            return Err(ApplyError::invalid(
                format!("{field}.capacity"),
                "must be > 0",
            ));
        }
        if let Refill::Rate { every_ms, .. } = self.refill {
            if every_ms == 0 {
                return Err(ApplyError::invalid(
                    format!("{field}.refill.every_ms"),
                    "must be > 0",
                ));
            }
        }
        Ok(())
    }
}

/// What a node does when it cannot reach the ledger (no leader) and its
/// leases are spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnNoQuorum {
    /// Refuse (503) until the ledger answers again.
    #[default]
    Deny,
    /// Admit up to a 1/N share of each bucket's rate (N = cluster voters):
    /// a bounded, documented overshoot.
    LocalShare,
}

/// Every limit of one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaPolicy {
    pub limits: Vec<Limit>,
    pub on_no_quorum: OnNoQuorum,
}

impl QuotaPolicy {
    pub fn validate(&self) -> Result<(), ApplyError> {
        if self.limits.len() > 8 {
            return Err(ApplyError::invalid("limits", "at most 8 limits"));
        }
        for (i, limit) in self.limits.iter().enumerate() {
            limit.validate(&format!("limits[{i}]"))?;
            if self.limits[..i].iter().any(|l| l.unit == limit.unit) {
                return Err(ApplyError::invalid(
                    format!("limits[{i}].unit"),
                    "one limit per unit",
                ));
            }
        }
        Ok(())
    }
}

/// How long a node's stated demand counts when grants are split.
pub const DEMAND_WINDOW_MS: u64 = 5_000;
/// Largest lease time-to-live a command may ask for.
pub const MAX_LEASE_TTL_MS: u64 = 60_000;
/// Most wants or returns in one command.
pub const MAX_BATCH: usize = 4_096;

/// One node's side of a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShare {
    /// Granted minus returned, over the node's life: the most it may return.
    pub held: u64,
    /// The node's latest stated demand and when.
    pub demand: u64,
    pub demand_at_ms: u64,
    /// The latest grant and its expiry (for the live view).
    pub last_grant: u64,
    pub last_expires_at_ms: u64,
    /// What the node reported it has admitted from this bucket over its
    /// life, when, and its rate since the report before (units a minute):
    /// the live view's recent admissions.
    pub admitted_total: u64,
    pub admitted_at_ms: u64,
    pub admitted_per_min: u64,
}

impl NodeShare {
    /// Records the node's lifetime admissions as of `now_ms`, and the rate
    /// since its previous report.
    fn note_admitted(&mut self, total: u64, now_ms: u64) {
        if total > self.admitted_total && now_ms > self.admitted_at_ms && self.admitted_at_ms > 0 {
            let delta = u128::from(total - self.admitted_total);
            let elapsed = u128::from(now_ms - self.admitted_at_ms);
            self.admitted_per_min = u64::try_from(delta * 60_000 / elapsed).unwrap_or(u64::MAX);
        } else if total <= self.admitted_total {
            self.admitted_per_min = 0;
        }
        self.admitted_total = total;
        self.admitted_at_ms = now_ms;
    }

    /// Units a minute the node admitted recently (0 when it has not
    /// reported within the demand window).
    pub fn recent_admissions_per_min(&self, now_ms: u64) -> u64 {
        if now_ms.saturating_sub(self.admitted_at_ms) <= DEMAND_WINDOW_MS {
            self.admitted_per_min
        } else {
            0
        }
    }
}

/// One bucket: a scope's limit in one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub limit: Limit,
    /// Units available to grant, as of `as_of_ms`.
    pub level: u64,
    pub as_of_ms: u64,
    /// Refill not yet whole units: `amount · elapsed mod every_ms`.
    carry: u64,
    /// For calendar buckets: start of the period the level belongs to.
    period_start_ms: u64,
    pub nodes: BTreeMap<u64, NodeShare>,
}

impl Bucket {
    /// A full bucket as of `now_ms`.
    pub fn new(limit: Limit, now_ms: u64) -> Self {
        Bucket {
            limit,
            level: limit.capacity,
            as_of_ms: now_ms,
            carry: 0,
            period_start_ms: match limit.refill {
                Refill::Calendar(period) => period_start(period, now_ms),
                Refill::Rate { .. } => 0,
            },
            nodes: BTreeMap::new(),
        }
    }

    /// Refills up to `now_ms` (no-op for a stamp not after the bucket's clock).
    pub fn advance(&mut self, now_ms: u64) {
        if now_ms <= self.as_of_ms {
            return;
        }
        match self.limit.refill {
            Refill::Rate { amount, every_ms } => {
                let elapsed = u128::from(now_ms - self.as_of_ms);
                let total = elapsed * u128::from(amount) + u128::from(self.carry);
                let whole = total / u128::from(every_ms);
                let level = (u128::from(self.level) + whole).min(u128::from(self.limit.capacity));
                self.level = level as u64;
                self.carry = if self.level == self.limit.capacity {
                    0
                } else {
                    (total % u128::from(every_ms)) as u64
                };
            }
            Refill::Calendar(period) => {
                let start = period_start(period, now_ms);
                if start > self.period_start_ms {
                    self.period_start_ms = start;
                    self.level = self.limit.capacity;
                }
            }
        }
        self.as_of_ms = now_ms;
    }

    /// Applies a new limit. The level is kept, capped at the new capacity
    /// (a new limit never hands out more than the old one had left); the
    /// refill restarts from now.
    fn relimit(&mut self, limit: Limit, now_ms: u64) {
        self.advance(now_ms);
        let level = self.level.min(limit.capacity);
        let nodes = std::mem::take(&mut self.nodes);
        *self = Bucket {
            level,
            nodes,
            ..Bucket::new(limit, self.as_of_ms)
        };
    }

    /// Takes `amount` if the level holds it.
    pub fn take(&mut self, amount: u64) -> bool {
        let taken = self.level >= amount;
        if taken {
            self.level -= amount;
        }
        taken
    }

    /// Puts `amount` back, never above the capacity.
    pub fn put_back(&mut self, amount: u64) {
        self.level = self.level.saturating_add(amount).min(self.limit.capacity);
    }

    /// Sum of every node's recent demand (as of `now_ms`).
    fn recent_demand(&self, now_ms: u64) -> u128 {
        self.nodes
            .values()
            .filter(|n| now_ms.saturating_sub(n.demand_at_ms) <= DEMAND_WINDOW_MS)
            .map(|n| u128::from(n.demand))
            .sum()
    }

    /// Sum of every node's lease still within its expiry.
    pub fn outstanding(&self, now_ms: u64) -> u64 {
        self.nodes
            .values()
            .filter(|n| n.last_expires_at_ms > now_ms)
            .map(|n| n.last_grant)
            .sum()
    }
}

/// The start (ms since the epoch, UTC) of the `period` containing `at_ms`.
pub fn period_start(period: Period, at_ms: u64) -> u64 {
    let secs = i64::try_from(at_ms / 1000).unwrap_or(i64::MAX);
    let date = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    let start = match period {
        Period::Day => date,
        Period::Month => date.replace_day(1).unwrap_or(date),
    };
    let ts = start.midnight().assume_utc().unix_timestamp();
    u64::try_from(ts).unwrap_or(0) * 1000
}

/// The start of the `period` after the one containing `at_ms`.
pub fn next_period_start(period: Period, at_ms: u64) -> u64 {
    let start = period_start(period, at_ms);
    let secs = i64::try_from(start / 1000).unwrap_or(i64::MAX);
    let date = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    let next = match period {
        Period::Day => date.next_day(),
        Period::Month => {
            let (year, month) = match date.month() {
                time::Month::December => (date.year() + 1, time::Month::January),
                m => (date.year(), m.next()),
            };
            time::Date::from_calendar_date(year, month, 1).ok()
        }
    };
    next.map_or(u64::MAX, |d| {
        u64::try_from(d.midnight().assume_utc().unix_timestamp()).unwrap_or(0) * 1000
    })
}

/// One entry of a lease request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    pub scope: Scope,
    pub unit: Unit,
    /// Units wanted now; 0 says the node's demand has dropped.
    pub amount: u64,
    /// Units this node has admitted from the bucket over its life (for the
    /// live view; no effect on what is granted).
    pub admitted_total: u64,
}

/// One entry of a lease return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    pub scope: Scope,
    pub unit: Unit,
    pub amount: u64,
}

/// What a [`Ledger::grant`] gave, in the order of the wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub amount: u64,
    pub expires_at_ms: u64,
    /// The bucket's level after the grant (for `remaining` headers), `None`
    /// when the scope has no such limit (nothing to enforce).
    pub level_after: Option<u64>,
}

/// Every scope's policy. Shared (`Arc`) by the versions of the state that
/// did not change it, so a node can tell a changed table from an unchanged
/// one by identity ([`Ledger::policy_table`]) and keep what it derived from
/// it (`sluice_quota`'s plans) until it changes.
pub type PolicyTable = BTreeMap<Scope, QuotaPolicy>;

/// Every bucket and every scope's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    policies: Arc<PolicyTable>,
    /// Persistent (see `State`): a grant changes a few buckets of many.
    #[serde(with = "crate::persistent::ord_map")]
    buckets: OrdMap<(Scope, Unit), Bucket>,
}

impl Ledger {
    /// Sets (or with `None` removes) `scope`'s policy. Buckets of units the
    /// policy keeps keep their level (capped at the new capacity); new ones
    /// start full.
    pub fn set_policy(
        &mut self,
        scope: &Scope,
        policy: Option<&QuotaPolicy>,
        now_ms: u64,
    ) -> Result<(), ApplyError> {
        let Some(policy) = policy else {
            self.remove_scope(scope);
            return Ok(());
        };
        policy.validate()?;
        let units: Vec<Unit> = policy.limits.iter().map(|l| l.unit).collect();
        self.retain_buckets(|s, unit| s != scope || units.contains(&unit));
        for limit in &policy.limits {
            match self.buckets.get_mut(&(scope.clone(), limit.unit)) {
                Some(bucket) => bucket.relimit(*limit, now_ms),
                None => {
                    self.buckets
                        .insert((scope.clone(), limit.unit), Bucket::new(*limit, now_ms));
                }
            }
        }
        Arc::make_mut(&mut self.policies).insert(scope.clone(), policy.clone());
        Ok(())
    }

    fn remove_scope(&mut self, scope: &Scope) {
        if self.policies.contains_key(scope) {
            Arc::make_mut(&mut self.policies).remove(scope);
        }
        self.retain_buckets(|s, _| s != scope);
    }

    /// Removes every scope of `key_id` (the key was deleted).
    pub fn remove_key(&mut self, key_id: &str) {
        self.remove_policies(|s| s.key_id() == key_id);
        self.retain_buckets(|s, _| s.key_id() != key_id);
    }

    /// Removes every key × route scope of `route` (the route was deleted).
    pub fn remove_route(&mut self, route: &str) {
        let of_route = |s: &Scope| matches!(s, Scope::KeyRoute { route: r, .. } if r == route);
        self.remove_policies(of_route);
        self.retain_buckets(|s, _| !of_route(s));
    }

    /// Keeps the buckets `keep` says yes to (removing each other one copies
    /// only its path of the persistent map).
    fn retain_buckets(&mut self, keep: impl Fn(&Scope, Unit) -> bool) {
        let doomed: Vec<(Scope, Unit)> = self
            .buckets
            .keys()
            .filter(|(s, unit)| !keep(s, *unit))
            .cloned()
            .collect();
        for key in &doomed {
            self.buckets.remove(key);
        }
    }

    /// Removes the policies of the scopes `doomed` picks; leaves the table
    /// (and its identity) alone when there are none.
    fn remove_policies(&mut self, doomed: impl Fn(&Scope) -> bool) {
        if self.policies.keys().any(&doomed) {
            Arc::make_mut(&mut self.policies).retain(|s, _| !doomed(s));
        }
    }

    /// Grants `node` leases for `wants`, valid for `ttl_ms`. Never more than
    /// a bucket's level; when the recent demand of every node together is
    /// more than the level, each gets its share in proportion to its demand.
    pub fn grant(
        &mut self,
        node: u64,
        wants: &[Want],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Grant>, ApplyError> {
        if wants.len() > MAX_BATCH {
            return Err(ApplyError::invalid("wants", format!("at most {MAX_BATCH}")));
        }
        if ttl_ms == 0 || ttl_ms > MAX_LEASE_TTL_MS {
            return Err(ApplyError::invalid(
                "ttl_ms",
                format!("must be between 1 and {MAX_LEASE_TTL_MS}"),
            ));
        }
        let mut grants = Vec::with_capacity(wants.len());
        for want in wants {
            let Some(bucket) = self.buckets.get_mut(&(want.scope.clone(), want.unit)) else {
                grants.push(Grant {
                    amount: 0,
                    expires_at_ms: 0,
                    level_after: None,
                });
                continue;
            };
            bucket.advance(now_ms);
            let now = bucket.as_of_ms;
            {
                let share = bucket.nodes.entry(node).or_default();
                share.demand = want.amount;
                share.demand_at_ms = now;
                share.note_admitted(want.admitted_total, now);
            }
            let level = u128::from(bucket.level);
            let wanted = u128::from(want.amount);
            let demand = bucket.recent_demand(now);
            let amount = if demand <= level {
                wanted.min(level)
            } else {
                // Contention: a share of what is left, in proportion to
                // this node's part of the demand, at least one unit while
                // any is left so that small demands are not starved.
                (level * wanted / demand).max(u128::from(wanted > 0 && level > 0))
            } as u64;
            bucket.level -= amount;
            let share = bucket.nodes.entry(node).or_default();
            share.held = share.held.saturating_add(amount);
            share.last_grant = amount;
            share.last_expires_at_ms = now.saturating_add(ttl_ms);
            grants.push(Grant {
                amount,
                expires_at_ms: share.last_expires_at_ms,
                level_after: Some(bucket.level),
            });
        }
        Ok(grants)
    }

    /// Takes back what `node` returns: never more than it holds, never above
    /// a bucket's capacity.
    pub fn give_back(
        &mut self,
        node: u64,
        returns: &[Return],
        now_ms: u64,
    ) -> Result<(), ApplyError> {
        if returns.len() > MAX_BATCH {
            return Err(ApplyError::invalid(
                "returns",
                format!("at most {MAX_BATCH}"),
            ));
        }
        for r in returns {
            let Some(bucket) = self.buckets.get_mut(&(r.scope.clone(), r.unit)) else {
                continue;
            };
            bucket.advance(now_ms);
            let Some(share) = bucket.nodes.get_mut(&node) else {
                continue;
            };
            let amount = r.amount.min(share.held);
            share.held -= amount;
            bucket.put_back(amount);
        }
        Ok(())
    }

    pub fn policy(&self, scope: &Scope) -> Option<&QuotaPolicy> {
        self.policies.get(scope)
    }

    pub fn policies(&self) -> impl Iterator<Item = (&Scope, &QuotaPolicy)> {
        self.policies.iter()
    }

    /// The policy table itself: the same `Arc` until a policy changes.
    pub fn policy_table(&self) -> &Arc<PolicyTable> {
        &self.policies
    }

    pub fn bucket(&self, scope: &Scope, unit: Unit) -> Option<&Bucket> {
        self.buckets.get(&(scope.clone(), unit))
    }

    /// Every bucket of `key_id`'s scopes.
    pub fn buckets_of_key<'a>(
        &'a self,
        key_id: &'a str,
    ) -> impl Iterator<Item = (&'a Scope, Unit, &'a Bucket)> + 'a {
        self.buckets
            .iter()
            .filter(move |((s, _), _)| s.key_id() == key_id)
            .map(|((s, u), b)| (s, *u, b))
    }
}

#[cfg(test)]
mod tests;
