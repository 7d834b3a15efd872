use super::*;
use crate::testing::{cluster_with, scope, Cluster, InProcess};
use proptest::prelude::*;
use sluice_core::quota::Period;
use std::sync::atomic::Ordering;

fn policy(limits: Vec<Limit>, on_no_quorum: OnNoQuorum) -> QuotaPolicy {
    QuotaPolicy {
        limits,
        on_no_quorum,
        reserve: Reserve::MaxTokens,
    }
}

fn requests(n: u64) -> Ask {
    Ask::exact(Cost {
        requests: n,
        ..Cost::default()
    })
}

fn tokens(n: u64) -> Ask {
    Ask::exact(cost_tokens(n))
}

fn cost_tokens(n: u64) -> Cost {
    Cost {
        requests: 1,
        tokens: n,
        micro_usd: 0,
    }
}

/// One node's view: its quotas, its ledger client, and the policy of
/// `scope()` as the proxy would read it from the state.
fn node(c: &Cluster, i: usize) -> (&Quotas, &InProcess, QuotaPolicy) {
    let (quotas, ledger) = &c.nodes[i];
    let policy = ledger
        .view()
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

/// `admit` of `ask` on `node` from `start`, while the node runs five lease
/// rounds 100 ms apart (in paused time).
async fn admit_during_rounds(
    c: &Cluster,
    quotas: &Quotas,
    ledger: &InProcess,
    plan: &Arc<Plan>,
    ask: Ask,
    start: u64,
) -> Result<Admission, Denial> {
    let now = std::sync::atomic::AtomicU64::new(start);
    let admitted = quotas.admit(
        plan,
        ROUTE,
        ask,
        || now.load(Ordering::SeqCst),
        || ledger.view(),
    );
    let rounds = async {
        for t in 1..=5u64 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            now.store(start + t * 100, Ordering::SeqCst);
            c.clock.store(start + t * 100, Ordering::SeqCst);
            ledger.tick(quotas, start + t * 100).await;
        }
    };
    tokio::join!(admitted, rounds).0
}

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
    let denial = quotas
        .check(&plan, ROUTE, requests(1), 0, &ledger.view())
        .unwrap_err();
    assert!(denial.wait_worth(), "{denial:?}");
    // `admit` waits; the next round grants; the retry is admitted.
    let admitted = tokio::join!(
        quotas.admit(&plan, ROUTE, requests(1), || 50, || ledger.view()),
        async {
            tokio::task::yield_now().await;
            ledger.tick(quotas, 10).await
        }
    )
    .0
    .expect("admitted after the round");
    assert!(admitted.waited);
    assert_eq!(admitted.standings.len(), 1);
    let standing = admitted.standings[0];
    assert_eq!(standing.limit, 60);
    assert_eq!(standing.remaining, 59, "{standing:?}");
    // Full again a second after the node reports its unit spent (at its
    // next round): the refill of a unit runs from then.
    assert_eq!(standing.reset_ms, 1_000, "{standing:?}");
}

/// The bug of a small limit read only at grants: rpm 5, one request every
/// 3 s on one node. After each admission the pool gives what it holds
/// back; the node must see that in its copy of the ledger, wait for the
/// round that grants the next request, and report the true remainder.
#[tokio::test(start_paused = true)]
async fn a_small_limit_admits_every_request_its_refill_allows() {
    let c = cluster_with(
        1,
        policy(vec![Limit::per_minute(Unit::Requests, 5)], OnNoQuorum::Deny),
    );
    let (quotas, ledger, policy) = node(&c, 0);
    let s = scope();
    let plan = one(quotas, &s, &policy);
    let mut admitted = Vec::new();
    // When the latest refusal said to come back.
    let mut retry_at = None;
    for request in 0..10u64 {
        let start = request * 3_000;
        let decided = admit_during_rounds(&c, quotas, ledger, &plan, requests(1), start).await;
        match decided {
            Ok(_) => {
                admitted.push(start / 1_000);
                retry_at = None;
            }
            Err(d) => {
                // Refused only when no unit is due within the wait, with
                // the time one is: a request that comes then is admitted.
                let Reason::Exhausted { retry_after_ms, .. } = *d.reason else {
                    panic!("{d:?}")
                };
                assert!(retry_after_ms > 500, "{d:?}");
                assert!(
                    retry_at.is_none_or(|at| start < at),
                    "request {request} came after the time the last refusal gave, and was refused"
                );
                retry_at = Some(d.at_ms + retry_after_ms);
            }
        }
        // Idle until the next request: the rounds return what is held.
        for t in 6..30u64 {
            c.clock.store(start + t * 100, Ordering::SeqCst);
            ledger.tick(quotas, start + t * 100).await;
        }
    }
    // 5 at once, then one unit every 12 s: every request that finds a unit
    // (or one due within its wait) gets it, as from one token bucket.
    assert_eq!(admitted, [0, 3, 6, 9, 12, 15, 24]);
}

