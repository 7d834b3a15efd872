//! Usage and spend (DESIGN §7): what every key did on every route, per
//! minute, replicated so that any node answers "who spent what on which
//! model".
//!
//! Nodes never send one command per request. Each node adds its finished
//! model calls up per (minute, key, route, provider) and proposes what it
//! gathered as one [`UsageBatch`] per flush; [`Rollups::record`] adds the
//! batch into the replicated totals, and ignores a batch it has applied
//! already (see [`UsageBatch`] for how a retry is recognised).
//! [`Rollups::compact`] drops what is older than one cutoff the command
//! carries and merges the minutes older than another into hours, so that
//! weeks of history cost hours, not minutes: like everything in this crate
//! it reads no clock.
//!
//! # Layout
//! * [`rollup`]: [`RollupKey`], [`Totals`], [`Rollup`].
//! * [`batch`]: [`UsageBatch`] and its identity.
//! * [`query`]: totals over a time range, grouped by key, route or
//!   provider, and a key's spend.

pub mod batch;
pub mod query;
pub mod rollup;

pub use batch::{UsageBatch, MAX_ROLLUPS};
pub use query::{GroupBy, GroupTotals, UsageFilter};
pub use rollup::{hour_of, minute_of, Rollup, RollupKey, Totals, HOUR_MS, MINUTE_MS};

use crate::ApplyError;
use batch::LastBatch;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every roll-up the cluster holds, and what it needs to count each batch
/// once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollups {
    /// A persistent map: the state is cloned for every applied Raft entry
    /// (lease rounds included), and this clone shares the roll-ups instead
    /// of copying weeks of them. Serialized exactly as an ordered map.
    #[serde(with = "crate::persistent::ord_map")]
    totals: OrdMap<RollupKey, Totals>,
    /// The last batch applied from each node.
    last_batch: BTreeMap<u64, LastBatch>,
    /// Minutes before this were compacted away: a late batch does not
    /// bring them back.
    compacted_before_ms: u64,
    /// Minutes before this are kept per hour: each roll-up there is keyed
    /// by the start of its hour, and a late batch adds into that hour. A
    /// multiple of [`HOUR_MS`].
    hourly_before_ms: u64,
}

/// What [`Rollups::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Roll-ups dropped (older than the retention).
    pub removed: u64,
    /// Minute roll-ups merged into hour ones.
    pub merged: u64,
}

impl Rollups {
    /// Adds `batch` in. `Ok(false)`: it was applied before and changed
    /// nothing this time.
    pub fn record(&mut self, batch: &UsageBatch) -> Result<bool, ApplyError> {
        batch.validate()?;
        if self
            .last_batch
            .get(&batch.node)
            .is_some_and(|last| last.covers(batch))
        {
            return Ok(false);
        }
        for rollup in &batch.rollups {
            let period = self.period_of(rollup.key.minute_ms);
            if period < self.compacted_before_ms || rollup.totals.is_zero() {
                continue;
            }
            let key = RollupKey {
                minute_ms: period,
                ..rollup.key.clone()
            };
            self.totals.entry(key).or_default().add(&rollup.totals);
        }
        self.last_batch.insert(
            batch.node,
            LastBatch {
                boot: batch.boot,
                seq: batch.seq,
            },
        );
        Ok(true)
    }

    /// Where a minute's totals go: the minute itself, or its hour once
    /// minutes that old are kept per hour.
    fn period_of(&self, minute_ms: u64) -> u64 {
        if minute_ms < self.hourly_before_ms {
            hour_of(minute_ms)
        } else {
            minute_ms
        }
    }

