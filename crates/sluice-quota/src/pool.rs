//! A node's lease pool for one bucket, and admission against pools.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use sluice_core::quota::{Bucket, Limit};

/// Units one node may spend from one bucket, granted by the ledger.
#[derive(Debug, Default)]
pub struct Pool {
    /// What every admission writes.
    spent: Spent,
    /// When the current lease stops being spendable (ms since the epoch).
    expires_at_ms: AtomicU64,
    /// Units granted and returned over the pool's life: what was admitted
    /// from leases, net of settlements, is granted − returned − available
    /// ([`Pool::admitted_total`]), so admission keeps no counter of its own
    /// for it.
    granted_total: AtomicU64,
    returned_total: AtomicU64,
    /// Units admitted from the local share, net of settlements.
    local_admitted: AtomicU64,
    /// The bucket's level in the ledger after this node's latest grant, and
    /// when (ms since the epoch; 0: no grant yet). For the `remaining`
    /// headers and to tell whether waiting for a grant is worth it.
    ledger_level: AtomicU64,
    ledger_level_at_ms: AtomicU64,
    /// This node's `1/N` share of the limit, spent only while the ledger is
    /// unreachable under `on_no_quorum = local_share`.
    local: Mutex<Option<Bucket>>,
}

/// The fields every admission writes, on cache lines of their own (two,
/// for the adjacent-line prefetcher), so that the fields admission only
/// reads (the expiry, the ledger's level) are not invalidated on every
/// other core by every take.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Spent {
    /// Spendable units. Negative is debt: usage reported above what was
    /// reserved, paid off by the next grants before anything is admitted.
    available: AtomicI64,
    /// Units admitted since the demand was last read.
    admitted: AtomicU64,
    /// Units refused since the demand was last read (unmet demand).
    refused: AtomicU64,
}

