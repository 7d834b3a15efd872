//! The global quota ledger (DESIGN §5): token buckets per scope and unit,
//! from which nodes take **leases** they spend locally, and **standing
//! reserves** they keep.
//!
//! Every change goes through the Raft log and [`Ledger`]'s methods run inside
//! `State::apply`, so every node computes the same levels. Time is the
//! leader's stamp on each command; a stamp older than a bucket's clock (a new
//! leader whose clock is behind) refills nothing and never runs a bucket
//! backwards.
//!
//! The bound, by construction: a grant never exceeds the bucket's level, and
//! the level plus every node's standing reserve never exceeds the capacity
//! (the level refills only up to the capacity less the reserves). The level
//! rises only by refill or by a node returning units it held. So over any
//! interval of length `T`, `granted − returned ≤ capacity + rate · T`,
//! summed over every node and across leader changes, because every grant
//! and return is in the log.
//!
//! The ledger never takes a lease back: a lease's expiry tells its node when
//! to stop spending it; only the node returns what it did not spend. A lease
//! whose node died is capacity lost until the bucket refills: safe, never
//! spent twice. A standing reserve has no expiry: the node reports what is
//! left of it with every want (spent units leave the ceiling's count and
//! refill), returns it when the policy shrinks or the node stops, and the
//! ledger forgets it when the node leaves the cluster.
//!
//! # Layout
//! * `limit`: units, scopes, limits and policies.
//! * `bucket`: one bucket, its ceiling and refill, and each node's share.
//! * this file: the [`Ledger`], and the wants, grants and returns of the
//!   lease commands.

mod bucket;
mod limit;

pub use bucket::{Bucket, NodeShare};
pub use limit::{
    next_period_start, period_start, Limit, OnNoQuorum, Period, QuotaPolicy, Refill, Reserve,
    Scope, Unit, MIN_CAPACITY_MS,
};

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ApplyError;

/// How long a node's stated demand counts when grants are split.
pub const DEMAND_WINDOW_MS: u64 = 5_000;
/// Largest lease time-to-live a command may ask for.
pub const MAX_LEASE_TTL_MS: u64 = 60_000;
/// Most wants or returns in one command.
pub const MAX_BATCH: usize = 4_096;

/// One entry of a lease request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    pub scope: Scope,
    pub unit: Unit,
    /// Units of lease wanted now; 0 says the node's demand has dropped.
    pub amount: u64,
    /// Units this node has admitted from the bucket over its life (for the
    /// live view; no effect on what is granted).
    pub admitted_total: u64,
    /// Every unit the node holds unspent: its lease (with what requests in
    /// flight reserved of it, and what it is returning in a batch not yet
    /// acknowledged) and its standing reserve. What it spent since its last
    /// report leaves the ledger's count, and the room it leaves refills.
    pub holding: u64,
    /// The standing reserve's part of `holding`.
    pub standing: u64,
    /// The report's place in the node's sequence (increasing over the
    /// node's life and across its restarts): a report older than one the
    /// ledger has applied is ignored, so a delayed command never lowers the
    /// count below what the node holds.
    pub seq: u64,
    /// Units the node wants added to its standing reserve (granted only
    /// from what is left once the lease wants of this command are met).
    pub standing_wanted: u64,
}

/// One entry of a lease return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    pub scope: Scope,
    pub unit: Unit,
    /// Lease units the node will not spend.
    pub amount: u64,
    /// Standing reserve units the node gives up (when it stops: a running
    /// node drops units it no longer wants and reports what is left).
    pub standing: u64,
}

/// What a [`Ledger::grant`] gave, in the order of the wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub amount: u64,
    pub expires_at_ms: u64,
    /// Units added to the node's standing reserve.
    pub standing: u64,
    /// The bucket's level after the grant (for `remaining` headers), `None`
    /// when the scope has no such limit (nothing to enforce).
    pub level_after: Option<u64>,
}

