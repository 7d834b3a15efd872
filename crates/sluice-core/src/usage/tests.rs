use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn rollup(minute: u64, key: &str, route: &str, provider: &str, requests: u64) -> Rollup {
    Rollup {
        key: RollupKey {
            minute_ms: minute * MINUTE_MS,
            key_id: key.into(),
            route: route.into(),
            provider: provider.into(),
        },
        totals: Totals {
            requests,
            prompt_tokens: 10 * requests,
            completion_tokens: 20 * requests,
            cost_micro_usd: 3 * requests,
            errors: 0,
            latency_ms_sum: 7 * requests,
        },
    }
}

fn batch(node: u64, boot: u64, seq: u64, rollups: Vec<Rollup>) -> UsageBatch {
    UsageBatch {
        node,
        boot,
        seq,
        rollups,
    }
}

#[test]
fn batches_from_nodes_add_up_and_a_retry_counts_once() {
    let mut r = Rollups::default();
    let a = batch(1, 7, 1, vec![rollup(1, "k1", "gpt", "openai", 2)]);
    assert_eq!(r.record(&a), Ok(true));
    // The same batch again (a proposal retried after a timeout that had
    // committed after all): nothing changes.
    let before = r.clone();
    assert_eq!(r.record(&a), Ok(false));
    assert_eq!(r, before);
    // Another node's batch with the same numbers is its own.
    assert_eq!(
        r.record(&batch(2, 7, 1, vec![rollup(1, "k1", "gpt", "openai", 3)])),
        Ok(true)
    );
    let by_key = r.totals_by(0, u64::MAX, GroupBy::Key, UsageFilter::default());
    assert_eq!(by_key["k1"].requests, 5);
    assert_eq!(by_key["k1"].completion_tokens, 100);
}

#[test]
fn a_restarted_node_is_counted_from_its_first_batch() {
    let mut r = Rollups::default();
    for seq in 1..=5 {
        r.record(&batch(1, 100, seq, vec![rollup(seq, "k", "gpt", "p", 1)]))
            .unwrap();
    }
    // After a restart the node draws a new boot and numbers from 1 again.
    assert_eq!(
        r.record(&batch(1, 200, 1, vec![rollup(9, "k", "gpt", "p", 1)])),
        Ok(true)
    );
    assert_eq!(r.key_totals_since("k", 0).requests, 6);
}

#[test]
fn queries_group_filter_and_cover_whole_minutes() {
    let mut r = Rollups::default();
    r.record(&batch(
        1,
        1,
        1,
        vec![
            rollup(10, "k1", "gpt", "openai", 1),
            rollup(10, "k2", "gpt", "azure", 2),
            rollup(11, "k1", "claude", "anthropic", 4),
            rollup(20, "k1", "gpt", "openai", 8),
        ],
    ))
    .unwrap();
    let all = UsageFilter::default();
    let by_route = r.totals_by(0, u64::MAX, GroupBy::Route, all);
    assert_eq!(by_route["gpt"].requests, 11);
    assert_eq!(by_route["claude"].requests, 4);
    let by_provider = r.totals_by(0, u64::MAX, GroupBy::Provider, all);
    assert_eq!(
        by_provider.keys().collect::<Vec<_>>(),
        ["anthropic", "azure", "openai"]
    );
    // A range starting mid-minute 10 covers minute 10; minute 20 is after
    // its end.
    let some = r.totals_by(10 * MINUTE_MS + 30_000, 20 * MINUTE_MS, GroupBy::Key, all);
    assert_eq!(some["k1"].requests, 5);
    assert_eq!(some["k2"].requests, 2);
    let k1_gpt = UsageFilter {
        key_id: Some("k1"),
        route: Some("gpt"),
    };
    let only = r.totals_by(0, u64::MAX, GroupBy::Provider, k1_gpt);
    assert_eq!(only.len(), 1);
    assert_eq!(only["openai"].requests, 9);
    assert_eq!(r.key_totals_since("k1", 11 * MINUTE_MS).cost_micro_usd, 36);
}

