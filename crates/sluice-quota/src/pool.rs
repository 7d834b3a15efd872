//! A node's pool for one bucket, and admission against pools.
//!
//! A pool holds two kinds of units the ledger granted this node: a
//! **lease** (spendable until it expires, its remainder then returned) and
//! a **standing reserve** (kept without expiry, topped up by lease rounds).
//! A request takes from the lease first and from the reserve when the
//! lease is spent or expired, so a pool idle long enough for its lease to
//! lapse still admits its next requests at once.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use sluice_core::quota::{Bucket, Limit};

/// Where an admission took its units from, so that a refund goes back
/// there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The lease.
    #[default]
    Lease,
    /// The standing reserve.
    Standing,
    /// The local share (no quorum, `local_share`).
    Local,
}

/// Units one node may spend from one bucket, granted by the ledger.
#[derive(Debug, Default)]
pub struct Pool {
    /// What every admission writes.
    spent: Spent,
    /// When the current lease stops being spendable (ms since the epoch).
    expires_at_ms: AtomicU64,
    /// Lease units granted and returned over the pool's life, and the same
    /// for the standing reserve: what was admitted, net of settlements, is
    /// what came in less what went back and what is left
    /// ([`Pool::admitted_total`]), so admission keeps no counter of its own
    /// for it.
    granted_total: AtomicU64,
    returned_total: AtomicU64,
    standing_in_total: AtomicU64,
    standing_out_total: AtomicU64,
    /// Units admitted from the local share, net of settlements.
    local_admitted: AtomicU64,
    /// The standing reserve this node aims to keep of the limit (set by the
    /// lease rounds), and whether a round has set it yet.
    standing_target: AtomicU64,
    sized: AtomicBool,
    /// When a reserve the ledger could not fill may be asked for again.
    standing_retry_at_ms: AtomicU64,
    /// Under `reserve = "estimate"`: what the requests in flight could
    /// still use beyond what they reserved.
    exposure: AtomicU64,
    /// The lease demand this node last stated to the ledger: once it drops
    /// to nothing the pool says so (the ledger splits a contended bucket by
    /// the nodes' recent demand).
    stated: AtomicU64,
    /// When a request last waited on this pool for units other nodes held
    /// and was refused all the same (the bucket is spent, not scattered).
    wait_failed_at_ms: AtomicU64,
    /// The recent demand per tick, in sixteenths: the last tick's, or the
    /// decayed peak of the ticks before when that is more (one request
    /// every few ticks keeps a lease, not a lease every other tick).
    rate_x16: AtomicU64,
    /// This node's `1/N` share of the limit, spent only while the ledger is
    /// unreachable under `on_no_quorum = local_share`.
    local: Mutex<Option<Bucket>>,
}

/// The fields every admission writes, on cache lines of their own (two,
/// for the adjacent-line prefetcher), so that the fields admission only
/// reads (the expiry) are not invalidated on every other core by every
/// take.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Spent {
    /// Spendable lease units. Negative is debt: usage reported above what
    /// was reserved, paid off by the next grants before anything is
    /// admitted.
    available: AtomicI64,
    /// Standing reserve units left.
    standing: AtomicU64,
    /// Units reserved by requests in flight (from the lease or the reserve),
    /// not yet settled: still this node's as far as the ledger knows, since
    /// a settlement may refund them.
    reserved: AtomicU64,
    /// Units admitted since the demand was last read.
    admitted: AtomicU64,
    /// Units refused since the demand was last read (unmet demand).
    refused: AtomicU64,
}

/// A lease amount as a signed level (grants are far below `i64::MAX`).
fn signed(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
}

/// Takes `amount` from `counter` if it holds that much.
fn take_from(counter: &AtomicU64, amount: u64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |level| {
            level.checked_sub(amount)
        })
        .is_ok()
}

