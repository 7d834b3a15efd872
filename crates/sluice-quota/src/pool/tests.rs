use super::*;
use proptest::prelude::*;
use std::sync::Arc;

#[test]
fn takes_within_the_lease_and_nothing_after_it() {
    let pool = Pool::new();
    assert!(!pool.try_take(1, 0), "nothing before any lease");
    pool.add_lease(3, 1_000);
    assert!(pool.try_take(2, 10));
    assert!(!pool.try_take(2, 10), "only 1 left");
    assert!(pool.try_take(1, 999));
    pool.add_lease(5, 2_000);
    assert!(!pool.try_take(1, 2_000), "expired");
    assert_eq!(pool.take_expired(1_999), 0, "not yet expired");
    assert_eq!(pool.take_expired(2_000), 5);
    assert_eq!(pool.available(), 0);
    assert_eq!(pool.take_demand(), (3, 4), "1 + 2 + 1 refused");
    assert_eq!(pool.take_demand(), (0, 0));
}

#[test]
fn settling_refunds_or_leaves_debt_that_blocks_admission() {
    let pool = Pool::new();
    pool.add_lease(100, 1_000);
    assert!(pool.try_take(60, 0)); // reserve an estimate of 60 tokens
    pool.settle(60, 20); // the answer used 20
    assert_eq!(pool.available(), 80);
    assert_eq!(pool.admitted_total(), 20, "net of the refund");
    assert!(pool.try_take(80, 0));
    pool.settle(80, 130); // used 50 more than reserved
    assert_eq!(pool.available(), -50);
    assert!(
        !pool.try_take(1, 0),
        "debt is paid before anything is admitted"
    );
    assert_eq!(pool.take_expired(1_000), 0, "debt is not returned");
    assert_eq!(pool.available(), -50);
    pool.add_lease(60, 2_000);
    assert!(pool.try_take(10, 1_500));
    assert!(!pool.try_take(1, 1_500));
}

#[test]
fn admission_is_all_or_nothing() {
    let (requests, tokens) = (Pool::new(), Pool::new());
    requests.add_lease(10, 1_000);
    tokens.add_lease(100, 1_000);
    assert_eq!(admit(&[(&requests, 1), (&tokens, 80)], 0), Ok(Admitted));
    assert_eq!(admit(&[(&requests, 1), (&tokens, 80)], 0), Err(Refused(1)));
    assert_eq!(requests.available(), 9, "the request unit was put back");
    assert_eq!(tokens.available(), 20);
}

#[test]
fn want_asks_for_a_few_ticks_below_the_low_water_mark() {
    // 100 admitted last tick, horizon 3 ticks: target 300.
    assert_eq!(want(100, 0, 0, 3), 300);
    assert_eq!(want(100, 0, 200, 3), 0, "above half of the target");
    assert_eq!(want(100, 0, 100, 3), 200);
    assert_eq!(want(60, 40, 100, 3), 200, "refused demand counts");
    assert_eq!(want(0, 0, 0, 3), 0, "no demand, no lease");
    assert_eq!(want(10, 0, -50, 3), 80, "debt is asked for too");
}

/// Eight threads race for 5 000 units one at a time: exactly 5 000 win.
#[test]
fn concurrent_takes_never_over_admit() {
    let pool = Arc::new(Pool::new());
    pool.add_lease(5_000, u64::MAX);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || (0..2_000).filter(|_| pool.try_take(1, 0)).count())
        })
        .collect();
    let won: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(won, 5_000);
    assert_eq!(pool.available(), 0);
}

#[derive(Debug, Clone)]
enum Op {
    Lease(u64, u64),
    Take(u64),
    PutBack(u64),
    Settle(u64, u64),
    Expire,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u64..100, 1u64..500).prop_map(|(a, ttl)| Op::Lease(a, ttl)),
        4 => (0u64..30).prop_map(Op::Take),
        1 => (0u64..30).prop_map(Op::PutBack),
        1 => (0u64..30, 0u64..60).prop_map(|(r, a)| Op::Settle(r, a)),
        1 => Just(Op::Expire),
        1 => (0u64..200).prop_map(Op::Advance),
    ]
}

proptest! {
    /// For every sequence: a take succeeds only on a live lease holding the
    /// amount (so it never leaves the pool below zero), and the pool's level
    /// is always leased − taken + put back + settled − returned.
    #[test]
    fn a_pool_never_spends_what_it_was_not_granted(ops in proptest::collection::vec(op(), 1..200)) {
        let pool = Pool::new();
        let mut now = 0u64;
        let mut level: i64 = 0;
        let mut expires = 0u64;
        let mut taken_outstanding = 0u64;
        for op in ops {
            match op {
                Op::Lease(amount, ttl) => {
                    pool.add_lease(amount, now + ttl);
                    level += amount as i64;
                    expires = expires.max(now + ttl);
                }
                Op::Take(amount) => {
                    let before = pool.available();
                    let ok = pool.try_take(amount, now);
                    prop_assert_eq!(ok, now < expires && before >= amount as i64);
                    if ok {
                        level -= amount as i64;
                        taken_outstanding += amount;
                        prop_assert!(pool.available() >= 0);
                    }
                }
                Op::PutBack(amount) => {
                    // Only what was taken can be put back.
                    let amount = amount.min(taken_outstanding);
                    taken_outstanding -= amount;
                    pool.put_back(amount);
                    level += amount as i64;
                }
                Op::Settle(reserved, actual) => {
                    pool.settle(reserved, actual);
                    level += reserved as i64 - actual as i64;
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
        }
    }
}
