//! Both bounds of the global quota, proven on the model: several nodes'
//! [`Quotas`] against one in-process ledger (the same `Ledger` the Raft
//! state machine applies), driven by generated arrival patterns.
//!
//! * **Upper bound** (DESIGN §5): over `[0, t]` the cluster admits at most
//!   `capacity + rate · t`, and over any window of length `T` at most
//!   `capacity + rate · (T + lease_ttl)` (a lease granted just before the
//!   window may be spent in it while the level refills).
//! * **Lower bound** (this module's reason to exist): the cluster admits at
//!   least what one ideal token bucket of the same limit would admit of the
//!   same arrivals, less a stated slack; and a pattern that stays under the
//!   limit by that slack is never refused.
//!
//! The slack, per limit, is `slack(limit, nodes)`: what the other nodes'
//! standing reserves keep (their share of one second's refill), one tick's
//! refill per node (the refill clock starts at the first round and units
//! move between nodes only at rounds), and one unit per node.
//!
//! The model runs the nodes' rounds every tick in turn, and treats a
//! refused request the way `Quotas::admit` does: when the refusal says a
//! wait is worth it, the request is checked again after each round until
//! `max_wait_ms` has passed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use sluice_core::quota::{Ledger, Limit, OnNoQuorum, QuotaPolicy, Refill, Reserve, Unit};

use crate::admission::{Ask, Cost};
use crate::testing::{scope, InProcess};
use crate::{QuotaConfig, Quotas};

/// One request: when it arrives (ms) and at which node.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at_ms: u64,
    node: usize,
}

/// How one node's request fared: admitted at a time, or refused.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Admitted(u64),
    Refused,
}

/// The limits the model is run with: tiny, small, ordinary and huge. A
/// bucket holds at least a second of its refill (`Limit::least_capacity`,
/// what the admin API accepts; every `rpm` limit holds a minute's).
fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        prop::sample::select(vec![1u64, 2, 5, 60, 600, 6_000, 100_000_000])
            .prop_map(|rpm| Limit::per_minute(Unit::Requests, rpm)),
        (1u64..20, 1u64..5)
            .prop_flat_map(|(amount, secs)| {
                let limit = Limit {
                    unit: Unit::Requests,
                    capacity: 1,
                    refill: Refill::Rate {
                        amount,
                        every_ms: secs * 1_000,
                    },
                };
                let least = limit.least_capacity();
                (least..least + 50, Just(limit))
            })
            .prop_map(|(capacity, limit)| Limit { capacity, ..limit }),
    ]
}

