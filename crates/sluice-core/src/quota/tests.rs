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
        reserve: Reserve::MaxTokens,
    };
    ledger.set_policy(&key_scope(), Some(&policy), 0).unwrap();
    ledger
}

/// A fresh report number for every want of these tests.
fn next_seq() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn want(amount: u64) -> Want {
    Want {
        scope: key_scope(),
        unit: Unit::Requests,
        amount,
        admitted_total: 0,
        standing: 0,
        seq: next_seq(),
        standing_wanted: 0,
        holding: 0,
    }
}

fn back(amount: u64) -> Return {
    Return {
        scope: key_scope(),
        unit: Unit::Requests,
        amount,
        standing: 0,
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
    // Two minutes later the node reports it spent its 602: the level had
    // refilled to what the node did not hold (599 of 600); the unit it held
    // refills from the report on, and never beyond the capacity.
    let g = l.grant(1, &[want(0)], 1000, 200 + 120_000).unwrap();
    assert_eq!(g[0].level_after, Some(599));
    let g = l.grant(1, &[want(0)], 1000, 200 + 180_000).unwrap();
    assert_eq!(g[0].level_after, Some(600));
}

#[test]
fn a_stamp_from_the_past_refills_nothing() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 60));
    l.grant(1, &[want(60)], 1000, 10_000).unwrap();
    // Node 1 reports it spent them all.
    l.grant(1, &[want(0)], 1000, 10_000).unwrap();
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
    l.give_back(2, next_seq(), &[back(100)], 0).unwrap();
    // Node 1 asks 300 of the 100 left: 100 × 300 / 400.
    assert_eq!(l.grant(1, &[want(300)], 1000, 0).unwrap()[0].amount, 75);
    // The 25 left were kept for node 2 (100 × 100 / 400): it gets them
    // when it asks, however many others asked in between.
    assert_eq!(l.grant(3, &[want(0)], 1000, 0).unwrap()[0].amount, 0);
    assert_eq!(l.grant(2, &[want(100)], 1000, 0).unwrap()[0].amount, 25);
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 0);
    // Node 1 reports it spent its 75, and still wants 300 (nothing is
    // left). Once that demand is older than the window, node 2 alone gets
    // all that refilled meanwhile (100 a minute: 8 in 5 s).
    assert_eq!(l.grant(1, &[want(300)], 1000, 1).unwrap()[0].amount, 0);
    let later = DEMAND_WINDOW_MS + 2;
    let g = l.grant(2, &[want(10)], 1000, later).unwrap()[0].amount;
    assert_eq!(g, 8);
}

/// Nodes whose rounds fall at different moments of a tick, all wanting
/// more than there is: each gets its part of the refill in proportion to
/// its demand, whichever comes just after the refill.
fn split_over_ticks(supply: u64, wants: &[(u64, u64)], ticks: u64) -> Vec<u64> {
    let limit = Limit {
        unit: Unit::Requests,
        capacity: 10 * supply,
        refill: Refill::Rate {
            amount: supply,
            every_ms: 100,
        },
    };
    let mut l = ledger_with(limit);
    let mut granted = vec![0; wants.len()];
    let mut calls: Vec<(u64, usize)> = (0..ticks)
        .flat_map(|tick| {
            wants
                .iter()
                .enumerate()
                .map(move |(i, (offset, _))| (tick * 100 + offset, i))
        })
        .collect();
    calls.sort();
    for (at, i) in calls {
        let amount = l
            .grant(i as u64 + 1, &[want(wants[i].1)], 1000, at)
            .unwrap()[0]
            .amount;
        // The first ticks drain the full bucket; count from the 20th.
        if at >= 2_000 {
            granted[i] += amount;
        }
    }
    granted
}

#[test]
fn a_contended_split_does_not_depend_on_when_a_node_asks() {
    // Three nodes ask 2, 3 and 4 ms into every tick, one unit refills a
    // tick. Without the parts kept for each, the first after the refill
    // got every unit, tick after tick.
    let granted = split_over_ticks(1, &[(2, 2), (3, 2), (4, 2)], 320);
    assert!(
        granted.iter().all(|g| (99..=101).contains(g)),
        "{granted:?}"
    );
}

