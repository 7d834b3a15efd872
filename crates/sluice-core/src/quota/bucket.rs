//! One bucket of the ledger, and each node's side of it.
//!
//! A bucket's units are in one of three places: its **level** (what the
//! ledger can still grant), a node's **lease** (granted, spendable until
//! it expires, the remainder returned), or a node's **standing reserve**
//! (granted, kept without expiry, spent only by that node). The level
//! refills, but never above the bucket's **ceiling**: the capacity minus
//! what every node holds unspent, of its leases and of its reserve, as
//! far as the ledger knows (each node reports what it holds with every
//! want; the ledger's count only ever errs high). So the level and what
//! the nodes hold together never exceed the capacity: a unit a node keeps
//! through an idle hour is never also refilled into the level, and over
//! any interval the nodes together spend at most the capacity plus the
//! refill.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::limit::{period_start, Limit, Refill};
use super::DEMAND_WINDOW_MS;

/// One unit of a node's [`NodeShare::credit`].
pub const CREDIT_ONE: i64 = 1 << 16;

/// One node's side of a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShare {
    /// Granted minus returned, over the node's life: the most it may return.
    pub held: u64,
    /// The standing reserve's part of `holding`, as the node last reported
    /// it and grants and returns since changed it (for the cap on every
    /// node's reserves together).
    pub standing: u64,
    /// The sequence number of the node's latest report of its reserve.
    pub standing_seq: u64,
    /// Units the node held unspent at its latest report (lease, reserve,
    /// reservations in flight, returns not yet acknowledged), plus what it
    /// was granted since, less what it returned since: never less than
    /// what it holds, since spending only lowers that.
    pub holding: u64,
    /// The node's latest stated demand and when.
    pub demand: u64,
    pub demand_at_ms: u64,
    /// While the bucket is contended: the node's part of the level, in
    /// `1 / CREDIT_ONE` units, promised in proportion to its demand and
    /// not yet granted (below zero: it was granted a rounded-up unit
    /// ahead of its share).
    pub credit: i64,
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
    pub(super) fn note_admitted(&mut self, total: u64, now_ms: u64) {
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

/// What a bucket's level would be after refilling to some time.
struct Refilled {
    level: u64,
    carry: u64,
    period_start_ms: u64,
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

    /// Every node's standing reserve, as the ledger knows them.
    pub fn standing(&self) -> u64 {
        self.nodes
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(n.standing))
    }

    /// What the nodes hold unspent, leases and reserves, as the ledger
    /// knows it.
    pub fn held(&self) -> u64 {
        self.nodes
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(n.holding))
    }

    /// The most the level may hold: the capacity less what the nodes hold.
    pub fn ceiling(&self) -> u64 {
        self.limit.capacity.saturating_sub(self.held())
    }

    fn refilled(&self, now_ms: u64) -> Refilled {
        let mut out = Refilled {
            level: self.level,
            carry: self.carry,
            period_start_ms: self.period_start_ms,
        };
        if now_ms <= self.as_of_ms {
            return out;
        }
        let ceiling = self.ceiling();
        match self.limit.refill {
            Refill::Rate { amount, every_ms } => {
                let elapsed = u128::from(now_ms - self.as_of_ms);
                let total = elapsed * u128::from(amount) + u128::from(self.carry);
                let whole = total / u128::from(every_ms);
                let level =
                    (u128::from(self.level) + whole).min(u128::from(ceiling.max(self.level)));
                out.level = level as u64;
                out.carry = if out.level >= ceiling {
                    0
                } else {
                    (total % u128::from(every_ms)) as u64
                };
            }
            Refill::Calendar(period) => {
                let start = period_start(period, now_ms);
                if start > self.period_start_ms {
                    out.period_start_ms = start;
                    // A new period: full, less what the nodes keep in
                    // reserve (counted against this period too).
                    out.level = ceiling;
                }
            }
        }
        out
    }

    /// The level as of `now_ms` (refilled since the bucket's clock), without
    /// changing the bucket: a node's true view of the ledger between
    /// commands.
    pub fn level_at(&self, now_ms: u64) -> u64 {
        self.refilled(now_ms).level
    }

    /// Milliseconds from `now_ms` until `units` more have refilled, counting
    /// the part of a unit refilled already; for a budget, until the next
    /// period.
    pub fn refill_ms(&self, units: u64, now_ms: u64) -> u64 {
        match self.limit.refill {
            Refill::Rate { amount, every_ms } if units > 0 => {
                let carry = self.refilled(now_ms).carry;
                let owed =
                    (u128::from(units) * u128::from(every_ms)).saturating_sub(u128::from(carry));
                u64::try_from(owed.div_ceil(u128::from(amount.max(1)))).unwrap_or(u64::MAX)
            }
            _ => self.limit.refill_ms(units, now_ms),
        }
    }

    /// Refills up to `now_ms` (no-op for a stamp not after the bucket's clock).
    pub fn advance(&mut self, now_ms: u64) {
        if now_ms <= self.as_of_ms {
            return;
        }
        let refilled = self.refilled(now_ms);
        self.level = refilled.level;
        self.carry = refilled.carry;
        self.period_start_ms = refilled.period_start_ms;
        self.as_of_ms = now_ms;
    }

    /// Applies a new limit. The level is kept, capped at the new ceiling
    /// (a new limit never hands out more than the old one had left); the
    /// refill restarts from now.
    pub(super) fn relimit(&mut self, limit: Limit, now_ms: u64) {
        self.advance(now_ms);
        let nodes = std::mem::take(&mut self.nodes);
        let level = self.level;
        *self = Bucket {
            nodes,
            ..Bucket::new(limit, self.as_of_ms)
        };
        self.level = level.min(self.ceiling());
    }

    /// Takes `amount` if the level holds it.
    pub fn take(&mut self, amount: u64) -> bool {
        let taken = self.level >= amount;
        if taken {
            self.level -= amount;
        }
        taken
    }

    /// Puts `amount` back, never above the ceiling.
    pub fn put_back(&mut self, amount: u64) {
        self.level = self.level.saturating_add(amount).min(self.ceiling());
    }

    /// Sum of every node's recent demand (as of `now_ms`).
    pub fn recent_demand(&self, now_ms: u64) -> u128 {
        self.recent_demand_except(u64::MAX, now_ms)
    }

    /// Sum of the recent demand of every node but `node`: what waits on
    /// the level besides it.
    pub fn recent_demand_except(&self, node: u64, now_ms: u64) -> u128 {
        self.nodes
            .iter()
            .filter(|(id, n)| {
                **id != node && now_ms.saturating_sub(n.demand_at_ms) <= DEMAND_WINDOW_MS
            })
            .map(|(_, n)| u128::from(n.demand))
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

    /// Lease units every node but `node` may hold unspent (as of their
    /// latest reports): what they may give back.
    pub fn holding_except(&self, node: u64) -> u64 {
        self.nodes
            .iter()
            .filter(|(id, _)| **id != node)
            .fold(0u64, |sum, (_, n)| {
                sum.saturating_add(n.holding.saturating_sub(n.standing))
            })
    }

    /// Whether `share` stated a demand within the window before `now_ms`.
    fn demands(share: &NodeShare, now_ms: u64) -> bool {
        share.demand > 0 && now_ms.saturating_sub(share.demand_at_ms) <= DEMAND_WINDOW_MS
    }

    /// Forgets every node's credit: the bucket is not contended.
    pub fn clear_credits(&mut self) {
        for share in self.nodes.values_mut() {
            share.credit = 0;
        }
    }

    /// Contended (`demand`, every node's recent demand, is more than the
    /// level): promises the part of the level not yet promised to the
    /// nodes with a recent demand, each in proportion to its demand and
    /// never beyond it. A node's part is kept for it until its next round
    /// takes it, so when a unit refilled, or came back, does not decide
    /// who gets it: the nodes' rounds fall at different moments of a
    /// tick, and the one just after the refill would otherwise get the
    /// most, round after round.
    pub fn share_out(&mut self, demand: u128, now_ms: u64) {
        let mut promised: u128 = 0;
        for share in self.nodes.values_mut() {
            if !Self::demands(share, now_ms) {
                // Gone quiet: its part goes back to the others.
                share.credit = share.credit.min(0);
            }
            promised += u128::try_from(share.credit.max(0)).unwrap_or(0);
        }
        let free = (u128::from(self.level) * CREDIT_ONE as u128).saturating_sub(promised);
        if free == 0 || demand == 0 {
            return;
        }
        for share in self.nodes.values_mut() {
            if !Self::demands(share, now_ms) {
                continue;
            }
            let part = free * u128::from(share.demand) / demand;
            let most = u128::from(share.demand) * CREDIT_ONE as u128;
            let credit = (i128::from(share.credit) + part as i128).min(most as i128);
            share.credit = i64::try_from(credit.max(i128::from(share.credit))).unwrap_or(i64::MAX);
        }
    }

    /// What `node` is granted of `wanted` from its credit: its part rounded
    /// up to a whole unit (a part of a unit would otherwise wait for
    /// nobody), never more than the level.
    pub fn take_credit(&mut self, node: u64, wanted: u64) -> u64 {
        let level = self.level;
        let Some(share) = self.nodes.get_mut(&node) else {
            return 0;
        };
        if share.credit <= 0 {
            return 0;
        }
        let owed = u64::try_from(share.credit.div_euclid(CREDIT_ONE))
            .unwrap_or(0)
            .saturating_add(u64::from(share.credit.rem_euclid(CREDIT_ONE) > 0));
        let amount = owed.min(wanted).min(level);
        let debit = i128::from(amount) * i128::from(CREDIT_ONE);
        share.credit = i64::try_from(i128::from(share.credit) - debit).unwrap_or(i64::MIN);
        amount
    }
}
