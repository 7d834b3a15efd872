use super::*;
use crate::testing::{cluster_with, scope, Cluster};
use proptest::prelude::*;
use sluice_core::quota::Period;
use std::sync::atomic::Ordering;

fn policy(limits: Vec<Limit>, on_no_quorum: OnNoQuorum) -> QuotaPolicy {
    QuotaPolicy {
        limits,
        on_no_quorum,
    }
}

fn requests(n: u64) -> Cost {
    Cost {
        requests: n,
        ..Cost::default()
    }
}

fn tokens(n: u64) -> Cost {
    Cost {
        requests: 1,
        tokens: n,
        micro_usd: 0,
    }
}

/// One node's view: its quotas, its ledger client, and the policy of
/// `scope()` as the proxy would read it from the state.
fn node(c: &Cluster, i: usize) -> (&Quotas, &crate::testing::InProcess, QuotaPolicy) {
    let (quotas, ledger) = &c.nodes[i];
    let policy = ledger
        .ledger
        .lock()
        .unwrap()
        .policy(&scope())
        .cloned()
        .expect("scope has a policy");
    (quotas, ledger, policy)
}

/// The plan of one scope with `policy`, on `quotas`' pools.
fn one(quotas: &Quotas, scope: &Scope, policy: &QuotaPolicy) -> Arc<Plan> {
    quotas.plan_of(&[Scoped { scope, policy }])
}

/// Plans made by `plan_of` apply on every route.
const ROUTE: &str = "any";

#[tokio::test]
async fn a_cold_pool_waits_for_the_next_round_instead_of_refusing() {
    let c = cluster_with(
        1,
        policy(
            vec![Limit::per_minute(Unit::Requests, 60)],
            OnNoQuorum::Deny,
        ),
    );
    let (quotas, ledger, policy) = node(&c, 0);
    let s = scope();
    let plan = one(quotas, &s, &policy);
    let denial = quotas.check(&plan, ROUTE, requests(1), 0).unwrap_err();
    assert!(denial.wait_worth(), "{denial:?}");
    // `admit` waits; the next round grants; the retry is admitted.
    let admitted = tokio::join!(quotas.admit(&plan, ROUTE, requests(1), || 50), async {
        tokio::task::yield_now().await;
        quotas.tick(ledger, 10).await
    })
    .0
    .expect("admitted after the round");
    assert_eq!(admitted.standings.len(), 1);
    let standing = admitted.standings[0];
    assert_eq!(standing.limit, 60);
    assert!(standing.remaining < 60, "{standing:?}");
    assert!(standing.reset_ms >= 1_000, "{standing:?}");
}

#[tokio::test]
async fn a_spent_limit_refuses_with_the_refill_time() {
    let c = cluster_with(
        1,
        policy(vec![Limit::per_minute(Unit::Requests, 6)], OnNoQuorum::Deny),
    );
    let (quotas, ledger, policy) = node(&c, 0);
    let s = scope();
    let plan = one(quotas, &s, &policy);
    let _ = quotas.check(&plan, ROUTE, requests(6), 0);
    quotas.tick(ledger, 0).await;
    assert!(quotas.check(&plan, ROUTE, requests(6), 1).is_ok());
    let denial = quotas.check(&plan, ROUTE, requests(1), 2).unwrap_err();
    let Reason::Exhausted {
        retry_after_ms,
        wait_worth,
        needed,
        ..
    } = *denial.reason
    else {
        panic!("{denial:?}")
    };
    assert_eq!(needed, 1);
    assert!(!wait_worth, "the ledger is empty too");
    // One request refills in 10 s; plus a tick for the lease.
    assert_eq!(retry_after_ms, 10_000 + 100);
    assert_eq!(denial.standings[0].remaining, 0);
}

#[tokio::test]
async fn token_reservations_are_settled_by_usage() {
    let c = cluster_with(
        1,
        policy(
            vec![
                Limit::per_minute(Unit::Requests, 1_000),
                Limit::per_minute(Unit::Tokens, 1_000),
            ],
            OnNoQuorum::Deny,
        ),
    );
    let (quotas, ledger, policy) = node(&c, 0);
    let s = scope();
    let plan = one(quotas, &s, &policy);
    let _ = quotas.check(&plan, ROUTE, tokens(1_000), 0);
    quotas.tick(ledger, 0).await;
    let pool = quotas.pool(&s, Unit::Tokens);
    let held = pool.available();
    let a = quotas.check(&plan, ROUTE, tokens(300), 1).unwrap();
    assert_eq!(pool.available(), held - 300);
    a.reservation.settle(tokens(120));
    assert_eq!(pool.available(), held - 120, "refunds the 180 unused");
    // Dropped unsettled (a client that went away): charged in full.
    drop(quotas.check(&plan, ROUTE, tokens(50), 2).unwrap());
    assert_eq!(pool.available(), held - 170);
    // More than the whole capacity: never admitted, and said so.
    let denial = quotas.check(&plan, ROUTE, tokens(1_001), 3).unwrap_err();
    assert!(matches!(
        *denial.reason,
        Reason::TooLarge { needed: 1_001, .. }
    ));
    // A refusal takes nothing from the other limits.
    let requests_pool = quotas.pool(&s, Unit::Requests);
    let before = requests_pool.available();
    assert!(quotas.check(&plan, ROUTE, tokens(1_001), 3).is_err());
    assert_eq!(requests_pool.available(), before);
}

