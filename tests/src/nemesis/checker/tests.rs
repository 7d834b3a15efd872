use super::*;
use crate::nemesis::history::Op;

fn record(object: &str, op: Op, outcome: Outcome, phase: usize) -> Record {
    let now = Instant::now();
    Record {
        object: object.into(),
        kind: Kind::Route,
        op,
        node: 1,
        phase,
        invoked: now,
        completed: now,
        outcome,
    }
}

fn view(routes: &[(&str, u32)]) -> Objects {
    Objects {
        routes: routes
            .iter()
            .map(|(n, w)| (n.to_string(), vec![*w]))
            .collect(),
        keys: BTreeMap::new(),
    }
}

fn verdict(records: &[Record], nodes: &[Objects]) -> Verdict {
    let views: BTreeMap<u64, Objects> = nodes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                i as u64 + 1,
                Objects {
                    routes: o.routes.clone(),
                    keys: o.keys.clone(),
                },
            )
        })
        .collect();
    let mut v = Verdict {
        phases: vec![PhaseCounts::default(); 2],
        ..Verdict::default()
    };
    judge_objects(records, &views, &mut v);
    v
}

#[test]
fn the_last_acknowledged_value_must_be_on_every_node() {
    let history = [
        record("a", Op::Create { value: 5 }, Outcome::Acked, 0),
        record("a", Op::Update { value: 7 }, Outcome::Acked, 1),
    ];
    assert!(verdict(&history, &[view(&[("a", 7)]), view(&[("a", 7)])])
        .lost
        .is_empty());
    let v = verdict(&history, &[view(&[("a", 7)]), view(&[("a", 5)])]);
    assert_eq!(v.lost.len(), 1, "{v:?}");
    assert_eq!(v.phases[1].lost, 1);
    let v = verdict(&history, &[view(&[("a", 7)]), view(&[])]);
    assert_eq!(v.lost.len(), 1);
}

#[test]
fn an_ambiguous_last_write_may_or_may_not_have_taken_effect() {
    let history = [
        record("a", Op::Create { value: 5 }, Outcome::Acked, 0),
        record("a", Op::Delete, Outcome::Ambiguous("504".into()), 1),
    ];
    assert!(verdict(&history, &[view(&[("a", 5)]), view(&[])])
        .lost
        .is_empty());
    let v = verdict(&history, &[view(&[("a", 6)])]);
    assert_eq!(v.lost.len(), 1);
    let never_acked = [record(
        "b",
        Op::Create { value: 3 },
        Outcome::Ambiguous("0".into()),
        0,
    )];
    assert!(verdict(&never_acked, &[view(&[("b", 3)]), view(&[])])
        .anomalies
        .is_empty());
    let v = verdict(&never_acked, &[view(&[("b", 4)])]);
    assert_eq!((v.lost.len(), v.anomalies.len()), (0, 1));
}

#[test]
fn an_acknowledged_delete_must_stay_deleted_and_duplicates_are_found() {
    let history = [
        record("a", Op::Create { value: 5 }, Outcome::Acked, 0),
        record("a", Op::Delete, Outcome::Acked, 0),
    ];
    assert_eq!(verdict(&history, &[view(&[("a", 5)])]).lost.len(), 1);
    let twice = Objects {
        routes: BTreeMap::from([("a".to_string(), vec![5, 5])]),
        keys: BTreeMap::new(),
    };
    let created = [record("a", Op::Create { value: 5 }, Outcome::Acked, 0)];
    assert_eq!(verdict(&created, &[twice]).anomalies.len(), 1);
}

#[test]
fn not_found_for_an_acknowledged_object_is_a_lost_write() {
    let history = [
        record("a", Op::Create { value: 5 }, Outcome::Acked, 0),
        record(
            "a",
            Op::Update { value: 6 },
            Outcome::Failed("404 Not Found".into()),
            1,
        ),
    ];
    let v = verdict(&history, &[view(&[("a", 5)])]);
    assert_eq!(v.lost.len(), 1, "{v:?}");
}

#[test]
fn unavailable_time_sums_the_long_gaps_only() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let acks = [at(500), at(900), at(3_900), at(4_000)];
    // 0→0.5 short, 0.9→3.9 long (3 s), 4.0→6.0 long (2 s).
    assert_eq!(unavailable(&acks, t0, at(6_000)), Duration::from_secs(5));
}
