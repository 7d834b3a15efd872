use super::*;
use crate::idempotency::Idempotent;
use crate::quota::{Limit, Unit};
use crate::state::tests::{provider, route};
use crate::{Command, DataKey, Proposal, State};
use proptest::prelude::*;

fn actor(id: &str) -> Actor {
    Actor {
        token_id: id.into(),
        token_name: format!("{id}-name"),
        role: Role::Admin,
        address: "127.0.0.1:5000".into(),
    }
}

fn audited(at_ms: u64, by: &str, command: Command) -> Proposal {
    Proposal {
        at_ms,
        command: Command::Audited(Box::new(Audited {
            actor: actor(by),
            command,
        })),
    }
}

fn entries(state: &State) -> Vec<&AuditEntry> {
    state.audit().query(&AuditQuery::default(), usize::MAX)
}

#[test]
fn a_write_is_recorded_with_its_actor_and_the_object_before_and_after() {
    let mut s = State::default();
    s.apply(&audited(10, "t1", Command::CreateProvider(provider("p"))))
        .unwrap();
    let mut changed = provider("p");
    changed.base_url = "http://127.0.0.1:10/v1".into();
    s.apply(&audited(
        20,
        "t2",
        Command::UpdateProvider {
            provider: changed,
            keep_api_key: false,
            keep_secret_headers: false,
        },
    ))
    .unwrap();
    s.apply(&audited(
        30,
        "t1",
        Command::DeleteProvider { name: "p".into() },
    ))
    .unwrap();
    let log = entries(&s);
    assert_eq!(log.len(), 3);
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3],
        "numbered in order"
    );
    assert_eq!(log[0].action, "create_provider");
    assert_eq!(log[0].target, "provider:p");
    assert!(log[0].before.is_none());
    assert_eq!(log[1].actor, actor("t2"));
    assert_eq!(log[1].at_ms, 20);
    let (Some(Subject::Provider(before)), Some(Subject::Provider(after))) =
        (&log[1].before, &log[1].after)
    else {
        panic!("an update has both sides: {:?}", log[1]);
    };
    assert_eq!(before.base_url, "http://127.0.0.1:9/v1");
    assert_eq!(after.base_url, "http://127.0.0.1:10/v1");
    assert!(log[2].after.is_none(), "a deletion leaves nothing after");
}

#[test]
fn a_refused_write_and_a_plain_command_leave_no_entry() {
    let mut s = State::default();
    s.apply(&audited(10, "t", Command::CreateProvider(provider("p"))))
        .unwrap();
    // Refused: it exists.
    assert!(s
        .apply(&audited(11, "t", Command::CreateProvider(provider("p"))))
        .is_err());
    // Not through the audit wrapper (a node's own command).
    s.apply(&Proposal {
        at_ms: 12,
        command: Command::CreateRoute(route("r", "p", &[])),
    })
    .unwrap();
    assert_eq!(entries(&s).len(), 1);
    // Quota rounds are not admin writes.
    let refused = s.apply(&audited(
        13,
        "t",
        Command::CompactUsage {
            before_ms: 0,
            hourly_before_ms: 0,
        },
    ));
    assert!(refused.is_err());
    assert_eq!(entries(&s).len(), 1);
}

#[test]
fn sealed_credentials_are_kept_as_their_nonce_only() {
    let key = DataKey::from_bytes([7; 32]);
    let mut p = provider("p");
    p.api_key = Some(key.seal("p", "sk-very-secret", [1; 12]));
    p.secret_headers.insert(
        "x-extra".into(),
        key.seal("p/x-extra", "another-secret", [2; 12]),
    );
    let mut s = State::default();
    s.apply(&audited(10, "t", Command::CreateProvider(p)))
        .unwrap();
    let entry = entries(&s)[0];
    let Some(Subject::Provider(kept)) = &entry.after else {
        panic!("a provider after");
    };
    let sealed = kept.api_key.as_ref().expect("the credential's trace");
    assert!(sealed.ciphertext.is_empty());
    assert_eq!(sealed.nonce, [1; 12]);
    assert!(kept.secret_headers["x-extra"].ciphertext.is_empty());
    // The live provider keeps its credential; the state holds its
    // ciphertext once (the live provider's), never in the log.
    let live = s.providers().next().unwrap().api_key.clone().unwrap();
    assert!(!live.ciphertext.is_empty());
    let bytes = crate::codec::encode(&s).unwrap();
    let copies = bytes
        .windows(live.ciphertext.len())
        .filter(|w| *w == live.ciphertext.as_slice())
        .count();
    assert_eq!(copies, 1);
}

#[test]
fn a_replayed_keyed_write_is_recorded_once() {
    let keyed = |at_ms| {
        audited(
            at_ms,
            "t",
            Command::Idempotent(Box::new(Idempotent {
                key: "k-1".into(),
                step: 0,
                fingerprint: [3; 32],
                sealed_reply: None,
                command: Command::CreateProvider(provider("p")),
            })),
        )
    };
    let mut s = State::default();
    s.apply(&keyed(10)).unwrap();
    assert!(matches!(s.apply(&keyed(11)).unwrap(), Applied::Replayed(_)));
    assert_eq!(entries(&s).len(), 1);
    assert_eq!(entries(&s)[0].target, "provider:p");
}

