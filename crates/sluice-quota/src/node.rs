//! One node's quota state: a [`Pool`] per bucket, and the lease round
//! ([`Quotas::tick`]) that turns the last tick's demand (and the standing
//! reserves to top up) into one batched `GrantLeases` and the expired
//! remainders into one `ReturnLeases`. A round visits only the pools with
//! something to do: an idle key costs a check of a few atomics, and no
//! Raft entry.
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

use sluice_core::quota::{Grant, Ledger, Return, Scope, Unit, Want, MAX_BATCH};
use sluice_core::State;

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
    /// Proposes one `ReturnLeases` numbered `batch` (a retry of a batch
    /// keeps its number, and the ledger applies a batch once).
    fn give_back(&self, batch: u64, returns: Vec<Return>) -> Reply<'_, ()>;
}

/// How the lease rounds are paced.
#[derive(Debug, Clone, Copy)]
pub struct QuotaConfig {
    /// Time between two rounds.
    pub tick_ms: u64,
    /// How long a grant stays spendable.
    pub lease_ttl_ms: u64,
    /// How many ticks of demand a pool asks for (it asks below half of
    /// that, and returns what it holds beyond twice that). Twenty ticks of
    /// 100 ms: a pool in use holds one to two seconds of its demand, more
    /// than an election takes, so its requests ride through one.
    pub horizon_ticks: u64,
    /// Longest a request waits for lease rounds when its pool ran dry and
    /// the ledger has room (or will have within the wait).
    pub max_wait_ms: u64,
    /// The standing reserves of all nodes together hold what a limit
    /// refills in this long (see `Limit::standing_share`); 0: none.
    pub standing_ms: u64,
    /// This node's incarnation: increasing across its restarts (its start
    /// time, in ms since the epoch), so its reports of its reserves are
    /// newer than any of a previous run's still in flight.
    pub incarnation: u64,
    /// This node's id in the cluster (its share of each bucket).
    pub node_id: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            tick_ms: 100,
            lease_ttl_ms: 2_000,
            horizon_ticks: 20,
            max_wait_ms: 1_000,
            standing_ms: 1_000,
            incarnation: 0,
            node_id: 0,
        }
    }
}

/// How long a pool waits before asking again for a standing reserve the
/// ledger could not fill.
const STANDING_RETRY_MS: u64 = 1_000;

/// Most pools a round asks a standing reserve for when they have no demand
/// (after a start or a policy change, every key's pools): the rest wait for
/// the next rounds, so that no command grows with the number of keys.
const RESERVES_PER_ROUND: usize = 256;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Lease units asked for, granted, and returned.
    pub wanted: u64,
    pub granted: u64,
    pub returned: u64,
    /// Units added to standing reserves.
    pub standing: u64,
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

/// What holds this node's copy of the replicated ledger: the state (in a
/// node), or a bare ledger (in tests).
pub trait LedgerView: Send + Sync {
    fn ledger(&self) -> &Ledger;
}

impl LedgerView for State {
    fn ledger(&self) -> &Ledger {
        State::ledger(self)
    }
}

impl LedgerView for Ledger {
    fn ledger(&self) -> &Ledger {
        self
    }
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
    /// Members (voters and learners): the `N` the standing reserves and
    /// the exposure cap are split between.
    nodes: AtomicU64,
    /// Woken at the end of every round.
    rounds: Notify,
    /// Rounds completed.
    rounds_done: AtomicU64,
    /// Reports of the standing reserves made (see [`Quotas::tick`]).
    reports: AtomicU64,
    /// Returns not yet acknowledged by the ledger.
    returns: Mutex<Outbox>,
}

/// Returns on their way to the ledger. A batch whose answer did not come is
/// sent again, unchanged, until one does: the units it carries are out of
/// their pools (never spent), and the ledger applies a batch number once.
#[derive(Default)]
struct Outbox {
    /// The batch sent and not yet acknowledged.
    pending: Option<(u64, Vec<Return>)>,
    /// Returns waiting for the next batch.
    queued: Vec<Return>,
}

impl Outbox {
    /// The batch to send now: the unacknowledged one, or a new one of what
    /// is queued (numbered `next()`).
    fn batch(&mut self, next: impl FnOnce() -> u64) -> Option<(u64, Vec<Return>)> {
        if self.pending.is_none() && !self.queued.is_empty() {
            let rest = if self.queued.len() > MAX_BATCH {
                self.queued.split_off(MAX_BATCH)
            } else {
                Vec::new()
            };
            let batch = std::mem::replace(&mut self.queued, rest);
            self.pending = Some((next(), batch));
        }
        self.pending.clone()
    }

    /// Lease units on their way back, by bucket: still held as far as the
    /// ledger knows until acknowledged.
    fn in_flight(&self) -> HashMap<(Scope, Unit), u64> {
        let mut out = HashMap::new();
        let pending = self.pending.iter().flat_map(|(_, batch)| batch);
        for r in pending.chain(&self.queued) {
            *out.entry((r.scope.clone(), r.unit)).or_default() += r.amount;
        }
        out
    }

