//! Micro-benchmarks of global quotas: a node's admission against its lease
//! pools (the per-request cost on the proxy's hot path) and the ledger's
//! grant of one node's batched lease request (the per-tick cost in
//! `State::apply`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sluice_core::quota::{Ledger, Limit, OnNoQuorum, QuotaPolicy, Scope, Unit, Want};
use sluice_quota::{admit, Pool};

fn bench(c: &mut Criterion) {
    let pool = Pool::new();
    pool.add_lease(u64::MAX / 4, u64::MAX);
    c.bench_function("quota: take and put back one unit", |b| {
        b.iter(|| {
            assert!(pool.try_take(1, 0));
            pool.put_back(1);
        })
    });
    let (requests, tokens, route) = (Pool::new(), Pool::new(), Pool::new());
    for p in [&requests, &tokens, &route] {
        p.add_lease(u64::MAX / 4, u64::MAX);
    }
    c.bench_function("quota: admit against 3 pools, then settle tokens", |b| {
        b.iter(|| {
            admit(&[(&requests, 1), (&tokens, 900), (&route, 1)], 0).unwrap();
            tokens.settle(900, 400);
        })
    });

    let keys = 1_000;
    let mut ledger = Ledger::default();
    let policy = QuotaPolicy {
        limits: vec![
            Limit::per_minute(Unit::Requests, 600),
            Limit::per_minute(Unit::Tokens, 100_000),
        ],
        on_no_quorum: OnNoQuorum::Deny,
    };
    let scopes: Vec<Scope> = (0..keys)
        .map(|i| Scope::Key {
            key_id: format!("key_{i:016x}"),
        })
        .collect();
    for scope in &scopes {
        ledger.set_policy(scope, Some(&policy), 0).unwrap();
    }
    let wants: Vec<Want> = scopes
        .iter()
        .take(100)
        .flat_map(|scope| {
            [Unit::Requests, Unit::Tokens].map(|unit| Want {
                scope: scope.clone(),
                unit,
                amount: 10,
                admitted_total: 0,
            })
        })
        .collect();
    let mut at = 0;
    c.bench_function("ledger: grant a batch of 200 wants (1000 keys)", |b| {
        b.iter_batched_ref(
            || ledger.clone(),
            |ledger| {
                at += 1;
                ledger.grant(1, &wants, 1_000, at).unwrap()
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
