//! A key's quota plan: every limit of its policies (the key's own, and each
//! key × route's), each with this node's pool for it.
//!
//! Plans are made once per version of the ledger's policy table
//! (`Ledger::policy_table`, an `Arc` that changes identity when a policy
//! changes), for every key at once, and kept in a table read without a
//! lock. A request then finds its key's plan with one hash lookup: no
//! `Scope` to build, no policy to look up, no pool to find, nothing
//! allocated.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use sluice_core::quota::{Limit, OnNoQuorum, PolicyTable, Reserve, Scope, Unit};

use crate::admission::Scoped;
use crate::completions::Completions;
use crate::pool::Pool;

/// One limit of a plan, with the pool this node spends for it.
#[derive(Debug)]
pub struct Planned {
    pub scope: Scope,
    pub limit: Limit,
    pub on_no_quorum: OnNoQuorum,
    pub reserve: Reserve,
    pub(crate) pool: Arc<Pool>,
}

/// Every limit of one key, in the order admission takes them: the key's own
/// policy, then each key × route policy.
#[derive(Debug, Default)]
pub struct Plan {
    limits: Vec<Planned>,
    /// `limits[..every_route]` apply on every route.
    every_route: usize,
    /// Routes with a key × route policy, and where their limits are.
    routes: Vec<(String, Range<usize>)>,
    /// The key's recent answers on this node, for `reserve = "estimate"`.
    completions: Completions,
}

impl Plan {
    /// The limits that apply on `route`, with their index in the plan.
    pub fn on<'p>(&'p self, route: &str) -> impl Iterator<Item = (usize, &'p Planned)> + 'p {
        let own = self
            .routes
            .iter()
            .find(|(r, _)| r == route)
            .map_or(0..0, |(_, range)| range.clone());
        (0..self.every_route)
            .chain(own)
            .map(move |i| (i, &self.limits[i]))
    }

    /// Whether any limit applies on `route`.
    pub fn applies_on(&self, route: &str) -> bool {
        self.on(route).next().is_some()
    }

    /// Whether a limit on `route` counts tokens or spend (so the request's
    /// tokens must be estimated).
    pub fn counts_tokens(&self, route: &str) -> bool {
        self.on(route)
            .any(|(_, p)| matches!(p.limit.unit, Unit::Tokens | Unit::MicroUsd))
    }

    /// Whether a limit on `route` reserves an estimate of the completion
    /// rather than all of `max_tokens`.
    pub fn estimates(&self, route: &str) -> bool {
        self.on(route)
            .any(|(_, p)| p.reserve == Reserve::Estimate && p.limit.unit != Unit::Requests)
    }

    /// The completion tokens a request of this key is estimated to use:
    /// the 95th percentile of its recent answers on this node (`None`
    /// until there are enough of them).
    pub fn completion_estimate(&self) -> Option<u64> {
        self.completions.p95()
    }

    /// Records an answer's completion tokens (for the estimate).
    pub fn record_completion(&self, tokens: u64) {
        self.completions.record(tokens);
    }

    pub(crate) fn limit_at(&self, i: usize) -> Option<&Planned> {
        self.limits.get(i)
    }

    pub(crate) fn limit(&self, i: usize) -> &Planned {
        &self.limits[i]
    }

    /// A plan whose limits all apply on every route: `scoped`'s, with
    /// `pool` giving each limit's pool.
    pub(crate) fn of(scoped: &[Scoped<'_>], pool: impl Fn(&Scope, Unit) -> Arc<Pool>) -> Plan {
        let limits: Vec<Planned> = scoped
            .iter()
            .flat_map(|s| planned(s.scope, s.policy, &pool))
            .collect();
        Plan {
            every_route: limits.len(),
            limits,
            ..Plan::default()
        }
    }
}

fn planned<'a>(
    scope: &'a Scope,
    policy: &'a sluice_core::quota::QuotaPolicy,
    pool: &'a impl Fn(&Scope, Unit) -> Arc<Pool>,
) -> impl Iterator<Item = Planned> + 'a {
    policy.limits.iter().map(move |limit| Planned {
        scope: scope.clone(),
        limit: *limit,
        on_no_quorum: policy.on_no_quorum,
        reserve: policy.reserve,
        pool: pool(scope, limit.unit),
    })
}

