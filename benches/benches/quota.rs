//! Micro-benchmarks of global quotas: a node's admission against its lease
//! pools (the per-request cost on the proxy's hot path), the proxy's whole
//! quota work for one request, the proxy's other per-request bookkeeping
//! (metrics and the usage meter, on one thread and on two at once), and the
//! ledger's grant of one node's batched lease request (the per-tick cost in
//! `State::apply`).

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::HeaderMap;
use sluice_core::quota::{Ledger, Limit, OnNoQuorum, QuotaPolicy, Scope, Unit, Want};
use sluice_core::{Pricing, Route};
use sluice_providers::{ClientRequest, Dialect, Endpoint, TokenUsage};
use sluice_proxy::metrics::AttemptOutcome;
use sluice_proxy::quota::{self as proxy_quota, Charge, Settlement};
use sluice_proxy::usage::{CallUsage, UsageMeter, UsageShard};
use sluice_proxy::Metrics;
use sluice_quota::{admit, Pool, QuotaConfig, Quotas, Source};

fn bench(c: &mut Criterion) {
    let pool = Pool::new();
    pool.add_lease(u64::MAX / 4, u64::MAX);
    c.bench_function("quota: take and put back one unit", |b| {
        b.iter(|| {
            let source = pool.try_take(1, 0).expect("taken");
            pool.put_back(1, source);
        })
    });
    let (requests, tokens, route) = (Pool::new(), Pool::new(), Pool::new());
    for p in [&requests, &tokens, &route] {
        p.add_lease(u64::MAX / 4, u64::MAX);
    }
    c.bench_function("quota: admit against 3 pools, then settle tokens", |b| {
        b.iter(|| {
            admit(&[(&requests, 1), (&tokens, 900), (&route, 1)], 0).unwrap();
            tokens.settle(900, 400, Source::Lease);
        })
    });

    per_request(c);
    bookkeeping(c);

    let (ledger, scopes) = ledger_of_keys(600, 100_000);
    let wants: Vec<Want> = scopes
        .iter()
        .take(100)
        .flat_map(|scope| {
            [Unit::Requests, Unit::Tokens].map(|unit| Want {
                scope: scope.clone(),
                unit,
                amount: 10,
                admitted_total: 0,
                holding: 20,
                standing: 0,
                seq: at_seq(),
                standing_wanted: 0,
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

/// A report number, fresh for every want.
fn at_seq() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A ledger of 1 000 keys, each with `rpm` and `tpm`; and their scopes.
fn ledger_of_keys(rpm: u64, tpm: u64) -> (Ledger, Vec<Scope>) {
    let mut ledger = Ledger::default();
    let policy = QuotaPolicy {
        limits: vec![
            Limit::per_minute(Unit::Requests, rpm),
            Limit::per_minute(Unit::Tokens, tpm),
        ],
        on_no_quorum: OnNoQuorum::Deny,
        ..QuotaPolicy::default()
    };
    let scopes: Vec<Scope> = (0..1_000)
        .map(|i| Scope::Key {
            key_id: format!("key_{i:016x}"),
        })
        .collect();
    for scope in &scopes {
        ledger.set_policy(scope, Some(&policy), 0).unwrap();
    }
    (ledger, scopes)
}

/// What the proxy does for one request of a key with `rpm` and `tpm`
/// (the load bench's quota), in a node holding 1 000 keys with policies:
/// find the key's plan, estimate the request's tokens (tiktoken on the
/// prompt), admit it against both limits, write the six rate-limit headers,
/// and settle the reservation at the answer's usage.
fn per_request(c: &mut Criterion) {
    let (ledger, _) = ledger_of_keys(1_000_000_000, 1_000_000_000);
    let key_id = "key_00000000000001f4";
    let quotas = Arc::new(Quotas::new(QuotaConfig::default()));
    let plan = quotas.plan(&ledger, key_id).expect("the key has a policy");
    for (_, planned) in plan.on("mock-gpt") {
        quotas
            .pool(&planned.scope, planned.limit.unit)
            .add_lease(u64::MAX / 4, u64::MAX);
    }
    let body = br#"{"model":"mock-gpt","messages":[{"role":"user","content":"hello"}]}"#;
    let request = ClientRequest::parse(Endpoint::ChatCompletions, body, &HeaderMap::new())
        .expect("a valid request");
    let pricing = Pricing {
        prompt_micro_usd_per_mtok: 150_000,
        completion_micro_usd_per_mtok: 600_000,
    };
    let usage = TokenUsage {
        prompt_tokens: 9,
        completion_tokens: 12,
    };
    proxy_quota::warm_up();
    let one_request = |request: &ClientRequest| {
        let plan = quotas.plan(&ledger, key_id).expect("planned");
        let cost = proxy_quota::estimate(
            request,
            plan.counts_tokens("mock-gpt"),
            &pricing,
            1024,
            plan.completion_estimate(),
        );
        // What `Quotas::admit` does when it need not wait.
        let admission = quotas
            .check(&plan, "mock-gpt", cost, 1, &ledger)
            .expect("admitted");
        let mut headers = HeaderMap::with_capacity(8);
        proxy_quota::headers(Dialect::OpenAi, &admission.standings, 1, &mut headers);
        Charge::new(admission.reservation, pricing, cost).finish(Settlement::Answered(Some(usage)));
        headers
    };
    c.bench_function(
        "proxy: one request's quota work (rpm + tpm), prompt seen before",
        |b| b.iter(|| one_request(&request)),
    );
    let mut n = 0u64;
    c.bench_function(
        "proxy: one request's quota work (rpm + tpm), prompt never seen",
        |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let body = format!(
                        r#"{{"model":"mock-gpt","messages":[{{"role":"user","content":"hello {n}"}}]}}"#
                    );
                    ClientRequest::parse(Endpoint::ChatCompletions, body.as_bytes(), &HeaderMap::new())
                        .expect("a valid request")
                },
                |request| one_request(&request),
                BatchSize::SmallInput,
            )
        },
    );
}

/// What the proxy records for every answered request besides the quota:
/// its metrics (in flight, counts, latencies, tokens, cost) and its entry in
/// the usage meter. Alone, then on two threads at once (as two workers do),
/// which shows what shared counters cost when both write them.
fn bookkeeping(c: &mut Criterion) {
    let metrics = Metrics::default();
    let meter = Arc::new(UsageMeter::new(2));
    let route = Route {
        name: "mock-gpt".into(),
        deployments: Vec::new(),
        fallbacks: Vec::new(),
        pricing: Pricing {
            prompt_micro_usd_per_mtok: 150_000,
            completion_micro_usd_per_mtok: 600_000,
        },
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    let one_request = |shard: &Arc<UsageShard>| {
        let usage = TokenUsage {
            prompt_tokens: 9,
            completion_tokens: 12,
        };
        let started = Instant::now();
        let mut in_flight = metrics.start("chat/completions", started);
        let mut call = CallUsage::start(started);
        in_flight.set_route(&route);
        call.identify("key_00000000000001f4", &route.name, route.pricing);
        in_flight.set_deployment("mock", "gpt-4o-mini");
        call.set_provider("mock");
        metrics.upstream_attempt("mock", AttemptOutcome::Ok);
        in_flight.first_byte(&metrics, 200);
        in_flight.finish(&metrics, 200, Some(usage));
        call.finish(shard, false, Some(usage), 1_800_000_000_000);
    };
    let shard = meter.claim_shard();
    c.bench_function("proxy: one request's metrics and usage, one thread", |b| {
        b.iter(|| one_request(&shard))
    });
    let other = meter.claim_shard();
    c.bench_function(
        "proxy: one request's metrics and usage, two threads at once",
        |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    s.spawn(|| (0..iters).for_each(|_| one_request(&other)));
                    (0..iters).for_each(|_| one_request(&shard));
                });
                start.elapsed()
            })
        },
    );
    meter.drain();
}

criterion_group!(benches, bench);
criterion_main!(benches);
