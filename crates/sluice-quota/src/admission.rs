//! Admission of one request against every limit that applies to it: the
//! key's and the key × route's, in every unit the request costs.
//!
//! [`Quotas::check`] never waits: it takes from the node's pools (leases
//! from the ledger) or refuses. [`Quotas::admit`] waits for up to two lease
//! rounds (at most `max_wait_ms`) when a refusal came only from this node's
//! pool running dry while the ledger probably still has room (a first
//! request, a burst): so a cold pool does not turn into false rejections.
//!
//! What is taken is a [`Reservation`]: an estimate for tokens and spend,
//! settled against the usage the upstream reported
//! ([`Reservation::settle`]). A reservation dropped without being settled
//! stays charged in full: a client that goes away mid-answer pays the
//! estimate, never nothing.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::quota::{Limit, OnNoQuorum, QuotaPolicy, Refill, Scope, Unit};

use crate::node::{Quotas, Reachability};
use crate::plan::{Plan, Planned};
use crate::pool::Pool;

/// Rounds a refused request may wait for: the one under way when it was
/// refused (which may have missed its demand) and the next.
pub const WAIT_ROUNDS: u64 = 2;

/// What a request costs, in each unit: an estimate at admission, the
/// actual usage at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub requests: u64,
    pub tokens: u64,
    pub micro_usd: u64,
}

impl Cost {
    pub fn of(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Requests => self.requests,
            Unit::Tokens => self.tokens,
            Unit::MicroUsd => self.micro_usd,
        }
    }
}

/// A scope and the policy it has.
#[derive(Debug, Clone, Copy)]
pub struct Scoped<'a> {
    pub scope: &'a Scope,
    pub policy: &'a QuotaPolicy,
}

/// Where one limit stands for this node's callers: the numbers of the
/// `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub unit: Unit,
    /// The limit's capacity.
    pub limit: u64,
    /// Units still available cluster-wide, as far as this node knows: what
    /// it holds plus the ledger's level after its latest grant, refilled
    /// since.
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A limit has less than the request needs. `budget` when the limit is
    /// a calendar budget (refilled only at the next period).
    Exhausted {
        scope: Scope,
        limit: Limit,
        needed: u64,
        retry_after_ms: u64,
        /// The ledger probably has room: the next lease round may admit it.
        wait_worth: bool,
    },
    /// The request needs more than the limit's whole capacity: it can
    /// never be admitted.
    TooLarge {
        scope: Scope,
        limit: Limit,
        needed: u64,
    },
    /// The ledger cannot be reached, this node's leases are spent, and the
    /// policy says `deny`.
    NoQuorum { scope: Scope, retry_after_ms: u64 },
}

/// Where a request's limits stand: the lowest `remaining` of each unit
/// (at most one per unit), in the order the units first appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standings {
    items: [Standing; 3],
    len: usize,
}

impl Default for Standings {
    fn default() -> Self {
        let none = Standing {
            unit: Unit::Requests,
            limit: 0,
            remaining: 0,
            reset_ms: 0,
        };
        Self {
            items: [none; 3],
            len: 0,
        }
    }
}

impl Standings {
    /// Adds `standing`, or keeps it in place of its unit's if lower.
    fn add(&mut self, standing: Standing) {
        let len = self.len;
        if let Some(o) = self.items[..len]
            .iter_mut()
            .find(|o| o.unit == standing.unit)
        {
            if o.remaining > standing.remaining {
                *o = standing;
            }
        } else if let Some(slot) = self.items.get_mut(len) {
            *slot = standing;
            self.len += 1;
        }
    }
}

impl Deref for Standings {
    type Target = [Standing];

    fn deref(&self) -> &[Standing] {
        &self.items[..self.len]
    }
}

/// A refusal, with the standings for the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Box<Reason>,
    pub standings: Standings,
    /// When it was decided (ms since the epoch): the standings are as of
    /// then.
    pub at_ms: u64,
}

impl Denial {
    fn wait_worth(&self) -> bool {
        matches!(
            *self.reason,
            Reason::Exhausted {
                wait_worth: true,
                ..
            }
        )
    }
}

