//! What a limit is: its unit, its scope, its capacity and how it refills,
//! and the policy that groups a scope's limits.

use serde::{Deserialize, Serialize};

use crate::ApplyError;

/// A rate limit's capacity must hold this much of its refill (see
/// [`Limit::least_capacity`]). Checked where an operator writes a limit,
/// not when the log is applied: a limit committed before the check keeps
/// applying as it did.
pub const MIN_CAPACITY_MS: u64 = 1_000;

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
    /// Every unit, in [`Unit::index`] order.
    pub const ALL: [Unit; 3] = [Unit::Requests, Unit::Tokens, Unit::MicroUsd];

    /// A unit's place in per-unit arrays.
    pub fn index(self) -> usize {
        match self {
            Unit::Requests => 0,
            Unit::Tokens => 1,
            Unit::MicroUsd => 2,
        }
    }

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

    /// The same scope of key `key_id` (a template's scope, for one of its
    /// subject keys).
    pub fn with_key(&self, key_id: String) -> Scope {
        match self {
            Scope::Key { .. } => Scope::Key { key_id },
            Scope::KeyRoute { route, .. } => Scope::KeyRoute {
                key_id,
                route: route.clone(),
            },
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

    /// The least capacity a rate limit may be given: what it refills in
    /// [`MIN_CAPACITY_MS`], at least one unit. A smaller bucket fills up
    /// between lease rounds and loses the refill above it, so the cluster
    /// would refuse traffic one bucket of that limit admits (a budget has
    /// no least).
    pub fn least_capacity(&self) -> u64 {
        match self.refill {
            Refill::Rate { amount, every_ms } => {
                let units = (u128::from(amount) * u128::from(MIN_CAPACITY_MS))
                    .div_ceil(u128::from(every_ms.max(1)));
                u64::try_from(units).unwrap_or(u64::MAX).max(1)
            }
            Refill::Calendar(_) => 1,
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

    /// The standing reserve each of `nodes` nodes keeps of this limit: a
    /// slice it spends without waiting for a lease round (after idle, in a
    /// burst, through an election). Together the nodes keep what refills in
    /// `window_ms` (a rate; at least a unit a node) or a hundredth of the
    /// allowance (a budget), and never more than a tenth of the capacity;
    /// 0 when that is less than one unit a node (tiny limits have no
    /// standing reserve and wait for a round instead).
    pub fn standing_share(&self, nodes: u64, window_ms: u64) -> u64 {
        let nodes = nodes.max(1);
        if window_ms == 0 {
            return 0;
        }
        let together = match self.refill {
            Refill::Rate { .. } => self.refilled(window_ms).max(nodes),
            Refill::Calendar(_) => self.capacity / 100,
        }
        .min(self.capacity / 10);
        together / nodes
    }

    /// Under [`Reserve::Estimate`], the most one node may have admitted
    /// beyond what it reserved (each request in flight counts what its
    /// `max_tokens` could use beyond its estimate): the capacity split
    /// between `nodes` nodes. So the nodes together can be charged at most
    /// one capacity beyond the limit's bound, and a node in debt admits
    /// nothing more of it until the debt is paid.
    pub fn exposure_cap(&self, nodes: u64) -> u64 {
        self.capacity / nodes.max(1)
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaPolicy {
    pub limits: Vec<Limit>,
    pub on_no_quorum: OnNoQuorum,
    /// What a request reserves against this policy's token and spend
    /// limits before its answer is known.
    pub reserve: Reserve,
}

/// What a request reserves of tokens (and spend) before its answer says
/// what it used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reserve {
    /// Its prompt plus all of its `max_tokens`: a limit is never exceeded
    /// by a request that sets `max_tokens`, but a large `max_tokens` is
    /// refused by a limit its real use would fit.
    #[default]
    MaxTokens,
    /// Its prompt plus an estimate of its completion (the key's recent
    /// completions, at most `max_tokens`); what an answer uses beyond it is
    /// charged afterwards. The overshoot this allows is bounded: see
    /// [`Limit::exposure_cap`].
    Estimate,
}

impl Reserve {
    pub fn as_str(self) -> &'static str {
        match self {
            Reserve::MaxTokens => "max_tokens",
            Reserve::Estimate => "estimate",
        }
    }
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
