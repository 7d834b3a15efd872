use super::*;
use crate::key::{format_secret, SECRET_RANDOM_LEN};
use crate::{DataKey, Deployment, Pricing, ProviderKind, Timeouts};
use proptest::prelude::*;

pub(crate) fn provider(name: &str) -> Provider {
    Provider {
        name: name.into(),
        kind: ProviderKind::OpenAi,
        base_url: "http://127.0.0.1:9/v1".into(),
        api_key: None,
        headers: Default::default(),
        secret_headers: Default::default(),
        timeouts: Timeouts::default(),
        azure: None,
        bedrock: None,
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

pub(crate) fn route(name: &str, provider: &str, fallbacks: &[&str]) -> Route {
    Route {
        name: name.into(),
        deployments: vec![Deployment {
            provider: provider.into(),
            model: "m".into(),
            weight: 1,
        }],
        fallbacks: fallbacks.iter().map(|s| s.to_string()).collect(),
        pricing: Pricing::default(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

fn key(seed: u8) -> VirtualKey {
    VirtualKey::new("k".into(), &format_secret(&[seed; SECRET_RANDOM_LEN]), 0)
}

fn at(at_ms: u64, command: Command) -> Proposal {
    Proposal { at_ms, command }
}

#[test]
fn create_stamps_time_from_the_proposal() {
    let mut s = State::default();
    let Applied::Provider(p) = s
        .apply(&at(42, Command::CreateProvider(provider("p"))))
        .unwrap()
    else {
        panic!("expected provider");
    };
    assert_eq!((p.created_at_ms, p.updated_at_ms), (42, 42));
    let Applied::Provider(p) = s
        .apply(&at(
            50,
            Command::UpdateProvider {
                provider: provider("p"),
                keep_api_key: false,
                keep_secret_headers: false,
            },
        ))
        .unwrap()
    else {
        panic!("expected provider");
    };
    assert_eq!((p.created_at_ms, p.updated_at_ms), (42, 50));
    assert_eq!(s.last_at_ms(), 50);
}

#[test]
fn references_must_exist_and_cannot_dangle() {
    let mut s = State::default();
    let err = s
        .apply(&at(1, Command::CreateRoute(route("r", "p", &[]))))
        .unwrap_err();
    assert!(
        matches!(err, ApplyError::Invalid { ref field, .. } if field == "deployments[0].provider")
    );
    s.apply(&at(1, Command::CreateProvider(provider("p"))))
        .unwrap();
    s.apply(&at(2, Command::CreateRoute(route("a", "p", &[]))))
        .unwrap();
    s.apply(&at(3, Command::CreateRoute(route("b", "p", &["a"]))))
        .unwrap();
    assert!(matches!(
        s.apply(&at(4, Command::DeleteProvider { name: "p".into() })),
        Err(ApplyError::Conflict { .. })
    ));
    assert!(matches!(
        s.apply(&at(4, Command::DeleteRoute { name: "a".into() })),
        Err(ApplyError::Conflict { .. })
    ));
    s.apply(&at(5, Command::DeleteRoute { name: "b".into() }))
        .unwrap();
    s.apply(&at(6, Command::DeleteRoute { name: "a".into() }))
        .unwrap();
    s.apply(&at(7, Command::DeleteProvider { name: "p".into() }))
        .unwrap();
    assert_eq!(s.routes().len() + s.providers().len(), 0);
}

#[test]
fn keys_are_found_by_hash_until_deleted_and_revocation_sticks() {
    let mut s = State::default();
    let k = key(1);
    s.apply(&at(1, Command::CreateKey(k.clone()))).unwrap();
    assert_eq!(
        s.key_by_hash(&k.hash).map(|k| k.id.as_str()),
        Some(k.id.as_str())
    );
    assert!(matches!(
        s.apply(&at(2, Command::CreateKey(k.clone()))),
        Err(ApplyError::Conflict { .. })
    ));
    s.apply(&at(3, Command::RevokeKey { id: k.id.clone() }))
        .unwrap();
    s.apply(&at(
        4,
        Command::SetKeyEnabled {
            id: k.id.clone(),
            enabled: true,
        },
    ))
    .unwrap();
    assert!(s.key(&k.id).unwrap().check_usable(5).is_err());
    s.apply(&at(5, Command::DeleteKey { id: k.id.clone() }))
        .unwrap();
    assert!(s.key_by_hash(&k.hash).is_none());
}

#[test]
fn decode_rebuilds_the_hash_index() {
    let mut s = State::default();
    let k = key(2);
    s.apply(&at(1, Command::CreateKey(k.clone()))).unwrap();
    let back = State::decode(&s.encode().unwrap()).unwrap();
    assert_eq!(back, s);
    assert!(back.key_by_hash(&k.hash).is_some());
}

#[test]
fn sealed_provider_secret_is_not_in_clear_in_the_snapshot() {
    let data_key = DataKey::from_bytes([4; 32]);
    let mut p = provider("p");
    p.api_key = Some(data_key.seal("p", "sk-upstream-very-secret", [1; 12]));
    let mut s = State::default();
    s.apply(&at(1, Command::CreateProvider(p))).unwrap();
    let bytes = s.encode().unwrap();
    assert!(!bytes.windows(11).any(|w| w == b"very-secret"));
}

// ---- properties ----

const NAMES: [&str; 3] = ["a", "b", "c"];

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NAMES.to_vec()).prop_map(str::to_string),
        // Occasionally an invalid one.
        Just(String::new()),
        Just("bad name".to_string()),
    ]
}

fn arb_provider() -> impl Strategy<Value = Provider> {
    (arb_name(), any::<bool>(), 0u64..3).prop_map(|(name, anthropic, t)| Provider {
        kind: if anthropic {
            ProviderKind::Anthropic
        } else {
            ProviderKind::OpenAi
        },
        timeouts: Timeouts {
            total_ms: t * 1000,
            ..Timeouts::default()
        },
        ..provider(&name)
    })
}

fn arb_route() -> impl Strategy<Value = Route> {
    (
        arb_name(),
        arb_name(),
        prop::collection::vec(arb_name(), 0..3),
        0u32..3,
        any::<u64>(),
    )
        .prop_map(|(name, provider, fallbacks, weight, price)| {
            let mut r = route(&name, &provider, &[]);
            r.fallbacks = fallbacks;
            r.deployments[0].weight = weight;
            r.pricing.prompt_micro_usd_per_mtok = price;
            r
        })
}

/// The subject `n` of issuer `corp`, on template key `seed`.
fn subject(n: u8, seed: u8) -> crate::KeySubject {
    crate::KeySubject {
        issuer: "corp".into(),
        subject: format!("user-{n}"),
        template: key(seed).id,
    }
}

/// A key with a secret, or a subject's key (whatever its template).
fn arb_key_id() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0u8..4).prop_map(|seed| key(seed).id),
        1 => (0u8..3).prop_map(|n| subject(n, 0).key_id()),
    ]
}

