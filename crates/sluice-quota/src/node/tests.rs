use super::*;
use crate::testing::{cluster, scope, Cluster};
use sluice_core::quota::Ledger;
use std::sync::atomic::Ordering;

/// Runs `ticks` rounds of 100 ms; each node gets `per_tick` requests per
/// tick, spread over it. Returns requests admitted in all.
async fn run(c: &Cluster, ticks: u64, per_tick: u64) -> u64 {
    let mut admitted = 0;
    for t in 0..ticks {
        for i in 0..per_tick {
            let now = t * 100 + i * 100 / per_tick;
            c.clock.store(now, Ordering::SeqCst);
            for (quotas, _) in &c.nodes {
                if quotas.pool(&scope(), Unit::Requests).try_take(1, now) {
                    admitted += 1;
                }
            }
        }
        let now = (t + 1) * 100;
        c.clock.store(now, Ordering::SeqCst);
        for (quotas, ledger) in &c.nodes {
            quotas.tick(ledger, now).await;
        }
    }
    admitted
}

/// 3 nodes, 600 requests a minute for the key, demand far above it: the
/// cluster together admits no more than the bucket's bound, and nearly all
/// of it.
#[tokio::test]
async fn three_nodes_together_admit_the_global_limit() {
    let c = cluster(3, 600);
    let ticks = 600; // 60 s
    let admitted = run(&c, ticks, 20).await;
    let bound = 600 + 600 * ticks * 100 / 60_000; // capacity + rate x T
    assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    assert!(
        admitted * 100 >= bound * 95,
        "admitted {admitted} is under 95% of {bound}"
    );
}

/// One command each way per node per tick, whatever the request rate.
#[tokio::test]
async fn one_grant_per_node_per_tick_at_most() {
    let c = cluster(1, 60_000);
    let (quotas, ledger) = &c.nodes[0];
    let pool = quotas.pool(&scope(), Unit::Requests);
    // 1 000 requests in one tick before any lease: all refused, counted.
    for _ in 0..1_000 {
        assert!(!pool.try_take(1, 0));
    }
    let round = quotas.tick(ledger, 100).await;
    assert_eq!(round.reached, Some(true));
    let horizon = QuotaConfig::default().horizon_ticks;
    assert_eq!(
        round.wanted,
        horizon * 1_000,
        "a horizon of the refused demand"
    );
    assert_eq!(round.granted, horizon * 1_000);
    assert!(pool.try_take(1, 150));
    // No demand: nothing asked, nothing sent.
    let quiet = Quotas::new(QuotaConfig::default());
    quiet.pool(&scope(), Unit::Requests);
    assert_eq!(quiet.tick(ledger, 200).await, Round::default());
}

/// A node cut off from the ledger spends what it holds and then nothing
/// (`deny`); what it returns after reconnecting goes back to the bucket.
#[tokio::test]
async fn a_cut_off_node_stops_when_its_lease_is_spent() {
    let c = cluster(2, 600);
    run(&c, 10, 20).await;
    let (quotas, ledger) = &c.nodes[0];
    ledger.cut_off.store(true, Ordering::SeqCst);
    let pool = quotas.pool(&scope(), Unit::Requests);
    let held = pool.available().max(0) as u64;
    let mut spent = 0;
    for t in 10..40u64 {
        let now = t * 100;
        c.clock.store(now, Ordering::SeqCst);
        while pool.try_take(1, now) {
            spent += 1;
        }
        let round = quotas.tick(ledger, now + 100).await;
        assert_ne!(round.reached, Some(true));
    }
    assert_eq!(spent, held, "spends exactly what it held, nothing more");
}

/// A pool whose reservations are mostly refunded never runs low, so it
/// never needs more units; its lease is renewed anyway while it is in use,
/// so its requests never meet an expired lease.
#[tokio::test]
async fn a_pool_in_use_keeps_its_lease_alive() {
    let c = cluster(1, 600_000);
    let (quotas, ledger) = &c.nodes[0];
    let pool = quotas.pool(&scope(), Unit::Requests);
    assert!(!pool.try_take(1_000, 0), "cold");
    quotas.tick(ledger, 0).await;
    let ttl = QuotaConfig::default().lease_ttl_ms;
    for t in 1..(4 * ttl / 100) {
        let now = t * 100;
        c.clock.store(now, Ordering::SeqCst);
        assert!(pool.try_take(1_000, now + 50), "refused at {now} ms");
        pool.settle(1_000, 5);
        quotas.tick(ledger, now).await;
    }
}

/// The first request under a new policy table makes every key's plan,
/// with pools for every scope, at once (one copy of the pool map, not one
/// per key); the plans serve until the table changes.
#[test]
fn plans_are_made_for_every_key_at_once_and_kept_until_a_policy_changes() {
    let mut ledger = Ledger::default();
    let policy = sluice_core::quota::QuotaPolicy {
        limits: vec![sluice_core::quota::Limit::per_minute(Unit::Requests, 10)],
        on_no_quorum: sluice_core::quota::OnNoQuorum::Deny,
    };
    let scopes: Vec<Scope> = (0..100)
        .map(|i| Scope::Key {
            key_id: format!("k{i}"),
        })
        .collect();
    let quotas = Quotas::default();
    assert!(quotas.plan(&ledger, "k7").is_none(), "no policy at all");
    for scope in &scopes {
        ledger.set_policy(scope, Some(&policy), 0).unwrap();
    }
    let plan = quotas.plan(&ledger, "k7").expect("k7 has a policy");
    assert!(quotas.plan(&ledger, "nobody").is_none());
    let pools = quotas.pools.load();
    assert!(scopes.iter().all(|s| pools.contains_key(s)));
    let (_, planned) = plan.on("any route").next().unwrap();
    assert!(Arc::ptr_eq(
        &planned.pool,
        &quotas.pool(&scopes[7], Unit::Requests)
    ));
    assert!(Arc::ptr_eq(&plan, &quotas.plan(&ledger, "k7").unwrap()));
    // A policy change makes new plans, on the same pools.
    ledger.set_policy(&scopes[1], None, 0).unwrap();
    let after = quotas.plan(&ledger, "k7").unwrap();
    assert!(!Arc::ptr_eq(&plan, &after));
    assert!(Arc::ptr_eq(
        &after.on("r").next().unwrap().1.pool,
        &planned.pool
    ));
    assert!(quotas.plan(&ledger, "k1").is_none());
}