/// A call refused before any provider was tried (provider `""`: over
/// quota, no quorum) is counted apart from the upstream's failures, in
/// every grouping and in a key's totals.
#[test]
fn calls_refused_before_routing_are_counted_apart() {
    let mut r = Rollups::default();
    let failed = |minute, key: &str, provider: &str, n| {
        let mut x = rollup(minute, key, "gpt", provider, n);
        x.totals.errors = n;
        x
    };
    r.record(&batch(
        1,
        1,
        1,
        vec![
            rollup(10, "k1", "gpt", "openai", 5),
            failed(10, "k1", "", 3),
            failed(11, "k1", "openai", 2),
            failed(11, "k2", "", 1),
        ],
    ))
    .unwrap();
    let all = UsageFilter::default();
    let by_key = r.groups_by(0, u64::MAX, GroupBy::Key, all);
    assert_eq!(by_key["k1"].totals.requests, 10);
    assert_eq!(by_key["k1"].totals.errors, 5);
    assert_eq!(
        by_key["k1"].refused, 3,
        "upstream failures are not refusals"
    );
    assert_eq!(by_key["k2"].refused, 1);
    let by_provider = r.groups_by(0, u64::MAX, GroupBy::Provider, all);
    assert_eq!(by_provider[""].refused, 4);
    assert_eq!(by_provider["openai"].refused, 0);
    assert_eq!(by_provider["openai"].totals.errors, 2);
    assert_eq!(r.key_since("k1", 0).refused, 3);
    // The plain totals are the same numbers.
    assert_eq!(
        r.totals_by(0, u64::MAX, GroupBy::Key, all)["k1"],
        by_key["k1"].totals
    );
}

#[test]
fn compaction_is_final_for_the_minutes_it_dropped() {
    let mut r = Rollups::default();
    r.record(&batch(
        1,
        1,
        1,
        vec![rollup(1, "k", "gpt", "p", 1), rollup(5, "k", "gpt", "p", 1)],
    ))
    .unwrap();
    assert_eq!(r.compact(3 * MINUTE_MS, 0).removed, 1);
    assert_eq!(r.compact(2 * MINUTE_MS, 0).removed, 0);
    // A node that was cut off sends minute 1 late: it stays compacted.
    r.record(&batch(2, 1, 1, vec![rollup(1, "k", "gpt", "p", 5)]))
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r.key_totals_since("k", 0).requests, 1);
}

#[test]
fn old_minutes_merge_into_hours_and_late_minutes_follow() {
    let mut r = Rollups::default();
    r.record(&batch(
        1,
        1,
        1,
        vec![
            rollup(5, "k", "gpt", "p", 1),
            rollup(59, "k", "gpt", "p", 2),
            rollup(60, "k", "gpt", "p", 4),
            rollup(61, "k2", "gpt", "p", 8),
            rollup(125, "k", "gpt", "p", 16),
        ],
    ))
    .unwrap();
    assert!(r.compaction_due(0, 2 * HOUR_MS + 5 * MINUTE_MS));
    // The hourly cutoff rounds down to 2h: hours 0 and 1 are merged.
    let done = r.compact(0, 2 * HOUR_MS + 5 * MINUTE_MS);
    assert_eq!(
        done,
        Compacted {
            removed: 0,
            merged: 4
        }
    );
    assert_eq!(r.hourly_before_ms(), 2 * HOUR_MS);
    let keys: Vec<(u64, &str)> = r
        .iter()
        .map(|(k, _)| (k.minute_ms, k.key_id.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (0, "k"),
            (HOUR_MS, "k"),
            (HOUR_MS, "k2"),
            (125 * MINUTE_MS, "k")
        ]
    );
    assert!(!r.compaction_due(0, 2 * HOUR_MS + 30 * MINUTE_MS));
    // A late minute of hour 0 adds into hour 0; a range inside an hour
    // counts the whole hour.
    r.record(&batch(2, 1, 1, vec![rollup(30, "k", "gpt", "p", 32)]))
        .unwrap();
    assert_eq!(r.len(), 4);
    let all = UsageFilter::default();
    let hour0 = r.totals_by(40 * MINUTE_MS, 41 * MINUTE_MS, GroupBy::Key, all);
    assert_eq!(hour0["k"].requests, 1 + 2 + 32);
    // Dropping part of the hours rounds down to a whole hour: 90 minutes
    // drops hour 0 only, and minutes of it sent later are refused.
    let done = r.compact(90 * MINUTE_MS, 0);
    assert_eq!(
        done,
        Compacted {
            removed: 1,
            merged: 0
        }
    );
    assert_eq!(r.compacted_before_ms(), HOUR_MS);
    r.record(&batch(3, 1, 1, vec![rollup(10, "k", "gpt", "p", 64)]))
        .unwrap();
    assert_eq!(r.key_totals_since("k", 0).requests, 4 + 16);
}

