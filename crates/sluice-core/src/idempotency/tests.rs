use super::*;
use crate::state::tests::{arb_proposals, provider, route};
use crate::{DataKey, Proposal, State};
use proptest::prelude::*;

fn keyed(key: &str, step: u32, request: u8, command: Command) -> Command {
    Command::Idempotent(Box::new(Idempotent {
        key: key.into(),
        step,
        fingerprint: [request; 32],
        sealed_reply: None,
        command,
    }))
}

fn at(at_ms: u64, command: Command) -> Proposal {
    Proposal { at_ms, command }
}

/// A command that always applies and changes nothing but the roll-ups.
fn noop() -> Command {
    Command::CompactUsage {
        before_ms: 0,
        hourly_before_ms: 0,
    }
}

#[test]
fn a_keyed_write_sent_again_is_applied_once_and_answers_the_first_result() {
    let mut s = State::default();
    let create = keyed("k1", 0, 1, Command::CreateProvider(provider("p")));
    let first = s.apply(&at(10, create.clone())).expect("applies");
    let Applied::Provider(stored) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(stored.created_at_ms, 10);
    let after_first = s.clone();

    // Without the key the same create is a conflict: it would run again.
    let again = s.apply(&at(20, create)).expect("replayed, not refused");
    let Applied::Replayed(replay) = again else {
        panic!("{again:?}")
    };
    assert_eq!(replay.applied, first, "the same result as the first time");
    assert_eq!(replay.at_ms, 10);
    assert_eq!(s.provider("p"), after_first.provider("p"));
    assert_eq!(s.replays().len(), 1);
    assert!(matches!(
        s.apply(&at(30, Command::CreateProvider(provider("p")))),
        Err(ApplyError::Conflict { .. })
    ));
}

#[test]
fn a_key_reused_for_another_request_is_refused_and_changes_nothing() {
    let mut s = State::default();
    s.apply(&at(
        1,
        keyed("k", 0, 1, Command::CreateProvider(provider("p"))),
    ))
    .unwrap();
    let before = s.clone();
    let err = s
        .apply(&at(
            2,
            keyed("k", 0, 2, Command::CreateProvider(provider("q"))),
        ))
        .unwrap_err();
    assert_eq!(err, ApplyError::IdempotencyKeyReused { key: "k".into() });
    assert!(err.to_string().contains("different request"), "{err}");
    assert_eq!(s, before);
    assert!(s.provider("q").is_none());
}

#[test]
fn a_refused_write_leaves_no_record_so_sending_it_again_runs_it_again() {
    let mut s = State::default();
    let create_route = keyed("k", 0, 1, Command::CreateRoute(route("r", "p", &[])));
    let refused = s.apply(&at(1, create_route.clone())).unwrap_err();
    assert!(matches!(refused, ApplyError::Invalid { .. }), "{refused:?}");
    assert!(s.replays().is_empty());
    s.apply(&at(2, Command::CreateProvider(provider("p"))))
        .unwrap();
    let applied = s.apply(&at(3, create_route)).unwrap();
    assert!(matches!(applied, Applied::Route(_)), "{applied:?}");
}

#[test]
fn steps_of_one_request_are_recorded_apart() {
    let mut s = State::default();
    s.apply(&at(
        1,
        keyed("k", 0, 1, Command::CreateProvider(provider("p"))),
    ))
    .unwrap();
    let second = s
        .apply(&at(
            2,
            keyed("k", 1, 1, Command::CreateRoute(route("r", "p", &[]))),
        ))
        .unwrap();
    assert!(matches!(second, Applied::Route(_)), "{second:?}");
    let replayed = s
        .apply(&at(
            3,
            keyed("k", 1, 1, Command::CreateRoute(route("r", "p", &[]))),
        ))
        .unwrap();
    assert!(
        matches!(&replayed, Applied::Replayed(r) if r.applied == second),
        "{replayed:?}"
    );
    assert_eq!(s.replays().len(), 2);
}

#[test]
fn records_are_forgotten_after_the_window_by_command_time() {
    let mut s = State::default();
    let create = keyed("k", 0, 1, Command::CreateProvider(provider("p")));
    s.apply(&at(1_000, create.clone())).unwrap();
    let last_moment = 1_000 + WINDOW_MS - 1;
    assert!(matches!(
        s.apply(&at(last_moment, create.clone())),
        Ok(Applied::Replayed(_))
    ));
    // Any command past the window forgets it.
    s.apply(&at(1_000 + WINDOW_MS, noop())).unwrap();
    assert!(s.replays().is_empty());
    // Sent now, the create runs again (and meets the provider it made).
    assert!(matches!(
        s.apply(&at(1_000 + WINDOW_MS + 1, create)),
        Err(ApplyError::Conflict { .. })
    ));
}

#[test]
fn a_record_past_the_window_is_not_answered_even_before_it_is_dropped() {
    let mut s = State::default();
    let create = keyed("k", 0, 1, Command::CreateProvider(provider("p")));
    s.apply(&at(0, create.clone())).unwrap();
    assert_eq!(s.replays().len(), 1, "nothing has expired it yet");
    assert!(matches!(
        s.apply(&at(WINDOW_MS, create)),
        Err(ApplyError::Conflict { .. })
    ));
}

