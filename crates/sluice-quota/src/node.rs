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
use std::sync::{Arc, RwLock};

use sluice_core::quota::{Grant, Return, Scope, Unit, Want};

use crate::pool::{want, Pool};

/// Why the ledger could not be reached (no leader, a minority partition).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the quota ledger cannot be reached: {0}")]
pub struct Unreachable(pub String);

type Reply<'a, T> = Pin<Box<dyn Future<Output = Result<T, Unreachable>> + Send + 'a>>;

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
    /// How many ticks of demand a pool asks for.
    pub horizon_ticks: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            tick_ms: 100,
            lease_ttl_ms: 2_000,
            horizon_ticks: 3,
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

/// A node's pools.
#[derive(Default)]
pub struct Quotas {
    pools: RwLock<HashMap<(Scope, Unit), Arc<Pool>>>,
    config: QuotaConfig,
}

impl Quotas {
    pub fn new(config: QuotaConfig) -> Self {
        Self {
            pools: RwLock::new(HashMap::new()),
            config,
        }
    }

    /// The pool of a bucket, made on first use (empty: its first demand is
    /// asked for at the next round).
    pub fn pool(&self, scope: &Scope, unit: Unit) -> Arc<Pool> {
        let key = (scope.clone(), unit);
        if let Some(pool) = self
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Arc::clone(pool);
        }
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(pools.entry(key).or_default())
    }

    /// One lease round at `now_ms`: returns what expired unspent, then asks
    /// for what the last tick's demand needs, in one command each.
    pub async fn tick(&self, ledger: &dyn LedgerClient, now_ms: u64) -> Round {
        let pools: Vec<((Scope, Unit), Arc<Pool>)> = self
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, p)| (k.clone(), Arc::clone(p)))
            .collect();
        let mut round = Round::default();
        let mut returns = Vec::new();
        let mut wants = Vec::new();
        let mut asking = Vec::new();
        for ((scope, unit), pool) in &pools {
            let remainder = pool.take_expired(now_ms);
            if remainder > 0 {
                returns.push(Return {
                    scope: scope.clone(),
                    unit: *unit,
                    amount: remainder,
                });
                round.returned += remainder;
            }
            let (admitted, refused) = pool.take_demand();
            let amount = want(
                admitted,
                refused,
                pool.available(),
                self.config.horizon_ticks,
            );
            if amount > 0 {
                wants.push(Want {
                    scope: scope.clone(),
                    unit: *unit,
                    amount,
                });
                asking.push(Arc::clone(pool));
                round.wanted += amount;
            }
        }
        if !returns.is_empty() && ledger.give_back(returns).await.is_err() {
            // Not returned: the capacity stays out until the bucket refills,
            // which is safe (never spent twice). Logged by the caller.
            round.reached = Some(false);
        }
        if wants.is_empty() {
            return round;
        }
        match ledger.grant(wants, self.config.lease_ttl_ms).await {
            Ok(grants) => {
                for (pool, grant) in asking.iter().zip(&grants) {
                    if grant.amount > 0 {
                        pool.add_lease(grant.amount, grant.expires_at_ms);
                        round.granted += grant.amount;
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