#[test]
fn bad_batches_name_the_field() {
    let mut r = Rollups::default();
    let mut b = batch(1, 1, 1, vec![rollup(1, "k", "gpt", "p", 1)]);
    b.rollups[0].key.minute_ms += 1;
    assert!(
        matches!(r.record(&b), Err(ApplyError::Invalid { field, .. }) if field == "rollups[0].minute_ms")
    );
    b.rollups[0].key.minute_ms -= 1;
    b.rollups[0].key.route = "x".repeat(300);
    assert!(
        matches!(r.record(&b), Err(ApplyError::Invalid { field, .. }) if field == "rollups[0].route")
    );
    let big = batch(1, 1, 1, vec![rollup(1, "k", "r", "p", 1); MAX_ROLLUPS + 1]);
    assert!(matches!(r.record(&big), Err(ApplyError::Invalid { field, .. }) if field == "rollups"));
    assert!(r.is_empty());
}

/// A roll-up of one of the first `minutes` minutes.
fn arb_rollup_within(minutes: u64) -> impl Strategy<Value = Rollup> {
    (
        0u64..minutes,
        0usize..3,
        0usize..3,
        0usize..3,
        (0u64..1_000, 0u64..1_000, 0u64..1_000, 0u64..1_000, 0u64..5),
    )
        .prop_map(|(minute, k, r, p, (req, pt, ct, cost, err))| Rollup {
            key: RollupKey {
                minute_ms: minute * MINUTE_MS,
                key_id: ["k1", "k2", "k3"][k].into(),
                route: ["gpt", "claude", "embed"][r].into(),
                provider: ["openai", "anthropic", ""][p].into(),
            },
            totals: Totals {
                requests: req,
                prompt_tokens: pt,
                completion_tokens: ct,
                cost_micro_usd: cost,
                errors: err,
                latency_ms_sum: req * 3,
            },
        })
}

/// Batches from up to three nodes, each numbered 1, 2, … in its own boot.
fn arb_batches() -> impl Strategy<Value = Vec<UsageBatch>> {
    arb_batches_within(30)
}

/// [`arb_batches`] of roll-ups in the first `minutes` minutes.
fn arb_batches_within(minutes: u64) -> impl Strategy<Value = Vec<UsageBatch>> {
    let rollups = prop::collection::vec(arb_rollup_within(minutes), 0..8);
    prop::collection::vec((1u64..4, rollups), 0..12).prop_map(|batches| {
        let mut seq = [0u64; 4];
        batches
            .into_iter()
            .map(|(node, rollups)| {
                seq[node as usize] += 1;
                batch(node, 42, seq[node as usize], rollups)
            })
            .collect()
    })
}

fn sum<'a>(totals: impl IntoIterator<Item = &'a Totals>) -> Totals {
    let mut sum = Totals::default();
    for t in totals {
        sum.add(t);
    }
    sum
}

