//! The proxy under load. One workload (`POST /v1/chat/completions`, a small
//! non-streaming body) against six targets in turn, every one a real
//! process on this machine:
//!
//! * `direct`: the mock provider (`sluice mock-llm`);
//! * `nginx`: nginx as a plain reverse proxy in front of it (installed with
//!   apt-get when missing and running as root, else skipped);
//! * `sluice-1`: a 1-node Sluice cluster with a provider on the mock, a
//!   route `mock-gpt` and a virtual key;
//! * `sluice-1-quota`: the same with a quota on the key that never refuses
//!   at this load (`rpm` and `tpm` of 10⁹): every request is admitted
//!   against the node's lease pools, its tokens estimated and settled;
//! * `sluice-3`, `sluice-3-quota`: the same two on 3 nodes, requests
//!   round-robin over the nodes.
//!
//! Around every run of a Sluice target the bench reads each node's Raft log
//! index at the edges of the measured window (entries per second: what the
//! lease rounds cost, against their bound of two commands per node per
//! tick) and the proxies' quota counters (admitted, refused, 429 answers).
//!
//! For each: fixed rates (`SLUICE_BENCH_RATES`, default `1000,5000` req/s)
//! for `SLUICE_BENCH_SECS` (default 10) after a 2 s warm-up, latency from
//! each request's scheduled time; then the maximum throughput of
//! `SLUICE_BENCH_CONCURRENCY` (default 64) clients sending back to back.
//! `SLUICE_BENCH_CONNECTIONS` (default 128) is the fixed-rate pool. A target
//! whose first answer is not a 200 is reported as such, without numbers.
//!
//! Prints markdown tables and writes JSON to `<target dir>/bench-load.json`
//! (`SLUICE_BENCH_JSON` to choose). Nothing is pinned to a core: the
//! generator shares the machine with the processes it measures, so the CPU
//! each used is printed beside the figures.

use serde_json::{json, Value};
use sluice_benches::cluster::{
    self, chat_workload, KeyQuota, Nodes, Observed, Started, CHAT_BODY as BODY, CHAT_PATH as PATH,
    QUOTA_TICK_MS,
};
use sluice_benches::host::{load_average, measure_cpu};
use sluice_benches::load::{
    self, probe, run_closed_loop, run_fixed_rate, ClosedLoop, Endpoint, FixedRate, Report, Workload,
};
use sluice_benches::mock::start_mock;
use sluice_benches::nginx::{Nginx, UPSTREAM_KEEPALIVE};
use sluice_benches::{env_count, env_list, write_results};
use sluice_e2e::Deadline;
use std::time::Duration;

/// Threads of the generator's runtime: one per core of the bench machine.
const GENERATOR_THREADS: usize = 2;
/// The `worker_processes` nginx runs with.
const NGINX_WORKERS: &str = "auto";

struct Settings {
    /// `/proc/loadavg` when the bench started: how busy the shared machine was.
    load_average: String,
    rates: Vec<u64>,
    secs: u64,
    warmup: Duration,
    concurrency: usize,
    connections: usize,
    /// Quota on/off pairs on each quota-free cluster (0: none).
    pairs: usize,
    /// Measured seconds of each run of a pair (after a 1 s warm-up).
    pair_secs: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let rates = env_list("SLUICE_BENCH_RATES", &[1000, 5000]);
        Settings {
            load_average: load_average(),
            rates,
            secs: env_count("SLUICE_BENCH_SECS", 10) as u64,
            warmup: Duration::from_secs(2),
            concurrency: env_count("SLUICE_BENCH_CONCURRENCY", 64),
            connections: env_count("SLUICE_BENCH_CONNECTIONS", 128),
            pairs: env_count("SLUICE_BENCH_QUOTA_PAIRS", 4),
            pair_secs: env_count("SLUICE_BENCH_PAIR_SECS", 5) as u64,
        }
    }
}

/// CPU used during one run, in percent of one core (200% is the whole
/// machine): the generator, the mock, and the proxy in between (`None` for
/// `direct`), and everything else the machine ran (on a shared machine,
/// the sign of a disturbed run).
#[derive(Clone, Copy)]
struct Cpu {
    generator: f64,
    mock: f64,
    proxy: Option<f64>,
    /// The machine's busy time (`/proc/stat`: user, nice, system, steal)
    /// minus the three above: other processes, and time the hypervisor
    /// gave to other guests.
    other: f64,
}

