//! What a quota costs a request's latency, on one running cluster: the
//! never-refusing quota (`rpm` and `tpm` of 10⁹) put on the bench key and
//! taken off again between runs, ABBA, so that only the policy differs.
//!
//! * **Fixed rates** (`SLUICE_BENCH_RATES`, default `1000,5000` req/s,
//!   `SLUICE_BENCH_SECS` measured after a 1 s warm-up): p50, p99, p99.9 of
//!   each run, from each request's scheduled time.
//! * **Bursts after idle**: the key idle for `SLUICE_BENCH_IDLE_MS`
//!   (default 3 000, longer than a lease) and then `SLUICE_BENCH_BURST`
//!   requests (default 2 000) at 5 000 req/s. Every request of the burst is
//!   measured: the first ones are those a node without a standing reserve
//!   would hold until its first lease round. The proxies'
//!   `sluice_quota_waits_total` is read around each burst: a request the
//!   node's reserve or lease could serve never waits.
//!
//! `SLUICE_BENCH_NODES` (default `1,3`) picks the cluster sizes and
//! `SLUICE_BENCH_QUOTA_PAIRS` (default 4) the pairs per measurement. Needs
//! a release build: `cargo build --release -p sluice` first (or
//! `SLUICE_BIN`).

use sluice_benches::cluster::{self, KeyQuota, Started};
use sluice_benches::load::{run_fixed_rate, Endpoint, FixedRate, Report, Workload};
use sluice_benches::mock::start_mock;
use sluice_benches::{env_count, env_list};
use sluice_e2e::dataplane::metric_value;
use sluice_e2e::ProxyClient;
use std::time::Duration;

const BODY: &str = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hello"}]}"#;
const BURST_RATE: u64 = 5_000;

struct Settings {
    nodes: Vec<u64>,
    rates: Vec<u64>,
    secs: u64,
    pairs: usize,
    idle: Duration,
    burst: u64,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            nodes: env_list("SLUICE_BENCH_NODES", &[1, 3]),
            rates: env_list("SLUICE_BENCH_RATES", &[1000, 5000]),
            secs: env_count("SLUICE_BENCH_SECS", 5) as u64,
            pairs: env_count("SLUICE_BENCH_QUOTA_PAIRS", 4),
            idle: Duration::from_millis(env_count("SLUICE_BENCH_IDLE_MS", 3_000) as u64),
            burst: env_count("SLUICE_BENCH_BURST", 2_000) as u64,
        }
    }
}

/// One side of a pair.
#[derive(Clone, Copy)]
struct Side {
    report: Report,
    /// Requests that waited for a lease round (`sluice_quota_waits_total`).
    waited: f64,
}

/// What one measurement (a rate, or the bursts) gave over its pairs.
struct Row {
    what: String,
    off: Vec<Side>,
    on: Vec<Side>,
}

fn main() {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the generator's runtime");
    let dir = tempfile::Builder::new()
        .prefix("sluice-bench-quota-latency-")
        .tempdir()
        .expect("creating a temporary directory");
    let (_mock, mock_addr) = start_mock(dir.path());
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut tables = Vec::new();
    for &nodes in &settings.nodes {
        eprintln!("== {nodes} node(s)");
        let started = cluster::start(nodes, mock_addr, KeyQuota::None);
        let load = Workload {
            endpoints: started.endpoints.clone(),
            path: "/v1/chat/completions".into(),
            body: BODY.into(),
            request_timeout: Duration::from_secs(5),
        };
        let mut rows = Vec::new();
        for &rate in &settings.rates {
            let plan = FixedRate {
                rate,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(settings.secs),
                drain: Duration::from_secs(5),
                workers: 128,
            };
            rows.push(pairs(&settings, &started, format!("{rate} req/s"), || {
                runtime.block_on(run_fixed_rate(&load, plan)).report()
            }));
        }
        let burst = FixedRate {
            rate: BURST_RATE,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(settings.burst * 1000 / BURST_RATE),
            drain: Duration::from_secs(5),
            workers: 128,
        };
        let what = format!(
            "{} requests at {BURST_RATE}/s after {} ms idle",
            settings.burst,
            settings.idle.as_millis()
        );
        rows.push(pairs(&settings, &started, what, || {
            // The condition measured: no request on the key for longer
            // than a lease lives (its leases expire, its demand decays).
            std::thread::sleep(settings.idle);
            runtime.block_on(run_fixed_rate(&load, burst)).report()
        }));
        started.set_quota(KeyQuota::None);
        tables.push((nodes, rows));
    }
    println!("\nload average at start: {}", load_average.trim());
    for (nodes, rows) in &tables {
        print_table(*nodes, rows);
    }
}

/// `settings.pairs` pairs of `run`, quota off and on in ABBA order.
fn pairs(settings: &Settings, started: &Started, what: String, run: impl Fn() -> Report) -> Row {
    let mut row = Row {
        what,
        off: Vec::new(),
        on: Vec::new(),
    };
    let side = |quota: KeyQuota| -> Side {
        started.set_quota(quota);
        let before = waits(started);
        let report = run();
        let waited = waits(started) - before;
        eprintln!(
            "  {} quota {}: p50 {} p99 {} p99.9 {} µs, {} errors, {waited} waited",
            row.what,
            if quota == KeyQuota::None {
                "off"
            } else {
                "on "
            },
            report.p50_us,
            report.p99_us,
            report.p999_us,
            report.errors
        );
        Side { report, waited }
    };
    for i in 0..settings.pairs {
        if i % 2 == 0 {
            row.off.push(side(KeyQuota::None));
            row.on.push(side(KeyQuota::NeverRefusing));
        } else {
            row.on.push(side(KeyQuota::NeverRefusing));
            row.off.push(side(KeyQuota::None));
        }
    }
    row
}

/// Requests every node has held for a lease round so far.
fn waits(started: &Started) -> f64 {
    started
        .endpoints
        .iter()
        .map(|Endpoint { addr, .. }| {
            let text = ProxyClient::new(format!("http://{addr}"), None)
                .get("/metrics")
                .text;
            ["admitted", "refused"]
                .iter()
                .filter_map(|o| metric_value(&text, "sluice_quota_waits_total", &[("outcome", o)]))
                .sum::<f64>()
        })
        .sum()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn print_table(nodes: u64, rows: &[Row]) {
    println!("\n{nodes} node(s), medians of the pairs (µs); on − off per pair, median");
    println!("| load | off p50 | off p99 | off p99.9 | on p50 | on p99 | on p99.9 | Δp99 | errors off/on | waited (on) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let of = |sides: &[Side], f: fn(&Report) -> u64| {
            median(sides.iter().map(|s| f(&s.report)).collect())
        };
        let delta: Vec<i64> = row
            .off
            .iter()
            .zip(&row.on)
            .map(|(off, on)| on.report.p99_us as i64 - off.report.p99_us as i64)
            .collect();
        let mut sorted = delta.clone();
        sorted.sort_unstable();
        let errors = |sides: &[Side]| sides.iter().map(|s| s.report.errors).sum::<u64>();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:+} | {}/{} | {} |",
            row.what,
            of(&row.off, |r| r.p50_us),
            of(&row.off, |r| r.p99_us),
            of(&row.off, |r| r.p999_us),
            of(&row.on, |r| r.p50_us),
            of(&row.on, |r| r.p99_us),
            of(&row.on, |r| r.p999_us),
            sorted.get(sorted.len() / 2).copied().unwrap_or(0),
            errors(&row.off),
            errors(&row.on),
            row.on.iter().map(|s| s.waited).sum::<f64>()
        );
    }
}