#[test]
fn returns_are_capped_at_what_the_node_holds_and_at_capacity() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 10));
    l.grant(1, &[want(4)], 1000, 0).unwrap();
    // Node 2 holds nothing: its return is ignored.
    l.give_back(2, next_seq(), &[back(4)], 0).unwrap();
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 6);
    // Node 1 returns more than it holds: only its 4 come back.
    l.give_back(1, next_seq(), &[back(9)], 0).unwrap();
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
        reserve: Default::default(),
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
                standing: 0,
                standing_wanted: 0,
                seq: next_seq(),
                holding: 0,
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
        reserve: Default::default(),
    };
    l.set_policy(&key_scope(), Some(&bigger), 0).unwrap();
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 10);
    let smaller = QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Requests, 5)],
        on_no_quorum: OnNoQuorum::Deny,
        reserve: Default::default(),
    };
    l.set_policy(&key_scope(), Some(&smaller), 0).unwrap();
    // Node 1 holds 90, more than the new capacity: nothing to grant until
    // it reports them spent.
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 0);
    l.grant(1, &[want(0)], 1000, 0).unwrap();
    let bucket = l.bucket(&key_scope(), Unit::Requests).unwrap();
    assert_eq!((bucket.level, bucket.level_at(60_000)), (0, 5));
    l.set_policy(&key_scope(), None, 0).unwrap();
    assert!(l.bucket(&key_scope(), Unit::Requests).is_none());
}

#[test]
fn invalid_policies_and_batches_are_refused() {
    let mut l = Ledger::default();
    let zero = QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Tokens, 0)],
        on_no_quorum: OnNoQuorum::Deny,
        reserve: Default::default(),
    };
    assert!(l.set_policy(&key_scope(), Some(&zero), 0).is_err());
    let twice = QuotaPolicy {
        limits: vec![
            Limit::per_minute(Unit::Tokens, 1),
            Limit::per_minute(Unit::Tokens, 2),
        ],
        on_no_quorum: OnNoQuorum::Deny,
        reserve: Default::default(),
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
            standing: 0,
            level_after: None,
        }
    );
}

#[derive(Debug, Clone)]
enum Op {
    /// A want: the node reports what it holds, asks `amount` of lease and
    /// `keep` of reserve.
    Grant { node: u64, amount: u64, keep: u64 },
    /// The node spends `amount` (its lease first, then its reserve).
    Spend { node: u64, amount: u64 },
    /// A want the node sent `age` wants ago, delayed and applied only now
    /// (the node gave up on it: it never sees its grant).
    Stale { node: u64, age: usize },
    /// A return of lease `amount` and of `standing` reserve units.
    Return {
        node: u64,
        amount: u64,
        standing: u64,
    },
    /// The node's last return batch again (its answer was lost).
    Retry { node: u64 },
    /// The node leaves the cluster.
    Leave { node: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..4, 0u64..400, 0u64..60)
            .prop_map(|(node, amount, keep)| Op::Grant { node, amount, keep }),
        3 => (1u64..4, 0u64..100).prop_map(|(node, amount)| Op::Spend { node, amount }),
        1 => (1u64..4, 1usize..4).prop_map(|(node, age)| Op::Stale { node, age }),
        1 => (1u64..5, 0u64..400, 0u64..60)
            .prop_map(|(node, amount, standing)| Op::Return { node, amount, standing }),
        1 => (1u64..4).prop_map(|node| Op::Retry { node }),
        1 => (1u64..4).prop_map(|node| Op::Leave { node }),
    ]
}

/// One node as the model sees it: what it really holds, and what it sent.
#[derive(Debug, Default)]
struct ModelNode {
    lease: u64,
    kept: u64,
    sent: Vec<Want>,
    last_batch: Option<(u64, Return)>,
}