    /// The cutoffs `compact(before_ms, hourly_before_ms)` would leave: the
    /// hourly one rounded down to an hour; the drop one rounded down to an
    /// hour where it falls among hours (so that no hour is split), and up
    /// when an earlier cutoff was already past that. Neither goes back.
    fn cutoffs(&self, before_ms: u64, hourly_before_ms: u64) -> (u64, u64) {
        let hourly = self.hourly_before_ms.max(hour_of(hourly_before_ms));
        let mut drop = if before_ms < hourly {
            hour_of(before_ms)
        } else {
            before_ms
        };
        drop = drop.max(self.compacted_before_ms);
        if drop < hourly && drop % HOUR_MS != 0 {
            drop = hour_of(drop) + HOUR_MS;
        }
        (drop, hourly)
    }

    /// Whether [`Rollups::compact`] with these cutoffs would change anything:
    /// the leader proposes it only then.
    pub fn compaction_due(&self, before_ms: u64, hourly_before_ms: u64) -> bool {
        let (drop, hourly) = self.cutoffs(before_ms, hourly_before_ms);
        let oldest = self.totals.iter().next().map(|(k, _)| k.minute_ms);
        let first_minutely = self
            .totals
            .range(period_start(self.hourly_before_ms.max(drop))..)
            .next()
            .map(|(k, _)| k.minute_ms);
        oldest.is_some_and(|m| m < drop) || first_minutely.is_some_and(|m| m < hourly)
    }

    /// Drops every roll-up of a period that starts before `before_ms`, and
    /// merges the minutes before `hourly_before_ms` into their hours (both
    /// cutoffs as [`Rollups::cutoffs`] rounds them). A cutoff below an
    /// earlier one changes nothing.
    pub fn compact(&mut self, before_ms: u64, hourly_before_ms: u64) -> Compacted {
        let (drop, hourly) = self.cutoffs(before_ms, hourly_before_ms);
        let mut done = Compacted::default();
        if drop > self.compacted_before_ms {
            let (_, kept) = split_at(&self.totals, drop);
            done.removed = (self.totals.len() - kept.len()) as u64;
            self.totals = kept;
            self.compacted_before_ms = drop;
        }
        if hourly > self.hourly_before_ms {
            // Minute roll-ups live at and after the old hourly cutoff.
            let (older, minutely) = split_at(&self.totals, self.hourly_before_ms.max(drop));
            let (to_merge, newer) = split_at(&minutely, hourly);
            let mut merged = older;
            for (key, totals) in to_merge.iter() {
                let key = RollupKey {
                    minute_ms: hour_of(key.minute_ms),
                    ..key.clone()
                };
                merged.entry(key).or_default().add(totals);
            }
            done.merged = to_merge.len() as u64;
            merged.extend(newer);
            self.totals = merged;
            self.hourly_before_ms = hourly;
        }
        done
    }

    /// Every roll-up, oldest minute first.
    pub fn iter(&self) -> impl Iterator<Item = (&RollupKey, &Totals)> {
        self.totals.iter()
    }

    /// Number of roll-ups held.
    pub fn len(&self) -> usize {
        self.totals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }

    /// The cutoff of the latest compaction (0: none yet).
    pub fn compacted_before_ms(&self) -> u64 {
        self.compacted_before_ms
    }

    /// Minutes before this are held per hour (0: none yet).
    pub fn hourly_before_ms(&self) -> u64 {
        self.hourly_before_ms
    }
}

/// The smallest key of the period starting at `minute_ms`.
fn period_start(minute_ms: u64) -> RollupKey {
    RollupKey {
        minute_ms,
        key_id: String::new(),
        route: String::new(),
        provider: String::new(),
    }
}

/// `map` split into the roll-ups of periods before `minute_ms` and the rest.
fn split_at(
    map: &OrdMap<RollupKey, Totals>,
    minute_ms: u64,
) -> (OrdMap<RollupKey, Totals>, OrdMap<RollupKey, Totals>) {
    let first = period_start(minute_ms);
    let (before, at, mut rest) = map.split_lookup(&first);
    if let Some(totals) = at {
        rest.insert(first, totals);
    }
    (before, rest)
}

#[cfg(test)]
mod tests;
