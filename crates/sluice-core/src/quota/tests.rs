use super::*;
use proptest::prelude::*;

fn key_scope() -> Scope {
    Scope::Key { key_id: "k".into() }
}

fn ledger_with(limit: Limit) -> Ledger {
    let mut ledger = Ledger::default();
    let policy = QuotaPolicy {
        limits: vec![limit],
        on_no_quorum: OnNoQuorum::Deny,
    };
    ledger.set_policy(&key_scope(), Some(&policy), 0).unwrap();
    ledger
}

fn want(amount: u64) -> Want {
    Want {
        scope: key_scope(),
        unit: Unit::Requests,
        amount,
        admitted_total: 0,
    }
}

fn back(amount: u64) -> Return {
    Return {
        scope: key_scope(),
        unit: Unit::Requests,
        amount,
    }
}

#[test]
fn a_grant_never_exceeds_the_level_and_refill_is_exact() {
    // 600 a minute: 10 a second.
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 600));
    assert_eq!(l.grant(1, &[want(1000)], 1000, 0).unwrap()[0].amount, 600);
    assert_eq!(l.grant(1, &[want(5)], 1000, 0).unwrap()[0].amount, 0);
    // 150 ms refill 1.5 units: 1 now, the half carried.
    assert_eq!(l.grant(1, &[want(5)], 1000, 150).unwrap()[0].amount, 1);
    assert_eq!(l.grant(1, &[want(5)], 1000, 200).unwrap()[0].amount, 1);
    // A full minute refills to capacity, not beyond.
    let g = l.grant(1, &[want(0)], 1000, 200 + 120_000).unwrap();
    assert_eq!(g[0].level_after, Some(600));
}

#[test]
fn a_stamp_from_the_past_refills_nothing() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 60));
    l.grant(1, &[want(60)], 1000, 10_000).unwrap();
    // A new leader whose clock is 5 s behind.
    assert_eq!(l.grant(2, &[want(60)], 1000, 5_000).unwrap()[0].amount, 0);
    assert_eq!(l.grant(2, &[want(60)], 1000, 11_000).unwrap()[0].amount, 1);
}

#[test]
fn contention_splits_in_proportion_to_demand() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 100));
    // Node 2 states a demand of 100 (and gives its grant back at once), so
    // the ledger knows of it.
    l.grant(2, &[want(100)], 1000, 0).unwrap();
    l.give_back(2, &[back(100)], 0).unwrap();
    // Node 1 asks 300 of the 100 left: 100 × 300 / 400.
    assert_eq!(l.grant(1, &[want(300)], 1000, 0).unwrap()[0].amount, 75);
    // Node 2's share of the 25 left: 25 × 100 / 400.
    assert_eq!(l.grant(2, &[want(100)], 1000, 0).unwrap()[0].amount, 6);
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 19);
    // Once node 1's demand is older than the window, node 2 alone gets all.
    let later = DEMAND_WINDOW_MS + 1;
    let g = l.grant(2, &[want(10)], 1000, later).unwrap()[0].amount;
    assert_eq!(g, 10);
}

#[test]
fn returns_are_capped_at_what_the_node_holds_and_at_capacity() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 10));
    l.grant(1, &[want(4)], 1000, 0).unwrap();
    // Node 2 holds nothing: its return is ignored.
    l.give_back(2, &[back(4)], 0).unwrap();
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 6);
    // Node 1 returns more than it holds: only its 4 come back.
    l.give_back(1, &[back(9)], 0).unwrap();
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 10);
    assert_eq!(
        l.bucket(&key_scope(), Unit::Requests).unwrap().nodes[&1].held,
        0
    );
}