proptest! {
    /// The ledger as a model: for every sequence of wants, spending,
    /// returns, delayed and retried commands and nodes leaving, at any
    /// (even backwards) leader stamps:
    /// * the level and what the ledger counts the nodes as holding never
    ///   exceed the capacity, and it never counts less than a node holds;
    /// * over every interval, what the nodes **spent** is at most the
    ///   capacity plus the refill over the interval (the token bucket's own
    ///   bound, however long units were held before);
    /// * what left the level (granted, less what came back) obeys the same.
    #[test]
    fn spending_stays_within_capacity_plus_refill(
        capacity in 1u64..1_000,
        amount in 1u64..1_000,
        every_ms in 1u64..120_000,
        steps in proptest::collection::vec((op(), -2_000i64..10_000), 1..150),
    ) {
        let limit = Limit { unit: Unit::Requests, capacity, refill: Refill::Rate { amount, every_ms } };
        let mut l = ledger_with(limit);
        let mut clock = 0u64; // the ledger's clock: the latest stamp so far
        let mut stamp = 0i64;
        let mut nodes = BTreeMap::<u64, ModelNode>::new();
        let mut seq = 0u64;
        // (time, spent so far) after each spending; (time, out, back).
        let mut spent_at: Vec<(u64, u64)> = vec![(0, 0)];
        let mut spent = 0u64;
        let mut flows: Vec<(u64, u64, u64)> = vec![(0, 0, 0)];
        let (mut granted, mut returned) = (0u64, 0u64);
        for (op, dt) in steps {
            stamp = (stamp + dt).max(0);
            let at = stamp as u64;
            match op {
                Op::Grant { node, amount, keep } => {
                    clock = clock.max(at);
                    let n = nodes.entry(node).or_default();
                    seq += 1;
                    let w = Want { holding: n.lease + n.kept, standing: n.kept, standing_wanted: keep, seq, ..want(amount) };
                    n.sent.push(w.clone());
                    let g = l.grant(node, &[w], 1000, at).unwrap()[0].clone();
                    prop_assert!(g.amount <= amount && g.standing <= keep);
                    granted += g.amount + g.standing;
                    n.lease += g.amount;
                    n.kept += g.standing;
                }
                Op::Spend { node, amount } => {
                    let n = nodes.entry(node).or_default();
                    let from_lease = amount.min(n.lease);
                    let from_kept = (amount - from_lease).min(n.kept);
                    n.lease -= from_lease;
                    n.kept -= from_kept;
                    spent += from_lease + from_kept;
                    spent_at.push((clock, spent));
                }
                Op::Stale { node, age } => {
                    let n = nodes.entry(node).or_default();
                    if let Some(old) = n.sent.len().checked_sub(age).map(|i| n.sent[i].clone()) {
                        clock = clock.max(at);
                        // Out of the level, to a node that never learns of it.
                        let g = l.grant(node, &[old], 1000, at).unwrap()[0].clone();
                        granted += g.amount + g.standing;
                    }
                }
                Op::Return { node, amount, standing } => {
                    clock = clock.max(at);
                    let n = nodes.entry(node).or_default();
                    let r = Return { standing: standing.min(n.kept), ..back(amount.min(n.lease)) };
                    n.lease -= r.amount;
                    n.kept -= r.standing;
                    seq += 1;
                    let before = l.bucket(&key_scope(), Unit::Requests).unwrap().nodes.get(&node).map_or(0, |s| s.held);
                    l.give_back(node, seq, std::slice::from_ref(&r), at).unwrap();
                    let share = l.bucket(&key_scope(), Unit::Requests).unwrap().nodes.get(&node).map_or(0, |s| s.held);
                    returned += before - share + r.standing;
                    n.last_batch = Some((seq, r));
                }
                Op::Retry { node } => {
                    let n = nodes.entry(node).or_default();
                    if let Some((batch, r)) = &n.last_batch {
                        let before = l.bucket(&key_scope(), Unit::Requests).cloned().unwrap();
                        l.give_back(node, *batch, std::slice::from_ref(r), at).unwrap();
                        let after = l.bucket(&key_scope(), Unit::Requests).cloned().unwrap();
                        prop_assert_eq!(before, after, "a retried batch changes nothing");
                    }
                }
                Op::Leave { node } => {
                    let members = (1..5).filter(|n| *n != node).collect();
                    l.forget_nodes_except(&members);
                    nodes.remove(&node);
                }
            }
            let bucket = l.bucket(&key_scope(), Unit::Requests).unwrap();
            prop_assert!(bucket.level + bucket.held() <= capacity);
            prop_assert_eq!(bucket.as_of_ms, clock);
            for (id, n) in &nodes {
                let share = bucket.nodes.get(id).cloned().unwrap_or_default();
                prop_assert!(share.holding >= n.lease + n.kept, "node {} holds {} + {}; counted {}", id, n.lease, n.kept, share.holding);
            }
            flows.push((clock, granted, returned));
        }
        let refill = |ms: u64| (u128::from(ms) * u128::from(amount)).div_ceil(u128::from(every_ms));
        for (i, &(t1, s1)) in spent_at.iter().enumerate() {
            // Spending after the `i`th: everything from there on.
            let before = if i == 0 { 0 } else { spent_at[i - 1].1 };
            for &(t2, s2) in &spent_at[i..] {
                let used = u128::from(s2 - before);
                prop_assert!(
                    used <= u128::from(capacity) + refill(t2 - t1),
                    "{} spent over [{}, {}] > {} + {}", used, t1, t2, capacity, refill(t2 - t1)
                );
                let _ = s1;
            }
        }
        for (i, &(t1, g1, r1)) in flows.iter().enumerate() {
            for &(t2, g2, r2) in &flows[i..] {
                let net = (g2 - g1) as i128 - (r2 - r1) as i128;
                prop_assert!(
                    net <= i128::from(capacity) + refill(t2 - t1) as i128,
                    "net {} over [{}, {}] > {} + {}", net, t1, t2, capacity, refill(t2 - t1)
                );
            }
        }
    }

    /// Under contention every node gets its part of the refill, in
    /// proportion to its demand, within a unit or two, wherever in the
    /// tick its rounds fall.
    #[test]
    fn a_contended_split_follows_demand_not_timing(
        supply in 1u64..20,
        nodes in proptest::collection::vec((0u64..100, 1u64..4), 2..6),
    ) {
        let mut offsets: Vec<u64> = nodes.iter().map(|(o, _)| *o).collect();
        offsets.sort();
        offsets.dedup();
        prop_assume!(offsets.len() == nodes.len());
        // Every node wants more than all of the supply: always contended.
        let wants: Vec<(u64, u64)> = nodes.iter().map(|(o, m)| (*o, m * supply)).collect();
        let ticks = 220;
        let granted = split_over_ticks(supply, &wants, ticks);
        let total: u64 = granted.iter().sum();
        let demand: u64 = wants.iter().map(|(_, w)| w).sum();
        for (g, (_, w)) in granted.iter().zip(&wants) {
            let fair = total as f64 * *w as f64 / demand as f64;
            prop_assert!(
                (*g as f64 - fair).abs() <= 2.0 + fair * 0.01,
                "granted {:?} of {} for wants {:?}", granted, total, wants
            );
        }
        // And nothing refilled was left unspent for long.
        prop_assert!(total + 2 * supply + nodes.len() as u64 >= supply * (ticks - 20), "{total}");
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

/// A want from a node that holds only its reserve, `standing`.
fn keep(amount: u64, standing: u64, standing_wanted: u64) -> Want {
    Want {
        holding: standing,
        standing,
        standing_wanted,
        ..want(amount)
    }
}

#[test]
fn a_standing_reserve_comes_from_what_the_leases_leave_and_lowers_the_ceiling() {
    // 600 a minute: 10 a second.
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 600));
    let g = l.grant(1, &[keep(590, 0, 20)], 1000, 0).unwrap()[0].clone();
    assert_eq!((g.amount, g.standing, g.level_after), (590, 10, Some(0)));
    let bucket = l.bucket(&key_scope(), Unit::Requests).unwrap();
    assert_eq!((bucket.standing(), bucket.held()), (10, 600));
    assert_eq!(bucket.ceiling(), 0, "the node holds everything");
    // The lease comes back: the level holds it again, under the ceiling.
    l.give_back(1, next_seq(), &[back(590)], 0).unwrap();
    let bucket = l.bucket(&key_scope(), Unit::Requests).unwrap();
    assert_eq!(bucket.level, 590);
    // A minute of refill fills the level to the ceiling, never into the
    // units node 1 keeps.
    assert_eq!(bucket.level_at(600_000), 590);
    // The reserves of all nodes together stay under half the capacity.
    let g = l.grant(2, &[keep(0, 0, 1_000)], 1000, 0).unwrap()[0].clone();
    assert_eq!(g.standing, 290);
}

