//! Micro-benchmarks of the replicated domain: applying a command to a state
//! that already holds many keys, and encoding/decoding that state (the
//! snapshot path).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sluice_core::key::{format_secret, SECRET_RANDOM_LEN};
use sluice_core::{Command, Proposal, State, VirtualKey};

fn key(i: u32) -> VirtualKey {
    let mut random = [0u8; SECRET_RANDOM_LEN];
    random[..4].copy_from_slice(&i.to_be_bytes());
    VirtualKey::new("bench".into(), &format_secret(&random), 0)
}

fn state_with_keys(n: u32) -> State {
    let mut state = State::default();
    for i in 0..n {
        state
            .apply(&Proposal {
                at_ms: 1,
                command: Command::CreateKey(key(i)),
            })
            .expect("distinct keys apply");
    }
    state
}

fn bench(c: &mut Criterion) {
    let state = state_with_keys(10_000);
    let revoke = Proposal {
        at_ms: 2,
        command: Command::RevokeKey { id: key(5_000).id },
    };
    c.bench_function("apply RevokeKey, 10k keys", |b| {
        b.iter_batched_ref(
            || state.clone(),
            |s| s.apply(&revoke),
            BatchSize::LargeInput,
        )
    });
    let create = Proposal {
        at_ms: 2,
        command: Command::CreateKey(key(20_000)),
    };
    c.bench_function("apply CreateKey, 10k keys", |b| {
        b.iter_batched_ref(
            || state.clone(),
            |s| s.apply(&create),
            BatchSize::LargeInput,
        )
    });
    let bytes = state.encode().expect("encodes");
    // What the state machine does for every applied batch of entries (a
    // lease round's `GrantLeases` included): readers keep the version they
    // loaded, so the next one starts as a clone, then the change.
    c.bench_function("clone state then apply RevokeKey, 10k keys", |b| {
        b.iter(|| {
            let mut next = state.clone();
            next.apply(&revoke)
        })
    });
    c.bench_function("encode state, 10k keys", |b| b.iter(|| state.encode()));
    c.bench_function("decode state, 10k keys", |b| {
        b.iter(|| State::decode(&bytes))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