    fn acknowledge(&mut self, batch: u64) {
        if self.pending.as_ref().is_some_and(|(id, _)| *id == batch) {
            self.pending = None;
        }
    }
}

/// Where a unit's pool sits in a scope's array.
fn unit_index(unit: Unit) -> usize {
    unit.index()
}

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
            nodes: AtomicU64::new(1),
            rounds: Notify::new(),
            rounds_done: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            returns: Mutex::new(Outbox::default()),
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

    /// Sets the number of members, voters and learners (at least 1).
    pub fn set_nodes(&self, nodes: u64) {
        self.nodes.store(nodes.max(1), Ordering::Release);
    }

    pub fn nodes(&self) -> u64 {
        self.nodes.load(Ordering::Acquire)
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

    /// Runs a round every `tick_ms` until the future is dropped; `view`
    /// gives this node's latest copy of the replicated state.
    pub async fn run<V: LedgerView>(
        &self,
        ledger: &dyn LedgerClient,
        now_ms: fn() -> u64,
        view: impl Fn() -> Arc<V>,
    ) {
        let mut interval = tokio::time::interval(Duration::from_millis(self.config.tick_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was = self.reachability();
        loop {
            interval.tick().await;
            let round = self.tick(ledger, view().ledger(), now_ms()).await;
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

    /// Gives back everything this node holds, leases and standing
    /// reserves, and what it could not return before (at shutdown, once no
    /// request is in flight). What the ledger acknowledged, in units.
    pub async fn release(&self, ledger: &dyn LedgerClient) -> u64 {
        let mut returns = Vec::new();
        for (scope, pools) in self.pools.load().iter() {
            for (unit, pool) in Unit::ALL.into_iter().zip(pools) {
                let amount = pool.take_expired(u64::MAX);
                let standing = pool.take_standing_excess(0);
                if amount + standing > 0 {
                    returns.push(Return {
                        scope: scope.clone(),
                        unit,
                        amount,
                        standing,
                    });
                }
            }
        }
        self.lock_returns().queued.extend(returns);
        let mut total = 0;
        loop {
            let Some((id, batch)) = self.lock_returns().batch(|| self.next_report()) else {
                return total;
            };
            if ledger.give_back(id, batch.clone()).await.is_err() {
                return total;
            }
            self.lock_returns().acknowledge(id);
            total += batch.iter().map(|r| r.amount + r.standing).sum::<u64>();
        }
    }

    fn lock_returns(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.returns.lock().unwrap_or_else(|e| e.into_inner())
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

    /// One lease round at `now_ms`: returns what expired unspent and asks
    /// for what the last tick's demand needs and the standing reserves
    /// lack, in one command each. `view` is this node's copy of the
    /// replicated ledger (each bucket's limit).
    pub async fn tick(&self, ledger: &dyn LedgerClient, view: &Ledger, now_ms: u64) -> Round {
        let round = self.round(ledger, view, now_ms).await;
        self.rounds_done.fetch_add(1, Ordering::AcqRel);
        match round.reached {
            Some(true) => self.set_reachability(Reachability::Reachable),
            Some(false) => self.set_reachability(Reachability::Unreachable),
            None => {}
        }
        self.rounds.notify_waiters();
        round
    }

    async fn round(&self, ledger: &dyn LedgerClient, view: &Ledger, now_ms: u64) -> Round {
        let mut round = Round::default();
        let mut returns = Vec::new();
        let mut wants = Vec::new();
        let mut asking = Vec::new();
        let seq = self.next_report();
        let horizon = self.config.horizon_ticks;
        // A pool in use renews its lease long before it expires, so that
        // what it holds outlives an election that stops the rounds.
        let renew_within = self
            .config
            .lease_ttl_ms
            .saturating_sub(3 * self.config.tick_ms)
            .max(2 * self.config.tick_ms);
        // Every key's pools exist once the plans of this policy table are
        // made (their reserves are filled from the first rounds on).
        let _ = self.plan(view, "");
        let returning = self.lock_returns().in_flight();
        let mut reserves_only = 0;
        let pools = self.pools.load();
        for (scope, by_unit) in pools.iter() {
            for (unit, pool) in Unit::ALL.into_iter().zip(by_unit) {
                if !pool.needs_round(now_ms) {
                    continue;
                }
                let idle = !pool.has_demand();
                if idle && (!pool.is_sized() || pool.standing_wanted(now_ms) > 0) {
                    // Only a reserve to fill: a few per round.
                    if reserves_only == RESERVES_PER_ROUND {
                        continue;
                    }
                    reserves_only += 1;
                }
                let bucket = view.bucket(scope, unit);
                let limit = bucket.map(|b| b.limit);
                let (admitted, refused) = pool.take_demand();
                let tick_demand = admitted.saturating_add(refused);
                let demand = pool.note_tick_demand(tick_demand).saturating_mul(horizon);
                // Other nodes wait on this bucket: keep no more than this
                // tick's demand, so what is idle here serves them.
                let contended = bucket.is_some_and(|b| {
                    u128::from(b.level_at(now_ms))
                        < b.recent_demand_except(self.config.node_id, now_ms)
                });
                let standing_target = limit.map_or(0, |l| {
                    l.standing_share(self.nodes(), self.config.standing_ms)
                });
                pool.set_standing_target(standing_target);
                // Expired unspent, held beyond twice what the last tick's
                // demand needs (demand dropped), or all of it when the
                // policy is gone: back to the ledger, where other nodes
                // can have it.
                let keep = match limit {
                    None => 0,
                    Some(_) if contended => tick_demand,
                    Some(_) => demand.saturating_mul(2),
                };
                let remainder = pool
                    .take_expired(now_ms)
                    .saturating_add(pool.take_excess(keep));
                // A reserve above its target (the policy or the cluster
                // changed) is dropped here and reported below (as spent): a
                // return of its own could cross a report in flight.
                pool.take_standing_excess(standing_target);
                // What the pool holds for the ledger's count: its lease,
                // reserve and reservations, and what it is returning, until
                // the ledger acknowledges it.
                let holding = pool
                    .holding()
                    .saturating_add(remainder)
                    .saturating_add(returning.get(&(scope.clone(), unit)).copied().unwrap_or(0));
                if remainder > 0 {
                    returns.push(Return {
                        scope: scope.clone(),
                        unit,
                        amount: remainder,
                        standing: 0,
                    });
                    round.returned += remainder;
                }
                if limit.is_none() {
                    continue;
                }
                // This node's share of what the ledger has left.
                let fair = bucket.map_or(0, |b| b.level_at(now_ms) / self.nodes());
                let mut amount = want(demand, tick_demand, pool.available(), fair);
                if admitted > 0 && pool.expires_at_ms() <= now_ms.saturating_add(renew_within) {
                    // Even a grant of 0 renews what the pool holds.
                    amount = amount.max(1);
                }
                let standing_wanted = pool.standing_wanted(now_ms);
                // A demand stated before and now gone is withdrawn (a want
                // of 0), once.
                let withdrawn = pool.restate(amount) > 0 && amount == 0;
                if amount > 0 || standing_wanted > 0 || admitted > 0 || withdrawn {
                    wants.push(Want {
                        scope: scope.clone(),
                        unit,
                        amount,
                        admitted_total: pool.admitted_total(),
                        holding,
                        standing: pool.standing(),
                        seq,
                        standing_wanted,
                    });
                    asking.push((Arc::clone(pool), standing_wanted));
                    round.wanted += amount;
                }
            }
        }
        drop(pools);
        let outgoing = {
            let mut outbox = self.lock_returns();
            outbox.queued.extend(returns);
            outbox.batch(|| self.next_report())
        };
        let give_back = async {
            let (id, batch) = outgoing?;
            // Not acknowledged: sent again next round.
            let ok = ledger.give_back(id, batch).await.is_ok();
            if ok {
                self.lock_returns().acknowledge(id);
            }
            Some(ok)
        };
        let grant = async {
            let mut grants = Vec::new();
            for batch in chunks(wants) {
                grants.push(ledger.grant(batch, self.config.lease_ttl_ms).await);
            }
            grants
        };
        let (given, granted) = futures_join(give_back, grant).await;
        if given == Some(false) {
            round.reached = Some(false);
        }
        let mut asked = asking.chunks(MAX_BATCH);
        for granted in granted {
            let asking = asked.next().unwrap_or_default();
            match granted {
                Ok(grants) => {
                    for ((pool, standing_wanted), grant) in asking.iter().zip(&grants) {
                        if grant.level_after.is_some() {
                            // Even a grant of 0 renews what the pool holds: the
                            // ledger knows this node holds it until then.
                            pool.add_lease(grant.amount, grant.expires_at_ms);
                            pool.add_standing(grant.standing);
                            pool.note_standing_grant(
                                *standing_wanted,
                                grant.standing,
                                now_ms,
                                STANDING_RETRY_MS,
                            );
                            round.granted += grant.amount;
                            round.standing += grant.standing;
                        }
                    }
                    if round.reached.is_none() {
                        round.reached = Some(true);
                    }
                }
                Err(_) => {
                    for (pool, _) in asking {
                        pool.unstate();
                    }
                    round.reached = Some(false);
                }
            }
        }
        round
    }

    /// The sequence number of this round's reports: increasing over this
    /// run and above every report of an earlier run.
    fn next_report(&self) -> u64 {
        self.config
            .incarnation
            .saturating_mul(1_000_000)
            .saturating_add(self.reports.fetch_add(1, Ordering::AcqRel) + 1)
    }
}

/// `items` in batches a command accepts.
fn chunks<T>(mut items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while items.len() > MAX_BATCH {
        let rest = items.split_off(MAX_BATCH);
        out.push(std::mem::replace(&mut items, rest));
    }
    if !items.is_empty() {
        out.push(items);
    }
    out
}

/// Both futures, concurrently (a slow return does not hold up the grants).
async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

#[cfg(test)]
mod tests;
