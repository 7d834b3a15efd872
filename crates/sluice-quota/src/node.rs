//! One node's quota state: a [`Pool`] per bucket it has seen demand for,
//! and the lease round ([`Quotas::tick`]) that turns the last tick's demand
//! into one batched `GrantLeases` and the expired remainders into one
//! `ReturnLeases`.
//!
//! The round talks to the ledger through [`LedgerClient`]: in a node that is
//! a write through the Raft log (`sluice_raft::ClusterNode`); in tests, the
//! same `sluice_core::quota::Ledger` applied in process.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::Duration;

use tokio::sync::Notify;

use sluice_core::quota::{Grant, Ledger, Return, Scope, Unit, Want};

use crate::admission::Scoped;
use crate::plan::{Plan, PlanTable};
use crate::pool::{want, Pool};

/// Why the ledger could not be reached (no leader, a minority partition).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the quota ledger cannot be reached: {0}")]
pub struct Unreachable(pub String);

/// A ledger call's answer.
pub type Reply<'a, T> = Pin<Box<dyn Future<Output = Result<T, Unreachable>> + Send + 'a>>;

/// The ledger as a node reaches it.
pub trait LedgerClient: Send + Sync {
    /// Proposes one `GrantLeases`; the grants come back in the wants' order.
    fn grant(&self, wants: Vec<Want>, ttl_ms: u64) -> Reply<'_, Vec<Grant>>;
    /// Proposes one `ReturnLeases`.
    fn give_back(&self, returns: Vec<Return>) -> Reply<'_, ()>;
}

/// How the lease rounds are paced.
#[derive(Debug, Clone, Copy)]
pub struct QuotaConfig {
    /// Time between two rounds.
    pub tick_ms: u64,
    /// How long a grant stays spendable.
    pub lease_ttl_ms: u64,
    /// How many ticks of demand a pool asks for (it asks below half of
    /// that, and returns what it holds beyond twice that).
    pub horizon_ticks: u64,
    /// Longest a request waits for the next lease round when its pool ran
    /// dry and the ledger probably has room.
    pub max_wait_ms: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            tick_ms: 100,
            lease_ttl_ms: 2_000,
            horizon_ticks: 10,
            max_wait_ms: 500,
        }
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub wanted: u64,
    pub granted: u64,
    pub returned: u64,
    /// Whether the ledger could be reached (`None`: nothing to ask).
    pub reached: Option<bool>,
}

/// Whether the latest lease rounds reached the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// No round has needed the ledger yet.
    Unknown,
    Reachable,
    /// The latest round that needed the ledger could not reach it.
    Unreachable,
}

/// A node's pools.
pub struct Quotas {
    /// Each scope's pools, by unit ([`unit_index`]), read without a lock
    /// (a request clones nothing and shares no lock with other scopes);
    /// replaced whole, under `grow`, when scopes are added.
    pools: ArcSwap<HashMap<Scope, [Arc<Pool>; 3]>>,
    /// Every key's plan, made from one version of the ledger's policy
    /// table; remade (under `grow`) when a request brings a newer one.
    plans: ArcSwap<PlanTable>,
    /// Held to add pools or remake the plans.
    grow: Mutex<()>,
    config: QuotaConfig,
    reachability: AtomicU8,
    /// Voters in the cluster: the `N` of a `local_share`.
    voters: AtomicU64,
    /// Woken at the end of every round.
    rounds: Notify,
    /// Rounds completed.
    rounds_done: AtomicU64,
}

/// Where a unit's pool sits in a scope's array.
fn unit_index(unit: Unit) -> usize {
    match unit {
        Unit::Requests => 0,
        Unit::Tokens => 1,
        Unit::MicroUsd => 2,
    }
}

const UNITS: [Unit; 3] = [Unit::Requests, Unit::Tokens, Unit::MicroUsd];

impl Default for Quotas {
    fn default() -> Self {
        Self::new(QuotaConfig::default())
    }
}