/// The processes whose CPU a run reports (each with its descendants).
struct Watched {
    mock: u32,
    proxy: Vec<u32>,
}

struct Run {
    report: Report,
    cpu: Cpu,
    /// Sluice targets: the Raft log's growth and the quota counters.
    observed: Option<Observed>,
}

enum Measured {
    Numbers { fixed: Vec<(u64, Run)>, max: Run },
    Skipped(String),
}

struct TargetResult {
    name: &'static str,
    what: String,
    /// Sluice targets: how many nodes, and whether the key has a quota.
    cluster: Option<(usize, KeyQuota)>,
    measured: Measured,
    /// Quota-free clusters: max throughput with the quota off and on, in
    /// pairs on this same cluster.
    on_off: Vec<OnOff>,
}

/// One pair of closed-loop runs on one cluster: the key without a quota,
/// and with [`KeyQuota::NeverRefusing`]; `on_first` when the quota run
/// came first (pairs alternate, ABBA, so a drift of the machine during the
/// pairs does not favour either side).
struct OnOff {
    off: Run,
    on: Run,
    on_first: bool,
}

impl OnOff {
    fn ratio(&self) -> f64 {
        self.on.report.rate / self.off.report.rate
    }
}

/// The Sluice targets: name, nodes, the quota on the key. Each quota target
/// runs right after the same cluster without one, so the two are compared
/// on a machine in the same state.
const SLUICE_TARGETS: [(&str, u64, KeyQuota); 4] = [
    ("sluice-1", 1, KeyQuota::None),
    ("sluice-1-quota", 1, KeyQuota::NeverRefusing),
    ("sluice-3", 3, KeyQuota::None),
    ("sluice-3-quota", 3, KeyQuota::NeverRefusing),
];

fn main() {
    let settings = Settings::from_env();
    let runtime = load::runtime(GENERATOR_THREADS);
    let dir = tempfile::Builder::new()
        .prefix("sluice-bench-load-")
        .tempdir()
        .expect("creating a temporary directory");
    let (mut mock, mock_addr) = start_mock(dir.path());
    let mut results = Vec::new();
    // `SLUICE_BENCH_TARGETS=sluice-1,nginx` runs only those (e.g. to profile).
    let only = std::env::var("SLUICE_BENCH_TARGETS").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|list| list.split(',').any(|t| t.trim() == name))
    };

    eprintln!("== direct: mock provider on {mock_addr}");
    let direct = chat_workload(vec![Endpoint {
        addr: mock_addr,
        authorization: None,
    }]);
    let watched = |proxy: Vec<u32>| Watched {
        mock: mock.pid(),
        proxy,
    };
    if wanted("direct") {
        let measured = measure(&runtime, &settings, &direct, &watched(vec![]), None, |s| {
            format!("the mock is not serving chat (status {s})")
        });
        results.push(TargetResult {
            name: "direct",
            what: format!("sluice mock-llm on {mock_addr}"),
            cluster: None,
            measured,
            on_off: Vec::new(),
        });
    }

    eprintln!("== nginx");
    let nginx = if wanted("nginx") {
        Nginx::start(dir.path(), &[mock_addr], NGINX_WORKERS).map(Some)
    } else {
        Ok(None)
    };
    let (measured, what) = match nginx {
        Ok(None) => (
            Measured::Skipped("not selected".into()),
            "nginx".to_string(),
        ),
        Ok(Some(mut nginx)) => {
            let load = chat_workload(vec![Endpoint {
                addr: nginx.addr,
                authorization: None,
            }]);
            let pids = watched(vec![nginx.process.pid()]);
            let measured = measure(&runtime, &settings, &load, &pids, None, |s| {
                format!("nginx is not serving chat (status {s})")
            });
            nginx.process.terminate(Duration::from_secs(10));
            let what = format!(
                "{}, worker_processes {NGINX_WORKERS}, upstream keepalive {UPSTREAM_KEEPALIVE}",
                nginx.version
            );
            (measured, what)
        }
        Err(why) => {
            eprintln!("nginx skipped: {why}");
            (Measured::Skipped(why), "nginx".to_string())
        }
    };
    results.push(TargetResult {
        name: "nginx",
        what,
        cluster: None,
        measured,
        on_off: Vec::new(),
    });

    for (name, nodes, quota) in SLUICE_TARGETS {
        if !wanted(name) {
            continue;
        }
        eprintln!("== {name}: {nodes}-node cluster, key quota {quota:?}");
        let started = cluster::start(nodes, mock_addr, quota);
        let cluster = &started.cluster;
        let observe = Nodes::of(cluster);
        let pids = watched(
            cluster
                .ids()
                .iter()
                .filter_map(|id| cluster.pid(*id))
                .collect(),
        );
        let load = chat_workload(started.endpoints.clone());
        // A key or route just written may not have reached every node yet.
        wait_serving(&runtime, &load, Duration::from_secs(10));
        let measured = measure(&runtime, &settings, &load, &pids, Some(&observe), |s| {
            format!("sluice proxy not serving chat yet (status {s})")
        });
        let on_off = match (&measured, quota) {
            (Measured::Numbers { .. }, KeyQuota::None) => {
                on_off_pairs(&runtime, &settings, &load, &started, &pids, &observe)
            }
            _ => Vec::new(),
        };
        let key = match quota {
            KeyQuota::None => "no quota on the key".to_string(),
            KeyQuota::NeverRefusing => format!(
                "key with rpm and tpm {} (never refused here)",
                cluster::NEVER_REFUSING
            ),
        };
        results.push(TargetResult {
            name,
            what: format!(
                "{nodes}-node cluster, release build, provider kind openai on the mock, {key}, \
                 [quotas] tick_ms {QUOTA_TICK_MS}"
            ),
            cluster: Some((observe.count(), quota)),
            measured,
            on_off,
        });
        drop(started);
    }
    mock.terminate(Duration::from_secs(10));

    print_tables(&settings, &results);
    write_json(&settings, &results);
}