impl Pool {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a grant from the ledger, spendable until `expires_at_ms`.
    pub fn add_lease(&self, amount: u64, expires_at_ms: u64) {
        self.granted_total.fetch_add(amount, Ordering::AcqRel);
        self.spent
            .available
            .fetch_add(signed(amount), Ordering::AcqRel);
        self.expires_at_ms
            .fetch_max(expires_at_ms, Ordering::AcqRel);
    }

    /// Adds units the ledger granted to the standing reserve.
    pub fn add_standing(&self, amount: u64) {
        self.standing_in_total.fetch_add(amount, Ordering::AcqRel);
        self.spent.standing.fetch_add(amount, Ordering::AcqRel);
    }

    /// Standing reserve units left.
    pub fn standing(&self) -> u64 {
        self.spent.standing.load(Ordering::Acquire)
    }

    /// The reserve this node aims to keep of the limit.
    pub fn standing_target(&self) -> u64 {
        self.standing_target.load(Ordering::Acquire)
    }

    /// Whether a round has set the reserve's target yet.
    pub fn is_sized(&self) -> bool {
        self.sized.load(Ordering::Acquire)
    }

    pub fn set_standing_target(&self, target: u64) {
        self.standing_target.store(target, Ordering::Release);
        self.sized.store(true, Ordering::Release);
    }

    /// Units of reserve to ask for at `now_ms`: what is missing of the
    /// target, unless the ledger recently could not fill it.
    pub fn standing_wanted(&self, now_ms: u64) -> u64 {
        if now_ms < self.standing_retry_at_ms.load(Ordering::Acquire) {
            return 0;
        }
        self.standing_target().saturating_sub(self.standing())
    }

    /// The ledger gave `granted` of the `wanted` reserve units: when it
    /// gave less, the pool asks again only after `retry_ms`.
    pub fn note_standing_grant(&self, wanted: u64, granted: u64, now_ms: u64, retry_ms: u64) {
        let retry_at = if granted < wanted {
            now_ms.saturating_add(retry_ms)
        } else {
            0
        };
        self.standing_retry_at_ms.store(retry_at, Ordering::Release);
    }