impl Quotas {
    pub fn new(config: QuotaConfig) -> Self {
        Self {
            pools: ArcSwap::from_pointee(HashMap::new()),
            plans: ArcSwap::from_pointee(PlanTable::default()),
            grow: Mutex::new(()),
            config,
            reachability: AtomicU8::new(0),
            voters: AtomicU64::new(1),
            rounds: Notify::new(),
            rounds_done: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &QuotaConfig {
        &self.config
    }

    pub fn reachability(&self) -> Reachability {
        match self.reachability.load(Ordering::Acquire) {
            1 => Reachability::Reachable,
            2 => Reachability::Unreachable,
            _ => Reachability::Unknown,
        }
    }

    fn set_reachability(&self, reachability: Reachability) {
        let value = match reachability {
            Reachability::Unknown => 0,
            Reachability::Reachable => 1,
            Reachability::Unreachable => 2,
        };
        self.reachability.store(value, Ordering::Release);
    }

    /// Sets the number of voters (at least 1).
    pub fn set_voters(&self, voters: u64) {
        self.voters.store(voters.max(1), Ordering::Release);
    }

    pub fn voters(&self) -> u64 {
        self.voters.load(Ordering::Acquire)
    }

    /// Rounds completed so far.
    pub fn rounds_done(&self) -> u64 {
        self.rounds_done.load(Ordering::Acquire)
    }

    /// Waits until more than `seen` rounds have completed, until
    /// `deadline`; whether they did.
    pub async fn round_after(&self, seen: u64, deadline: tokio::time::Instant) -> bool {
        loop {
            // Registered before the check: a round ending in between still
            // wakes it.
            let notified = self.rounds.notified();
            if self.rounds_done() > seen {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.rounds_done() > seen;
            }
        }
    }

    /// Runs a round every `tick_ms` until the future is dropped.
    pub async fn run(&self, ledger: &dyn LedgerClient, now_ms: fn() -> u64) {
        let mut interval = tokio::time::interval(Duration::from_millis(self.config.tick_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was = self.reachability();
        loop {
            interval.tick().await;
            let round = self.tick(ledger, now_ms()).await;
            let is = self.reachability();
            if is != was {
                match is {
                    Reachability::Unreachable => tracing::warn!(
                        wanted = round.wanted,
                        "the quota ledger cannot be reached: spending held leases, then each policy's on_no_quorum"
                    ),
                    _ => tracing::info!("the quota ledger is reachable"),
                }
                was = is;
            }
        }
    }

    /// Gives back everything this node holds (at shutdown, once no request
    /// is in flight).
    pub async fn release(&self, ledger: &dyn LedgerClient) -> u64 {
        let mut returns = Vec::new();
        for ((scope, unit), pool) in self.snapshot() {
            let amount = pool.take_expired(u64::MAX);
            if amount > 0 {
                returns.push(Return {
                    scope,
                    unit,
                    amount,
                });
            }
        }
        let total = returns.iter().map(|r| r.amount).sum();
        if returns.is_empty() || ledger.give_back(returns).await.is_ok() {
            total
        } else {
            0
        }
    }

    fn snapshot(&self) -> Vec<((Scope, Unit), Arc<Pool>)> {
        self.pools
            .load()
            .iter()
            .flat_map(|(scope, pools)| {
                UNITS
                    .iter()
                    .zip(pools)
                    .map(|(unit, pool)| ((scope.clone(), *unit), Arc::clone(pool)))
            })
            .collect()
    }

    /// The pool of a bucket, made on first use (empty: its first demand is
    /// asked for at the next round).
    pub fn pool(&self, scope: &Scope, unit: Unit) -> Arc<Pool> {
        let i = unit_index(unit);
        if let Some(pools) = self.pools.load().get(scope) {
            return Arc::clone(&pools[i]);
        }
        self.add_scopes([scope]);
        let pools = self.pools.load();
        Arc::clone(&pools.get(scope).expect("the scope was just added")[i])
    }

    /// `key_id`'s plan under `ledger`'s policies (`None`: the key has no
    /// policy). The plans of every key are made at once, with a pool for
    /// every scope, the first time a request brings a new version of the
    /// policy table; until the next change a request only looks its key up.
    pub fn plan(&self, ledger: &Ledger, key_id: &str) -> Option<Arc<Plan>> {
        let policies = ledger.policy_table();
        if policies.is_empty() {
            return None;
        }
        {
            let plans = self.plans.load();
            if plans.made_from(policies) {
                return plans.get(key_id).cloned();
            }
        }
        let _writer = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        if !self.plans.load().made_from(policies) {
            self.add_scopes_locked(policies.keys());
            let pools = self.pools.load();
            let table = PlanTable::make(policies, |scope, unit| {
                Arc::clone(&pools.get(scope).expect("pools were just made")[unit_index(unit)])
            });
            self.plans.store(Arc::new(table));
        }
        self.plans.load().get(key_id).cloned()
    }

    /// A plan of `scoped`'s limits, every one applying on every route,
    /// with this node's pools.
    pub fn plan_of(&self, scoped: &[Scoped<'_>]) -> Arc<Plan> {
        Arc::new(Plan::of(scoped, |scope, unit| self.pool(scope, unit)))
    }

    fn add_scopes<'a>(&self, scopes: impl IntoIterator<Item = &'a Scope>) {
        let _writer = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        self.add_scopes_locked(scopes);
    }

    /// [`Quotas::add_scopes`], with `grow` held.
    fn add_scopes_locked<'a>(&self, scopes: impl IntoIterator<Item = &'a Scope>) {
        let current = self.pools.load_full();
        let missing: Vec<&Scope> = scopes
            .into_iter()
            .filter(|s| !current.contains_key(*s))
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut next = HashMap::clone(&current);
        for scope in missing {
            next.insert(scope.clone(), Default::default());
        }
        self.pools.store(Arc::new(next));
    }

    /// One lease round at `now_ms`: returns what expired unspent, then asks
    /// for what the last tick's demand needs, in one command each.
    pub async fn tick(&self, ledger: &dyn LedgerClient, now_ms: u64) -> Round {
        let round = self.round(ledger, now_ms).await;
        self.rounds_done.fetch_add(1, Ordering::AcqRel);
        match round.reached {
            Some(true) => self.set_reachability(Reachability::Reachable),
            Some(false) => self.set_reachability(Reachability::Unreachable),
            None => {}
        }
        self.rounds.notify_waiters();
        round
    }

    async fn round(&self, ledger: &dyn LedgerClient, now_ms: u64) -> Round {
        let mut round = Round::default();
        let mut returns = Vec::new();
        let mut wants = Vec::new();
        let mut asking = Vec::new();
        for ((scope, unit), pool) in self.snapshot() {
            let (admitted, refused) = pool.take_demand();
            // Expired unspent, or held beyond twice what the last tick's
            // demand needs (demand dropped): back to the ledger, where
            // other nodes can have it.
            let target = admitted
                .saturating_add(refused)
                .saturating_mul(self.config.horizon_ticks);
            let remainder = pool
                .take_expired(now_ms)
                .saturating_add(pool.take_excess(target.saturating_mul(2)));
            if remainder > 0 {
                returns.push(Return {
                    scope: scope.clone(),
                    unit,
                    amount: remainder,
                });
                round.returned += remainder;
            }
            let mut amount = want(
                admitted,
                refused,
                pool.available(),
                self.config.horizon_ticks,
            );
            // A pool in use whose lease is past half its life asks anyway,
            // so the grant renews its expiry: a pool that never runs low
            // (its reservations refunded) must not stall its requests when
            // the lease it started with expires, even if a round or two is
            // slow to commit.
            let renew_within = (2 * self.config.tick_ms).max(self.config.lease_ttl_ms / 2);
            let expiring = pool.expires_at_ms() <= now_ms.saturating_add(renew_within);
            if admitted > 0 && expiring {
                amount = amount.max(1);
            }
            if amount > 0 {
                wants.push(Want {
                    scope,
                    unit,
                    amount,
                    admitted_total: pool.admitted_total(),
                });
                asking.push(pool);
                round.wanted += amount;
            }
        }
        if !returns.is_empty() && ledger.give_back(returns).await.is_err() {
            // Not returned: the capacity stays out until the bucket refills,
            // which is safe (never spent twice).
            round.reached = Some(false);
        }
        if wants.is_empty() {
            return round;
        }
        match ledger.grant(wants, self.config.lease_ttl_ms).await {
            Ok(grants) => {
                for (pool, grant) in asking.iter().zip(&grants) {
                    if grant.level_after.is_some() {
                        // Even a grant of 0 renews what the pool holds: the
                        // ledger knows this node holds it until then.
                        pool.add_lease(grant.amount, grant.expires_at_ms);
                        round.granted += grant.amount;
                    }
                    if let Some(level) = grant.level_after {
                        pool.note_ledger_level(level, now_ms);
                    }
                }
                round.reached.get_or_insert(true);
            }
            Err(_) => round.reached = Some(false),
        }
        round
    }
}

#[cfg(test)]
mod tests;
