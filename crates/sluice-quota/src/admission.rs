//! Admission of one request against every limit that applies to it: the
//! key's and the key × route's, in every unit the request costs.
//!
//! [`Quotas::check`] never waits: it takes from the node's pools (its
//! leases, then its standing reserves) or refuses. [`Quotas::admit`] waits
//! for lease rounds, up to `max_wait_ms`, when the refusal came only from
//! this node's pools while the ledger, as this node's copy of the
//! replicated state shows it, holds what the request needs, or will have
//! refilled it within the wait: so a cold pool, a burst or a small limit
//! read between two rounds does not turn into false rejections.
//!
//! What is taken is a [`Reservation`]: an estimate for tokens and spend,
//! settled against the usage the upstream reported
//! ([`Reservation::settle`]). A reservation dropped without being settled
//! stays charged in full: a client that goes away mid-answer pays the
//! estimate, never nothing.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::node::{LedgerView, Quotas, Reachability};
use crate::plan::{Plan, Planned};
use crate::pool::{Pool, Source};
use sluice_core::quota::{Ledger, Limit, OnNoQuorum, QuotaPolicy, Refill, Reserve, Scope, Unit};

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

/// What a request asks of its limits: the most it can cost (its prompt and
/// all of its `max_tokens`), and what it is estimated to cost, reserved
/// instead by limits whose policy says `reserve = "estimate"`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub full: Cost,
    pub estimate: Cost,
}

