use super::*;
use proptest::prelude::*;
use std::sync::Arc;

fn taken(pool: &Pool, amount: u64, now: u64) -> bool {
    pool.try_take(amount, now).is_some()
}

#[test]
fn takes_within_the_lease_and_nothing_after_it() {
    let pool = Pool::new();
    assert!(!taken(&pool, 1, 0), "nothing before any lease");
    pool.add_lease(3, 1_000);
    assert_eq!(pool.try_take(2, 10), Some(Source::Lease));
    assert!(!taken(&pool, 2, 10), "only 1 left");
    assert!(taken(&pool, 1, 999));
    pool.add_lease(5, 2_000);
    assert!(!taken(&pool, 1, 2_000), "expired");
    assert_eq!(pool.take_expired(1_999), 0, "not yet expired");
    assert_eq!(pool.take_expired(2_000), 5);
    assert_eq!(pool.available(), 0);
    assert_eq!(pool.take_demand(), (3, 4), "1 + 2 + 1 refused");
    assert_eq!(pool.take_demand(), (0, 0));
}

#[test]
fn the_standing_reserve_serves_once_the_lease_is_spent_or_expired() {
    let pool = Pool::new();
    pool.add_standing(3);
    pool.add_lease(2, 1_000);
    assert_eq!(pool.try_take(2, 0), Some(Source::Lease), "the lease first");
    assert_eq!(pool.try_take(2, 0), Some(Source::Standing));
    pool.put_back(2, Source::Standing);
    assert_eq!(pool.standing(), 3);
    // Long after the lease expired: the reserve still serves.
    assert_eq!(pool.try_take(3, 3_600_000), Some(Source::Standing));
    assert!(!taken(&pool, 1, 3_600_000));
    assert_eq!(pool.spendable(3_600_000), 0);
    // A refund goes back where it came from.
    pool.settle(3, 1, Source::Standing);
    assert_eq!(pool.standing(), 2);
    assert_eq!(
        pool.admitted_total(),
        3,
        "2 from the lease, 1 from the reserve"
    );
}

#[test]
fn settling_refunds_or_leaves_debt_that_blocks_admission() {
    let pool = Pool::new();
    pool.add_lease(100, 1_000);
    pool.add_standing(10);
    assert!(taken(&pool, 60, 0)); // reserve an estimate of 60 tokens
    pool.settle(60, 20, Source::Lease); // the answer used 20
    assert_eq!(pool.available(), 80);
    assert_eq!(pool.admitted_total(), 20, "net of the refund");
    assert!(taken(&pool, 80, 0));
    pool.settle(80, 130, Source::Lease); // used 50 more than reserved
    assert_eq!(pool.available(), -50);
    assert!(
        !taken(&pool, 1, 0),
        "debt is paid before anything is admitted, the reserve included"
    );
    assert_eq!(pool.take_expired(1_000), 0, "debt is not returned");
    assert_eq!(pool.available(), -50);
    pool.add_lease(60, 2_000);
    assert!(taken(&pool, 10, 1_500));
    assert!(
        taken(&pool, 10, 1_500),
        "out of debt, the reserve serves again"
    );
    assert!(!taken(&pool, 1, 1_500));
}

#[test]
fn admission_is_all_or_nothing() {
    let (requests, tokens) = (Pool::new(), Pool::new());
    requests.add_lease(10, 1_000);
    tokens.add_lease(100, 1_000);
    assert_eq!(
        admit(&[(&requests, 1), (&tokens, 80)], 0),
        Ok(Admitted(vec![Source::Lease, Source::Lease]))
    );
    assert_eq!(admit(&[(&requests, 1), (&tokens, 80)], 0), Err(Refused(1)));
    assert_eq!(requests.available(), 9, "the request unit was put back");
    assert_eq!(tokens.available(), 20);
}

#[test]
fn want_asks_for_its_target_below_the_low_water_mark() {
    let plenty = u64::MAX;
    assert_eq!(want(300, 100, 0, plenty), 300);
    assert_eq!(want(300, 100, 200, plenty), 0, "above half of the target");
    assert_eq!(want(300, 100, 100, plenty), 200);
    assert_eq!(want(0, 0, 0, plenty), 0, "no demand, no lease");
    assert_eq!(want(30, 10, -50, plenty), 80, "debt is asked for too");
    // A small bucket: the node's fair share of it, or at least the last
    // tick's own demand.
    assert_eq!(want(60, 6, 0, 30), 30);
    assert_eq!(want(500, 50, 0, 30), 50);
    assert_eq!(want(500, 50, 20, 0), 30, "what it holds counts");
}

#[test]
fn recent_demand_decays_rather_than_drops() {
    let pool = Pool::new();
    assert_eq!(pool.note_tick_demand(8), 8);
    assert_eq!(pool.note_tick_demand(0), 7, "7/8 of it, rounded up");
    assert_eq!(pool.note_tick_demand(0), 7);
    assert_eq!(pool.note_tick_demand(20), 20);
    // One request every few ticks keeps a demand of one.
    let slow = Pool::new();
    for _ in 0..10 {
        assert_eq!(slow.note_tick_demand(1), 1);
        assert_eq!(slow.note_tick_demand(0), 1);
    }
    let mut left = 1;
    for _ in 0..40 {
        left = slow.note_tick_demand(0);
    }
    assert_eq!(left, 0, "gone once idle");
}