#[test]
fn calendar_budgets_reset_at_the_period_start_only() {
    let day = 86_400_000;
    let limit = Limit {
        unit: Unit::MicroUsd,
        capacity: 5_000_000,
        refill: Refill::Calendar(Period::Day),
    };
    let mut l = Ledger::default();
    let policy = QuotaPolicy {
        limits: vec![limit],
        on_no_quorum: OnNoQuorum::Deny,
    };
    let t0 = 20 * day + 3_600_000; // 01:00 UTC on day 20
    l.set_policy(&key_scope(), Some(&policy), t0).unwrap();
    let spend = |l: &mut Ledger, amount, at| {
        l.grant(
            1,
            &[Want {
                scope: key_scope(),
                unit: Unit::MicroUsd,
                amount,
                admitted_total: 0,
            }],
            1000,
            at,
        )
        .unwrap()[0]
            .amount
    };
    assert_eq!(spend(&mut l, 4_000_000, t0), 4_000_000);
    assert_eq!(spend(&mut l, 4_000_000, t0 + 20 * 3_600_000), 1_000_000);
    assert_eq!(spend(&mut l, 1, 21 * day - 1), 0);
    assert_eq!(spend(&mut l, 4_000_000, 21 * day), 4_000_000);
    assert_eq!(
        period_start(Period::Month, 1_795_996_800_000 + 5),
        1_795_996_800_000 - 29 * day
    );
}

#[test]
fn refill_times_and_shares() {
    let day = 86_400_000;
    let rpm = Limit::per_minute(Unit::Requests, 600);
    assert_eq!(rpm.refill_ms(0, 0), 0);
    assert_eq!(rpm.refill_ms(1, 0), 100);
    assert_eq!(rpm.refill_ms(7, 0), 700);
    assert_eq!(rpm.refilled(250), 2);
    let third = rpm.share(3);
    assert_eq!(third.capacity, 200);
    assert_eq!(third.refilled(60_000), 200);
    assert_eq!(Limit::per_minute(Unit::Requests, 2).share(3).capacity, 1);
    let budget = Limit {
        unit: Unit::MicroUsd,
        capacity: 10,
        refill: Refill::Calendar(Period::Day),
    };
    assert_eq!(budget.refilled(day), 0);
    assert_eq!(budget.refill_ms(1, 20 * day + 5), day - 5);
    // 2026-12-31 12:00 UTC: the next month starts on 2027-01-01.
    let dec31 = 1_798_718_400_000;
    assert_eq!(next_period_start(Period::Month, dec31), 1_798_761_600_000);
    assert_eq!(next_period_start(Period::Day, dec31), 1_798_761_600_000);
    assert_eq!(next_period_start(Period::Day, 0), day);
}

#[test]
fn a_new_limit_never_raises_the_level() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 100));
    l.grant(1, &[want(90)], 1000, 0).unwrap();
    let bigger = QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Requests, 1000)],
        on_no_quorum: OnNoQuorum::Deny,
    };
    l.set_policy(&key_scope(), Some(&bigger), 0).unwrap();
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 10);
    let smaller = QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Requests, 5)],
        on_no_quorum: OnNoQuorum::Deny,
    };
    l.set_policy(&key_scope(), Some(&smaller), 0).unwrap();
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 5);
    l.set_policy(&key_scope(), None, 0).unwrap();
    assert!(l.bucket(&key_scope(), Unit::Requests).is_none());
}

#[test]
fn invalid_policies_and_batches_are_refused() {
    let mut l = Ledger::default();
    let zero = QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Tokens, 0)],
        on_no_quorum: OnNoQuorum::Deny,
    };
    assert!(l.set_policy(&key_scope(), Some(&zero), 0).is_err());
    let twice = QuotaPolicy {
        limits: vec![
            Limit::per_minute(Unit::Tokens, 1),
            Limit::per_minute(Unit::Tokens, 2),
        ],
        on_no_quorum: OnNoQuorum::Deny,
    };
    assert!(l.set_policy(&key_scope(), Some(&twice), 0).is_err());
    assert!(l.grant(1, &[want(1)], 0, 0).is_err());
    assert!(l.grant(1, &[want(1)], MAX_LEASE_TTL_MS + 1, 0).is_err());
    // A want for a scope without a policy is granted nothing, not refused.
    assert_eq!(
        l.grant(1, &[want(1)], 1000, 0).unwrap()[0],
        Grant {
            amount: 0,
            expires_at_ms: 0,
            level_after: None
        }
    );
}

#[derive(Debug, Clone)]
enum Op {
    Grant { node: u64, amount: u64 },
    Return { node: u64, amount: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..4, 0u64..400).prop_map(|(node, amount)| Op::Grant { node, amount }),
        1 => (1u64..5, 0u64..400).prop_map(|(node, amount)| Op::Return { node, amount }),
    ]
}