/// The least capacity with which one ideal bucket refilled like `limit`
/// admits every one of `arrivals`.
fn least_capacity(limit: &Limit, arrivals: &[Arrival]) -> u64 {
    let (mut low, mut high) = (1u64, arrivals.len() as u64 + 1);
    while low < high {
        let mid = (low + high) / 2;
        let trial = Limit {
            capacity: mid,
            ..*limit
        };
        if ideal(&trial, arrivals).iter().all(|ok| *ok) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

/// A stretch of arrivals.
#[derive(Debug, Clone)]
enum Stretch {
    /// One request every `every_ms`, at `node` (or round robin).
    Steady {
        every_ms: u64,
        node: Option<usize>,
        count: u64,
    },
    /// `size` requests at once, at `node` (or spread).
    Burst { size: u64, node: Option<usize> },
    /// Nothing for `ms` (longer than a lease, often).
    Idle { ms: u64 },
}

fn stretch() -> impl Strategy<Value = Stretch> {
    let node = prop::option::weighted(0.7, 0usize..5);
    prop_oneof![
        3 => (prop_oneof![20u64..200, 200u64..4_000], node.clone(), 1u64..40)
            .prop_map(|(every_ms, node, count)| Stretch::Steady { every_ms, node, count }),
        2 => (1u64..60, node).prop_map(|(size, node)| Stretch::Burst { size, node }),
        1 => (500u64..8_000).prop_map(|ms| Stretch::Idle { ms }),
    ]
}

fn arrivals(stretches: &[Stretch], nodes: usize) -> Vec<Arrival> {
    let mut out = Vec::new();
    let mut now = 0u64;
    let mut next_node = 0usize;
    let mut pick = |node: Option<usize>| match node {
        Some(n) => n % nodes,
        None => {
            next_node = (next_node + 1) % nodes;
            next_node
        }
    };
    for s in stretches {
        match *s {
            Stretch::Steady {
                every_ms,
                node,
                count,
            } => {
                for _ in 0..count {
                    out.push(Arrival {
                        at_ms: now,
                        node: pick(node),
                    });
                    now += every_ms;
                }
            }
            Stretch::Burst { size, node } => {
                for _ in 0..size {
                    out.push(Arrival {
                        at_ms: now,
                        node: pick(node),
                    });
                }
                now += 1;
            }
            Stretch::Idle { ms } => now += ms,
        }
    }
    out
}

/// What one ideal token bucket of `limit`, full at 0 and refilled
/// continuously, admits of `arrivals` (in order).
fn ideal(limit: &Limit, arrivals: &[Arrival]) -> Vec<bool> {
    let Refill::Rate { amount, every_ms } = limit.refill else {
        unreachable!("the model runs rate limits")
    };
    // In units · every_ms, to stay exact.
    let scale = u128::from(every_ms);
    let full = u128::from(limit.capacity) * scale;
    let mut level = full;
    let mut at = 0u64;
    arrivals
        .iter()
        .map(|a| {
            level = (level + u128::from(a.at_ms - at) * u128::from(amount)).min(full);
            at = a.at_ms;
            let ok = level >= scale;
            if ok {
                level -= scale;
            }
            ok
        })
        .collect()
}

/// The lower bound's slack for `limit` on `nodes` nodes: see the module
/// doc.
fn slack(limit: &Limit, nodes: u64, config: &QuotaConfig) -> u64 {
    let reserves = limit.standing_share(nodes, config.standing_ms) * (nodes - 1);
    let per_tick = limit.refilled(config.tick_ms).max(1);
    reserves + nodes * per_tick + nodes
}

/// Runs `arrivals` through `nodes` nodes sharing one ledger with `limit`.
fn run(limit: Limit, nodes: usize, arrivals: &[Arrival], config: QuotaConfig) -> Vec<Fate> {
    run_with_outages(limit, nodes, arrivals, &[], config)
}

/// [`run`], with the ledger out of every node's reach during `outages`
/// (`(from_ms, for_ms)`: an election, a partition of the leader).
fn run_with_outages(
    limit: Limit,
    nodes: usize,
    arrivals: &[Arrival],
    outages: &[(u64, u64)],
    config: QuotaConfig,
) -> Vec<Fate> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(simulate(limit, nodes, arrivals, outages, config))
}

async fn simulate(
    limit: Limit,
    nodes: usize,
    arrivals: &[Arrival],
    outages: &[(u64, u64)],
    config: QuotaConfig,
) -> Vec<Fate> {
    let policy = QuotaPolicy {
        limits: vec![limit],
        on_no_quorum: OnNoQuorum::Deny,
        reserve: Reserve::MaxTokens,
    };
    let clock = Arc::new(AtomicU64::new(0));
    let mut ledger = Ledger::default();
    ledger.set_policy(&scope(), Some(&policy), 0).unwrap();
    let ledger = Arc::new(Mutex::new(ledger));
    let cluster: Vec<(Quotas, InProcess)> = (1..=nodes as u64)
        .map(|node| {
            let quotas = Quotas::new(QuotaConfig {
                node_id: node,
                ..config
            });
            quotas.set_nodes(nodes as u64);
            quotas.set_voters(nodes as u64);
            let client = InProcess {
                ledger: Arc::clone(&ledger),
                node,
                clock: Arc::clone(&clock),
                cut_off: AtomicBool::new(false),
            };
            (quotas, client)
        })
        .collect();
    let plans: Vec<_> = cluster
        .iter()
        .map(|(quotas, client)| quotas.plan(&client.view(), "k").expect("a plan"))
        .collect();
    let ask = Ask::exact(Cost {
        requests: 1,
        ..Cost::default()
    });
    let mut fates = vec![Fate::Refused; arrivals.len()];
    // Requests waiting for a round: (index, deadline).
    let mut waiting: Vec<(usize, u64)> = Vec::new();
    let mut next = 0;
    let end = arrivals.last().map_or(0, |a| a.at_ms) + config.max_wait_ms + config.tick_ms;
    let mut tick_at = config.tick_ms;
    while tick_at <= end + config.tick_ms {
        // Arrivals before this tick, each checked at its time.
        while next < arrivals.len() && arrivals[next].at_ms < tick_at {
            let a = arrivals[next];
            let (quotas, client) = &cluster[a.node];
            let view = client.view();
            match quotas.check(&plans[a.node], "r", ask, a.at_ms, &view) {
                Ok(admission) => {
                    drop(admission.reservation);
                    fates[next] = Fate::Admitted(a.at_ms);
                }
                Err(denial) if denial.wait_worth() => {
                    waiting.push((next, a.at_ms + config.max_wait_ms));
                }
                Err(denial) => {
                    if std::env::var("DEBUG_BOUNDS").is_ok() {
                        let pool = quotas.pool(&scope(), Unit::Requests);
                        let b = view.bucket(&scope(), Unit::Requests).unwrap();
                        eprintln!("refused {next} at once at {}: {denial:?} avail {} standing {} level {} nodes {:?}", a.at_ms, pool.available(), pool.standing(), b.level_at(a.at_ms), b.nodes);
                    }
                }
            }
            next += 1;
        }
        // Every node's round, then the waiting requests again.
        clock.store(tick_at, Ordering::SeqCst);
        let out = outages
            .iter()
            .any(|&(from, len)| (from..from + len).contains(&tick_at));
        for (quotas, client) in &cluster {
            client.cut_off.store(out, Ordering::SeqCst);
            client.tick(quotas, tick_at).await;
        }
        waiting.retain(|&(i, deadline)| {
            let a = arrivals[i];
            let (quotas, client) = &cluster[a.node];
            if tick_at > deadline {
                return false;
            }
            match quotas.check(&plans[a.node], "r", ask, tick_at, &client.view()) {
                Ok(admission) => {
                    drop(admission.reservation);
                    fates[i] = Fate::Admitted(tick_at);
                    false
                }
                Err(denial) if denial.wait_worth() && tick_at + config.tick_ms <= deadline => true,
                Err(denial) => {
                    if std::env::var("DEBUG_BOUNDS").is_ok() {
                        let pool = quotas.pool(&scope(), Unit::Requests);
                        let v = client.view();
                        let b = v.bucket(&scope(), Unit::Requests).unwrap();
                        eprintln!("refused {i} at {tick_at}: {denial:?} avail {} standing {} level {} nodes {:?}", pool.available(), pool.standing(), b.level_at(tick_at), b.nodes);
                    }
                    // As `admit` does when a wait ends in a refusal.
                    quotas.note_failed_wait(&plans[a.node], &denial);
                    false
                }
            }
        });
        tick_at += config.tick_ms;
    }
    fates
}

/// A limit refilled like `refill` with just enough capacity that
/// `arrivals` stay under it by the slack (and at least `least` units).
fn under_limit(
    refill: &Limit,
    arrivals: &[Arrival],
    nodes: usize,
    least: u64,
    config: &QuotaConfig,
) -> Limit {
    let needed = least_capacity(refill, arrivals)
        .max(refill.capacity)
        .max(least);
    let mut limit = Limit {
        capacity: needed,
        ..*refill
    };
    // The slack grows with the capacity (the reserves): settle it.
    for _ in 0..3 {
        limit.capacity = needed + slack(&limit, nodes as u64, config);
    }
    limit
}

/// Outages (`(from_ms, for_ms)`), each `gap` after the end of the one
/// before it and at least a request's longest wait (`max_wait_ms`) apart:
/// two elections closer than that are one long election to the request
/// that waits through both (a case with two outages 30 ms apart, 700 ms
/// together, found by an earlier version of this generator).
fn separate(gaps: &[(u64, u64)], config: &QuotaConfig) -> Vec<(u64, u64)> {
    let mut end = 0;
    gaps.iter()
        .map(|&(gap, len)| {
            let from = end + gap.max(config.max_wait_ms);
            end = from + len;
            (from, len)
        })
        .collect()
}

/// Fails the case when any request was refused, naming them.
fn none_refused(fates: &[Fate]) -> Result<(), TestCaseError> {
    let refused: Vec<usize> = (0..fates.len())
        .filter(|i| fates[*i] == Fate::Refused)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(TestCaseError::fail(format!(
        "refused {refused:?} of {}",
        fates.len()
    )))
}

/// The admission times, sorted.
fn admitted(fates: &[Fate]) -> Vec<u64> {
    let mut at: Vec<u64> = fates
        .iter()
        .filter_map(|f| match f {
            Fate::Admitted(at) => Some(*at),
            Fate::Refused => None,
        })
        .collect();
    at.sort_unstable();
    at
}

/// Checks the upper bound on every prefix and every window of admissions.
fn assert_upper_bound(limit: &Limit, times: &[u64], config: &QuotaConfig) -> Result<(), String> {
    let refill = |ms: u64| -> u64 {
        let Refill::Rate { amount, every_ms } = limit.refill else {
            unreachable!()
        };
        u64::try_from((u128::from(ms) * u128::from(amount)).div_ceil(u128::from(every_ms)))
            .unwrap_or(u64::MAX)
    };
    for (i, &t) in times.iter().enumerate() {
        let count = i as u64 + 1;
        let bound = limit.capacity.saturating_add(refill(t));
        if count > bound {
            return Err(format!("{count} admitted by {t} ms > {bound}"));
        }
    }
    for (i, &t1) in times.iter().enumerate() {
        for (j, &t2) in times.iter().enumerate().skip(i) {
            let count = (j - i) as u64 + 1;
            let bound = limit
                .capacity
                .saturating_add(refill(t2 - t1 + config.lease_ttl_ms));
            if count > bound {
                return Err(format!("{count} admitted in [{t1}, {t2}] > {bound}"));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Nobody gets more than the bound, and nobody is refused what one
    /// ideal bucket would have given them, less the slack.
    #[test]
    fn the_cluster_admits_within_the_bound_and_no_less_than_it_owes(
        limit in limit(),
        nodes in 1usize..=5,
        stretches in proptest::collection::vec(stretch(), 1..8),
    ) {
        let config = QuotaConfig::default();
        let arrivals = arrivals(&stretches, nodes);
        let fates = run(limit, nodes, &arrivals, config);
        let times = admitted(&fates);
        if let Err(e) = assert_upper_bound(&limit, &times, &config) {
            return Err(TestCaseError::fail(e));
        }
        let owed = ideal(&limit, &arrivals).iter().filter(|ok| **ok).count() as u64;
        let got = times.len() as u64;
        let slack = slack(&limit, nodes as u64, &config);
        prop_assert!(
            got + slack >= owed,
            "admitted {} of {} arrivals; one bucket admits {}; slack {}",
            got, arrivals.len(), owed, slack
        );
    }

    /// A pattern that one ideal bucket with `slack` less capacity admits
    /// whole (it stays under the limit) is never refused. The limit's
    /// refill is generated; its capacity is made just large enough.
    #[test]
    fn a_key_under_its_limit_is_never_refused(
        refill in limit(),
        nodes in 1usize..=5,
        stretches in proptest::collection::vec(stretch(), 1..8),
    ) {
        let config = QuotaConfig::default();
        let arrivals = arrivals(&stretches, nodes);
        let limit = under_limit(&refill, &arrivals, nodes, 1, &config);
        let under = Limit { capacity: limit.capacity - slack(&limit, nodes as u64, &config), ..limit };
        prop_assert!(ideal(&under, &arrivals).iter().all(|ok| *ok), "the pattern is under the limit");
        none_refused(&run(limit, nodes, &arrivals, config))?;
    }

    /// The ledger out of reach for a while (an election, up to 400 ms)
    /// once the nodes have run a round: a key under its limit by the
    /// slack, on a limit with at least four units a node (a unit of
    /// standing reserve each), is still not refused: its nodes spend their
    /// leases and reserves, and a request that finds neither waits for the
    /// election to end.
    #[test]
    fn a_key_under_its_limit_rides_through_an_election(
        refill in limit(),
        nodes in 1usize..=5,
        stretches in proptest::collection::vec(stretch(), 1..8),
        gaps in proptest::collection::vec((1_000u64..8_000, 100u64..400), 1..4),
    ) {
        let config = QuotaConfig::default();
        let arrivals = arrivals(&stretches, nodes);
        let limit = under_limit(&refill, &arrivals, nodes, 4 * nodes as u64, &config);
        let outages = separate(&gaps, &config);
        none_refused(&run_with_outages(limit, nodes, &arrivals, &outages, config))?;
    }

    /// A longer election (up to a second): nodes with steady traffic on a
    /// key comfortably under its limit (its rate a quarter above the
    /// traffic, room for two seconds of it) keep admitting it from the
    /// leases they hold (one to two seconds of their demand) and their
    /// reserves, without refusing any of it.
    #[test]
    fn steady_traffic_rides_through_a_long_election(
        nodes in 1usize..=5,
        steady in proptest::collection::vec((20u64..200, 0usize..5, 10u64..60), 1..6),
        outage in (1_000u64..5_000, 400u64..1_000),
    ) {
        let config = QuotaConfig::default();
        // Every node's traffic at once, each at its own steady pace.
        let mut arrivals: Vec<Arrival> = steady
            .iter()
            .flat_map(|&(every_ms, node, count)| {
                (0..count * 10).map(move |i| Arrival { at_ms: i * every_ms, node: node % nodes })
            })
            .collect();
        arrivals.sort_by_key(|a| a.at_ms);
        let per_second: f64 = steady.iter().map(|(every_ms, _, _)| 1_000.0 / *every_ms as f64).sum();
        let rate = (per_second * 1.25).ceil() as u64;
        let limit = Limit {
            unit: Unit::Requests,
            capacity: 2 * rate + slack(&Limit::per_minute(Unit::Requests, rate * 60), nodes as u64, &config),
            refill: Refill::Rate { amount: rate, every_ms: 1_000 },
        };
        none_refused(&run_with_outages(limit, nodes, &arrivals, &[outage], config))?;
    }
}

/// Cases the properties above found with more cases than CI runs
/// (`PROPTEST_CASES=3000`), kept as they were found.
mod found {
    use super::*;

    /// Capacity 4, refilled 14 every 4 s (the least the admin API accepts
    /// for that refill), on two nodes under sustained demand. With a
    /// capacity of 1 (less than a second of refill; refused since) the
    /// bucket sat full between rounds and lost the refill above it: 36
    /// admitted of 41 owed, the shortfall growing with time.
    #[test]
    fn a_bucket_of_a_second_of_refill_under_sustained_demand() {
        let limit = Limit {
            unit: Unit::Requests,
            capacity: 4,
            refill: Refill::Rate {
                amount: 14,
                every_ms: 4000,
            },
        };
        assert_eq!(limit.least_capacity(), 4);
        let stretches = [
            Stretch::Steady {
                every_ms: 2196,
                node: Some(1),
                count: 12,
            },
            Stretch::Idle { ms: 1378 },
            Stretch::Steady {
                every_ms: 145,
                node: None,
                count: 35,
            },
            Stretch::Steady {
                every_ms: 164,
                node: Some(3),
                count: 8,
            },
            Stretch::Steady {
                every_ms: 176,
                node: Some(0),
                count: 14,
            },
        ];
        let config = QuotaConfig::default();
        let arrivals = arrivals(&stretches, 2);
        let got = admitted(&run(limit, 2, &arrivals, config)).len() as u64;
        let owed = ideal(&limit, &arrivals).iter().filter(|ok| **ok).count() as u64;
        let slack = slack(&limit, 2, &config);
        assert!(
            got + slack >= owed,
            "admitted {got}, owed {owed}, slack {slack}"
        );
    }

    /// A burst of 20 on two nodes 200 ms before a 100 ms ledger outage, on
    /// a key whose capacity is made just large enough for it. The node
    /// that served its half withdrew its demand in a round the outage
    /// lost, and never said it again: the ledger kept the rest of the
    /// level promised to it until its demand aged out, past the other
    /// node's last waiting request (refused). A want that may not have
    /// arrived is now stated again.
    #[test]
    fn a_burst_just_before_an_outage() {
        let refill = Limit {
            unit: Unit::Requests,
            capacity: 1,
            refill: Refill::Rate {
                amount: 1,
                every_ms: 1000,
            },
        };
        let stretches = [
            Stretch::Idle { ms: 3000 },
            Stretch::Burst {
                size: 20,
                node: None,
            },
        ];
        let config = QuotaConfig::default();
        let arrivals = arrivals(&stretches, 2);
        let limit = under_limit(&refill, &arrivals, 2, 8, &config);
        let fates = run_with_outages(limit, 2, &arrivals, &[(3201, 100)], config);
        none_refused(&fates).expect("none refused");
    }

    /// A burst of 127 on three nodes 165 ms before a 336 ms ledger outage,
    /// on a key whose capacity is just large enough for it: the last 3 of
    /// node 3's 64 requests are refused when their wait ends, 500 ms after
    /// the outage. The nodes that served their part of the burst first
    /// keep stating their recent rate, so after the outage the ledger
    /// still promises them most of the level, a little less each round,
    /// while node 3 waits. Found once in 100 000 generated cases
    /// (`PROPTEST_CASES=100000`); two attempts at a fix (asking only for
    /// the tick's demand when contended; withdrawing an idle node's
    /// demand) each broke other cases of the model, so it stays open.
    #[test]
    #[ignore = "known failure: a large burst just before an outage (docs/quotas.md)"]
    fn a_large_burst_just_before_an_outage() {
        let refill = Limit {
            unit: Unit::Requests,
            capacity: 1,
            refill: Refill::Rate {
                amount: 1,
                every_ms: 60_000,
            },
        };
        let stretches = [
            Stretch::Idle { ms: 3900 },
            Stretch::Burst {
                size: 22,
                node: Some(1),
            },
            Stretch::Burst {
                size: 58,
                node: None,
            },
            Stretch::Burst {
                size: 45,
                node: Some(2),
            },
            Stretch::Burst {
                size: 2,
                node: Some(1),
            },
        ];
        let config = QuotaConfig::default();
        let arrivals = arrivals(&stretches, 3);
        let limit = under_limit(&refill, &arrivals, 3, 12, &config);
        let outages = separate(&[(2114, 142), (1809, 336)], &config);
        none_refused(&run_with_outages(limit, 3, &arrivals, &outages, config))
            .expect("none refused");
    }
}
