use crate::backup::ConfigSnapshot;
use crate::key::{format_secret, SECRET_RANDOM_LEN};
use crate::quota::{Limit, OnNoQuorum, QuotaPolicy, Scope, Unit, Want};
use crate::state::tests::route;
use crate::{
    AdminToken, Applied, ApplyError, Command, DataKey, Proposal, Provider, State, VirtualKey,
};
use proptest::prelude::*;

fn apply(state: &mut State, at_ms: u64, command: Command) -> Result<Applied, ApplyError> {
    state.apply(&Proposal { at_ms, command })
}

/// A provider with a sealed credential (the restore checks carry it over).
fn provider(name: &str) -> Provider {
    Provider {
        api_key: Some(DataKey::from_bytes([1; 32]).seal(name, "sk-up", [2; 12])),
        ..crate::state::tests::provider(name)
    }
}

fn key(seed: u8, routes: &[&str]) -> VirtualKey {
    let mut key = VirtualKey::new(
        format!("k{seed}"),
        &format_secret(&[seed; SECRET_RANDOM_LEN]),
        0,
    );
    key.allowed_routes = routes.iter().map(|s| s.to_string()).collect();
    key
}

fn policy(rpm: u64) -> QuotaPolicy {
    QuotaPolicy {
        limits: vec![Limit::per_minute(Unit::Requests, rpm)],
        on_no_quorum: OnNoQuorum::Deny,
        ..QuotaPolicy::default()
    }
}

/// A state with one of everything, a revoked key, and leases taken.
fn populated() -> State {
    let mut s = State::default();
    apply(&mut s, 10, Command::CreateProvider(provider("p"))).unwrap();
    apply(&mut s, 11, Command::CreateRoute(route("b", "p", &[]))).unwrap();
    apply(&mut s, 12, Command::CreateRoute(route("a", "p", &["b"]))).unwrap();
    let k1 = key(1, &["a"]);
    let k2 = key(2, &[]);
    apply(&mut s, 13, Command::CreateKey(k1.clone())).unwrap();
    apply(&mut s, 14, Command::CreateKey(k2.clone())).unwrap();
    apply(&mut s, 15, Command::RevokeKey { id: k2.id.clone() }).unwrap();
    let token = AdminToken::new(
        "ops".into(),
        "sluice-admin-xyz",
        crate::admin_token::Role::Admin,
        0,
    );
    apply(&mut s, 16, Command::CreateAdminToken(token)).unwrap();
    let scope = Scope::KeyRoute {
        key_id: k1.id.clone(),
        route: "a".into(),
    };
    apply(
        &mut s,
        17,
        Command::SetQuota {
            scope: scope.clone(),
            policy: Some(policy(60)),
        },
    )
    .unwrap();
    apply(
        &mut s,
        18,
        Command::GrantLeases {
            node: 1,
            ttl_ms: 1000,
            wants: vec![Want {
                scope,
                unit: Unit::Requests,
                amount: 50,
                admitted_total: 0,
                standing: 0,
                standing_wanted: 10,
                seq: 1,
                holding: 0,
            }],
        },
    )
    .unwrap();
    s
}

fn restore(config: ConfigSnapshot, force: bool) -> Command {
    Command::RestoreConfig {
        config: Box::new(config),
        force,
    }
}

#[test]
fn restored_state_has_the_same_configuration_and_full_buckets() {
    let source = populated();
    let snapshot = source.config_snapshot();
    let mut target = State::default();
    let applied = apply(&mut target, 1_000, restore(snapshot.clone(), false)).unwrap();
    let Applied::Restored(counts) = applied else {
        panic!("{applied:?}");
    };
    assert_eq!(counts, source.config_counts());
    assert_eq!(target.config_snapshot(), snapshot);
    // Timestamps and the revocation come from the backup, not the restore.
    assert_eq!(target.route("a").unwrap().created_at_ms, 12);
    let revoked = target.keys().find(|k| k.name == "k2").unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(15));
    // The proxy's look-up by hash works on the restored keys.
    let k1 = key(1, &[]);
    assert_eq!(target.key_by_hash(&k1.hash).unwrap().id, k1.id);
    // The lease and the standing reserve taken in the source are not carried
    // over: the bucket is full.
    let scope = Scope::KeyRoute {
        key_id: k1.id,
        route: "a".into(),
    };
    assert_eq!(
        target
            .ledger()
            .bucket(&scope, Unit::Requests)
            .unwrap()
            .level,
        60
    );
    let taken = source.ledger().bucket(&scope, Unit::Requests).unwrap();
    assert_eq!(
        (taken.level, taken.standing()),
        (0, 10),
        "50 leased, 10 kept"
    );
}