/// Probes first: a target that does not answer 200 is skipped with
/// `not_serving(status)`. Else runs every fixed rate, then the closed loop;
/// around each, reads the cluster's `nodes` if it is a Sluice target.
fn measure(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    load: &Workload,
    watched: &Watched,
    nodes: Option<&Nodes>,
    not_serving: impl Fn(String) -> String,
) -> Measured {
    if let Some(status) = first_failure(runtime, load) {
        let why = not_serving(status);
        eprintln!("skipped: {why}");
        return Measured::Skipped(why);
    }
    let duration = Duration::from_secs(settings.secs);
    let observed = |run: &dyn Fn() -> Report| -> Run {
        let Some(nodes) = nodes else {
            return with_cpu(watched, run);
        };
        let (run, observed) = nodes.around(settings.warmup, duration, || with_cpu(watched, run));
        Run {
            observed: Some(observed),
            ..run
        }
    };
    let mut fixed = Vec::new();
    for &rate in &settings.rates {
        let plan = FixedRate {
            rate,
            warmup: settings.warmup,
            duration,
            drain: Duration::from_secs(5),
            workers: settings.connections,
        };
        let run = observed(&|| runtime.block_on(run_fixed_rate(load, plan)).report());
        eprintln!("  {rate} req/s: {}", one_line(&run));
        fixed.push((rate, run));
    }
    let plan = ClosedLoop {
        concurrency: settings.concurrency,
        warmup: settings.warmup,
        duration,
    };
    let max = observed(&|| runtime.block_on(run_closed_loop(load, plan)).report());
    eprintln!(
        "  max, {} clients: {}",
        settings.concurrency,
        one_line(&max)
    );
    Measured::Numbers { fixed, max }
}