#[test]
fn spent_reserve_refills_from_its_report_on_never_from_before() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 600));
    l.grant(1, &[keep(0, 0, 100)], 1000, 0).unwrap();
    l.grant(2, &[want(500)], 1000, 0).unwrap();
    l.grant(2, &[want(0)], 1000, 0).unwrap(); // spent
                                              // An hour idle, then node 1 reports it spent its 100: the room they
                                              // leave refills from now, not from the idle hour.
    let hour = 3_600_000;
    let g = l.grant(1, &[keep(0, 0, 0)], 1000, hour).unwrap()[0].clone();
    assert_eq!(
        g.level_after,
        Some(500),
        "the ceiling was 500 until the report"
    );
    let bucket = l.bucket(&key_scope(), Unit::Requests).unwrap();
    assert_eq!((bucket.standing(), bucket.ceiling()), (0, 600));
    assert_eq!(bucket.level_at(hour + 1_000), 510);
    // A report of more than the ledger counts changes nothing.
    let g = l.grant(1, &[keep(0, 70, 0)], 1000, hour).unwrap()[0].clone();
    assert_eq!(g.standing, 0);
    assert_eq!(
        l.bucket(&key_scope(), Unit::Requests).unwrap().standing(),
        0
    );
}

#[test]
fn returned_and_forgotten_reserves_go_back_under_the_ceiling() {
    let mut l = ledger_with(Limit::per_minute(Unit::Requests, 100));
    l.grant(1, &[keep(0, 0, 20)], 1000, 0).unwrap();
    l.grant(2, &[keep(0, 0, 20)], 1000, 0).unwrap();
    assert_eq!(l.bucket(&key_scope(), Unit::Requests).unwrap().level, 60);
    // Node 1 gives up 15 of its 20 (more than it keeps is capped).
    l.give_back(
        1,
        next_seq(),
        &[Return {
            standing: 15,
            ..back(0)
        }],
        0,
    )
    .unwrap();
    l.give_back(
        3,
        next_seq(),
        &[Return {
            standing: 50,
            ..back(0)
        }],
        0,
    )
    .unwrap();
    let bucket = l.bucket(&key_scope(), Unit::Requests).unwrap();
    assert_eq!((bucket.level, bucket.standing()), (75, 25));
    // Node 2 leaves the cluster: its reserve is written off, and the room
    // it leaves refills (its units were granted once, never twice).
    l.forget_nodes_except(&[1, 3].into_iter().collect());
    let bucket = l.bucket(&key_scope(), Unit::Requests).unwrap();
    assert_eq!(
        (bucket.level, bucket.standing(), bucket.ceiling()),
        (75, 5, 95)
    );
    assert!(!bucket.nodes.contains_key(&2));
}

