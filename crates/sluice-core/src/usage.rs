//! Usage and spend (DESIGN §7): what every key did on every route, per
//! minute, replicated so that any node answers "who spent what on which
//! model".
//!
//! Nodes never send one command per request. Each node adds its finished
//! model calls up per (minute, key, route, provider) and proposes what it
//! gathered as one [`UsageBatch`] per flush; [`Rollups::record`] adds the
//! batch into the replicated totals, and ignores a batch it has applied
//! already (see [`UsageBatch`] for how a retry is recognised).
//! [`Rollups::compact`] drops what is older than a cutoff the command
//! carries: like everything in this crate it reads no clock.
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
pub use query::{GroupBy, UsageFilter};
pub use rollup::{minute_of, Rollup, RollupKey, Totals, MINUTE_MS};

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
            if rollup.key.minute_ms < self.compacted_before_ms || rollup.totals.is_zero() {
                continue;
            }
            self.totals
                .entry(rollup.key.clone())
                .or_default()
                .add(&rollup.totals);
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

    /// Drops every roll-up of a minute that starts before `before_ms`;
    /// returns how many. A cutoff below an earlier one changes nothing.
    pub fn compact(&mut self, before_ms: u64) -> u64 {
        if before_ms <= self.compacted_before_ms {
            return 0;
        }
        self.compacted_before_ms = before_ms;
        let first_kept = RollupKey {
            minute_ms: before_ms,
            key_id: String::new(),
            route: String::new(),
            provider: String::new(),
        };
        let (_, at_cutoff, mut kept) = self.totals.split_lookup(&first_kept);
        if let Some(totals) = at_cutoff {
            kept.insert(first_kept, totals);
        }
        let removed = (self.totals.len() - kept.len()) as u64;
        self.totals = kept;
        removed
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
}

#[cfg(test)]
mod tests;