#[test]
fn a_reserve_the_ledger_could_not_fill_is_asked_for_again_later() {
    let pool = Pool::new();
    assert!(pool.needs_round(0), "a new pool needs its reserve sized");
    pool.set_standing_target(10);
    assert_eq!(pool.standing_wanted(0), 10);
    assert!(pool.needs_round(0));
    pool.note_standing_grant(10, 4, 0, 1_000);
    pool.add_standing(4);
    assert_eq!(pool.standing_wanted(500), 0, "backs off");
    assert!(!pool.needs_round(500));
    assert_eq!(pool.standing_wanted(1_000), 6);
    pool.note_standing_grant(6, 6, 1_000, 1_000);
    pool.add_standing(6);
    assert_eq!(pool.standing_wanted(1_000), 0);
    assert!(!pool.needs_round(1_000), "a full reserve costs no round");
    pool.set_standing_target(4);
    assert!(pool.needs_round(1_000), "above its target");
    assert_eq!(pool.take_standing_excess(4), 6);
    assert!(!pool.needs_round(1_000));
}

#[test]
fn exposure_stays_within_its_cap() {
    let pool = Pool::new();
    assert_eq!(pool.expose(70, 100), 70);
    assert_eq!(pool.expose(70, 100), 30);
    assert_eq!(pool.expose(1, 100), 0);
    pool.unexpose(50);
    assert_eq!(pool.exposure(), 50);
    pool.unexpose(500);
    assert_eq!(pool.exposure(), 0);
}

/// Eight threads race for 5 000 units one at a time: exactly 5 000 win.
#[test]
fn concurrent_takes_never_over_admit() {
    let pool = Arc::new(Pool::new());
    pool.add_lease(4_000, u64::MAX);
    pool.add_standing(1_000);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || (0..2_000).filter(|_| taken(&pool, 1, 0)).count())
        })
        .collect();
    let won: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(won, 5_000);
    assert_eq!((pool.available(), pool.standing()), (0, 0));
}

#[derive(Debug, Clone)]
enum Op {
    Lease(u64, u64),
    Standing(u64),
    Take(u64),
    PutBack,
    Settle(u64),
    Expire,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u64..100, 1u64..500).prop_map(|(a, ttl)| Op::Lease(a, ttl)),
        1 => (0u64..40).prop_map(Op::Standing),
        4 => (0u64..30).prop_map(Op::Take),
        1 => Just(Op::PutBack),
        1 => (0u64..60).prop_map(Op::Settle),
        1 => Just(Op::Expire),
        1 => (0u64..200).prop_map(Op::Advance),
    ]
}

proptest! {
    /// For every sequence: a take succeeds only from a live lease holding
    /// the amount, or (out of debt) from a reserve holding it, so neither
    /// goes below zero; and each is always what was granted, less what was
    /// taken, plus what was put back or refunded to it.
    #[test]
    fn a_pool_never_spends_what_it_was_not_granted(ops in proptest::collection::vec(op(), 1..200)) {
        let pool = Pool::new();
        let mut now = 0u64;
        let mut level: i64 = 0;
        let mut standing: u64 = 0;
        let mut expires = 0u64;
        // What was taken and not yet put back or settled, by source.
        let mut open: Vec<(u64, Source)> = Vec::new();
        for op in ops {
            match op {
                Op::Lease(amount, ttl) => {
                    pool.add_lease(amount, now + ttl);
                    level += amount as i64;
                    expires = expires.max(now + ttl);
                }
                Op::Standing(amount) => {
                    pool.add_standing(amount);
                    standing += amount;
                }
                Op::Take(amount) => {
                    let from_lease = now < expires && level >= amount as i64;
                    let from_standing = !from_lease && level >= 0 && standing >= amount;
                    let got = pool.try_take(amount, now);
                    match got {
                        Some(Source::Lease) => {
                            prop_assert!(from_lease);
                            level -= amount as i64;
                        }
                        Some(Source::Standing) => {
                            prop_assert!(from_standing);
                            standing -= amount;
                        }
                        other => prop_assert!(other.is_none() && !from_lease && !from_standing),
                    }
                    if let Some(source) = got {
                        open.push((amount, source));
                    }
                }
                Op::PutBack => {
                    if let Some((amount, source)) = open.pop() {
                        pool.put_back(amount, source);
                        match source {
                            Source::Standing => standing += amount,
                            _ => level += amount as i64,
                        }
                    }
                }
                Op::Settle(actual) => {
                    if let Some((reserved, source)) = open.pop() {
                        pool.settle(reserved, actual, source);
                        if actual > reserved {
                            level -= (actual - reserved) as i64;
                        } else if source == Source::Standing {
                            standing += reserved - actual;
                        } else {
                            level += (reserved - actual) as i64;
                        }
                    }
                }
                Op::Expire => {
                    let returned = pool.take_expired(now);
                    if now >= expires {
                        prop_assert_eq!(returned as i64, level.max(0));
                        level = level.min(0);
                    } else {
                        prop_assert_eq!(returned, 0);
                    }
                }
                Op::Advance(ms) => now += ms,
            }
            prop_assert_eq!(pool.available(), level);
            prop_assert_eq!(pool.standing(), standing);
        }
    }
}