#[test]
fn a_new_period_starts_full_less_the_reserves_kept() {
    let day = 86_400_000;
    let limit = Limit {
        unit: Unit::MicroUsd,
        capacity: 1_000,
        refill: Refill::Calendar(Period::Day),
    };
    let mut l = Ledger::default();
    let policy = QuotaPolicy {
        limits: vec![limit],
        ..QuotaPolicy::default()
    };
    l.set_policy(&key_scope(), Some(&policy), 0).unwrap();
    let w = Want {
        unit: Unit::MicroUsd,
        ..keep(900, 0, 10)
    };
    assert_eq!(l.grant(1, &[w], 1000, 0).unwrap()[0].standing, 10);
    let bucket = l.bucket(&key_scope(), Unit::MicroUsd).unwrap();
    assert_eq!(bucket.level_at(day - 1), 90);
    // The node reports its lease spent, and keeps its reserve.
    let w = Want {
        unit: Unit::MicroUsd,
        ..keep(0, 10, 0)
    };
    l.grant(1, &[w], 1000, day - 1).unwrap();
    let bucket = l.bucket(&key_scope(), Unit::MicroUsd).unwrap();
    assert_eq!(
        bucket.level_at(day),
        990,
        "the 10 kept count against the new day"
    );
}

#[test]
fn standing_shares_are_small_slices_of_a_limit() {
    let rpm = Limit::per_minute(Unit::Requests, 600);
    // 10 a second refill: a second's worth split between 3 nodes.
    assert_eq!(rpm.standing_share(3, 1_000), 3);
    assert_eq!(rpm.standing_share(1, 1_000), 10);
    // Tiny limits have none: they wait for a round.
    assert_eq!(
        Limit::per_minute(Unit::Requests, 5).standing_share(2, 1_000),
        0
    );
    // Small ones keep a unit a node when a tenth of the capacity has room.
    assert_eq!(
        Limit::per_minute(Unit::Requests, 5).standing_share(1, 1_000),
        0
    );
    assert_eq!(
        Limit::per_minute(Unit::Requests, 10).standing_share(1, 1_000),
        1
    );
    assert_eq!(
        Limit::per_minute(Unit::Requests, 60).standing_share(3, 1_000),
        1
    );
    assert_eq!(rpm.standing_share(3, 0), 0, "disabled");
    // Never more than a tenth of the capacity.
    let bursty = Limit {
        unit: Unit::Tokens,
        capacity: 100,
        refill: Refill::Rate {
            amount: 1_000,
            every_ms: 1_000,
        },
    };
    assert_eq!(bursty.standing_share(1, 1_000), 10);
    let budget = Limit {
        unit: Unit::MicroUsd,
        capacity: 25_000_000,
        refill: Refill::Calendar(Period::Month),
    };
    assert_eq!(
        budget.standing_share(5, 1_000),
        50_000,
        "1% of $25 over 5 nodes"
    );
    assert_eq!(rpm.exposure_cap(3), 200);
}