fn arb_plain_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        arb_provider().prop_map(Command::CreateProvider),
        (arb_provider(), any::<bool>()).prop_map(|(provider, keep_api_key)| {
            Command::UpdateProvider {
                provider,
                keep_api_key,
                keep_secret_headers: false,
            }
        }),
        arb_name().prop_map(|name| Command::DeleteProvider { name }),
        arb_route().prop_map(Command::CreateRoute),
        arb_route().prop_map(Command::UpdateRoute),
        arb_name().prop_map(|name| Command::DeleteRoute { name }),
        (
            0u8..4,
            prop::collection::vec(arb_name(), 0..2),
            prop::option::of(0u64..2000)
        )
            .prop_map(|(seed, allowed_routes, expires_at_ms)| {
                let mut k = key(seed);
                k.allowed_routes = allowed_routes;
                k.expires_at_ms = expires_at_ms;
                Command::CreateKey(k)
            }),
        (arb_key_id(), any::<bool>())
            .prop_map(|(id, enabled)| Command::SetKeyEnabled { id, enabled }),
        arb_key_id().prop_map(|id| Command::RevokeKey { id }),
        arb_key_id().prop_map(|id| Command::DeleteKey { id }),
        (0u8..3, 0u8..5).prop_map(|(n, seed)| Command::RegisterSubject(subject(n, seed))),
        (
            arb_key_id(),
            prop::option::of(arb_name()),
            prop::option::of(1u64..100)
        )
            .prop_map(|(key_id, route, capacity)| {
                use crate::quota::*;
                let scope = match route {
                    Some(route) => Scope::KeyRoute { key_id, route },
                    None => Scope::Key { key_id },
                };
                Command::SetQuota {
                    scope,
                    policy: capacity.map(|n| QuotaPolicy {
                        limits: vec![Limit::per_minute(Unit::Requests, n)],
                        on_no_quorum: OnNoQuorum::Deny,
                        reserve: Default::default(),
                    }),
                }
            }),
        (1u64..4, arb_key_id(), 0u64..50, any::<bool>()).prop_map(
            |(node, key_id, amount, give)| {
                use crate::quota::*;
                let scope = Scope::Key { key_id };
                if give {
                    Command::ReturnLeases {
                        node,
                        batch: amount,
                        returns: vec![Return {
                            scope,
                            unit: Unit::Requests,
                            amount,
                            standing: 0,
                        }],
                    }
                } else {
                    Command::GrantLeases {
                        node,
                        ttl_ms: 1_000,
                        wants: vec![Want {
                            scope,
                            unit: Unit::Requests,
                            amount,
                            admitted_total: 0,
                            standing: 0,
                            standing_wanted: 0,
                            seq: 1,
                            holding: 0,
                        }],
                    }
                }
            }
        ),
        (1u64..4, 0u64..2, 1u64..4, arb_key_id(), 0u64..6, 0u64..100).prop_map(
            |(node, boot, seq, key_id, minute, n)| {
                use crate::usage::*;
                Command::RecordUsage(UsageBatch {
                    node,
                    boot,
                    seq,
                    rollups: vec![Rollup {
                        key: RollupKey {
                            minute_ms: minute * MINUTE_MS,
                            key_id,
                            route: "r".into(),
                            provider: "p".into(),
                        },
                        totals: Totals {
                            requests: 1,
                            prompt_tokens: n,
                            ..Totals::default()
                        },
                    }],
                })
            }
        ),
        (0u64..6, 0u64..4).prop_map(|(minute, hour)| Command::CompactUsage {
            before_ms: minute * crate::usage::MINUTE_MS,
            hourly_before_ms: hour * crate::usage::HOUR_MS,
        }),
    ]
}