/// Quota on against off on one running cluster: `settings.pairs` pairs of
/// closed-loop runs (1 s warm-up, `settings.pair_secs` measured), the
/// policy put on and taken off the same key between runs (ABBA order).
/// Separate clusters differ by more than the quota costs (placement of
/// their processes, the state of the machine minutes apart); here only the
/// policy differs. Leaves the key without a quota.
fn on_off_pairs(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    load: &Workload,
    started: &Started,
    watched: &Watched,
    nodes: &Nodes,
) -> Vec<OnOff> {
    let plan = ClosedLoop {
        concurrency: settings.concurrency,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(settings.pair_secs),
    };
    let run = |quota: KeyQuota| -> Run {
        started.set_quota(quota);
        let (run, observed) = nodes.around(plan.warmup, plan.duration, || {
            with_cpu(watched, || {
                runtime.block_on(run_closed_loop(load, plan)).report()
            })
        });
        let run = Run {
            observed: Some(observed),
            ..run
        };
        let side = match quota {
            KeyQuota::None => "off",
            KeyQuota::NeverRefusing => "on ",
        };
        eprintln!(
            "  quota {side}, {} clients: {}",
            plan.concurrency,
            one_line(&run)
        );
        run
    };
    let mut pairs = Vec::new();
    for i in 0..settings.pairs {
        let on_first = i % 2 == 1;
        let pair = if on_first {
            let on = run(KeyQuota::NeverRefusing);
            let off = run(KeyQuota::None);
            OnOff { off, on, on_first }
        } else {
            let off = run(KeyQuota::None);
            let on = run(KeyQuota::NeverRefusing);
            OnOff { off, on, on_first }
        };
        eprintln!("  pair {}: on / off = {:.3}", i + 1, pair.ratio());
        pairs.push(pair);
    }
    started.set_quota(KeyQuota::None);
    pairs
}

/// The median of the pairs' ratios, and the ratio of their summed rates.
fn on_off_summary(pairs: &[OnOff]) -> Option<(f64, f64)> {
    if pairs.is_empty() {
        return None;
    }
    let median = median(pairs.iter().map(OnOff::ratio).collect())?;
    let on: f64 = pairs.iter().map(|p| p.on.report.rate).sum();
    let off: f64 = pairs.iter().map(|p| p.off.report.rate).sum();
    Some((median, on / off))
}

/// The proxies' CPU time per answered request, in µs (the run's CPU share
/// over its wall time, divided by its rate).
fn proxy_cpu_us(run: &Run) -> Option<f64> {
    match run.cpu.proxy {
        Some(pct) if run.report.rate > 0.0 => Some(pct / 100.0 / run.report.rate * 1e6),
        _ => None,
    }
}

fn proxy_us_per_request(run: &Run) -> String {
    proxy_cpu_us(run).map_or("–".into(), |us| format!("{us:.1}"))
}

/// The median of `values` (`None` when empty).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 0 => Some((values[mid - 1] + values[mid]) / 2.0),
        _ => Some(values[mid]),
    }
}

fn one_line(run: &Run) -> String {
    let r = &run.report;
    let mut line = format!(
        "{:.0} req/s, p50 {} p99 {} max {}, {} errors; cpu generator / mock / proxy / other {}",
        r.rate,
        us(r.p50_us),
        us(r.p99_us),
        us(r.max_us),
        r.errors,
        run.cpu
    );
    if let Some(observed) = &run.observed {
        let nodes: Vec<String> = observed
            .log
            .nodes
            .iter()
            .map(|n| format!("node {} +{} in {:.2} s", n.id, n.entries, n.secs))
            .collect();
        line.push_str(&format!(
            "; raft log {} ({}); quota admitted {}, refused {}, 429 answers {}",
            per_second(observed),
            nodes.join(", "),
            observed.quota.admitted(),
            observed.quota.refused(),
            observed.quota.status_429
        ));
    }
    line
}

/// Raft entries per second over the measured window, as text.
fn per_second(observed: &Observed) -> String {
    observed
        .log
        .per_second()
        .map_or("– entries/s".to_string(), |r| format!("{r:.1} entries/s"))
}

/// The first endpoint's answer that is not a 200, as text.
fn first_failure(runtime: &tokio::runtime::Runtime, load: &Workload) -> Option<String> {
    runtime
        .block_on(probe(load))
        .into_iter()
        .find_map(|answer| match answer {
            Ok(status) if status.as_u16() == 200 => None,
            Ok(status) => Some(status.as_u16().to_string()),
            Err(e) => Some(format!("no answer: {e}")),
        })
}