    /// Takes the reserve held above `keep` (the target shrank), for
    /// `ReturnLeases`.
    pub fn take_standing_excess(&self, keep: u64) -> u64 {
        let before = self
            .spent
            .standing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |level| {
                (level > keep).then_some(keep)
            })
            .unwrap_or(keep);
        let amount = before.saturating_sub(keep);
        self.standing_out_total.fetch_add(amount, Ordering::AcqRel);
        amount
    }

    /// Adds up to `most` units to the exposure of requests in flight,
    /// keeping it within `cap`; how much was added.
    pub fn expose(&self, most: u64, cap: u64) -> u64 {
        let mut added = 0;
        let _ = self
            .exposure
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                added = most.min(cap.saturating_sub(now));
                Some(now + added)
            });
        added
    }

    /// Removes `amount` from the exposure (its request finished).
    pub fn unexpose(&self, amount: u64) {
        let _ = self
            .exposure
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_sub(amount))
            });
    }

    /// What the requests in flight could use beyond their reservations.
    pub fn exposure(&self) -> u64 {
        self.exposure.load(Ordering::Acquire)
    }

    /// Takes `amount` from this node's local share of `limit` (`share` is
    /// the `1/N` limit), made full on first use.
    pub fn try_take_local(&self, share: Limit, amount: u64, now_ms: u64) -> bool {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = local.get_or_insert_with(|| Bucket::new(share, now_ms));
        if bucket.limit != share {
            // The policy or the voter count changed: never more than the
            // level the old share had left.
            let level = bucket.level.min(share.capacity);
            *bucket = Bucket::new(share, now_ms);
            bucket.level = level;
        }
        bucket.advance(now_ms);
        let taken = bucket.take(amount);
        let counter = if taken {
            &self.spent.admitted
        } else {
            &self.spent.refused
        };
        counter.fetch_add(amount, Ordering::Relaxed);
        if taken {
            self.count_local(signed(amount));
        }
        taken
    }

    /// Units admitted over the pool's life, net of settlements: from leases
    /// (granted − returned − what is left, debt included), from the
    /// standing reserve (likewise) and from the local share. Read without a
    /// lock: a read racing a grant or a return may be off by that grant or
    /// return for an instant (the live view's figure, never a decision's).
    pub fn admitted_total(&self) -> u64 {
        let load = |a: &AtomicU64| i128::from(a.load(Ordering::Acquire));
        let from_leases =
            load(&self.granted_total) - load(&self.returned_total) - i128::from(self.available());
        let from_standing = load(&self.standing_in_total)
            - load(&self.standing_out_total)
            - i128::from(self.standing());
        let local = self.local_admitted.load(Ordering::Relaxed);
        u64::try_from((from_leases + from_standing).max(0))
            .unwrap_or(u64::MAX)
            .saturating_add(local)
    }

    fn count_local(&self, delta: i64) {
        // Two's-complement wrapping: every decrement undoes an earlier
        // increment, so the total itself never goes below zero.
        self.local_admitted
            .fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// Takes `amount` from the live lease at `now_ms`, else from the
    /// standing reserve; else takes nothing. Nothing while the pool is in
    /// debt. Never leaves either below zero.
    pub fn try_take(&self, amount: u64, now_ms: u64) -> Option<Source> {
        let source = self.take_source(amount, now_ms);
        let counter = if source.is_some() {
            &self.spent.admitted
        } else {
            &self.spent.refused
        };
        counter.fetch_add(amount, Ordering::Relaxed);
        source
    }

    /// Every unit this node holds of the bucket that the ledger must count
    /// as held: its lease (0 in debt), its reserve, and what requests in
    /// flight reserved.
    pub fn holding(&self) -> u64 {
        (self.available().max(0) as u64)
            .saturating_add(self.standing())
            .saturating_add(self.spent.reserved.load(Ordering::Acquire))
    }

    fn take_source(&self, amount: u64, now_ms: u64) -> Option<Source> {
        let source = self.take_units(amount, now_ms);
        if source.is_some() {
            self.spent.reserved.fetch_add(amount, Ordering::AcqRel);
        }
        source
    }

    fn take_units(&self, amount: u64, now_ms: u64) -> Option<Source> {
        let wanted = signed(amount);
        let lease_live = now_ms < self.expires_at_ms.load(Ordering::Acquire);
        let mut in_debt = false;
        let from_lease = self
            .spent
            .available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |level| {
                in_debt = level < 0;
                (lease_live && level >= wanted).then(|| level - wanted)
            })
            .is_ok();
        if from_lease {
            return Some(Source::Lease);
        }
        if in_debt {
            return None;
        }
        take_from(&self.spent.standing, amount).then_some(Source::Standing)
    }

    /// Counts `amount` as unmet demand without trying to take it (another
    /// limit of the same request refused first).
    pub fn note_refused(&self, amount: u64) {
        self.spent.refused.fetch_add(amount, Ordering::Relaxed);
    }

    /// Gives back units taken but not used (a request refused further on).
    pub fn put_back(&self, amount: u64, source: Source) {
        if source != Source::Local {
            self.unreserve(amount);
        }
        match source {
            Source::Lease => {
                self.spent
                    .available
                    .fetch_add(signed(amount), Ordering::AcqRel);
            }
            Source::Standing => {
                self.spent.standing.fetch_add(amount, Ordering::AcqRel);
            }
            Source::Local => self.settle_local(amount, 0),
        }
        // Demand statistics only: saturating, never wrapping.
        let _ = self
            .spent
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                Some(a.saturating_sub(amount))
            });
    }

    /// Settles a reservation of `reserved` units taken from `source`
    /// against the `actual` usage: refunds the difference where it was
    /// taken from, or charges the excess as debt on the lease.
    pub fn settle(&self, reserved: u64, actual: u64, source: Source) {
        if source == Source::Local {
            return self.settle_local(reserved, actual);
        }
        self.unreserve(reserved);
        if actual > reserved {
            self.spent
                .available
                .fetch_sub(signed(actual - reserved), Ordering::AcqRel);
        } else if actual < reserved {
            let refund = reserved - actual;
            match source {
                Source::Standing => {
                    self.spent.standing.fetch_add(refund, Ordering::AcqRel);
                }
                _ => {
                    self.spent
                        .available
                        .fetch_add(signed(refund), Ordering::AcqRel);
                }
            }
        }
    }

    /// Reserved units a request has spent for good (no settlement will
    /// refund them): they stop counting as held.
    pub fn commit(&self, amount: u64) {
        self.unreserve(amount);
    }

    fn unreserve(&self, amount: u64) {
        let _ = self
            .spent
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                Some(r.saturating_sub(amount))
            });
    }

    /// Settles a reservation taken from the local share.
    fn settle_local(&self, reserved: u64, actual: u64) {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        self.count_local(signed(actual) - signed(reserved));
        if let Some(bucket) = local.as_mut() {
            if actual <= reserved {
                bucket.put_back(reserved - actual);
            } else {
                let over = actual - reserved;
                bucket.level = bucket.level.saturating_sub(over);
            }
        }
    }

    /// Once the lease has expired at `now_ms`: empties the lease and
    /// returns the unspent remainder, for `ReturnLeases` (debt stays as
    /// debt).
    pub fn take_expired(&self, now_ms: u64) -> u64 {
        if now_ms < self.expires_at_ms.load(Ordering::Acquire) {
            return 0;
        }
        let before = self
            .spent
            .available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |level| {
                Some(level.min(0))
            })
            .unwrap_or(0);
        let amount = before.max(0) as u64;
        self.returned_total.fetch_add(amount, Ordering::AcqRel);
        amount
    }

    /// Takes what the lease holds above `keep` (demand dropped), for
    /// `ReturnLeases`.
    pub fn take_excess(&self, keep: u64) -> u64 {
        let keep = signed(keep);
        let before = self
            .spent
            .available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |level| {
                (level > keep).then_some(keep)
            })
            .unwrap_or(keep);
        let amount = (before - keep).max(0) as u64;
        self.returned_total.fetch_add(amount, Ordering::AcqRel);
        amount
    }

    /// Spendable lease units now (negative: debt).
    pub fn available(&self) -> i64 {
        self.spent.available.load(Ordering::Acquire)
    }

    /// What this node can spend now without the ledger: the live lease and
    /// the standing reserve (0 in debt).
    pub fn spendable(&self, now_ms: u64) -> u64 {
        let lease = self.available();
        if lease < 0 {
            return 0;
        }
        let lease = if now_ms < self.expires_at_ms() {
            lease as u64
        } else {
            0
        };
        lease.saturating_add(self.standing())
    }

    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms.load(Ordering::Acquire)
    }

    /// Records that a request waited on this pool in vain at `now_ms`.
    pub fn note_failed_wait(&self, now_ms: u64) {
        self.wait_failed_at_ms.store(now_ms, Ordering::Release);
    }

    /// Whether a request may wait for units that other nodes hold: not
    /// within `cooldown_ms` of a wait that came to nothing, so that a key
    /// beyond its limit is refused at once.
    pub fn may_wait_for_others(&self, now_ms: u64, cooldown_ms: u64) -> bool {
        let failed = self.wait_failed_at_ms.load(Ordering::Acquire);
        failed == 0 || now_ms >= failed.saturating_add(cooldown_ms)
    }

    /// The lease demand this node last stated, and records `amount` as the
    /// new one.
    pub fn restate(&self, amount: u64) -> u64 {
        self.stated.swap(amount, Ordering::AcqRel)
    }

    /// A want that may not have reached the ledger: the ledger may hold
    /// any demand of this node's, so the next round states it again (a
    /// withdrawal lost in an election would otherwise keep the other
    /// nodes' shares promised to this one until it ages out).
    pub fn unstate(&self) {
        self.stated.store(u64::MAX, Ordering::Release);
    }

    /// Whether the pool has anything for a lease round to do at `now_ms`:
    /// demand since the last round, a lease (or debt) to renew or return, a
    /// stated demand to withdraw, or a reserve below its target.
    pub fn needs_round(&self, now_ms: u64) -> bool {
        !self.sized.load(Ordering::Acquire)
            || self.spent.admitted.load(Ordering::Relaxed) > 0
            || self.spent.refused.load(Ordering::Relaxed) > 0
            || self.available() != 0
            || self.stated.load(Ordering::Relaxed) > 0
            || self.standing_wanted(now_ms) > 0
            || self.standing() > self.standing_target()
    }

    /// Whether requests came since the last round (or a demand is stated).
    pub fn has_demand(&self) -> bool {
        self.spent.admitted.load(Ordering::Relaxed) > 0
            || self.spent.refused.load(Ordering::Relaxed) > 0
            || self.available() != 0
            || self.stated.load(Ordering::Relaxed) > 0
    }

    /// Folds a tick's demand into the recent demand and returns it: units
    /// a tick, rounded up.
    pub fn note_tick_demand(&self, tick: u64) -> u64 {
        let decayed = self.rate_x16.load(Ordering::Acquire);
        let decayed = decayed - decayed.div_ceil(8);
        let rate = tick.saturating_mul(16).max(decayed);
        self.rate_x16.store(rate, Ordering::Release);
        rate.div_ceil(16)
    }

    /// Units admitted and refused since the last call, and resets both.
    pub fn take_demand(&self) -> (u64, u64) {
        (
            self.spent.admitted.swap(0, Ordering::AcqRel),
            self.spent.refused.swap(0, Ordering::AcqRel),
        )
    }
}