/// A lease amount as a signed level (grants are far below `i64::MAX`).
fn signed(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
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

    /// Records the ledger's level after a grant, as of `at_ms`.
    pub fn note_ledger_level(&self, level: u64, at_ms: u64) {
        self.ledger_level.store(level, Ordering::Release);
        self.ledger_level_at_ms
            .store(at_ms.max(1), Ordering::Release);
    }

    /// What the ledger's level probably is at `now_ms`: the level after the
    /// latest grant plus what `limit` refilled since, at most the capacity.
    /// Full when this node has had no grant yet.
    pub fn ledger_level_estimate(&self, limit: &Limit, now_ms: u64) -> u64 {
        let at = self.ledger_level_at_ms.load(Ordering::Acquire);
        let refilled = if at == 0 {
            0
        } else {
            limit.refilled(now_ms.saturating_sub(at))
        };
        self.ledger_level_left(limit)
            .saturating_add(refilled)
            .min(limit.capacity)
    }

    /// The ledger's level after this node's latest grant, without refill
    /// since (the capacity before any grant).
    pub fn ledger_level_left(&self, limit: &Limit) -> u64 {
        if self.ledger_level_at_ms.load(Ordering::Acquire) == 0 {
            return limit.capacity;
        }
        self.ledger_level.load(Ordering::Acquire)
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
    /// (granted − returned − what is left, debt included) and from the
    /// local share. Read without a lock: a read racing a grant or a return
    /// may be off by that grant or return for an instant (the live view's
    /// figure, never a decision's).
    pub fn admitted_total(&self) -> u64 {
        let granted = self.granted_total.load(Ordering::Acquire);
        let returned = self.returned_total.load(Ordering::Acquire);
        let left = self.available();
        let from_leases = i128::from(granted) - i128::from(returned) - i128::from(left);
        let local = self.local_admitted.load(Ordering::Relaxed);
        u64::try_from(from_leases.max(0))
            .unwrap_or(u64::MAX)
            .saturating_add(local)
    }

    fn count_local(&self, delta: i64) {
        // Two's-complement wrapping: every decrement undoes an earlier
        // increment, so the total itself never goes below zero.
        self.local_admitted
            .fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// Settles a reservation taken from the local share.
    pub fn settle_local(&self, reserved: u64, actual: u64) {
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

    /// Takes `amount` if the lease is live at `now_ms` and holds it; else
    /// takes nothing. Never leaves the pool below zero.
    pub fn try_take(&self, amount: u64, now_ms: u64) -> bool {
        let amount = signed(amount);
        if now_ms >= self.expires_at_ms.load(Ordering::Acquire) {
            self.spent
                .refused
                .fetch_add(amount as u64, Ordering::Relaxed);
            return false;
        }
        let taken = self
            .spent
            .available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |level| {
                (level >= amount).then(|| level - amount)
            })
            .is_ok();
        let counter = if taken {
            &self.spent.admitted
        } else {
            &self.spent.refused
        };
        counter.fetch_add(amount as u64, Ordering::Relaxed);
        taken
    }

    /// Counts `amount` as unmet demand without trying to take it (another
    /// limit of the same request refused first).
    pub fn note_refused(&self, amount: u64) {
        self.spent.refused.fetch_add(amount, Ordering::Relaxed);
    }

    /// Gives back units taken but not used (a request refused further on).
    pub fn put_back(&self, amount: u64) {
        self.spent
            .available
            .fetch_add(signed(amount), Ordering::AcqRel);
        // Demand statistics only: saturating, never wrapping.
        let _ = self
            .spent
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                Some(a.saturating_sub(amount))
            });
    }

    /// Settles a reservation of `reserved` units against the `actual`
    /// usage: refunds the difference, or charges it as debt.
    pub fn settle(&self, reserved: u64, actual: u64) {
        let delta = signed(reserved) - signed(actual);
        if delta != 0 {
            self.spent.available.fetch_add(delta, Ordering::AcqRel);
        }
    }

    /// Once the lease has expired at `now_ms`: empties the pool and returns
    /// the unspent remainder, for `ReturnLeases` (debt stays as debt).
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

    /// Takes what the pool holds above `keep` (demand dropped), for
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

    /// Spendable units now (negative: debt).
    pub fn available(&self) -> i64 {
        self.spent.available.load(Ordering::Acquire)
    }

    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms.load(Ordering::Acquire)
    }

    /// Units admitted and refused since the last call, and resets both.
    pub fn take_demand(&self) -> (u64, u64) {
        (
            self.spent.admitted.swap(0, Ordering::AcqRel),
            self.spent.refused.swap(0, Ordering::AcqRel),
        )
    }
}

/// A request admitted against several pools.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted;

/// Which pool refused: the index into the request's list.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub usize);

/// Takes each `(pool, amount)` in turn; if one refuses, puts back what the
/// others gave. All or nothing.
pub fn admit(takes: &[(&Pool, u64)], now_ms: u64) -> Result<Admitted, Refused> {
    for (i, (pool, amount)) in takes.iter().enumerate() {
        if !pool.try_take(*amount, now_ms) {
            for (pool, amount) in &takes[..i] {
                pool.put_back(*amount);
            }
            return Err(Refused(i));
        }
    }
    Ok(Admitted)
}

/// What a pool asks the ledger for at the next tick: enough for
/// `horizon_ticks` ticks at the demand of the last one (admitted plus
/// refused), minus what it holds. Asks only below half of that target (the
/// low-water mark), so a steady pool is topped up before it runs dry and a
/// full one asks nothing; a pool in debt asks for the debt too.
pub fn want(admitted: u64, refused: u64, available: i64, horizon_ticks: u64) -> u64 {
    let target = admitted
        .saturating_add(refused)
        .saturating_mul(horizon_ticks);
    if available >= 0 && (available as u64).saturating_mul(2) >= target {
        return 0;
    }
    let held = available.max(0) as u64;
    let debt = available.min(0).unsigned_abs();
    target.saturating_sub(held).saturating_add(debt)
}

#[cfg(test)]
mod tests;