/// Polls until every endpoint answers 200 or `budget` passes (the caller
/// then reports what it answered).
fn wait_serving(runtime: &tokio::runtime::Runtime, load: &Workload, budget: Duration) {
    let _ = Deadline::after(budget).poll("", || first_failure(runtime, load).is_none());
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0}% / {:.0}% / ", self.generator, self.mock)?;
        match self.proxy {
            Some(proxy) => write!(f, "{proxy:.0}%")?,
            None => write!(f, "–")?,
        }
        write!(f, " / {:.0}%", self.other)
    }
}

fn with_cpu(watched: &Watched, run: impl FnOnce() -> Report) -> Run {
    let groups = [vec![watched.mock], watched.proxy.clone()];
    let (report, cpu) = measure_cpu(&groups, run);
    Run {
        report,
        cpu: Cpu {
            generator: cpu.own,
            mock: cpu.groups[0],
            proxy: (!watched.proxy.is_empty()).then(|| cpu.groups[1]),
            other: cpu.other,
        },
        observed: None,
    }
}

// ----- results ----------------------------------------------------------

fn us(v: u64) -> String {
    if v < 10_000 {
        format!("{v} µs")
    } else {
        format!("{:.1} ms", v as f64 / 1000.0)
    }
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn fixed_at(result: &TargetResult, rate: u64) -> Option<&Report> {
    match &result.measured {
        Measured::Numbers { fixed, .. } => fixed
            .iter()
            .find(|(r, _)| *r == rate)
            .map(|(_, run)| &run.report),
        Measured::Skipped(_) => None,
    }
}

fn max_of(result: &TargetResult) -> Option<&Report> {
    match &result.measured {
        Measured::Numbers { max, .. } => Some(&max.report),
        Measured::Skipped(_) => None,
    }
}

fn print_tables(settings: &Settings, results: &[TargetResult]) {
    println!();
    println!(
        "load: POST {PATH} (non-streaming, {} B body); {} s measured after {} s warm-up; \
         fixed rate over {} connections per endpoint, max throughput with {} clients",
        BODY.len(),
        settings.secs,
        settings.warmup.as_secs(),
        settings.connections,
        settings.concurrency
    );
    println!(
        "machine: nproc {}, load average {} before the run; nothing pinned: the generator \
         ({GENERATOR_THREADS} runtime threads + a pacer thread), the mock and the proxy share \
         these cores",
        nproc(),
        settings.load_average
    );
    println!(
        "cpu columns: percent of one core over each run, warm-up included (200% is the machine); \
         other: the rest of the machine's busy time (other processes, steal), the sign of a \
         disturbed run"
    );
    for r in results {
        println!("  {}: {}", r.name, r.what);
    }
    println!();
    println!(
        "| target | rate | achieved | p50 | p99 | p99.9 | max | errors | cpu gen / mock / proxy / other |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        match &r.measured {
            Measured::Skipped(why) => println!("| {} | – | {why} | | | | | | |", r.name),
            Measured::Numbers { fixed, .. } => {
                for (rate, run) in fixed {
                    let x = &run.report;
                    println!(
                        "| {} | {rate} | {:.0} | {} | {} | {} | {} | {} | {} |",
                        r.name,
                        x.rate,
                        us(x.p50_us),
                        us(x.p99_us),
                        us(x.p999_us),
                        us(x.max_us),
                        x.errors,
                        run.cpu
                    );
                }
            }
        }
    }
    let direct = results.iter().find(|r| r.name == "direct");
    println!();
    println!("| overhead vs direct | rate | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for r in results.iter().filter(|r| r.name != "direct") {
        for &rate in &settings.rates {
            let (Some(x), Some(d)) = (fixed_at(r, rate), direct.and_then(|d| fixed_at(d, rate)))
            else {
                continue;
            };
            let diff = |a: u64, b: u64| a as i64 - b as i64;
            println!(
                "| {} | {rate} | {:+} µs | {:+} µs |",
                r.name,
                diff(x.p50_us, d.p50_us),
                diff(x.p99_us, d.p99_us)
            );
        }
    }
    let nginx = results.iter().find(|r| r.name == "nginx");
    let ratio = |x: &Report, base: Option<&TargetResult>| {
        base.and_then(max_of)
            .map_or("–".to_string(), |b| format!("{:.2}", x.rate / b.rate))
    };
    println!();
    println!(
        "| max throughput ({} clients) | req/s | p50 | p99 | errors | / direct | / nginx | cpu gen / mock / proxy / other |",
        settings.concurrency
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        match &r.measured {
            Measured::Skipped(why) => println!("| {} | – | {why} | | | | | |", r.name),
            Measured::Numbers { max, .. } => {
                let x = &max.report;
                println!(
                    "| {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                    r.name,
                    x.rate,
                    us(x.p50_us),
                    us(x.p99_us),
                    x.errors,
                    ratio(x, direct),
                    ratio(x, nginx),
                    max.cpu
                );
            }
        }
    }
    println!();
    for r in results.iter().filter(|r| r.name.starts_with("sluice")) {
        if let Some(x) = max_of(r) {
            for base in [direct, nginx].into_iter().flatten() {
                if let Some(b) = max_of(base) {
                    println!("{} / {} = {:.2}", r.name, base.name, x.rate / b.rate);
                }
            }
        }
    }
    print_quota_tables(settings, results);
}