#[test]
fn at_most_max_records_are_kept_and_the_oldest_goes_first() {
    let mut s = State::default();
    for i in 0..=MAX_RECORDS as u64 {
        s.apply(&at(i, keyed(&format!("k{i}"), 0, 1, noop())))
            .unwrap();
    }
    assert_eq!(s.replays().len(), MAX_RECORDS);
    let now = MAX_RECORDS as u64 + 1;
    assert!(s.replays().find("k0", 0, now).is_none(), "oldest dropped");
    assert!(s.replays().find("k1", 0, now).is_some());
    assert!(s
        .replays()
        .find(&format!("k{MAX_RECORDS}"), 0, now)
        .is_some());
}

#[test]
fn records_survive_a_snapshot_with_their_order_of_age() {
    let mut s = State::default();
    let data_key = DataKey::from_bytes([7; 32]);
    let reply = data_key.seal("reply", "sk-sluice-secret", [3; 12]);
    s.apply(&at(
        5,
        Command::Idempotent(Box::new(Idempotent {
            key: "k-old".into(),
            step: 0,
            fingerprint: [1; 32],
            sealed_reply: Some(reply.clone()),
            command: Command::CreateProvider(provider("p")),
        })),
    ))
    .unwrap();
    s.apply(&at(9, keyed("k-new", 0, 1, noop()))).unwrap();
    let mut back = State::decode(&s.encode().unwrap()).unwrap();
    assert_eq!(back, s, "records and their age index come back");
    let replayed = back
        .apply(&at(
            10,
            keyed("k-old", 0, 1, Command::CreateProvider(provider("p"))),
        ))
        .unwrap();
    let Applied::Replayed(replay) = replayed else {
        panic!("{replayed:?}")
    };
    assert_eq!(replay.sealed_reply, Some(reply), "the sealed reply is kept");
    // Expiry after decoding drops the older one first.
    back.apply(&at(5 + WINDOW_MS, noop())).unwrap();
    assert!(back.replays().find("k-old", 0, 5 + WINDOW_MS).is_none());
    assert!(back.replays().find("k-new", 0, 5 + WINDOW_MS).is_some());
}

#[test]
fn a_restore_keeps_the_records() {
    let mut s = State::default();
    s.apply(&at(
        1,
        keyed("k", 0, 1, Command::CreateProvider(provider("p"))),
    ))
    .unwrap();
    let restore = Command::RestoreConfig {
        config: Box::new(State::default().config_snapshot()),
        force: true,
    };
    s.apply(&at(2, keyed("r", 0, 1, restore.clone()))).unwrap();
    assert!(s.provider("p").is_none(), "the restore replaced the config");
    assert_eq!(s.replays().len(), 2);
    assert!(matches!(
        s.apply(&at(3, keyed("r", 0, 1, restore))),
        Ok(Applied::Replayed(_))
    ));
}

#[test]
fn malformed_keys_and_nesting_are_refused() {
    let mut s = State::default();
    for bad in ["", "tab\tkey", "é", &"x".repeat(MAX_KEY_LEN + 1)] {
        let err = s.apply(&at(1, keyed(bad, 0, 1, noop()))).unwrap_err();
        assert!(
            matches!(&err, ApplyError::Invalid { field, .. } if field == "idempotency_key"),
            "{bad:?}: {err:?}"
        );
    }
    s.apply(&at(1, keyed(&"x".repeat(MAX_KEY_LEN), 0, 1, noop())))
        .expect("255 characters are fine");
    let nested = keyed("outer", 0, 1, keyed("inner", 0, 1, noop()));
    assert!(matches!(
        s.apply(&at(2, nested)),
        Err(ApplyError::Invalid { .. })
    ));
    assert_eq!(s.replays().len(), 1);
}

/// Every keyed proposal of `proposals` is proposed twice in a row, as a
/// client's retry would put it in the log.
fn with_retries(proposals: &[Proposal]) -> Vec<Proposal> {
    proposals
        .iter()
        .flat_map(|p| {
            let copies = if matches!(p.command, Command::Idempotent(_)) {
                2
            } else {
                1
            };
            std::iter::repeat_n(p.clone(), copies)
        })
        .collect()
}

proptest! {
    /// Sending a keyed write twice leaves the state exactly as sending it
    /// once, and the second answer is the first one (or the same refusal).
    #[test]
    fn a_retried_keyed_write_is_applied_once(proposals in arb_proposals()) {
        let mut once = State::default();
        let mut twice = State::default();
        let doubled = with_retries(&proposals);
        let mut doubled = doubled.iter();
        for p in &proposals {
            let expected = once.apply(p);
            let first = twice.apply(doubled.next().unwrap());
            prop_assert_eq!(&first, &expected);
            if matches!(p.command, Command::Idempotent(_)) {
                let second = twice.apply(doubled.next().unwrap());
                match (&first, second) {
                    (Ok(Applied::Replayed(a)), Ok(Applied::Replayed(b))) => prop_assert_eq!(a, &b),
                    (Ok(applied), Ok(Applied::Replayed(b))) => prop_assert_eq!(applied, &b.applied),
                    (Err(refused), second) => prop_assert_eq!(Err(refused.clone()), second),
                    (first, second) => prop_assert!(false, "{:?} then {:?}", first, second),
                }
            }
        }
        prop_assert_eq!(&once, &twice);
    }
}