/// An admitted request.
#[derive(Debug)]
pub struct Admission {
    pub reservation: Reservation,
    pub standings: Standings,
    /// When it was decided (ms since the epoch): the standings are as of
    /// then.
    pub at_ms: u64,
}

/// Most limits one request meets: a unit has one limit per scope, and a
/// request has two scopes (its key, its key × route).
const MAX_PARTS: usize = 6;

/// What an admitted request took, to be settled when its answer ends.
/// Dropped unsettled, it stays charged in full. Holds its key's plan (one
/// reference count), and what it took from each limit in place: nothing
/// allocated per request.
#[derive(Debug, Default)]
pub struct Reservation {
    plan: Option<Arc<Plan>>,
    parts: [Part; MAX_PARTS],
    len: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Part {
    /// The limit's index in the plan.
    limit: usize,
    reserved: u64,
    /// Taken from the local share (no quorum, `local_share`).
    local: bool,
}

impl Reservation {
    fn new(plan: &Arc<Plan>) -> Self {
        Self {
            plan: Some(Arc::clone(plan)),
            ..Self::default()
        }
    }

    fn push(&mut self, part: Part) {
        debug_assert!(self.len < MAX_PARTS, "more limits than a request meets");
        if let Some(slot) = self.parts.get_mut(self.len) {
            *slot = part;
            self.len += 1;
        }
    }

    /// Settles against the actual usage: refunds what was reserved and not
    /// used, or charges the excess as debt.
    pub fn settle(self, actual: Cost) {
        let Some(plan) = &self.plan else {
            return;
        };
        for part in &self.parts[..self.len] {
            let planned = plan.limit(part.limit);
            let used = actual.of(planned.limit.unit);
            if part.local {
                planned.pool.settle_local(part.reserved, used);
            } else {
                planned.pool.settle(part.reserved, used);
            }
        }
    }

    /// Whether anything was taken (a key without a policy takes nothing).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn undo(self) {
        self.settle(Cost::default());
    }
}

impl Quotas {
    /// Takes `cost` from every limit of `plan` on `route`, all or nothing,
    /// without waiting.
    pub fn check(
        &self,
        plan: &Arc<Plan>,
        route: &str,
        cost: Cost,
        now_ms: u64,
    ) -> Result<Admission, Denial> {
        let mut taken = Reservation::new(plan);
        for (i, planned) in plan.on(route) {
            let (limit, pool) = (&planned.limit, &planned.pool);
            let amount = cost.of(limit.unit);
            if amount == 0 {
                continue;
            }
            let refused = match self.take(pool, planned.on_no_quorum, limit, amount, now_ms) {
                Ok(local) => {
                    taken.push(Part {
                        limit: i,
                        reserved: amount,
                        local,
                    });
                    continue;
                }
                Err(refused) => refused,
            };
            taken.undo();
            // The limits after this one count the demand too, so that every
            // pool of a cold request asks at the same round.
            for (_, later) in plan.on(route).filter(|(j, _)| *j > i) {
                later.pool.note_refused(cost.of(later.limit.unit));
            }
            let reason = self.reason(planned, refused, amount, now_ms);
            return Err(Denial {
                reason: Box::new(reason),
                standings: self.standings(plan, route, now_ms),
                at_ms: now_ms,
            });
        }
        Ok(Admission {
            reservation: taken,
            standings: self.standings(plan, route, now_ms),
            at_ms: now_ms,
        })
    }