/// Runs of a target: `(label, run)`, the fixed rates then `max`.
fn runs_of(result: &TargetResult) -> Vec<(String, &Run)> {
    match &result.measured {
        Measured::Numbers { fixed, max } => fixed
            .iter()
            .map(|(rate, run)| (format!("{rate}/s"), run))
            .chain(std::iter::once(("max".to_string(), max)))
            .collect(),
        Measured::Skipped(_) => Vec::new(),
    }
}

/// Each quota target with the same cluster without a quota, both measured.
fn quota_pairs(results: &[TargetResult]) -> Vec<(&TargetResult, &TargetResult)> {
    results
        .iter()
        .filter(|r| matches!(r.cluster, Some((_, KeyQuota::NeverRefusing))))
        .filter_map(|on| {
            let base = on.name.strip_suffix("-quota")?;
            let off = results.iter().find(|r| r.name == base)?;
            (max_of(on).is_some() && max_of(off).is_some()).then_some((off, on))
        })
        .collect()
}

/// Quota on against off (same cluster size, same run), then the Raft log's
/// growth and the quota counters of every run of a Sluice target.
fn print_quota_tables(settings: &Settings, results: &[TargetResult]) {
    let pairs = quota_pairs(results);
    if !pairs.is_empty() {
        println!();
        println!(
            "| quota on vs off | run | p50 off / on | p99 off / on | p99.9 off / on | errors off / on |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (off, on) in &pairs {
            for ((label, a), (_, b)) in runs_of(off).into_iter().zip(runs_of(on)) {
                let (a, b) = (&a.report, &b.report);
                println!(
                    "| {} | {label} | {} / {} | {} / {} | {} / {} | {} / {} |",
                    on.name,
                    us(a.p50_us),
                    us(b.p50_us),
                    us(a.p99_us),
                    us(b.p99_us),
                    us(a.p999_us),
                    us(b.p999_us),
                    a.errors,
                    b.errors
                );
            }
        }
        println!();
        println!(
            "| max throughput ({} clients), quota on vs off | off req/s | on req/s | on / off | cpu proxy off / on | cpu other off / on |",
            settings.concurrency
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (off, on) in &pairs {
            let (Measured::Numbers { max: a, .. }, Measured::Numbers { max: b, .. }) =
                (&off.measured, &on.measured)
            else {
                continue;
            };
            let cpu = |run: &Run| run.cpu.proxy.map_or("–".into(), |p| format!("{p:.0}%"));
            println!(
                "| {} | {:.0} | {:.0} | {:.2} | {} / {} | {:.0}% / {:.0}% |",
                on.name,
                a.report.rate,
                b.report.rate,
                b.report.rate / a.report.rate,
                cpu(a),
                cpu(b),
                a.cpu.other,
                b.cpu.other
            );
        }
        println!();
        for (off, on) in &pairs {
            if let (Some(a), Some(b)) = (max_of(off), max_of(on)) {
                println!(
                    "{} / {} = {:.2} (max throughput of two clusters started apart: see the \
                     same-cluster pairs below for the quota's cost)",
                    on.name,
                    off.name,
                    b.rate / a.rate
                );
            }
        }
    }

    print_on_off_pairs(settings, results);

    let sluice: Vec<&TargetResult> = results.iter().filter(|r| r.cluster.is_some()).collect();
    if sluice.is_empty() {
        return;
    }
    println!();
    println!(
        "raft log: entries appended per second over each measured window (the fastest-growing \
         node's); bound on lease entries = 2 commands x nodes x 1000 / tick_ms ({QUOTA_TICK_MS} ms). \
         Quota counters: every node's proxy, whole run (warm-up included)."
    );
    println!(
        "| raft log and quota | run | achieved req/s | raft entries/s | lease bound | entries per 1 000 requests | admitted | refused | 429 answers |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut warnings = Vec::new();
    for r in &sluice {
        let Some((nodes, quota)) = r.cluster else {
            continue;
        };
        for (label, run) in runs_of(r) {
            let Some(observed) = &run.observed else {
                continue;
            };
            let rate = observed.log.per_second();
            let per_thousand = rate
                .filter(|_| run.report.rate > 0.0)
                .map_or("–".into(), |e| {
                    format!("{:.2}", e / run.report.rate * 1000.0)
                });
            println!(
                "| {} | {label} | {:.0} | {} | {:.0} | {per_thousand} | {} | {} | {} |",
                r.name,
                run.report.rate,
                rate.map_or("–".into(), |e| format!("{e:.1}")),
                cluster::lease_entries_bound(nodes),
                observed.quota.admitted(),
                observed.quota.refused(),
                observed.quota.status_429
            );
            if quota != KeyQuota::NeverRefusing {
                continue;
            }
            let refused = observed.quota.refused() + observed.quota.status_429;
            if refused > 0 || run.report.errors > 0 {
                warnings.push(format!(
                    "WARNING: {} {label}: {} errors, quota decisions {:?}, {} answers 429: \
                     the never-refusing quota refused, or something else failed",
                    r.name, run.report.errors, observed.quota.decisions, observed.quota.status_429
                ));
            }
            if observed.quota.admitted() == 0 {
                warnings.push(format!(
                    "WARNING: {} {label}: no quota decision recorded: admission did not run",
                    r.name
                ));
            }
        }
    }
    if !warnings.is_empty() {
        println!();
    }
    for warning in warnings {
        println!("{warning}");
    }
}

/// The same-cluster quota on/off pairs of every quota-free cluster.
fn print_on_off_pairs(settings: &Settings, results: &[TargetResult]) {
    let with_pairs: Vec<&TargetResult> = results.iter().filter(|r| !r.on_off.is_empty()).collect();
    if with_pairs.is_empty() {
        return;
    }
    println!();
    println!(
        "quota on vs off on the same cluster: the key's policy (rpm and tpm {}) put on and taken \
         off between closed-loop runs of {} clients, 1 s warm-up + {} s each, ABBA order",
        cluster::NEVER_REFUSING,
        settings.concurrency,
        settings.pair_secs
    );
    println!(
        "| cluster | pair | order | off req/s | on req/s | on / off | proxy CPU µs/request off / on | cpu other off / on | errors off / on |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in &with_pairs {
        for (i, pair) in r.on_off.iter().enumerate() {
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {} / {} | {:.0}% / {:.0}% | {} / {} |",
                r.name,
                i + 1,
                if pair.on_first { "on, off" } else { "off, on" },
                pair.off.report.rate,
                pair.on.report.rate,
                pair.ratio(),
                proxy_us_per_request(&pair.off),
                proxy_us_per_request(&pair.on),
                pair.off.cpu.other,
                pair.on.cpu.other,
                pair.off.report.errors,
                pair.on.report.errors,
            );
        }
    }
    println!();
    for r in &with_pairs {
        if let Some((median, total)) = on_off_summary(&r.on_off) {
            println!(
                "{}: quota on / off = {median:.3} (median of {} pairs), {total:.3} (summed rates) \
                 (max throughput, target >= 0.95)",
                r.name,
                r.on_off.len()
            );
        }
        let cpu = |side: fn(&OnOff) -> &Run| {
            median(
                r.on_off
                    .iter()
                    .filter_map(|p| proxy_cpu_us(side(p)))
                    .collect(),
            )
        };
        if let (Some(off), Some(on)) = (cpu(|p| &p.off), cpu(|p| &p.on)) {
            println!(
                "{}: proxy CPU per request, median of the pairs: off {off:.1} µs, on {on:.1} µs \
                 ({:+.1} µs, {:+.1}%)",
                r.name,
                on - off,
                (on / off - 1.0) * 100.0
            );
        }
    }
}

fn run_json(run: &Run) -> Value {
    let mut v = run.report.json();
    v["cpu_generator_pct"] = json!(run.cpu.generator);
    v["cpu_mock_pct"] = json!(run.cpu.mock);
    v["cpu_proxy_pct"] = json!(run.cpu.proxy);
    v["cpu_other_pct"] = json!(run.cpu.other);
    v["raft_log"] = json!(run.observed.as_ref().map(|o| json!({
        "entries_per_s": o.log.per_second(),
        "nodes": o.log.nodes.iter().map(|n| json!({
            "id": n.id, "entries": n.entries, "secs": n.secs,
        })).collect::<Vec<_>>(),
    })));
    v["quota"] = json!(run.observed.as_ref().map(|o| json!({
        "decisions": o.quota.decisions,
        "answers_429": o.quota.status_429,
    })));
    v
}

fn write_json(settings: &Settings, results: &[TargetResult]) {
    let targets: Vec<Value> = results
        .iter()
        .map(|r| match &r.measured {
            Measured::Skipped(why) => json!({"name": r.name, "what": r.what, "skipped": why}),
            Measured::Numbers { fixed, max } => json!({
                "name": r.name,
                "what": r.what,
                "nodes": r.cluster.map(|(nodes, _)| nodes),
                "key_quota": r.cluster.map(|(_, quota)| match quota {
                    KeyQuota::None => Value::Null,
                    KeyQuota::NeverRefusing => json!({
                        "rpm": cluster::NEVER_REFUSING, "tpm": cluster::NEVER_REFUSING,
                    }),
                }),
                "lease_entries_bound_per_s": r.cluster
                    .map(|(nodes, _)| cluster::lease_entries_bound(nodes)),
                "fixed_rate": fixed.iter().map(|(rate, run)| {
                    let mut v = run_json(run);
                    v["rate"] = json!(rate);
                    v
                }).collect::<Vec<_>>(),
                "max_throughput": run_json(max),
                "quota_on_off_pairs": r.on_off.iter().map(|pair| json!({
                    "on_first": pair.on_first,
                    "off": run_json(&pair.off),
                    "on": run_json(&pair.on),
                    "ratio": pair.ratio(),
                })).collect::<Vec<_>>(),
                "quota_on_off_median": on_off_summary(&r.on_off).map(|(median, _)| median),
                "quota_on_off_summed": on_off_summary(&r.on_off).map(|(_, total)| total),
            }),
        })
        .collect();
    let doc = json!({
        "workload": {"method": "POST", "path": PATH, "body": BODY},
        "settings": {
            "rates": settings.rates,
            "measured_secs": settings.secs,
            "warmup_secs": settings.warmup.as_secs(),
            "connections_per_endpoint": settings.connections,
            "concurrency": settings.concurrency,
            "quota_pairs": settings.pairs,
            "pair_secs": settings.pair_secs,
        },
        "machine": {
            "nproc": nproc(),
            "generator_threads": GENERATOR_THREADS,
            "load_average_before": settings.load_average,
            "shared": "generator, mock and target share the machine; nothing pinned",
            "nginx_worker_processes": NGINX_WORKERS,
        },
        "targets": targets,
        "quota_tick_ms": QUOTA_TICK_MS,
        "quota_on_off": quota_pairs(results).iter().filter_map(|(off, on)| {
            let (a, b) = (max_of(off)?, max_of(on)?);
            Some(json!({
                "off": off.name, "on": on.name,
                "max_rps_off": a.rate, "max_rps_on": b.rate, "ratio": b.rate / a.rate,
            }))
        }).collect::<Vec<_>>(),
    });
    write_results("bench-load.json", &doc);
}
