use super::*;
use crate::pool::Source;
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
                let pool = quotas.pool(&scope(), Unit::Requests);
                if pool.try_take(1, now).is_some() {
                    pool.commit(1); // a request: spent once admitted
                    admitted += 1;
                }
            }
        }
        let now = (t + 1) * 100;
        c.clock.store(now, Ordering::SeqCst);
        for (quotas, ledger) in &c.nodes {
            ledger.tick(quotas, now).await;
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
        assert!(pool.try_take(1, 0).is_none());
    }
    let round = ledger.tick(quotas, 100).await;
    assert_eq!(round.reached, Some(true));
    let horizon = QuotaConfig::default().horizon_ticks;
    assert_eq!(
        round.wanted,
        horizon * 1_000,
        "a horizon of the refused demand"
    );
    assert_eq!(round.granted, horizon * 1_000);
    assert_eq!(round.standing, 1_000, "a second's refill in reserve");
    assert!(pool.try_take(1, 150).is_some());
    // A new pool fills its standing reserve once; then, with no demand,
    // nothing is asked and nothing sent.
    let quiet = Quotas::new(QuotaConfig::default());
    quiet.pool(&scope(), Unit::Requests);
    assert_eq!(ledger.tick(&quiet, 200).await.standing, 1_000);
    assert_eq!(ledger.tick(&quiet, 300).await, Round::default());
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
    let held = pool.available().max(0) as u64 + pool.standing();
    let mut spent = 0;
    for t in 10..40u64 {
        let now = t * 100;
        c.clock.store(now, Ordering::SeqCst);
        while pool.try_take(1, now).is_some() {
            spent += 1;
        }
        let round = ledger.tick(quotas, now + 100).await;
        assert_ne!(round.reached, Some(true));
    }
    assert_eq!(
        spent, held,
        "spends exactly what it held (lease and reserve), nothing more"
    );
}

/// A pool whose reservations are mostly refunded never runs low, so it
/// never needs more units; its lease is renewed anyway while it is in use,
/// so its requests never meet an expired lease.
#[tokio::test]
async fn a_pool_in_use_keeps_its_lease_alive() {
    let c = cluster(1, 600_000);
    let (quotas, ledger) = &c.nodes[0];
    let pool = quotas.pool(&scope(), Unit::Requests);
    assert!(pool.try_take(1_000, 0).is_none(), "cold");
    ledger.tick(quotas, 0).await;
    let ttl = QuotaConfig::default().lease_ttl_ms;
    for t in 1..(4 * ttl / 100) {
        let now = t * 100;
        c.clock.store(now, Ordering::SeqCst);
        let source = pool.try_take(1_000, now + 50);
        assert_eq!(source, Some(Source::Lease), "refused at {now} ms");
        pool.settle(1_000, 5, Source::Lease);
        ledger.tick(quotas, now).await;
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
        ..sluice_core::quota::QuotaPolicy::default()
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