#[tokio::test]
async fn a_spent_budget_waits_for_the_next_period() {
    let day = 86_400_000;
    let t0 = 20 * day + 1_000;
    let budget = Limit {
        unit: Unit::MicroUsd,
        capacity: 5_000,
        refill: Refill::Calendar(Period::Day),
    };
    let c = cluster_with(1, policy(vec![budget], OnNoQuorum::Deny));
    c.clock.store(t0, Ordering::SeqCst);
    let (quotas, ledger, policy) = node(&c, 0);
    let s = scope();
    let plan = one(quotas, &s, &policy);
    let cost = Cost {
        requests: 1,
        tokens: 0,
        micro_usd: 2_000,
    };
    let _ = quotas.check(&plan, ROUTE, cost, t0);
    quotas.tick(ledger, t0).await;
    assert!(quotas.check(&plan, ROUTE, cost, t0).is_ok());
    assert!(quotas.check(&plan, ROUTE, cost, t0).is_ok());
    quotas.tick(ledger, t0 + 100).await;
    let denial = quotas.check(&plan, ROUTE, cost, t0 + 200).unwrap_err();
    let Reason::Exhausted {
        retry_after_ms,
        limit,
        ..
    } = *denial.reason
    else {
        panic!("{denial:?}")
    };
    assert_eq!(limit.refill, Refill::Calendar(Period::Day));
    assert_eq!(retry_after_ms, 21 * day - (t0 + 200) + 100);
}

#[tokio::test]
async fn without_the_ledger_deny_refuses_and_local_share_admits_a_share() {
    for on_no_quorum in [OnNoQuorum::Deny, OnNoQuorum::LocalShare] {
        let c = cluster_with(
            3,
            policy(vec![Limit::per_minute(Unit::Requests, 600)], on_no_quorum),
        );
        let (quotas, ledger, policy) = node(&c, 0);
        quotas.set_voters(3);
        let s = scope();
        let plan = one(quotas, &s, &policy);
        let _ = quotas.check(&plan, ROUTE, requests(10), 0);
        quotas.tick(ledger, 0).await;
        ledger.cut_off.store(true, Ordering::SeqCst);
        // Demand again, so the round needs the ledger and finds it gone.
        while quotas.check(&plan, ROUTE, requests(1), 1).is_ok() {}
        quotas.tick(ledger, 100).await;
        assert_eq!(quotas.reachability(), Reachability::Unreachable);
        match on_no_quorum {
            OnNoQuorum::Deny => {
                let denial = quotas.check(&plan, ROUTE, requests(1), 200).unwrap_err();
                assert!(matches!(*denial.reason, Reason::NoQuorum { .. }));
            }
            OnNoQuorum::LocalShare => {
                // A third of the capacity at once, then a third of the rate.
                let mut admitted = 0;
                while quotas.check(&plan, ROUTE, requests(1), 200).is_ok() {
                    admitted += 1;
                }
                assert_eq!(admitted, 200);
                let denial = quotas.check(&plan, ROUTE, requests(1), 200).unwrap_err();
                let Reason::Exhausted { retry_after_ms, .. } = *denial.reason else {
                    panic!("{denial:?}")
                };
                assert_eq!(
                    retry_after_ms,
                    300 + 100,
                    "one in 300 ms at a third of 10/s"
                );
                assert!(quotas.check(&plan, ROUTE, requests(1), 500).is_ok());
            }
        }
    }
}

#[tokio::test]
async fn standings_report_the_tightest_scope() {
    let key = Scope::Key { key_id: "k".into() };
    let key_route = Scope::KeyRoute {
        key_id: "k".into(),
        route: "r".into(),
    };
    let loose = policy(
        vec![Limit::per_minute(Unit::Requests, 1_000)],
        OnNoQuorum::Deny,
    );
    let tight = policy(
        vec![
            Limit::per_minute(Unit::Requests, 10),
            Limit::per_minute(Unit::Tokens, 500),
        ],
        OnNoQuorum::Deny,
    );
    let quotas = Quotas::default();
    let plan = quotas.plan_of(&[
        Scoped {
            scope: &key,
            policy: &loose,
        },
        Scoped {
            scope: &key_route,
            policy: &tight,
        },
    ]);
    let standings = quotas.standings(&plan, ROUTE, 0);
    assert_eq!(standings.len(), 2);
    assert_eq!(
        standings[0],
        Standing {
            unit: Unit::Requests,
            limit: 10,
            remaining: 10,
            reset_ms: 0
        }
    );
    assert_eq!(standings[1].unit, Unit::Tokens);
}

proptest! {
    /// Whatever the sequence of reservations, settlements (never above the
    /// reservation, as when `max_tokens` bounds the answer) and grants, a
    /// node never has more charged and reserved than it was granted.
    #[test]
    fn never_more_charged_than_granted(
        ops in proptest::collection::vec((0u8..3, 1u64..400), 1..200)
    ) {
        let pool = Arc::new(Pool::new());
        let quotas = Quotas::default();
        let s = scope();
        let p = policy(vec![Limit::per_minute(Unit::Tokens, 10_000)], OnNoQuorum::Deny);
        let plan = one(&quotas, &s, &p);
        let pool_of = quotas.pool(&s, Unit::Tokens);
        drop(pool);
        let mut granted = 0u64;
        let mut open: Vec<(Reservation, u64)> = Vec::new();
        let mut charged = 0u64;
        for (op, n) in ops {
            match op {
                0 => {
                    pool_of.add_lease(n, u64::MAX);
                    granted += n;
                }
                1 => {
                    if let Ok(a) = quotas.check(&plan, ROUTE, tokens(n), 0) {
                        open.push((a.reservation, n));
                    }
                }
                _ => {
                    if let Some((r, reserved)) = open.pop() {
                        let used = n.min(reserved);
                        r.settle(tokens(used));
                        charged += used;
                    }
                }
            }
            let reserved: u64 = open.iter().map(|(_, n)| n).sum();
            prop_assert!(charged + reserved <= granted);
            prop_assert_eq!(pool_of.available(), (granted - charged - reserved) as i64);
        }
    }
}