/// A request admitted against several pools: where each took from.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted(pub Vec<Source>);

/// Which pool refused: the index into the request's list.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub usize);

/// Takes each `(pool, amount)` in turn; if one refuses, puts back what the
/// others gave. All or nothing.
pub fn admit(takes: &[(&Pool, u64)], now_ms: u64) -> Result<Admitted, Refused> {
    let mut sources = Vec::with_capacity(takes.len());
    for (i, (pool, amount)) in takes.iter().enumerate() {
        match pool.try_take(*amount, now_ms) {
            Some(source) => sources.push(source),
            None => {
                for ((pool, amount), source) in takes[..i].iter().zip(sources) {
                    pool.put_back(*amount, source);
                }
                return Err(Refused(i));
            }
        }
    }
    Ok(Admitted(sources))
}

/// What a pool asks the ledger for at the next tick: enough for `target`
/// (its recent demand over the horizon), minus what it holds. Asks only
/// below half of that (the low-water mark), so a steady pool is topped up
/// before it runs dry and a full one asks nothing; a pool in debt asks for
/// the debt too.
///
/// Never more than `fair` (its node's share of what the ledger has left)
/// unless the last tick's demand (`tick`) alone needs more: a node that
/// asks first in a round does not take a horizon of a burst's demand from a
/// small bucket that another node's requests are waiting on.
pub fn want(target: u64, tick: u64, available: i64, fair: u64) -> u64 {
    if available >= 0 && (available as u64).saturating_mul(2) >= target {
        return 0;
    }
    let held = available.max(0) as u64;
    let debt = available.min(0).unsigned_abs();
    let now = tick.saturating_sub(held).saturating_add(debt);
    target
        .saturating_sub(held)
        .saturating_add(debt)
        .min(fair.max(now))
}

#[cfg(test)]
mod tests;