proptest! {
    #[test]
    fn totals_grouped_any_way_sum_to_what_was_recorded(batches in arb_batches()) {
        let mut r = Rollups::default();
        for b in &batches {
            prop_assert_eq!(r.record(b), Ok(true));
        }
        let recorded = sum(batches.iter().flat_map(|b| b.rollups.iter().map(|r| &r.totals)));
        for group_by in [GroupBy::Key, GroupBy::Route, GroupBy::Provider] {
            let groups = r.totals_by(0, u64::MAX, group_by, UsageFilter::default());
            prop_assert_eq!(sum(groups.values()), recorded);
        }
        // And a filter keeps exactly its part.
        let filter = UsageFilter { key_id: Some("k1"), route: Some("gpt") };
        let part = sum(batches.iter().flat_map(|b| {
            b.rollups
                .iter()
                .filter(|r| r.key.key_id == "k1" && r.key.route == "gpt")
                .map(|r| &r.totals)
        }));
        let groups = r.totals_by(0, u64::MAX, GroupBy::Provider, filter);
        prop_assert_eq!(sum(groups.values()), part);
    }

    #[test]
    fn replaying_batches_changes_nothing(
        batches in arb_batches(),
        replays in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut once = Rollups::default();
        for b in &batches {
            once.record(b).unwrap();
        }
        let mut replayed = once.clone();
        if !batches.is_empty() {
            // The latest batch of a node retried any number of times, and
            // every earlier one too: none counts again.
            for i in replays {
                let b = &batches[i.index(batches.len())];
                prop_assert_eq!(replayed.record(b), Ok(false));
            }
        }
        prop_assert_eq!(replayed, once);
    }

    #[test]
    fn compaction_removes_exactly_what_is_older_than_the_cutoff(
        batches in arb_batches(),
        cutoff_minute in 0u64..35,
    ) {
        let mut r = Rollups::default();
        for b in &batches {
            r.record(b).unwrap();
        }
        let before: Vec<(RollupKey, Totals)> = r.iter().map(|(k, t)| (k.clone(), *t)).collect();
        let cutoff = cutoff_minute * MINUTE_MS;
        let removed = r.compact(cutoff, 0).removed;
        let after: Vec<(RollupKey, Totals)> = r.iter().map(|(k, t)| (k.clone(), *t)).collect();
        let kept: Vec<(RollupKey, Totals)> =
            before.iter().filter(|(k, _)| k.minute_ms >= cutoff).cloned().collect();
        prop_assert_eq!(removed as usize, before.len() - kept.len());
        prop_assert_eq!(after, kept);
    }

    /// However batches and compactions interleave, the roll-ups are what
    /// the batches add up to with each minute in its final period (its
    /// hour before the hourly cutoff), minus the periods before the drop
    /// cutoff; the leader's check finds every compaction with work to do.
    #[test]
    fn compaction_and_coarsening_lose_nothing_they_should_keep(
        steps in prop::collection::vec(
            prop_oneof![
                arb_batches_within(300).prop_map(Step::Batches),
                (0u64..300, 0u64..300).prop_map(|(d, h)| Step::Compact(d * MINUTE_MS, h * MINUTE_MS)),
            ],
            0..10,
        ),
    ) {
        let mut r = Rollups::default();
        let mut recorded = Vec::new();
        let mut seq = [0u64; 4];
        for step in steps {
            match step {
                Step::Batches(batches) => {
                    for mut b in batches {
                        // Numbered on from the earlier steps' batches.
                        seq[b.node as usize] += 1;
                        b.seq = seq[b.node as usize];
                        prop_assert_eq!(r.record(&b), Ok(true));
                        recorded.extend(b.rollups);
                    }
                }
                Step::Compact(drop, hourly) => {
                    let due = r.compaction_due(drop, hourly);
                    let before = r.clone();
                    r.compact(drop, hourly);
                    if due {
                        prop_assert_ne!(&r, &before);
                    } else {
                        prop_assert!(r.iter().eq(before.iter()), "a compaction with work was not due");
                    }
                }
            }
        }
        let (dropped, hourly) = (r.compacted_before_ms(), r.hourly_before_ms());
        prop_assert_eq!(hourly % HOUR_MS, 0);
        prop_assert!(dropped >= hourly || dropped % HOUR_MS == 0);
        let mut model: BTreeMap<RollupKey, Totals> = BTreeMap::new();
        for rollup in recorded.iter().filter(|r| !r.totals.is_zero()) {
            let minute = rollup.key.minute_ms;
            let period = if minute < hourly { hour_of(minute) } else { minute };
            if period >= dropped {
                let key = RollupKey { minute_ms: period, ..rollup.key.clone() };
                model.entry(key).or_default().add(&rollup.totals);
            }
        }
        let held: BTreeMap<RollupKey, Totals> = r.iter().map(|(k, t)| (k.clone(), *t)).collect();
        prop_assert_eq!(held, model);
    }
}

#[derive(Debug, Clone)]
enum Step {
    Batches(Vec<UsageBatch>),
    /// Drop and hourly cutoffs.
    Compact(u64, u64),
}