#[test]
fn a_quota_names_its_scope() {
    let mut s = State::default();
    let secret = crate::key::format_secret(&[5; crate::key::SECRET_RANDOM_LEN]);
    let key = crate::VirtualKey::new("k".into(), &secret, 0);
    let scope = Scope::Key {
        key_id: key.id.clone(),
    };
    s.apply(&Proposal {
        at_ms: 5,
        command: Command::CreateKey(key.clone()),
    })
    .unwrap();
    let policy = QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Requests, 60)],
        ..QuotaPolicy::default()
    };
    s.apply(&audited(
        10,
        "t",
        Command::SetQuota {
            scope: scope.clone(),
            policy: Some(policy.clone()),
        },
    ))
    .unwrap();
    let e = entries(&s)[0];
    assert_eq!(e.target, format!("quota:key:{}", key.id));
    assert_eq!(
        e.before,
        Some(Subject::Quota {
            scope: scope.clone(),
            policy: None
        })
    );
    assert_eq!(
        e.after,
        Some(Subject::Quota {
            scope,
            policy: Some(policy)
        })
    );
}

#[test]
fn queries_filter_and_page() {
    let mut s = State::default();
    for i in 0..10u64 {
        let by = if i % 2 == 0 { "even" } else { "odd" };
        s.apply(&audited(
            100 + i,
            by,
            Command::CreateProvider(provider(&format!("p{i}"))),
        ))
        .unwrap();
    }
    let log = s.audit();
    let odd = AuditQuery {
        token_id: Some("odd".into()),
        ..AuditQuery::default()
    };
    let page = log.query(&odd, 2);
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 4]);
    let next = AuditQuery {
        after_seq: Some(4),
        ..odd.clone()
    };
    assert_eq!(
        log.query(&next, 10)
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [6, 8, 10]
    );
    let window = AuditQuery {
        since_ms: Some(103),
        until_ms: Some(105),
        ..AuditQuery::default()
    };
    assert_eq!(log.query(&window, 10).len(), 2);
    let prefix = AuditQuery {
        target: Some("provider:".into()),
        ..AuditQuery::default()
    };
    assert_eq!(log.query(&prefix, 100).len(), 10);
    let exact = AuditQuery {
        target: Some("provider:p3".into()),
        action: Some("create_provider".into()),
        ..AuditQuery::default()
    };
    assert_eq!(log.query(&exact, 100)[0].seq, 4);
}

proptest! {
    /// Whatever the writes and compactions: entries stay in order of their
    /// sequence numbers, numbers are never reused, compaction drops exactly
    /// the entries older than its cut, and the log survives a snapshot.
    #[test]
    fn the_log_is_ordered_bounded_and_compacts_by_time(
        steps in proptest::collection::vec((0u64..50, any::<bool>()), 1..60),
    ) {
        let mut s = State::default();
        let mut now = 0;
        let mut last_seq = 0;
        for (i, (gap, compact)) in steps.iter().enumerate() {
            now += gap;
            if *compact {
                let cut = now.saturating_sub(40);
                s.apply(&Proposal { at_ms: now, command: Command::CompactAudit { before_ms: cut } }).unwrap();
                prop_assert!(entries(&s).iter().all(|e| e.at_ms >= cut));
            } else {
                s.apply(&audited(now, "t", Command::CreateProvider(provider(&format!("p{i}"))))).unwrap();
                let newest = entries(&s).last().map(|e| e.seq).unwrap();
                prop_assert!(newest > last_seq);
                last_seq = newest;
            }
            let seqs: Vec<u64> = entries(&s).iter().map(|e| e.seq).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(s.audit().len() <= MAX_ENTRIES);
        }
        let back: State = crate::codec::decode(&crate::codec::encode(&s).unwrap()).unwrap();
        prop_assert_eq!(back.audit(), s.audit());
    }
}

#[test]
fn a_cluster_change_is_noted_only_with_its_actor() {
    let note = ClusterChange {
        action: ClusterAction::AddLearner,
        node: 4,
        addresses: Some([
            "127.0.0.1:7400".into(),
            "http://127.0.0.1:7401".into(),
            "http://127.0.0.1:7402".into(),
        ]),
    };
    let mut s = State::default();
    assert!(s
        .apply(&Proposal {
            at_ms: 1,
            command: Command::NoteClusterChange(note.clone()),
        })
        .is_err());
    s.apply(&audited(2, "ops", Command::NoteClusterChange(note.clone())))
        .unwrap();
    let entry = entries(&s)[0];
    assert_eq!(entry.action, "add_learner");
    assert_eq!(entry.target, "node:4");
    assert_eq!(entry.after, Some(Subject::Cluster(note)));
}

#[test]
fn a_key_made_with_its_quota_is_one_change_and_never_without_it() {
    let mut s = State::default();
    let secret = crate::key::format_secret(&[6; crate::key::SECRET_RANDOM_LEN]);
    let key = crate::VirtualKey::new("k".into(), &secret, 0);
    let policy = QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Requests, 60)],
        ..QuotaPolicy::default()
    };
    // A bad policy creates nothing.
    let bad = QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Requests, 0)],
        ..QuotaPolicy::default()
    };
    assert!(s
        .apply(&audited(
            1,
            "t",
            Command::CreateKeyWithQuota {
                key: key.clone(),
                policy: bad
            }
        ))
        .is_err());
    assert_eq!(s.keys().count(), 0);
    s.apply(&audited(
        2,
        "t",
        Command::CreateKeyWithQuota {
            key: key.clone(),
            policy: policy.clone(),
        },
    ))
    .unwrap();
    let scope = Scope::Key {
        key_id: key.id.clone(),
    };
    assert_eq!(s.ledger().policy(&scope), Some(&policy));
    assert_eq!(entries(&s).len(), 1);
    assert_eq!(entries(&s)[0].action, "create_key");
    assert!(matches!(
        &entries(&s)[0].after,
        Some(Subject::KeyWithQuota(k, p)) if k.id == key.id && *p == policy
    ));
}