/// Every key's plan, made from one version of the policy table.
#[derive(Debug, Default)]
pub(crate) struct PlanTable {
    /// The table the plans were made from, held so that its identity cannot
    /// be reused by another version while plans made from it are served.
    source: Option<Arc<PolicyTable>>,
    by_key: HashMap<String, Arc<Plan>>,
}

impl PlanTable {
    /// Plans for every key with a policy in `source`; `pool` gives each
    /// limit's pool.
    pub(crate) fn make(
        source: &Arc<PolicyTable>,
        pool: impl Fn(&Scope, Unit) -> Arc<Pool>,
    ) -> PlanTable {
        // The table is ordered by scope: every key's own policy, then every
        // key × route policy.
        let mut by_key: BTreeMap<&str, Plan> = BTreeMap::new();
        for (scope, policy) in source.iter() {
            let plan = by_key.entry(scope.key_id()).or_default();
            let start = plan.limits.len();
            plan.limits.extend(planned(scope, policy, &pool));
            match scope {
                Scope::Key { .. } => plan.every_route = plan.limits.len(),
                Scope::KeyRoute { route, .. } => {
                    plan.routes.push((route.clone(), start..plan.limits.len()));
                }
            }
        }
        PlanTable {
            source: Some(Arc::clone(source)),
            by_key: by_key
                .into_iter()
                .map(|(key, plan)| (key.to_owned(), Arc::new(plan)))
                .collect(),
        }
    }

    /// Whether these plans were made from `policies`.
    pub(crate) fn made_from(&self, policies: &Arc<PolicyTable>) -> bool {
        self.source
            .as_ref()
            .is_some_and(|source| Arc::ptr_eq(source, policies))
    }

    pub(crate) fn get(&self, key_id: &str) -> Option<&Arc<Plan>> {
        self.by_key.get(key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::quota::{Ledger, QuotaPolicy};

    fn policy(units: &[Unit]) -> QuotaPolicy {
        QuotaPolicy {
            limits: units.iter().map(|u| Limit::per_minute(*u, 10)).collect(),
            on_no_quorum: OnNoQuorum::Deny,
            ..QuotaPolicy::default()
        }
    }

    #[test]
    fn a_plan_holds_the_keys_limits_and_each_routes_own() {
        let mut ledger = Ledger::default();
        let key = |k: &str| Scope::Key { key_id: k.into() };
        let route = |k: &str, r: &str| Scope::KeyRoute {
            key_id: k.into(),
            route: r.into(),
        };
        let both = policy(&[Unit::Requests, Unit::Tokens]);
        let one = policy(&[Unit::MicroUsd]);
        ledger.set_policy(&key("a"), Some(&both), 0).unwrap();
        ledger.set_policy(&route("a", "r1"), Some(&one), 0).unwrap();
        ledger.set_policy(&route("b", "r2"), Some(&one), 0).unwrap();
        let table = PlanTable::make(ledger.policy_table(), |_, _| Arc::new(Pool::new()));
        assert!(table.made_from(ledger.policy_table()));

        let a = table.get("a").unwrap();
        let units =
            |plan: &Plan, r: &str| -> Vec<Unit> { plan.on(r).map(|(_, p)| p.limit.unit).collect() };
        assert_eq!(
            units(a, "r1"),
            [Unit::Requests, Unit::Tokens, Unit::MicroUsd]
        );
        assert_eq!(units(a, "other"), [Unit::Requests, Unit::Tokens]);
        let b = table.get("b").unwrap();
        assert!(b.applies_on("r2") && !b.applies_on("r1"));
        assert!(b.counts_tokens("r2"));
        assert!(table.get("c").is_none());

        // A changed policy is a new table; an unchanged one is the same.
        let before = Arc::clone(ledger.policy_table());
        ledger.remove_route("nowhere");
        assert!(Arc::ptr_eq(&before, ledger.policy_table()));
        ledger.remove_key("b");
        assert!(!table.made_from(ledger.policy_table()));
    }
}