#[test]
fn a_configured_cluster_is_replaced_only_with_force() {
    let mut target = State::default();
    apply(&mut target, 1, Command::CreateProvider(provider("other"))).unwrap();
    let before = target.clone();
    let snapshot = populated().config_snapshot();
    let err = apply(&mut target, 2, restore(snapshot.clone(), false)).unwrap_err();
    assert!(matches!(err, ApplyError::Conflict { .. }), "{err:?}");
    assert_eq!(target, before);
    apply(&mut target, 3, restore(snapshot.clone(), true)).unwrap();
    assert_eq!(target.config_snapshot(), snapshot);
    assert!(target.provider("other").is_none());
}

#[test]
fn an_inconsistent_snapshot_is_refused_naming_the_entry_and_changes_nothing() {
    let mut snapshot = populated().config_snapshot();
    snapshot.routes[0].deployments[0].provider = "gone".into();
    let mut target = populated();
    let before = target.clone();
    let err = apply(&mut target, 99, restore(snapshot, true)).unwrap_err();
    assert_eq!(
        err,
        ApplyError::invalid(
            "routes[0].deployments[0].provider",
            "provider \"gone\" does not exist"
        )
    );
    assert_eq!(target, before);

    let mut snapshot = populated().config_snapshot();
    snapshot.keys.push(snapshot.keys[0].clone());
    let err = apply(&mut State::default(), 1, restore(snapshot, false)).unwrap_err();
    assert!(
        matches!(&err, ApplyError::Invalid { field, .. } if field == "keys[2].id"),
        "{err:?}"
    );

    let mut snapshot = populated().config_snapshot();
    snapshot.quotas[0].0 = Scope::Key {
        key_id: "key_0000000000000000".into(),
    };
    let err = apply(&mut State::default(), 1, restore(snapshot, false)).unwrap_err();
    assert!(
        matches!(&err, ApplyError::Invalid { field, .. } if field == "quotas[0].scope.key_id"),
        "{err:?}"
    );
}

proptest! {
    /// Whatever subset of providers, routes and keys a cluster holds, its
    /// snapshot restored into an empty state is the same configuration.
    #[test]
    fn snapshot_restore_round_trips(
        providers in 1usize..4,
        routes in prop::collection::vec((0usize..4, any::<bool>()), 0..5),
        keys in prop::collection::vec((1u8..200, any::<bool>(), any::<bool>()), 0..6),
    ) {
        let mut s = State::default();
        let mut t = 1;
        for i in 0..providers {
            apply(&mut s, t, Command::CreateProvider(provider(&format!("p{i}")))).unwrap();
            t += 1;
        }
        let mut made: Vec<String> = Vec::new();
        for (i, (p, fallback)) in routes.iter().enumerate() {
            let name = format!("r{i}");
            let fallbacks: Vec<&str> = made.last().filter(|_| *fallback).map(|f| f.as_str()).into_iter().collect();
            apply(&mut s, t, Command::CreateRoute(route(&name, &format!("p{}", p % providers), &fallbacks))).unwrap();
            made.push(name);
            t += 1;
        }
        for (seed, restricted, quota) in keys {
            let allowed: Vec<&str> = made.first().filter(|_| restricted).map(|r| r.as_str()).into_iter().collect();
            let k = key(seed, &allowed);
            if apply(&mut s, t, Command::CreateKey(k.clone())).is_ok() && quota {
                apply(&mut s, t, Command::SetQuota { scope: Scope::Key { key_id: k.id }, policy: Some(policy(u64::from(seed))) }).unwrap();
            }
            t += 1;
        }
        let snapshot = s.config_snapshot();
        let mut target = State::default();
        apply(&mut target, t, restore(snapshot.clone(), false)).unwrap();
        prop_assert_eq!(target.config_snapshot(), snapshot);
        prop_assert_eq!(target.config_counts(), s.config_counts());
    }
}