/// What a node reports as remaining is its pools and the ledger's level in
/// its copy of the state: units it gave back since its last grant count.
#[tokio::test]
async fn standings_count_units_returned_since_the_last_grant() {
    let c = cluster_with(
        1,
        policy(
            vec![Limit::per_minute(Unit::Requests, 20)],
            OnNoQuorum::Deny,
        ),
    );
    let (quotas, ledger, policy) = node(&c, 0);
    let s = scope();
    let plan = one(quotas, &s, &policy);
    let _ = quotas.check(&plan, ROUTE, requests(1), 0, &ledger.view());
    ledger.tick(quotas, 0).await;
    let a = quotas
        .check(&plan, ROUTE, requests(1), 0, &ledger.view())
        .unwrap();
    assert_eq!(a.standings[0].remaining, 19, "20 less the one admitted");
    // Idle rounds give the lease back (once its demand has decayed) and
    // fill the reserve (1 of 20) from what came back.
    for t in 1..=30u64 {
        c.clock.store(t * 100, Ordering::SeqCst);
        ledger.tick(quotas, t * 100).await;
    }
    let pool = quotas.pool(&s, Unit::Requests);
    assert_eq!((pool.available(), pool.standing()), (0, 1));
    let view = ledger.view();
    assert_eq!(view.bucket(&s, Unit::Requests).unwrap().level_at(3_000), 18);
    let standings = quotas.standings(&plan, ROUTE, 3_000, &view);
    assert_eq!(standings[0].remaining, 19);
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
    let _ = quotas.check(&plan, ROUTE, requests(6), 0, &ledger.view());
    ledger.tick(quotas, 0).await;
    assert!(quotas
        .check(&plan, ROUTE, requests(6), 1, &ledger.view())
        .is_ok());
    let denial = quotas
        .check(&plan, ROUTE, requests(1), 2, &ledger.view())
        .unwrap_err();
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
    assert!(!wait_worth, "the ledger is empty and refills in 10 s");
    // One request refills in 10 s from the node's report that it spent
    // them (its next round); plus a tick.
    assert_eq!(retry_after_ms, 10_000 + 100);
    assert_eq!(denial.standings[0].remaining, 0);
}

/// A refill that comes within the wait is waited for, not refused.
#[tokio::test(start_paused = true)]
async fn a_request_waits_for_a_refill_due_within_the_wait() {
    let c = cluster_with(
        1,
        policy(
            vec![Limit::per_minute(Unit::Requests, 600)],
            OnNoQuorum::Deny,
        ),
    );
    let (quotas, ledger, policy) = node(&c, 0);
    let s = scope();
    let plan = one(quotas, &s, &policy);
    let _ = quotas.check(&plan, ROUTE, requests(600), 0, &ledger.view());
    ledger.tick(quotas, 0).await;
    assert!(quotas
        .check(&plan, ROUTE, requests(600), 0, &ledger.view())
        .is_ok());
    // Empty now; one unit refills every 100 ms.
    let decided = admit_during_rounds(&c, quotas, ledger, &plan, requests(1), 0).await;
    assert!(decided.expect("admitted once refilled").waited);
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
    let check = |ask, at| quotas.check(&plan, ROUTE, ask, at, &ledger.view());
    let _ = check(tokens(1_000), 0);
    ledger.tick(quotas, 0).await;
    let pool = quotas.pool(&s, Unit::Tokens);
    let held = pool.available();
    let a = check(tokens(300), 1).unwrap();
    assert_eq!(pool.available(), held - 300);
    a.reservation.settle(cost_tokens(120));
    assert_eq!(pool.available(), held - 120, "refunds the 180 unused");
    // Dropped unsettled (a client that went away): charged in full.
    drop(check(tokens(50), 2).unwrap());
    assert_eq!(pool.available(), held - 170);
    // More than the whole capacity: never admitted, and said so.
    let denial = check(tokens(1_001), 3).unwrap_err();
    assert!(matches!(
        *denial.reason,
        Reason::TooLarge { needed: 1_001, .. }
    ));
    // A refusal takes nothing from the other limits.
    let requests_pool = quotas.pool(&s, Unit::Requests);
    let before = requests_pool.available();
    assert!(check(tokens(1_001), 3).is_err());
    assert_eq!(requests_pool.available(), before);
}