proptest! {
    /// The ledger as a model: for every sequence of grants and returns from
    /// any nodes, at any (even backwards) leader stamps, and for every
    /// interval between two commands, granted − returned ≤ capacity +
    /// refill over the interval; the level stays within [0, capacity]; and
    /// no node ever gets back more than it was granted.
    #[test]
    fn grants_stay_within_capacity_plus_refill(
        capacity in 1u64..1_000,
        amount in 1u64..1_000,
        every_ms in 1u64..120_000,
        steps in proptest::collection::vec((op(), -2_000i64..10_000), 1..120),
    ) {
        let limit = Limit { unit: Unit::Requests, capacity, refill: Refill::Rate { amount, every_ms } };
        let mut l = ledger_with(limit);
        let mut clock = 0u64; // the ledger's clock: the latest stamp so far
        let mut stamp = 0i64;
        // (effective time, granted, returned) after each command.
        let mut history: Vec<(u64, u64, u64)> = vec![(0, 0, 0)];
        let mut held = BTreeMap::<u64, u64>::new();
        let (mut granted, mut returned) = (0u64, 0u64);
        for (op, dt) in steps {
            stamp = (stamp + dt).max(0);
            let at = stamp as u64;
            clock = clock.max(at);
            match op {
                Op::Grant { node, amount } => {
                    let g = l.grant(node, &[want(amount)], 1000, at).unwrap()[0].amount;
                    prop_assert!(g <= amount);
                    granted += g;
                    *held.entry(node).or_default() += g;
                }
                Op::Return { node, amount } => {
                    l.give_back(node, &[back(amount)], at).unwrap();
                    let h = held.entry(node).or_default();
                    let took = amount.min(*h);
                    *h -= took;
                    returned += took;
                }
            }
            let bucket = l.bucket(&key_scope(), Unit::Requests).unwrap();
            prop_assert!(bucket.level <= capacity);
            prop_assert_eq!(bucket.as_of_ms, clock);
            for (node, h) in &held {
                let share = bucket.nodes.get(node).map_or(0, |s| s.held);
                prop_assert_eq!(share, *h, "node {}", node);
            }
            history.push((clock, granted, returned));
        }
        for (i, &(t1, g1, r1)) in history.iter().enumerate() {
            for &(t2, g2, r2) in &history[i..] {
                let net = (g2 - g1) as i128 - (r2 - r1) as i128;
                let refill = (u128::from(t2 - t1) * u128::from(amount)).div_ceil(u128::from(every_ms));
                prop_assert!(
                    net <= i128::from(capacity) + refill as i128,
                    "net {} over [{}, {}] > {} + {}", net, t1, t2, capacity, refill
                );
            }
        }
    }

    /// Contention never hands out more than the level, whatever the demands.
    #[test]
    fn split_grants_never_exceed_the_level(
        demands in proptest::collection::vec((1u64..6, 0u64..10_000), 1..40),
        capacity in 1u64..5_000,
    ) {
        let mut l = ledger_with(Limit::per_minute(Unit::Requests, capacity));
        let mut total = 0;
        for (node, amount) in demands {
            total += l.grant(node, &[want(amount)], 1000, 0).unwrap()[0].amount;
            prop_assert!(total <= capacity);
        }
    }
}

#[test]
fn nodes_report_their_recent_admissions() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 6_000));
    let report = |l: &mut Ledger, total, at| {
        l.grant(
            1,
            &[Want {
                admitted_total: total,
                ..want(10)
            }],
            1000,
            at,
        )
        .unwrap();
        l.bucket(&key_scope(), Unit::Requests).unwrap().nodes[&1].clone()
    };
    let share = report(&mut l, 0, 1_000);
    assert_eq!(share.admitted_per_min, 0);
    let share = report(&mut l, 50, 2_000);
    assert_eq!(share.admitted_total, 50);
    assert_eq!(share.admitted_per_min, 3_000, "50 in a second");
    assert_eq!(share.recent_admissions_per_min(2_000), 3_000);
    assert_eq!(
        share.recent_admissions_per_min(2_000 + DEMAND_WINDOW_MS + 1),
        0,
        "stale"
    );
    let share = report(&mut l, 50, 3_000);
    assert_eq!(share.admitted_per_min, 0, "none since");
}