/// The most the standing reserves of all nodes together may hold of a
/// bucket: half its capacity (nodes size theirs far below it; this bounds
/// what the reserves can keep from a busy node if some node misjudges).
fn standing_room(bucket: &Bucket) -> u64 {
    (bucket.limit.capacity / 2).saturating_sub(bucket.standing())
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
    /// Each node's latest return batch applied (see `give_back`).
    returned_batches: BTreeMap<u64, u64>,
    /// Persistent (see `State`): a grant changes a few buckets of many.
    /// By scope, so a node finds a bucket from a borrowed scope.
    #[serde(with = "crate::persistent::ord_map")]
    buckets: OrdMap<Scope, Buckets>,
}

/// One scope's buckets, one slot per unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Buckets([Option<Bucket>; 3]);

impl Buckets {
    fn get(&self, unit: Unit) -> Option<&Bucket> {
        self.0[unit.index()].as_ref()
    }

    fn get_mut(&mut self, unit: Unit) -> Option<&mut Bucket> {
        self.0[unit.index()].as_mut()
    }

    fn iter(&self) -> impl Iterator<Item = &Bucket> {
        self.0.iter().flatten()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Bucket> {
        self.0.iter_mut().flatten()
    }
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
        let buckets = self.buckets.entry(scope.clone()).or_default();
        let mut kept = Buckets::default();
        for limit in &policy.limits {
            let slot = &mut buckets.0[limit.unit.index()];
            kept.0[limit.unit.index()] = Some(match slot.take() {
                Some(mut bucket) => {
                    bucket.relimit(*limit, now_ms);
                    bucket
                }
                None => Bucket::new(*limit, now_ms),
            });
        }
        // Units the policy no longer limits lose their bucket.
        *buckets = kept;
        Arc::make_mut(&mut self.policies).insert(scope.clone(), policy.clone());
        Ok(())
    }

    fn remove_scope(&mut self, scope: &Scope) {
        if self.policies.contains_key(scope) {
            Arc::make_mut(&mut self.policies).remove(scope);
        }
        self.buckets.remove(scope);
    }

    /// Removes every scope of `key_id` (the key was deleted).
    pub fn remove_key(&mut self, key_id: &str) {
        self.remove_policies(|s| s.key_id() == key_id);
        self.retain_buckets(|s| s.key_id() != key_id);
    }

    /// Removes every key × route scope of `route` (the route was deleted).
    pub fn remove_route(&mut self, route: &str) {
        let of_route = |s: &Scope| matches!(s, Scope::KeyRoute { route: r, .. } if r == route);
        self.remove_policies(of_route);
        self.retain_buckets(|s| !of_route(s));
    }