/// `reserve = "estimate"`: a large `max_tokens` reserves the estimate; what
/// the requests in flight could use beyond it stays within the exposure
/// cap (the capacity split between the nodes); what an answer uses beyond
/// its reservation is charged as debt.
#[tokio::test]
async fn estimate_reservations_bound_their_exposure() {
    let limits = vec![Limit::per_minute(Unit::Tokens, 100_000)];
    let c = cluster_with(
        1,
        QuotaPolicy {
            reserve: Reserve::Estimate,
            ..policy(limits, OnNoQuorum::Deny)
        },
    );
    let (quotas, ledger, policy) = node(&c, 0);
    quotas.set_nodes(2);
    let s = scope();
    let plan = one(quotas, &s, &policy);
    let ask = Ask {
        full: cost_tokens(64_000),
        estimate: cost_tokens(1_000),
    };
    // A first demand of the whole capacity: the round leases all of it.
    let _ = quotas.check(&plan, ROUTE, tokens(100_000), 0, &ledger.view());
    ledger.tick(quotas, 0).await;
    let pool = quotas.pool(&s, Unit::Tokens);
    assert_eq!(pool.available(), 100_000);
    // Cap: 100 000 / 2 nodes. The first would expose 63 000 beyond its
    // estimate; only 50 000 fits, so it reserves 14 000.
    let first = quotas.check(&plan, ROUTE, ask, 1, &ledger.view()).unwrap();
    assert_eq!(pool.exposure(), 50_000);
    let held = pool.available();
    // The cap is full: the next reserves all of its max_tokens.
    let second = quotas.check(&plan, ROUTE, ask, 1, &ledger.view()).unwrap();
    assert_eq!(pool.available(), held - 64_000);
    // The first used 30 000: 16 000 beyond its reservation, as debt.
    let before = pool.available();
    first.reservation.settle(cost_tokens(30_000));
    assert_eq!(pool.available(), before - 16_000);
    assert_eq!(pool.exposure(), 0);
    second.reservation.settle(cost_tokens(10));
    // With room again the estimate is reserved, and the plan learns from
    // the answers: their 95th percentile is the next estimate.
    assert_eq!(plan.completion_estimate(), None);
    for _ in 0..8 {
        plan.record_completion(200);
    }
    assert_eq!(plan.completion_estimate(), Some(200));
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
    let cost = Ask::exact(Cost {
        requests: 1,
        tokens: 0,
        micro_usd: 2_000,
    });
    let check = |at| quotas.check(&plan, ROUTE, cost, at, &ledger.view());
    let _ = check(t0);
    ledger.tick(quotas, t0).await;
    assert!(check(t0).is_ok());
    assert!(check(t0).is_ok());
    ledger.tick(quotas, t0 + 100).await;
    let denial = check(t0 + 200).unwrap_err();
    let Reason::Exhausted {
        retry_after_ms,
        limit,
        wait_worth,
        ..
    } = *denial.reason
    else {
        panic!("{denial:?}")
    };
    assert!(!wait_worth);
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
        quotas.set_nodes(3);
        let s = scope();
        let plan = one(quotas, &s, &policy);
        let view = ledger.view();
        let _ = quotas.check(&plan, ROUTE, requests(10), 0, &view);
        ledger.tick(quotas, 0).await;
        ledger.cut_off.store(true, Ordering::SeqCst);
        // Demand again, so the round needs the ledger and finds it gone;
        // the standing reserve is spent too.
        while quotas.check(&plan, ROUTE, requests(1), 1, &view).is_ok() {}
        ledger.tick(quotas, 100).await;
        assert_eq!(quotas.reachability(), Reachability::Unreachable);
        match on_no_quorum {
            OnNoQuorum::Deny => {
                let denial = quotas
                    .check(&plan, ROUTE, requests(1), 200, &view)
                    .unwrap_err();
                assert!(matches!(*denial.reason, Reason::NoQuorum { .. }));
            }
            OnNoQuorum::LocalShare => {
                // A third of the capacity at once, then a third of the rate.
                let mut admitted = 0;
                while quotas.check(&plan, ROUTE, requests(1), 200, &view).is_ok() {
                    admitted += 1;
                }
                assert_eq!(admitted, 200);
                let denial = quotas
                    .check(&plan, ROUTE, requests(1), 200, &view)
                    .unwrap_err();
                let Reason::Exhausted { retry_after_ms, .. } = *denial.reason else {
                    panic!("{denial:?}")
                };
                assert_eq!(
                    retry_after_ms,
                    300 + 100,
                    "one in 300 ms at a third of 10/s"
                );
                assert!(quotas.check(&plan, ROUTE, requests(1), 500, &view).is_ok());
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
    let standings = quotas.standings(&plan, ROUTE, 0, &Ledger::default());
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
        let quotas = Quotas::default();
        let s = scope();
        let p = policy(vec![Limit::per_minute(Unit::Tokens, 10_000)], OnNoQuorum::Deny);
        let plan = one(&quotas, &s, &p);
        let pool_of = quotas.pool(&s, Unit::Tokens);
        let view = Ledger::default();
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
                    if let Ok(a) = quotas.check(&plan, ROUTE, tokens(n), 0, &view) {
                        open.push((a.reservation, n));
                    }
                }
                _ => {
                    if let Some((r, reserved)) = open.pop() {
                        let used = n.min(reserved);
                        r.settle(cost_tokens(used));
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