    /// Why `planned` refused `amount`.
    fn reason(&self, planned: &Planned, refused: Refused, amount: u64, now_ms: u64) -> Reason {
        let (scope, limit, pool) = (&planned.scope, &planned.limit, &planned.pool);
        match refused {
            Refused::TooLarge => Reason::TooLarge {
                scope: scope.clone(),
                limit: *limit,
                needed: amount,
            },
            Refused::NoQuorum => Reason::NoQuorum {
                scope: scope.clone(),
                retry_after_ms: self.config().tick_ms.saturating_mul(10),
            },
            Refused::Short { local_share } => {
                let (room, refill_limit) = match local_share {
                    Some(share) => (0, share),
                    None => (
                        available(pool).saturating_add(pool.ledger_level_estimate(limit, now_ms)),
                        *limit,
                    ),
                };
                let missing = amount.saturating_sub(room);
                // Worth waiting for a round only when the ledger had units
                // left after this node's last grant (or it had none yet):
                // what merely refills since is contended by every node, and
                // a 429 with its retry time is the honest answer to that.
                let left = available(pool).saturating_add(pool.ledger_level_left(limit));
                Reason::Exhausted {
                    scope: scope.clone(),
                    limit: *limit,
                    needed: amount,
                    retry_after_ms: refill_limit
                        .refill_ms(missing, now_ms)
                        .saturating_add(self.config().tick_ms),
                    wait_worth: local_share.is_none() && left >= amount,
                }
            }
        }
    }

    /// [`Quotas::check`], and when the refusal came only from this node's
    /// pool running dry, again after each of the next [`WAIT_ROUNDS`] lease
    /// rounds (the one under way may not have seen this request), within
    /// `max_wait_ms`. A rate limit that is simply spent is refused at once.
    pub async fn admit(
        &self,
        plan: &Arc<Plan>,
        route: &str,
        cost: Cost,
        now_ms: impl Fn() -> u64,
    ) -> Result<Admission, Denial> {
        // Read before the first check: the round after the one under way
        // has surely seen this request's demand.
        let seen = self.rounds_done();
        let mut decided = self.check(plan, route, cost, now_ms());
        if !matches!(&decided, Err(denial) if denial.wait_worth()) {
            return decided;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config().max_wait_ms);
        for rounds in 1..=WAIT_ROUNDS {
            match &decided {
                Err(denial) if denial.wait_worth() => {
                    if !self.round_after(seen + rounds - 1, deadline).await {
                        break;
                    }
                    decided = self.check(plan, route, cost, now_ms());
                }
                _ => break,
            }
        }
        decided
    }

    /// One pool's part: `Ok(local)` when taken (`local`: from the local
    /// share).
    fn take(
        &self,
        pool: &Pool,
        on_no_quorum: OnNoQuorum,
        limit: &Limit,
        amount: u64,
        now_ms: u64,
    ) -> Result<bool, Refused> {
        if amount > limit.capacity {
            return Err(Refused::TooLarge);
        }
        if pool.try_take(amount, now_ms) {
            return Ok(false);
        }
        if self.reachability() != Reachability::Unreachable {
            return Err(Refused::Short { local_share: None });
        }
        match on_no_quorum {
            OnNoQuorum::Deny => Err(Refused::NoQuorum),
            OnNoQuorum::LocalShare => {
                let share = limit.share(self.voters());
                if pool.try_take_local(share, amount, now_ms) {
                    Ok(true)
                } else {
                    Err(Refused::Short {
                        local_share: Some(share),
                    })
                }
            }
        }
    }

    /// Where every limit of `plan` on `route` stands: the lowest
    /// `remaining` per unit across scopes.
    pub fn standings(&self, plan: &Plan, route: &str, now_ms: u64) -> Standings {
        let mut out = Standings::default();
        for (_, planned) in plan.on(route) {
            let (limit, pool) = (&planned.limit, &planned.pool);
            let remaining = available(pool)
                .saturating_add(pool.ledger_level_estimate(limit, now_ms))
                .min(limit.capacity);
            let reset_ms = match limit.refill {
                Refill::Rate { .. } => limit.refill_ms(limit.capacity - remaining, now_ms),
                Refill::Calendar(_) => limit.refill_ms(1, now_ms),
            };
            out.add(Standing {
                unit: limit.unit,
                limit: limit.capacity,
                remaining,
                reset_ms,
            });
        }
        out
    }
}

/// Why one pool refused.
enum Refused {
    TooLarge,
    NoQuorum,
    /// Not enough: in the pool, or in the local share when given.
    Short {
        local_share: Option<Limit>,
    },
}

fn available(pool: &Pool) -> u64 {
    pool.available().max(0) as u64
}

#[cfg(test)]
mod tests;