    /// Keeps the buckets `keep` says yes to (removing each other one copies
    /// only its path of the persistent map).
    fn retain_buckets(&mut self, keep: impl Fn(&Scope) -> bool) {
        let doomed: Vec<Scope> = self.buckets.keys().filter(|s| !keep(s)).cloned().collect();
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
    /// more than the level, each gets its share in proportion to its demand,
    /// kept for it between its rounds.
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
            let Some(bucket) = self
                .buckets
                .get_mut(&want.scope)
                .and_then(|b| b.get_mut(want.unit))
            else {
                grants.push(Grant {
                    amount: 0,
                    expires_at_ms: 0,
                    standing: 0,
                    level_after: None,
                });
                continue;
            };
            // Refilled first, within the ceiling as it stood: the room what
            // the node spent of its reserve leaves refills from now on, never
            // with refill from before it was spent.
            bucket.advance(now_ms);
            let now = bucket.as_of_ms;
            {
                let share = bucket.nodes.entry(node).or_default();
                if want.seq > share.standing_seq {
                    share.holding = share.holding.min(want.holding);
                    share.standing = share.standing.min(want.standing).min(share.holding);
                    share.standing_seq = want.seq;
                }
                share.demand = want.amount;
                share.demand_at_ms = now;
                share.note_admitted(want.admitted_total, now);
            }
            let demand = bucket.recent_demand(now);
            let (amount, standing) = if demand <= u128::from(bucket.level) {
                bucket.clear_credits();
                let amount = want.amount.min(bucket.level);
                // The reserve comes last, from what the lease left.
                let standing = want
                    .standing_wanted
                    .min(bucket.level - amount)
                    .min(standing_room(bucket));
                (amount, standing)
            } else {
                // Contention: the node's part of what is left, in
                // proportion to its part of the demand, kept for it until
                // it asks (see `Bucket::share_out`); its reserve too comes
                // out of that part, after its lease.
                bucket.share_out(demand, now);
                let standing_wanted = want.standing_wanted.min(standing_room(bucket));
                let total = bucket.take_credit(node, want.amount.saturating_add(standing_wanted));
                let amount = total.min(want.amount);
                (amount, total - amount)
            };
            bucket.level -= amount + standing;
            let share = bucket.nodes.entry(node).or_default();
            share.held = share.held.saturating_add(amount);
            share.holding = share.holding.saturating_add(amount + standing);
            share.standing = share.standing.saturating_add(standing);
            share.last_grant = amount;
            share.last_expires_at_ms = now.saturating_add(ttl_ms);
            grants.push(Grant {
                amount,
                expires_at_ms: share.last_expires_at_ms,
                standing,
                level_after: Some(bucket.level),
            });
        }
        Ok(grants)
    }

    /// Takes back what `node` returns: never more than it holds, never above
    /// a bucket's ceiling. A batch numbered no higher than the node's latest
    /// applied one is a retry of one already applied (or older): ignored,
    /// so that a return is never counted twice.
    pub fn give_back(
        &mut self,
        node: u64,
        batch: u64,
        returns: &[Return],
        now_ms: u64,
    ) -> Result<(), ApplyError> {
        if returns.len() > MAX_BATCH {
            return Err(ApplyError::invalid(
                "returns",
                format!("at most {MAX_BATCH}"),
            ));
        }
        let latest = self.returned_batches.entry(node).or_default();
        if batch <= *latest {
            return Ok(());
        }
        *latest = batch;
        for r in returns {
            let Some(bucket) = self
                .buckets
                .get_mut(&r.scope)
                .and_then(|b| b.get_mut(r.unit))
            else {
                continue;
            };
            bucket.advance(now_ms);
            let Some(share) = bucket.nodes.get_mut(&node) else {
                continue;
            };
            let amount = r.amount.min(share.held);
            share.held -= amount;
            let standing = r.standing.min(share.standing);
            share.standing -= standing;
            share.holding = share.holding.saturating_sub(amount + standing);
            bucket.put_back(amount.saturating_add(standing));
        }
        Ok(())
    }

    /// Forgets every node not in `members` (they left the cluster): their
    /// standing reserves go back to the level's ceiling, their leases are
    /// written off (never spent twice: they were granted once).
    pub fn forget_nodes_except(&mut self, members: &std::collections::BTreeSet<u64>) {
        self.returned_batches.retain(|n, _| members.contains(n));
        let doomed: Vec<Scope> = self
            .buckets
            .iter()
            .filter(|(_, b)| {
                b.iter()
                    .any(|b| b.nodes.keys().any(|n| !members.contains(n)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for scope in doomed {
            if let Some(buckets) = self.buckets.get_mut(&scope) {
                for bucket in buckets.iter_mut() {
                    bucket.nodes.retain(|n, _| members.contains(n));
                }
            }
        }
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

    /// `scope`'s bucket of `unit` (a map look-up; nothing allocated).
    pub fn bucket(&self, scope: &Scope, unit: Unit) -> Option<&Bucket> {
        self.buckets.get(scope)?.get(unit)
    }

    /// Every bucket of `key_id`'s scopes.
    pub fn buckets_of_key<'a>(
        &'a self,
        key_id: &'a str,
    ) -> impl Iterator<Item = (&'a Scope, Unit, &'a Bucket)> + 'a {
        self.buckets
            .iter()
            .filter(move |(s, _)| s.key_id() == key_id)
            .flat_map(|(s, b)| b.iter().map(move |b| (s, b.limit.unit, b)))
    }
}

#[cfg(test)]
mod tests;