impl Ask {
    /// A request whose cost is known: both the same.
    pub fn exact(cost: Cost) -> Self {
        Self {
            full: cost,
            estimate: cost,
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
    /// Units this node's callers can still have: what it holds (lease and
    /// standing reserve) plus the ledger's level in its copy of the
    /// replicated state, refilled since.
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A limit has less than the request needs.
    Exhausted {
        scope: Scope,
        limit: Limit,
        needed: u64,
        retry_after_ms: u64,
        /// The ledger has what is missing, or will have refilled it within
        /// `max_wait_ms`: a lease round may admit it.
        wait_worth: bool,
    },
    /// The request needs more than the limit's whole capacity: it can
    /// never be admitted.
    TooLarge {
        scope: Scope,
        limit: Limit,
        needed: u64,
    },
    /// The ledger cannot be reached, this node's leases and reserve are
    /// spent, and the policy says `deny`.
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

/// How long after a request waited in vain for units other nodes held no
/// request of the same limit waits for them again.
const FAILED_WAIT_COOLDOWN_MS: u64 = 1_000;

/// A refusal, with the standings for the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Box<Reason>,
    /// The refusing limit's index in the plan.
    limit: u32,
    pub standings: Box<Standings>,
    /// When it was decided (ms since the epoch): the standings are as of
    /// then.
    pub at_ms: u64,
    /// Whether the request waited for a lease round before this.
    pub waited: bool,
}

impl Denial {
    /// Whether the request may be admitted after a lease round: the ledger
    /// has (or will soon have) what it needs, or the ledger cannot be
    /// reached now and a round may reach it (an election ends).
    pub fn wait_worth(&self) -> bool {
        matches!(
            *self.reason,
            Reason::Exhausted {
                wait_worth: true,
                ..
            } | Reason::NoQuorum { .. }
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
    /// Whether the request waited for a lease round to be admitted.
    pub waited: bool,
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
    /// Where the units came from.
    source: Source,
    /// What the request may use beyond `reserved` (`reserve = "estimate"`).
    exposure: u64,
    /// Whether the answer may refund some of it (tokens, spend): until it
    /// is settled, the ledger counts it as held. A request is spent once
    /// admitted.
    refundable: bool,
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

    /// Records the answer's completion tokens: the estimate the key's next
    /// requests reserve under `reserve = "estimate"`.
    pub fn note_completion(&self, tokens: u64) {
        if let Some(plan) = &self.plan {
            plan.record_completion(tokens);
        }
    }

    /// Settles against the actual usage: refunds what was reserved and not
    /// used, or charges the excess as debt.
    pub fn settle(mut self, actual: Cost) {
        self.settle_parts(Some(actual));
    }

    /// Settles every part: at `actual`, or (`None`) leaving the reservation
    /// charged. The exposure of every part is released either way.
    fn settle_parts(&mut self, actual: Option<Cost>) {
        let Some(plan) = self.plan.take() else {
            return;
        };
        for part in &self.parts[..self.len] {
            let planned = plan.limit(part.limit);
            planned.pool.unexpose(part.exposure);
            // Unsettled: charged in full.
            let used = actual.map_or(part.reserved, |a| a.of(planned.limit.unit));
            if part.refundable {
                planned.pool.settle(part.reserved, used, part.source);
            } else if used > part.reserved {
                // Spent at admission; more than that is debt.
                planned.pool.settle(0, used - part.reserved, Source::Lease);
            }
        }
    }

    /// Once every part is taken: what cannot be refunded is spent now, and
    /// stops counting as reserved.
    fn commit(&mut self) {
        let Some(plan) = &self.plan else {
            return;
        };
        for part in self.parts[..self.len].iter().filter(|p| !p.refundable) {
            if part.source != Source::Local {
                plan.limit(part.limit).pool.commit(part.reserved);
            }
        }
    }

    /// Whether anything was taken (a key without a policy takes nothing).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The plan the reservation was taken from.
    pub fn plan(&self) -> Option<&Arc<Plan>> {
        self.plan.as_ref()
    }

    fn undo(mut self) {
        if let Some(plan) = self.plan.take() {
            for part in &self.parts[..self.len] {
                let planned = plan.limit(part.limit);
                planned.pool.unexpose(part.exposure);
                planned.pool.put_back(part.reserved, part.source);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Unsettled: the reservation stays charged; only the exposure of
        // the requests in flight is released.
        self.settle_parts(None);
    }
}

/// What one limit will take of a request: `amount` now, and `exposure`
/// more it may use later (`reserve = "estimate"`).
struct Take {
    amount: u64,
    exposure: u64,
    /// The least the limit could ever take of it is more than its whole
    /// capacity.
    too_large: bool,
}

impl Quotas {
    /// Takes what `ask` costs from every limit of `plan` on `route`, all or
    /// nothing, without waiting. `ledger` is this node's copy of the
    /// replicated ledger (for why a refusal was made and the standings).
    pub fn check(
        &self,
        plan: &Arc<Plan>,
        route: &str,
        ask: Ask,
        now_ms: u64,
        ledger: &Ledger,
    ) -> Result<Admission, Denial> {
        let mut taken = Reservation::new(plan);
        for (i, planned) in plan.on(route) {
            let (limit, pool) = (&planned.limit, &planned.pool);
            let Some(take) = self.size(planned, ask) else {
                continue;
            };
            let taken_now = if take.too_large {
                Err(Refused::TooLarge)
            } else if take.amount > limit.capacity {
                // Only the exposure cap stands in the way: requests in
                // flight will free it.
                Err(Refused::Short { local_share: None })
            } else {
                self.take(pool, planned.on_no_quorum, limit, take.amount, now_ms)
            };
            let refused = match taken_now {
                Ok(source) => {
                    taken.push(Part {
                        limit: i,
                        reserved: take.amount,
                        source,
                        exposure: take.exposure,
                        refundable: limit.unit != Unit::Requests,
                    });
                    continue;
                }
                Err(refused) => refused,
            };
            pool.unexpose(take.exposure);
            taken.undo();
            // The limits after this one count the demand too, so that every
            // pool of a cold request asks at the same round.
            for (_, later) in plan.on(route).filter(|(j, _)| *j > i) {
                later.pool.note_refused(ask.full.of(later.limit.unit));
            }
            let reason = self.reason(planned, refused, take.amount, now_ms, ledger);
            return Err(Denial {
                reason: Box::new(reason),
                limit: u32::try_from(i).unwrap_or(u32::MAX),
                standings: Box::new(self.standings(plan, route, now_ms, ledger)),
                at_ms: now_ms,
                waited: false,
            });
        }
        taken.commit();
        Ok(Admission {
            reservation: taken,
            standings: self.standings(plan, route, now_ms, ledger),
            at_ms: now_ms,
            waited: false,
        })
    }

    /// What `planned` takes of `ask` (`None`: nothing). Under
    /// `reserve = "estimate"` the estimate, and what the request may use
    /// beyond it as exposure, as far as the pool's exposure cap allows;
    /// the rest of the whole cost is reserved.
    fn size(&self, planned: &Planned, ask: Ask) -> Option<Take> {
        let full = ask.full.of(planned.limit.unit);
        if full == 0 {
            return None;
        }
        let capacity = planned.limit.capacity;
        if planned.reserve != Reserve::Estimate {
            return Some(Take {
                amount: full,
                exposure: 0,
                too_large: full > capacity,
            });
        }
        let estimate = ask.estimate.of(planned.limit.unit).min(full);
        if estimate > capacity {
            return Some(Take {
                amount: estimate,
                exposure: 0,
                too_large: true,
            });
        }
        let cap = planned.limit.exposure_cap(self.nodes());
        let exposure = planned.pool.expose(full - estimate, cap);
        Some(Take {
            amount: full - exposure,
            exposure,
            too_large: false,
        })
    }

    /// Why `planned` refused `amount`.
    fn reason(
        &self,
        planned: &Planned,
        refused: Refused,
        amount: u64,
        now_ms: u64,
        ledger: &Ledger,
    ) -> Reason {
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
                        pool.spendable(now_ms)
                            .saturating_add(ledger_level(ledger, planned, now_ms)),
                        *limit,
                    ),
                };
                let missing = amount.saturating_sub(room);
                let bucket = ledger.bucket(scope, limit.unit);
                let refill_ms = match (local_share, bucket) {
                    (None, Some(bucket)) => bucket.refill_ms(missing, now_ms),
                    _ => refill_limit.refill_ms(missing, now_ms),
                };
                let tick = self.config().tick_ms;
                // Worth a wait when the ledger has what is missing, or will
                // have refilled it within the wait: a round can then grant
                // it (unless other nodes take it first, and then the wait
                // ends in the same refusal). Or when other nodes hold leases
                // that may come back (they return what they do not need
                // once this node's demand shows the bucket is contended),
                // unless such a wait came to nothing just before.
                let refills_in_time = refill_ms.saturating_add(tick) <= self.config().max_wait_ms;
                let held_elsewhere = bucket
                    .is_some_and(|b| b.holding_except(self.config().node_id) >= missing)
                    && pool.may_wait_for_others(now_ms, FAILED_WAIT_COOLDOWN_MS);
                Reason::Exhausted {
                    scope: scope.clone(),
                    limit: *limit,
                    needed: amount,
                    retry_after_ms: refill_ms.saturating_add(tick),
                    wait_worth: local_share.is_none() && (refills_in_time || held_elsewhere),
                }
            }
        }
    }

    /// [`Quotas::check`], and when the refusal came only from this node's
    /// pools while the ledger has (or will soon have) room, again after
    /// each lease round until it is admitted, the room is gone or
    /// `max_wait_ms` has passed. `view` gives this node's latest copy of
    /// the replicated state. A rate limit that is simply spent is refused
    /// at once.
    pub async fn admit<V: LedgerView>(
        &self,
        plan: &Arc<Plan>,
        route: &str,
        ask: Ask,
        now_ms: impl Fn() -> u64,
        view: impl Fn() -> Arc<V>,
    ) -> Result<Admission, Denial> {
        // Read before the first check: a round that ends after it has
        // surely seen this request's demand, or is one after that.
        let mut seen = self.rounds_done();
        let mut decided = self.check(plan, route, ask, now_ms(), view().ledger());
        if !matches!(&decided, Err(denial) if denial.wait_worth()) {
            return decided;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config().max_wait_ms);
        while matches!(&decided, Err(denial) if denial.wait_worth()) {
            if !self.round_after(seen, deadline).await {
                break;
            }
            seen = self.rounds_done();
            decided = self.check(plan, route, ask, now_ms(), view().ledger());
        }
        match &mut decided {
            Ok(admission) => admission.waited = true,
            Err(denial) => {
                denial.waited = true;
                self.note_failed_wait(plan, denial);
            }
        }
        decided
    }

    /// Records that `denial` came after a wait: the limit that refused it
    /// lets no request wait for units held elsewhere for a while.
    pub fn note_failed_wait(&self, plan: &Plan, denial: &Denial) {
        if let Some(planned) = plan.limit_at(denial.limit as usize) {
            planned.pool.note_failed_wait(denial.at_ms);
        }
    }

    /// One pool's part: where it was taken from.
    fn take(
        &self,
        pool: &Pool,
        on_no_quorum: OnNoQuorum,
        limit: &Limit,
        amount: u64,
        now_ms: u64,
    ) -> Result<Source, Refused> {
        if let Some(source) = pool.try_take(amount, now_ms) {
            return Ok(source);
        }
        if self.reachability() != Reachability::Unreachable {
            return Err(Refused::Short { local_share: None });
        }
        match on_no_quorum {
            OnNoQuorum::Deny => Err(Refused::NoQuorum),
            OnNoQuorum::LocalShare => {
                let share = limit.share(self.voters());
                if pool.try_take_local(share, amount, now_ms) {
                    Ok(Source::Local)
                } else {
                    Err(Refused::Short {
                        local_share: Some(share),
                    })
                }
            }
        }
    }

    /// Where every limit of `plan` on `route` stands: the lowest
    /// `remaining` per unit across scopes, from what this node holds and
    /// `ledger`, its copy of the replicated ledger.
    pub fn standings(&self, plan: &Plan, route: &str, now_ms: u64, ledger: &Ledger) -> Standings {
        let mut out = Standings::default();
        for (_, planned) in plan.on(route) {
            let limit = &planned.limit;
            let bucket = ledger.bucket(&planned.scope, limit.unit);
            let remaining = planned
                .pool
                .spendable(now_ms)
                .saturating_add(bucket.map_or(limit.capacity, |b| b.level_at(now_ms)))
                .min(limit.capacity);
            let missing = limit.capacity - remaining;
            let reset_ms = match (limit.refill, bucket) {
                (Refill::Calendar(_), _) => limit.refill_ms(1, now_ms),
                (_, Some(bucket)) => bucket.refill_ms(missing, now_ms),
                (_, None) => limit.refill_ms(missing, now_ms),
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

/// The level of `planned`'s bucket in `ledger` at `now_ms`; the capacity
/// when this node's copy has no such bucket yet (a policy just set).
fn ledger_level(ledger: &Ledger, planned: &Planned, now_ms: u64) -> u64 {
    ledger
        .bucket(&planned.scope, planned.limit.unit)
        .map_or(planned.limit.capacity, |b| b.level_at(now_ms))
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

#[cfg(test)]
mod tests;