/// A plain command, or one wrapped as a keyed write (few keys, steps and
/// requests, so keys are reused for the same request and for others).
pub(crate) fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        3 => arb_plain_command(),
        2 => (0u8..3, 0u32..2, 0u8..2, arb_plain_command()).prop_map(
            |(key, step, request, command)| {
                Command::Idempotent(Box::new(crate::idempotency::Idempotent {
                    key: format!("key-{key}"),
                    step,
                    fingerprint: [request; 32],
                    sealed_reply: None,
                    command,
                }))
            }
        ),
    ]
}

pub(crate) fn arb_proposals() -> impl Strategy<Value = Vec<Proposal>> {
    prop::collection::vec((0u64..1000, arb_command()), 0..40).prop_map(|cmds| {
        let mut t = 0;
        cmds.into_iter()
            .map(|(dt, command)| {
                t += dt;
                Proposal { at_ms: t, command }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn apply_is_deterministic(proposals in arb_proposals()) {
        let (mut a, mut b) = (State::default(), State::default());
        for p in &proposals {
            prop_assert_eq!(a.apply(p), b.apply(p));
        }
        prop_assert_eq!(a.encode().unwrap(), b.encode().unwrap());
    }

    #[test]
    fn invalid_commands_never_change_the_state(proposals in arb_proposals()) {
        let mut s = State::default();
        for p in &proposals {
            let before = s.clone();
            if s.apply(p).is_err() {
                prop_assert_eq!(&s, &before);
            }
        }
    }

    #[test]
    fn snapshot_round_trips(proposals in arb_proposals()) {
        let mut s = State::default();
        for p in &proposals {
            let _ = s.apply(p);
        }
        let bytes = s.encode().unwrap();
        let back = State::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(back.encode().unwrap(), bytes);
    }

    /// The digest tells states apart exactly as equality does, across
    /// every prefix of a history, and survives a snapshot round trip (a
    /// node restored from a snapshot must report the digest of one that
    /// applied the log).
    #[test]
    fn digest_is_equal_exactly_when_states_are(proposals in arb_proposals()) {
        let mut s = State::default();
        let mut seen = vec![(s.clone(), s.digest().unwrap())];
        for p in &proposals {
            let _ = s.apply(p);
            let back = State::decode(&s.encode().unwrap()).unwrap();
            prop_assert_eq!(back.digest().unwrap(), s.digest().unwrap());
            seen.push((s.clone(), s.digest().unwrap()));
        }
        for (a, da) in &seen {
            for (b, db) in &seen {
                prop_assert_eq!(a == b, da == db);
            }
        }
    }

    #[test]
    fn references_never_dangle(proposals in arb_proposals()) {
        let mut s = State::default();
        for p in &proposals {
            let _ = s.apply(p);
            for r in s.routes() {
                for d in &r.deployments {
                    prop_assert!(s.provider(&d.provider).is_some());
                }
                for f in &r.fallbacks {
                    prop_assert!(s.route(f).is_some());
                }
            }
            for (scope, _) in s.ledger().policies() {
                prop_assert!(s.key(scope.key_id()).is_some());
                if let crate::quota::Scope::KeyRoute { route, .. } = scope {
                    prop_assert!(s.route(route).is_some());
                }
            }
        }
    }
}

proptest! {
    /// A subject key's template exists and is a key with a secret, and the
    /// subject key has exactly its template's quota policies, whatever was
    /// set, registered or deleted in between.
    #[test]
    fn subject_keys_mirror_their_template(proposals in arb_proposals()) {
        let mut s = State::default();
        for p in &proposals {
            let _ = s.apply(p);
            for k in s.keys() {
                let Some(subject) = &k.subject else { continue };
                let template = s.key(&subject.template);
                prop_assert!(template.is_some_and(|t| t.subject.is_none()));
                prop_assert!(s.key_by_hash(&k.hash).is_none());
                let of = |id: &str| -> Vec<(crate::quota::Scope, crate::quota::QuotaPolicy)> {
                    s.ledger()
                        .policies()
                        .filter(|(scope, _)| scope.key_id() == id)
                        .map(|(scope, p)| (scope.with_key(String::new()), p.clone()))
                        .collect()
                };
                prop_assert_eq!(of(&k.id), of(&subject.template));
            }
        }
    }
}

#[test]
fn a_subject_key_is_made_once_with_its_template_and_follows_it() {
    use crate::quota::*;
    let policy = |n| QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Requests, n)],
        on_no_quorum: OnNoQuorum::Deny,
        reserve: Default::default(),
    };
    let mut s = State::default();
    s.apply(&at(1, Command::CreateProvider(provider("p"))))
        .unwrap();
    s.apply(&at(1, Command::CreateRoute(route("r", "p", &[]))))
        .unwrap();
    let mut template = key(1);
    template.allowed_routes = vec!["r".into()];
    s.apply(&at(
        1,
        Command::CreateKeyWithQuota {
            key: template.clone(),
            policy: policy(5),
        },
    ))
    .unwrap();
    let alice = subject(0, 1);
    let Applied::Key(made) = s
        .apply(&at(2, Command::RegisterSubject(alice.clone())))
        .unwrap()
    else {
        panic!("a key")
    };
    assert_eq!(made.id, alice.key_id());
    assert_eq!(made.allowed_routes, vec!["r".to_string()]);
    assert_eq!(made.created_at_ms, 2);
    let theirs = Scope::Key {
        key_id: made.id.clone(),
    };
    assert_eq!(s.ledger().policy(&theirs), Some(&policy(5)));

    // Proposed again (another node's first request): the same key.
    let Applied::Key(again) = s
        .apply(&at(3, Command::RegisterSubject(alice.clone())))
        .unwrap()
    else {
        panic!("a key")
    };
    assert_eq!(again, made);

    // The template's quota changes: so does the subject's.
    let scope = Scope::Key {
        key_id: template.id.clone(),
    };
    s.apply(&at(
        4,
        Command::SetQuota {
            scope: scope.clone(),
            policy: Some(policy(9)),
        },
    ))
    .unwrap();
    assert_eq!(s.ledger().policy(&theirs), Some(&policy(9)));
    let on_route = Scope::KeyRoute {
        key_id: template.id.clone(),
        route: "r".into(),
    };
    s.apply(&at(
        4,
        Command::SetQuota {
            scope: on_route,
            policy: Some(policy(2)),
        },
    ))
    .unwrap();
    assert_eq!(
        s.ledger().policy(&Scope::KeyRoute {
            key_id: made.id.clone(),
            route: "r".into()
        }),
        Some(&policy(2))
    );

    // Its own quota cannot be set; it is not a secret's key; a key with a
    // subject cannot be created by hand.
    let refused = s
        .apply(&at(
            5,
            Command::SetQuota {
                scope: theirs.clone(),
                policy: None,
            },
        ))
        .unwrap_err();
    assert!(refused.to_string().contains(&template.id), "{refused}");
    assert!(s.key_by_hash(&made.hash).is_none());
    assert!(s.apply(&at(5, Command::CreateKey(made.clone()))).is_err());
    // A subject key is no template; an unknown template is refused.
    let nested = crate::KeySubject {
        template: made.id.clone(),
        ..subject(1, 1)
    };
    assert!(s.apply(&at(5, Command::RegisterSubject(nested))).is_err());
    assert!(s
        .apply(&at(5, Command::RegisterSubject(subject(1, 9))))
        .is_err());

    // The template deleted: its subject keys and their quotas go too.
    s.apply(&at(
        6,
        Command::DeleteKey {
            id: template.id.clone(),
        },
    ))
    .unwrap();
    assert!(s.key(&made.id).is_none());
    assert_eq!(s.ledger().policies().count(), 0);
}

#[test]
fn update_can_keep_or_replace_the_stored_credential() {
    let data_key = DataKey::from_bytes([4; 32]);
    let mut s = State::default();
    let mut p = provider("p");
    p.api_key = Some(data_key.seal("p", "first", [1; 12]));
    s.apply(&at(1, Command::CreateProvider(p))).unwrap();
    let update = |keep_api_key| Command::UpdateProvider {
        provider: provider("p"),
        keep_api_key,
        keep_secret_headers: false,
    };
    s.apply(&at(2, update(true))).unwrap();
    let kept = s.provider("p").unwrap().api_key.as_ref().unwrap();
    assert_eq!(data_key.open("p", kept).unwrap().expose(), "first");
    s.apply(&at(3, update(false))).unwrap();
    assert!(s.provider("p").unwrap().api_key.is_none());
}
